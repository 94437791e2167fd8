"""Multi-frame flow on the CPU: time per flow of StreamFlow in-batch vs pairwise, VideoFlow-BOF, SplatFlow.

StreamFlow's claim (NeurIPS 2024, Table 4 / App. A.1, A100, 432x1024, 12 iterations): its in-batch
pipeline (a group of T = 4 frames gives 3 flows in one pass) is ~1.44x faster per flow than running
the same network pair by pair (122.18 ms vs 84.59 ms), and ~1.43x faster than VideoFlow-BOF (122.37 ms
vs 85.53 ms). This script measures the same ratios here, side by side in one run:

* ``streamflow T=4``: one group of 4 frames per call, time / 3 flows;
* ``streamflow pairwise``: the same architecture with groups of 2 frames (the two-frame baseline),
  one call per flow;
* ``videoflow-bof``: one triplet per call (flows of the centre frame to both neighbours), time per
  centre frame;
* ``splatflow stream``: cost per pair of the streaming API (features cached, one estimation per pair).

Configurations run round-robin ``--repeats`` times after a warm-up, so slow phases of a shared
machine hit all of them alike; the best time of each is reported. Random weights.

    python bench/flow_models_multi.py                    # 96x160, 12 iterations, a few minutes on 2 idle cores
    python bench/flow_models_multi.py --size 432x1024 --repeats 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import motion  # noqa: E402

PAPER = {"pairwise / in-batch": 122.18 / 84.59, "videoflow-bof / streamflow": 122.37 / 85.53}


def runners(h: int, w: int, iters: int) -> dict[str, tuple[Callable[[], object], int]]:
    """name -> (call, flows per call)."""
    torch.manual_seed(0)
    stream4 = motion.create("streamflow", device="cpu", iters=iters, group_size=4)
    stream2 = motion.create("streamflow", device="cpu", iters=iters, group_size=2)
    bof = motion.create("videoflow-bof", device="cpu", iters=iters, mixed_precision=False)
    splat = motion.create("splatflow", device="cpu", iters=iters)
    group = torch.rand(1, 4, 3, h, w)
    pair = group[:, :2]
    triplet = group[:, :3]
    return {
        "streamflow T=4 (in-batch)": (lambda: stream4(group), 3),
        "streamflow pairwise (T=2)": (lambda: stream2(pair), 1),
        "videoflow-bof (triplet)": (lambda: bof.interior_flows(triplet), 1),
        "splatflow (stream, 4 frames)": (lambda: list(splat.stream(iter(group[0]))), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="96x160", help="HxW of the frames")
    parser.add_argument("--iters", type=int, default=12, help="refinement iterations (paper's timing: 12)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)
    configs = runners(h, w, args.iters)
    best = {name: float("inf") for name in configs}
    print(f"CPU, {args.threads} threads, {h}x{w}, {args.iters} iterations, best of {args.repeats}; time per flow",
          flush=True)
    with torch.inference_mode():
        for name, (call, _) in configs.items():  # warm-up (also compiles the ops extension once)
            call()
        for repeat in range(args.repeats):
            for name, (call, flows) in configs.items():
                start = time.perf_counter()
                call()
                best[name] = min(best[name], (time.perf_counter() - start) / flows)
                print(f"    round {repeat + 1}: {name:32s} {1000 * best[name]:9.1f} ms", flush=True)
    for name, seconds in best.items():
        print(f"  {name:32s} {1000 * seconds:9.1f} ms")
    ours = {
        "pairwise / in-batch": best["streamflow pairwise (T=2)"] / best["streamflow T=4 (in-batch)"],
        "videoflow-bof / streamflow": best["videoflow-bof (triplet)"] / best["streamflow T=4 (in-batch)"],
    }
    for key, value in ours.items():
        print(f"  speed-up {key:28s} {value:5.2f}x   (paper, A100 432x1024: {PAPER[key]:.2f}x)")


if __name__ == "__main__":
    main()
