#!/usr/bin/env bash
# The GPU check of the correlation / splatting ops: one command on a fresh GPU machine that has a
# CUDA build of torch (plus numpy and pytest), under 8 minutes on one GPU, one summary table.
#   1. environment: Python with a CUDA torch, numpy, pytest, triton; TORCH_CUDA_ARCH_LIST from the
#      device's compute capability, with PTX (unless already set);
#   2. build of the CUDA C++ extension (JIT, torch.utils.cpp_extension, MAX_JOBS = all cores);
#   3. parity tests on the GPU (pytest -m cuda): CUDA C++ and Triton against the float64 reference,
#      forward and backward, gradcheck, opcheck, autocast, Triton against CUDA C++;
#   4. timings and peak memory, reference vs CUDA C++ vs Triton, at Sintel and 1080p sizes
#      (bench/ops.py), with the Triton targets: on-the-fly >= 5x the reference, <= 2x CUDA C++;
#   5. the splatting GPU check, bench/gpu_check_splats.py --timeout N (skipped if that file is absent).
# Every step is time-boxed and independent: a failed build still runs the Triton tests and timings.
#
# Usage, from anywhere:  bash bench/gpu_check.sh [--dry-run] [--budget SECONDS]
#   --dry-run        rehearse on a CPU-only machine everything up to the first CUDA call: the same
#                    steps with CPU stand-ins (CPU extension build, collection of the GPU tests,
#                    bench/ops.py --dry-run with Triton interpreted, gpu_check_splats.py --help)
#   --budget S       total seconds for all steps (default 470)
#   PYTHON=...       the interpreter to use (default: .venv/bin/python, python3, python)
# Exit status: the number of failed steps (0 when all passed); 90 when no usable Python is found.
set -uo pipefail
cd "$(dirname "$0")/.."

dry_run=0
budget=470
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --budget) budget="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Keep the JIT build inside the checkout so a stale cache from another tree cannot be picked up.
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/build/torch_extensions}"
export MAX_JOBS="${MAX_JOBS:-$(nproc 2>/dev/null || echo 4)}"
mkdir -p "$TORCH_EXTENSIONS_DIR"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
started=$(date +%s)

# --------------------------------------------------------------------------- helpers

pick_python() {
  local want_gpu=$1 candidate
  for candidate in "${PYTHON:-}" .venv/bin/python python3 python; do
    [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 || continue
    if [ "$want_gpu" = 1 ]; then
      "$candidate" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null || continue
    else
      "$candidate" -c "import torch" 2>/dev/null || continue
    fi
    echo "$candidate"
    return 0
  done
  return 1
}

names=(); statuses=(); seconds=(); notes=()
record() { names+=("$1"); statuses+=("$2"); seconds+=("$3"); notes+=("$4"); }
elapsed() { echo $(( $(date +%s) - started )); }
banner() { printf '\n==== %s ====\n' "$*"; }

# run_step NAME CAP RESERVE COMMAND...: runs COMMAND for at most min(CAP, time left - RESERVE)
# seconds, shows and logs its output; sets step_rc (124: timed out) and step_limit.
run_step() {
  local name=$1 cap=$2 reserve=$3
  shift 3
  local left=$(( budget - $(elapsed) - reserve ))
  step_limit=$(( cap < left ? cap : left ))
  if [ "$step_limit" -lt 10 ]; then
    step_rc=125
    return
  fi
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$step_limit" "$@" 2>&1 | tee "$logs/$name.log"
  step_rc=${PIPESTATUS[0]}
  step_secs=$(( $(date +%s) - t0 ))
}

# finish NAME NOTE-ON-SUCCESS: turns step_rc into a table row.
finish() {
  local name=$1 note=$2
  case "$step_rc" in
    0) record "$name" PASS "$step_secs" "$note" ;;
    124|137) record "$name" FAIL "$step_secs" "timed out after ${step_limit} s" ;;
    125) record "$name" SKIP 0 "no time left in the ${budget} s budget" ;;
    *) record "$name" FAIL "$step_secs" "exit status $step_rc (log above)" ;;
  esac
}

# --------------------------------------------------------------------------- 1. environment

if ! PY="$(pick_python $((1 - dry_run)))"; then
  if [ "$dry_run" = 1 ]; then
    echo "gpu_check: no Python with torch (tried \$PYTHON, .venv, python3, python)" >&2
  else
    echo "gpu_check: no Python with a CUDA-enabled torch that sees a GPU (tried \$PYTHON, .venv, python3, python)" >&2
  fi
  exit 90
