#!/usr/bin/env bash
# Compile-check every CUDA kernel file with nvcc (no GPU needed): sm_90 (Hopper) and sm_80 (Ampere).
# The .cu files need only the CUDA toolkit headers; the torch bindings live in ops.cpp, whose CUDA
# branch (-DWITH_CUDA) is syntax-checked too when a Python with torch is found (a CPU build of torch
# lacks one generated CUDA header, which an empty stand-in replaces for this check only).
# Usage: bash motion/ops/csrc/nvcc_check.sh   (NVCC=/path/to/nvcc, PYTHON=/path/to/python to pick them)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
nvcc="${NVCC:-nvcc}"
if ! command -v "$nvcc" >/dev/null 2>&1; then
  echo "nvcc_check: nvcc not found (set NVCC or install the CUDA toolkit)" >&2
  exit 1
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$nvcc" --version | tail -n 1
status=0
for cu in "$here"/*.cu; do
  name="$(basename "$cu" .cu)"
  if "$nvcc" -std=c++17 -O3 -Xcompiler -Wall -Werror all-warnings -I "$here" \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -c "$cu" -o "$out/$name.o"; then
    echo "nvcc_check: OK   $name.cu (sm_80, sm_90)"
  else
    echo "nvcc_check: FAIL $name.cu" >&2
    status=1
  fi
done

python="${PYTHON:-python3}"
if torch_include="$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))' 2>/dev/null)" \
    && py_include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"; then
  cuda_include=""
  for candidate in "${CUDA_HOME:-}/include" "$(dirname "$(readlink -f "$(command -v "$nvcc")")")/../include" \
      /usr/local/cuda/include; do
    if [ -f "$candidate/cuda_runtime_api.h" ]; then cuda_include="$candidate"; break; fi
  done
  mkdir -p "$out/shim/c10/cuda/impl"
  [ -f "$torch_include/c10/cuda/impl/cuda_cmake_macros.h" ] || echo '#pragma once' > "$out/shim/c10/cuda/impl/cuda_cmake_macros.h"
  if [ -z "$cuda_include" ]; then
    echo "nvcc_check: skip ops.cpp with -DWITH_CUDA (cuda_runtime_api.h not found; set CUDA_HOME)"
  elif "${CXX:-g++}" -std=c++20 -fsyntax-only -fopenmp -DWITH_CUDA -Wall -Werror -Wno-unused-function \
      -isystem "$torch_include" -isystem "$torch_include/torch/csrc/api/include" -isystem "$out/shim" \
      -isystem "$cuda_include" -isystem "$py_include" -I "$here" "$here/ops.cpp"; then
    echo "nvcc_check: OK   ops.cpp with -DWITH_CUDA (torch bindings of the CUDA kernels, syntax only)"
  else
    echo "nvcc_check: FAIL ops.cpp with -DWITH_CUDA" >&2
    status=1
  fi
else
  echo "nvcc_check: skip ops.cpp with -DWITH_CUDA (no Python with torch; PYTHON=... to choose one)"
fi
exit $status
