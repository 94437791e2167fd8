"""``motion4d demo`` (and ``make demo``): a real clip in, flow, tracks and pictures out (:mod:`motion.demo`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--frames", type=int, default=12, help="length of the generated clip")
    parser.add_argument("--seed", type=int, default=0, help="seed of the known motion")
    parser.add_argument("--grid", type=int, default=24, help="track grid spacing in pixels")


def print_summary(summary: dict[str, Any], out: Path) -> None:
    print(f"\nclip: {summary['frames']} frames {summary['size'][1]}x{summary['size'][0]} from {summary['photograph']}")
    print(f"{'model':<10} {'EPE px':>8} {'EPE noc':>8} {'<1px':>6} {'s/pair':>7}")
    print(f"{'zero':<10} {summary['zero_flow_epe']:8.3f}")
    for model, s in summary["flow"].items():
        print(f"{model:<10} {s['epe']:8.3f} {s['epe_noc']:8.3f} {s['px1']:6.2f} {s['seconds_per_pair']:7.3f}")
    t = summary["tracks"]
    print(f"tracks: {t['num_tracks']} points, TAP-Vid AJ {t['average_jaccard']:.3f} "
          f"(zero motion {t['zero_motion_average_jaccard']:.3f}), <delta_avg {t['average_pts_within_thresh']:.3f}")
    print("(Reynolds flow is a motion feature for detectors, not a displacement estimate: its EPE is not its purpose.)")
    print(f"outputs in {out}/: input.mp4, flow_*/, tracks/, reynolds_plus.mp4, summary.png, summary.json")


def run(args: argparse.Namespace) -> int:
    from motion.demo import run_demo
    from motion4d.checks import check_int

    check_int(args.frames, "--frames", minimum=2)
    check_int(args.grid, "--grid", minimum=1)
    summary = run_demo(args.out, frames=args.frames, seed=args.seed, grid=args.grid, progress=not args.no_progress)
    print_summary(summary, args.out)
    return 0
