"""VideoFlow BOF / MOF on the CPU: time and peak memory per frame, all-pairs vs on-the-fly correlation.

Each configuration runs in a fresh subprocess so its peak resident memory (VmHWM) is its own. Two
memory numbers are reported: the forward pass's own peak (peak minus the resident size just before
the forward, model and inputs already loaded: every torch CPU allocation of the forward is resident)
and the whole process's peak (interpreter, libraries, weights, inputs and forward together), which
is what a memory budget has to hold. Random weights: speed and memory do not depend on them.

    python bench/flow_models.py                         # 218x512 and 436x1024, 8 iterations
    python bench/flow_models.py --sizes 436x1024 --iters 32 --models mof
    python bench/flow_models.py --sizes 218x512 --models mof --iters 2,12        # peak vs iterations
    python bench/flow_models.py --sizes 1080x1920 --modes on_the_fly --models mof --iters 2   # 1080p budget

Every row also prints the analytic size of the all-pairs correlation pyramids and dense GMA
matrices of that clip (the part on-the-fly correlation and fused attention remove). An all-pairs run
whose analytic requirement alone exceeds the memory available on this machine is not started (it
could only be killed by the kernel); the row says so. Inference keeps one set of per-iteration
tensors alive at a time, so the peak should not depend on ``--iters``: give two counts to check.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

GIB = 1024**3


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def available_bytes() -> int:
    """``MemAvailable`` of /proc/meminfo: what a new process can allocate without swapping or dying."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


def child(args: argparse.Namespace) -> None:
    import torch

    import motion

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames_per_clip = 3 if args.model == "bof" else args.frames
    model = motion.create(f"videoflow-{args.model}", device="cpu", iters=args.iters, corr_mode=args.mode)
    h, w = args.size
    frames = torch.rand(1, frames_per_clip, 3, h, w)
    with torch.inference_mode():
        before = _status_kib("VmRSS")
        start = time.perf_counter()
        out = model.interior_flows(frames)
        seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    flows = out.forward.shape[1]  # interior frames, each with a forward and a backward flow
    print(json.dumps({"seconds": seconds, "peak_bytes": (peak - before) * 1024, "process_peak_bytes": peak * 1024,
                      "frames": flows}))


def all_pairs_bytes(h: int, w: int, interior: int) -> int:
    """float32 all-pairs pyramids (2 per interior frame, levels ~ 4/3 of level 0) + GMA matrices."""
    tokens = (-(-h // 8)) * (-(-w // 8))  # inputs are padded to a multiple of 8
    volume = tokens * tokens * 4
    pyramid = sum(tokens * (tokens >> (2 * level)) * 4 for level in range(4))
    return interior * (2 * pyramid + volume)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="218x512,436x1024", help="comma-separated HxW list")
    parser.add_argument("--models", default="bof,mof", help="bof, mof or both")
    parser.add_argument("--modes", default="all_pairs,on_the_fly")
    parser.add_argument("--iters", default="8", help="refinement iterations, comma-separated (official test: 32)")
    parser.add_argument("--frames", type=int, default=5, help="MOF clip length (official: 5)")
    parser.add_argument("--budget-gib", type=float, default=16.0, help="memory budget the process peak is checked against")
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="mof", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="all_pairs", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="218x512", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.size = tuple(int(v) for v in args.size.split("x"))
        args.iters = int(args.iters)
        child(args)
        return

    iter_counts = [int(v) for v in args.iters.split(",")]
    rows, by_iters = [], {}
    print(f"VideoFlow on CPU, {args.threads} threads, iterations {iter_counts}, MOF clips of {args.frames} frames, "
          f"budget {args.budget_gib:g} GiB, load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':5s} {'size':>10s} {'correlation':>12s} {'iters':>5s} {'s/frame':>9s} {'fwd peak GiB':>12s} "
          f"{'GiB/frame':>10s} {'process GiB':>11s} {'all-pairs GiB*':>14s}  budget")
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        for model in args.models.split(","):
            interior = 1 if model == "bof" else args.frames - 2
            analytic = all_pairs_bytes(h, w, interior) / GIB
            for iters in iter_counts:
                results = {}
                for mode in args.modes.split(","):
                    head = f"{model:5s} {size:>10s} {mode:>12s} {iters:5d}"
                    if mode == "all_pairs" and analytic * GIB > available_bytes():
                        print(f"{head}   not run: all-pairs volumes + GMA alone need {analytic:.1f} GiB, "
                              f"{available_bytes() / GIB:.1f} GiB available here; over the {args.budget_gib:g} GiB "
                              f"budget: {'yes' if analytic > args.budget_gib else 'no'}", flush=True)
                        continue
                    cmd = [sys.executable, __file__, "--child", "--model", model, "--mode", mode, "--size", size,
                           "--iters", str(iters), "--frames", str(args.frames), "--threads", str(args.threads)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        tail = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
                        print(f"{head}   failed: {tail}")
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    results[mode] = r
                    by_iters.setdefault((model, size, mode), []).append((iters, r["peak_bytes"]))
                    within = "within" if r["process_peak_bytes"] <= args.budget_gib * GIB else "OVER"
                    print(f"{head} {r['seconds'] / r['frames']:9.2f} {r['peak_bytes'] / GIB:12.2f} "
                          f"{r['peak_bytes'] / GIB / r['frames']:10.2f} {r['process_peak_bytes'] / GIB:11.2f} "
                          f"{analytic:14.1f}  {within}", flush=True)
                if "all_pairs" in results and "on_the_fly" in results:
                    a, o = results["all_pairs"], results["on_the_fly"]
                    rows.append((model, size, iters, o["seconds"] / a["seconds"],
                                 o["peak_bytes"] / max(a["peak_bytes"], 1)))
    print("* analytic float32 all-pairs pyramids + dense GMA matrices of the clip (not counting anything else)")
    if rows:
        print("\nratios on-the-fly / all-pairs (time, forward peak memory):")
        for model, size, iters, t, m in rows:
            print(f"  {model} {size} {iters} iterations: time x{t:.2f}, memory x{m:.2f}")
    spread = [(key, peaks) for key, peaks in by_iters.items() if len(peaks) > 1]
    if spread:
        print("\nforward peak vs iterations (inference keeps one iteration's tensors alive):")
        for (model, size, mode), peaks in spread:
            values = [p for _, p in peaks]
            print(f"  {model} {size} {mode}: " + ", ".join(f"{i} it {p / GIB:.3f} GiB" for i, p in peaks)
                  + f"; max/min x{max(values) / max(min(values), 1):.3f}")
    interior = args.frames - 2
    print(f"\nall-pairs volumes + GMA matrices alone for MOF ({args.frames} frames) at 1080x1920: "
          f"{all_pairs_bytes(1080, 1920, interior) / GIB:.1f} GiB (on-the-fly + fused attention: O(hw) instead)")


if __name__ == "__main__":
    main()
