"""VideoFlow BOF / MOF on the CPU: time and peak memory per frame, all-pairs vs on-the-fly correlation.

Each configuration runs in a fresh subprocess so its peak resident memory (VmHWM) is its own; the
reported memory is the peak minus the resident size just before the forward pass (model and
inputs already loaded). Random weights: speed and memory do not depend on them.

    python bench/flow_models.py                         # 218x512 and 436x1024, 8 iterations
    python bench/flow_models.py --sizes 436x1024 --iters 32 --models mof
    python bench/flow_models.py --sizes 1080x1920 --modes on_the_fly --models mof   # the 1080p budget check

The table ends with the ratios on-the-fly / all-pairs measured side by side, and with the analytic
size of the all-pairs volumes and GMA matrices at 1080p for MOF (5 frames), the part on-the-fly
correlation and fused attention remove.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

GIB = 1024**3


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


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
        before = _rss_kib("VmRSS")
        start = time.perf_counter()
        out = model.interior_flows(frames)
        seconds = time.perf_counter() - start
    peak = _rss_kib("VmHWM")
    flows = out.forward.shape[1]  # interior frames, each with a forward and a backward flow
    print(json.dumps({"seconds": seconds, "peak_bytes": (peak - before) * 1024, "frames": flows}))


def all_pairs_bytes(h: int, w: int, interior: int) -> int:
    """float32 all-pairs pyramids (2 per interior frame, levels ~ 4/3 of level 0) + GMA matrices."""
    tokens = (h // 8) * (w // 8)
    volume = tokens * tokens * 4
    pyramid = sum(tokens * (tokens >> (2 * level)) * 4 for level in range(4))
    return interior * (2 * pyramid + volume)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="218x512,436x1024", help="comma-separated HxW list")
    parser.add_argument("--models", default="bof,mof", help="bof, mof or both")
    parser.add_argument("--modes", default="all_pairs,on_the_fly")
    parser.add_argument("--iters", type=int, default=8, help="refinement iterations (official test: 32)")
    parser.add_argument("--frames", type=int, default=5, help="MOF clip length (official: 5)")
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="mof", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="all_pairs", help=argparse.SUPPRESS)
    parser.add_argument("--size", default="218x512", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.size = tuple(int(v) for v in args.size.split("x"))
        child(args)
        return

    rows = []
    print(f"VideoFlow on CPU, {args.threads} threads, {args.iters} iterations, MOF clips of {args.frames} frames")
    print(f"{'model':5s} {'size':>10s} {'correlation':>12s} {'s/frame':>9s} {'peak GiB/clip':>14s} {'GiB/frame':>10s}")
    for size in args.sizes.split(","):
        for model in args.models.split(","):
            results = {}
            for mode in args.modes.split(","):
                cmd = [sys.executable, __file__, "--child", "--model", model, "--mode", mode, "--size", size,
                       "--iters", str(args.iters), "--frames", str(args.frames), "--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    tail = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
                    print(f"{model:5s} {size:>10s} {mode:>12s}   failed: {tail}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results[mode] = r
                print(f"{model:5s} {size:>10s} {mode:>12s} {r['seconds'] / r['frames']:9.2f} "
                      f"{r['peak_bytes'] / GIB:14.2f} {r['peak_bytes'] / GIB / r['frames']:10.2f}", flush=True)
            if "all_pairs" in results and "on_the_fly" in results:
                a, o = results["all_pairs"], results["on_the_fly"]
                rows.append((model, size, o["seconds"] / a["seconds"], o["peak_bytes"] / max(a["peak_bytes"], 1)))
    if rows:
        print("\nratios on-the-fly / all-pairs (time, peak memory):")
        for model, size, t, m in rows:
            print(f"  {model} {size}: time x{t:.2f}, memory x{m:.2f}")
    interior = args.frames - 2
    print(f"\nall-pairs volumes + GMA matrices alone for MOF ({args.frames} frames) at 1080x1920: "
          f"{all_pairs_bytes(1080, 1920, interior) / GIB:.1f} GiB (on-the-fly + fused attention: O(hw) instead)")


if __name__ == "__main__":
    main()