fi
banner "1/5 environment"
step_secs=0
t0=$(date +%s)
# The first CUDA call of a real run: the device's capability gives TORCH_CUDA_ARCH_LIST ("9.0+PTX":
# machine code for this GPU plus PTX that newer GPUs compile at load time, instead of "no kernel image").
MOTION4D_DRY_RUN=$dry_run "$PY" - >"$logs/env.out" 2>&1 <<'EOF'
import importlib.util, os, sys
import torch
dry = os.environ["MOTION4D_DRY_RUN"] == "1"
print(f"python {sys.version.split()[0]} at {sys.executable}; torch {torch.__version__} (CUDA {torch.version.cuda})")
missing = [name for name in ("numpy", "pytest", "triton") if importlib.util.find_spec(name) is None]
for name in ("numpy", "pytest", "triton"):
    if name not in missing:
        module = __import__(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
if dry:
    major, minor = (int(x) for x in os.environ.get("MOTION4D_DRY_CAPABILITY", "9.0").split("."))
    print(f"GPU: none (dry run; capability {major}.{minor} assumed)")
else:
    major, minor = torch.cuda.get_device_capability()
    print(f"GPU: {torch.cuda.get_device_name()}, capability {major}.{minor}, "
          f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
from torch.utils.cpp_extension import CUDA_HOME
print(f"CUDA_HOME: {CUDA_HOME}")
print(f"ARCH={major}.{minor}+PTX")
print("MISSING=" + ",".join(missing))
EOF
env_rc=$?
cat "$logs/env.out"
arch="$(sed -n 's/^ARCH=//p' "$logs/env.out")"
missing="$(sed -n 's/^MISSING=//p' "$logs/env.out")"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$arch}"
echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST TORCH_EXTENSIONS_DIR=$TORCH_EXTENSIONS_DIR MAX_JOBS=$MAX_JOBS"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
if [ "$env_rc" != 0 ] || [ -z "$arch" ]; then
  record environment FAIL $(( $(date +%s) - t0 )) "the environment probe failed (output above)"
elif [ -n "$missing" ]; then
  record environment FAIL $(( $(date +%s) - t0 )) "missing: $missing (steps that need them fail below)"
else
  record environment PASS $(( $(date +%s) - t0 )) "arch $TORCH_CUDA_ARCH_LIST, $("$PY" -c 'import torch; print(torch.__version__)')"
fi
has() { case ",$missing," in *",$1,"*) return 1 ;; *) return 0 ;; esac; }

# --------------------------------------------------------------------------- 2. build

banner "2/5 build of the CUDA C++ extension$([ "$dry_run" = 1 ] && echo ' (dry run: the CPU extension)')"
build_py='
import sys, time
start = time.perf_counter()
from motion.ops import _backend
ok = _backend.load(verbose=False)
status = _backend.status()
print(f"build/load took {time.perf_counter() - start:.1f} s: {status}")
print("selection:", _backend.selection_report())
sys.exit(0 if ok and (status["cuda_kernels"] or sys.argv[1] == "1") else 1)
'
run_step build 240 200 "$PY" -c "$build_py" "$dry_run"
finish build "$([ "$dry_run" = 1 ] && echo 'CPU extension loaded' || echo 'CUDA kernels loaded')"
build_ok=$([ "${statuses[-1]}" = PASS ] && echo 1 || echo 0)

# --------------------------------------------------------------------------- 3. parity tests

banner "3/5 parity tests on the GPU (pytest -m cuda)$([ "$dry_run" = 1 ] && echo ' (dry run: collection only)')"
tests=(tests/motion/test_ops_corr.py tests/motion/test_ops_softsplat.py tests/motion/test_ops_triton.py)
selection=()
if [ "$build_ok" = 0 ]; then selection=(-k "triton and not cuda_cpp"); fi  # without the extension: Triton only
if ! has triton; then selection=(-k "not triton"); fi
if ! has pytest; then
  record "parity tests" FAIL 0 "pytest is not installed"
