#!/usr/bin/env bash
# One-shot GPU check of the correlation / splatting CUDA kernels (about 3-5 minutes on an H200):
#   1. nvcc compile-check of every .cu file (sm_80 + sm_90),
#   2. JIT build of the CUDA extension for the local GPU (TORCH_CUDA_ARCH_LIST, default 9.0),
#   3. the CUDA parity tests (pytest -m cuda: every op vs the reference, forward + backward,
#      float32/float64, gradcheck, opcheck, autocast),
#   4. CUDA-vs-reference timings and GPU memory (bench/ops.py --device cuda).
# Usage, from anywhere:  bash bench/gpu_check.sh        (PYTHON=... to choose the interpreter)
# Exit status: 0 when every step passed; otherwise the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-8}"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Keep the JIT build inside the checkout so a stale cache from another tree cannot be picked up.
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/build/torch_extensions}"
mkdir -p "$TORCH_EXTENSIONS_DIR"

# The interpreter must have a CUDA build of torch: prefer $PYTHON, then the project venv, then python3.
pick_python() {
  for candidate in "${PYTHON:-}" .venv/bin/python python3 python; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

banner() { printf '\n==== %s ====\n' "$*"; }
failed=0
started=$(date +%s)

if ! PY="$(pick_python)"; then
  echo "gpu_check: no Python with a CUDA-enabled torch that sees a GPU (tried \$PYTHON, .venv, python3)" >&2
  exit 90
fi
banner "environment"
"$PY" - <<'EOF'
import torch
from torch.utils.cpp_extension import CUDA_HOME
print(f"python torch {torch.__version__} (CUDA {torch.version.cuda}); GPU: {torch.cuda.get_device_name()}")
print(f"CUDA_HOME: {CUDA_HOME}")
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST TORCH_EXTENSIONS_DIR=$TORCH_EXTENSIONS_DIR"

banner "1/4 nvcc compile check"
if bash motion/ops/csrc/nvcc_check.sh; then echo "PASS nvcc check"; else echo "FAIL nvcc check"; failed=$((failed + 1)); fi

banner "2/4 build the CUDA extension"
if "$PY" - <<'EOF'
import sys, time
start = time.perf_counter()
from motion.ops import _backend
ok = _backend.load(verbose=True)
status = _backend.status()
print(f"build/load took {time.perf_counter() - start:.1f} s: {status}")
sys.exit(0 if ok and status["cuda_kernels"] else 1)
EOF
then
  echo "PASS build"
else
  echo "FAIL build (see the compiler output above)"
  failed=$((failed + 1))
  echo "gpu_check: stopping, the remaining steps need the extension"
  exit $failed
fi

banner "3/4 CUDA parity tests (pytest -m cuda)"
if "$PY" -m pytest -q -m cuda -p no:cacheprovider -o addopts="" --durations=5 \
    tests/motion/test_ops_corr.py tests/motion/test_ops_softsplat.py; then
  echo "PASS CUDA parity tests"
else
  echo "FAIL CUDA parity tests"
  failed=$((failed + 1))
fi

banner "4/4 CUDA vs reference speed and memory"
if timeout 300 "$PY" bench/ops.py --device cuda --repeats 20; then
  echo "PASS bench"
else
  echo "FAIL bench"
  failed=$((failed + 1))
fi

banner "summary"
echo "gpu_check: $failed failed step(s) in $(( $(date +%s) - started )) s"
exit $failed
