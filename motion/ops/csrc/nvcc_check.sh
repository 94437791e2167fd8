#!/usr/bin/env bash
# Compile-check every CUDA kernel file with nvcc (no GPU needed): sm_90 (Hopper) and sm_80 (Ampere).
# The .cu files need only the CUDA toolkit headers; the torch bindings live in ops.cpp.
# Usage: bash motion/ops/csrc/nvcc_check.sh   (NVCC=/path/to/nvcc to pick a toolkit)
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
exit $status