else
  pytest_args=(-q -m cuda -p no:cacheprovider -o addopts="" -rfE "${selection[@]}")
  if [ "$dry_run" = 1 ]; then pytest_args+=(--collect-only); else pytest_args+=(--durations=5); fi
  # TRITON_INTERPRET=0: the GPU tests must compile the Triton kernels, not interpret them.
  run_step parity 200 150 env TRITON_INTERPRET=0 "$PY" -m pytest "${pytest_args[@]}" "${tests[@]}"
  counts="$(grep -E '^[0-9]+ (passed|failed|tests? collected)|^[0-9]+/[0-9]+ tests? collected|(passed|failed|error)' \
    "$logs/parity.log" 2>/dev/null | tail -n 1)"
  if [ "$dry_run" = 1 ] && [ "$step_rc" = 0 ] && ! grep -qE '^[0-9]+(/[0-9]+)? tests? collected' "$logs/parity.log"; then
    step_rc=1  # a collection that selects no GPU test would make the real run test nothing
  fi
  finish "parity tests" "${counts:-see log}$([ ${#selection[@]} -gt 0 ] && echo " (${selection[*]})")"
fi

# --------------------------------------------------------------------------- 4. timings

banner "4/5 timings and memory: reference vs CUDA C++ vs Triton$([ "$dry_run" = 1 ] && echo ' (dry run: tiny, CPU)')"
if [ "$dry_run" = 1 ]; then
  run_step bench 150 60 env TRITON_INTERPRET=1 "$PY" bench/ops.py --dry-run --json "$logs/bench.json"
else
  run_step bench 150 60 env TRITON_INTERPRET=0 "$PY" bench/ops.py --device cuda --repeats 10 --json "$logs/bench.json"
fi
finish bench "$([ -f "$logs/bench.json" ] && "$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("backends " + ", ".join(r["backends"]) + "".join(f"; no {b}" for b in r["skipped"]))
' "$logs/bench.json" 2>/dev/null)"

# --------------------------------------------------------------------------- 5. splatting check

banner "5/5 splatting GPU check (bench/gpu_check_splats.py)"
if [ ! -f bench/gpu_check_splats.py ]; then
  record "splats check" SKIP 0 "bench/gpu_check_splats.py is not in this checkout"
elif [ "$dry_run" = 1 ]; then
  run_step splats 60 5 "$PY" bench/gpu_check_splats.py --help
  finish "splats check" "--help only (dry run)"
else
  left=$(( budget - $(elapsed) - 15 ))
  splat_args=()
  # Its own time box when it has one (then it can report what it finished); ours bounds it either way.
  if "$PY" bench/gpu_check_splats.py --help 2>/dev/null | grep -q -- "--timeout"; then
    splat_args=(--timeout $(( left > 30 ? left - 10 : 20 )))
  fi
  run_step splats "$left" 5 "$PY" bench/gpu_check_splats.py "${splat_args[@]}"
  finish "splats check" "see its own report above"
fi

# --------------------------------------------------------------------------- summary

banner "summary$([ "$dry_run" = 1 ] && echo ' (DRY RUN on CPU: no GPU was used)')"
failed=0
printf '%-16s %-6s %6s  %s\n' step status secs note
for i in "${!names[@]}"; do
  printf '%-16s %-6s %6s  %s\n' "${names[$i]}" "${statuses[$i]}" "${seconds[$i]}" "${notes[$i]}"
  [ "${statuses[$i]}" = FAIL ] && failed=$((failed + 1))
done
if [ -f "$logs/bench.json" ]; then
  "$PY" - "$logs/bench.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
for row in report["speed"]:
    if row["op"] in ("on-the-fly corr", "on-the-fly fwd+bwd", "all-pairs lookup", "splat average fwd+bwd"):
        ms = row["ms"]
        cells = "  ".join(f"{b} {t:.2f} ms" for b, t in ms.items())
        print(f"{'time ' + row['op']:<31} {row['size']:<9} {cells}")
for row in report["memory"]:
    print(f"{'peak MiB':<31} {row['size']:<9} " + "  ".join(f"{k} {v:.0f}" for k, v in row["peak_mib"].items()))
for t in report["targets"]:
    state = "met" if t["met"] else "MISSED"
    note = " (tiny dry-run sizes: not meaningful)" if report["dry_run"] else ""
    print(f"{'target ' + t['target']:<41} {t['value']:>7.2f}x  goal {t['goal']:<7} {state}{note}")
EOF
fi
echo "gpu_check: $failed failed step(s) in $(elapsed) s (budget ${budget} s)$([ "$dry_run" = 1 ] && echo ', dry run')"
exit $failed
