"""``motion4d evaluate --model NAME --dataset sintel|kitti|things --root DIR --out DIR`` (:mod:`motion.evaluation`).

Outputs in ``--out``: ``metrics.json``, ``metrics.csv``, ``metrics.md`` (a table), ``eval_config.json``
and per subset ``results.jsonl`` plus a few ``pictures/``. A rerun resumes; ``--max-samples`` scores
only the first N pairs of each subset.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from motion4d.cli.arguments import parse_list, parse_options
from motion4d.errors import InvalidArgumentError


def build_parser(parser: argparse.ArgumentParser) -> None:
    from motion.protocols import BENCHMARKS

    parser.add_argument("--model", required=True, help="registered flow model (motion.list_models())")
    parser.add_argument("--weights", default=None, help="checkpoint file or named weight set")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option, repeatable")
    parser.add_argument("--dataset", required=True, choices=BENCHMARKS, help="sintel | kitti | things")
    parser.add_argument("--root", required=True, help="data-set root (MPI-Sintel-complete, KITTI 2015, FlyingThings3D)")
    parser.add_argument("--out", required=True, help="output folder (metrics.json/.csv/.md, per-pair results)")
    parser.add_argument("--passes", default="clean,final", help="Sintel / Things passes (default clean,final)")
    parser.add_argument("--protocol", default="auto",
                        help="auto (the model's official protocol) | pairs | sequence | clip:T:TARGET[:INDEX[:CALL]]")
    parser.add_argument("--multiview-root", default=None, help="KITTI multi-view extension when not unpacked into --root")
    parser.add_argument("--directions", default="forward,backward", help="Things: forward and/or backward flow")
    parser.add_argument("--camera", default="left", choices=("left", "right"), help="Things camera (default left)")
    parser.add_argument("--exclude-invalid", action="store_true", help="Sintel: leave out the invalid/ pixels")
    parser.add_argument("--max-samples", type=int, default=None, help="score only the first N pairs per subset")
    parser.add_argument("--pictures", type=int, default=4, help="visualisations to write per subset (default 4)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier results in --out")


def run(args: argparse.Namespace) -> int:
    from motion.evaluation import evaluate

    if args.max_samples is not None and args.max_samples < 1:
        raise InvalidArgumentError(f"--max-samples must be >= 1, got {args.max_samples}")
    summary = evaluate(
        args.model, args.dataset, args.root, args.out,
        weights=args.weights,
        model_options=parse_options(args.option),
        passes=parse_list(args.passes, "--passes", ("clean", "final")),
        device=args.device,
        protocol=args.protocol,
        max_samples=args.max_samples,
        exclude_invalid=args.exclude_invalid,
        multiview_root=args.multiview_root,
        directions=parse_list(args.directions, "--directions", ("forward", "backward")),
        camera=args.camera,
        pictures=args.pictures,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print((Path(args.out) / "metrics.md").read_text())
    for name, info in summary["subsets"].items():
        print(f"{name}: {info['pairs']} pairs ({info['computed']} computed, {info['skipped']} resumed) in {info['seconds']:.1f} s")
    return 0
