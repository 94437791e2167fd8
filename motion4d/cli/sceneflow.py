"""``motion4d sceneflow``: scene flow for one pair of point-cloud files or over a data-set split.

Pair mode (:mod:`pointclouds.scene_flow_pair`)::

    motion4d sceneflow SOURCE TARGET --out DIR [--method nsfp] [--gt FLOW.npy]

writes ``DIR/flow.npy``, ``DIR/flow.png``, ``DIR/flow.ply``, ``DIR/metrics.json`` and
``DIR/sceneflow_config.json``. Metric thresholds: ``--thresholds lidar`` (5 / 10 / 30 cm, the
literature's) or ``object`` (5 mm / 1 cm / 3 cm), each test replaceable with ``--acc-strict``,
``--acc-relax``, ``--outlier METRES RATIO``.

Data-set mode (:mod:`pointclouds.scene_flow_evaluation`)::

    motion4d sceneflow --dataset kitti_s --root KITTI_processed_occ_final --out DIR --method nsfp-fast

evaluates every scene (``--limit`` to cap) into per-scene records, ``metrics.json`` and
``metrics.md``; interrupted runs resume (``--overwrite`` recomputes).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from motion4d.cli.arguments import parse_options


def build_parser(parser: argparse.ArgumentParser) -> None:
    from pointclouds.methods import METHODS
    from pointclouds.scene_flow_evaluation import DATASETS

    parser.add_argument("source", nargs="?", metavar="SOURCE_CLOUD", help="pair mode: source cloud (.ply .pcd .npz .npy .bin)")
    parser.add_argument("target", nargs="?", metavar="TARGET_CLOUD", help="pair mode: target cloud")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--method", default="nsfp", choices=METHODS, help="scene-flow method (default nsfp)")
    parser.add_argument("--weights", default=None,
                        help="SCOOP checkpoint (the authors' .tar or ours; default: the packaged 'synthetic' one)")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="method option, repeatable (e.g. patience=10)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--gt", default=None, help="pair mode: ground-truth flow [N, 3] (.npy, or .npz with 'flow')")
    metrics = parser.add_argument_group("metric thresholds (AccS / AccR / Outliers)")
    metrics.add_argument("--thresholds", choices=("lidar", "object"), default="lidar",
                         help="preset: lidar = 5 cm / 10 cm / 30 cm (the literature's), object = 5 mm / 1 cm / 3 cm")
    for flag, what in (("--acc-strict", "AccS"), ("--acc-relax", "AccR"), ("--outlier", "Outliers")):
        metrics.add_argument(flag, nargs=2, type=float, metavar=("METRES", "RATIO"), default=None,
                             help=f"{what} test: absolute error in metres and relative error (overrides the preset)")
    group = parser.add_argument_group("data-set mode")
    group.add_argument("--dataset", choices=DATASETS, default=None, help="evaluate a data-set split instead of a pair")
    group.add_argument("--root", default=None, metavar="DATA_DIR", help="data-set folder")
    group.add_argument("--split", default=None, help="split name (ft3d_s: test|val|train|train_all; kitti_o: all|test|train)")
    group.add_argument("--num-points", type=int, default=8192, help="points per cloud (0 = all; default 8192)")
    group.add_argument("--limit", type=int, default=None, help="evaluate at most this many scenes")
    group.add_argument("--seed", type=int, default=0, help="subsampling seed (and synthetic scene seed)")
    group.add_argument("--visualize", type=int, default=3, help="pictures for the first N scenes (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="recompute scenes that are already done")


def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_options(args.option)
    options["device"] = args.device
    if args.weights is not None:
        options["weights"] = args.weights
    return options


def _thresholds(args: argparse.Namespace) -> Any:
    """The metric thresholds the flags name: the preset with any explicit (metres, ratio) pair replaced."""
    import dataclasses

    from motion4d.errors import InvalidArgumentError
    from pointclouds.metrics import resolve_thresholds

    limits = resolve_thresholds(args.thresholds)
    for flag, field in (("--acc-strict", "acc_strict"), ("--acc-relax", "acc_relax"), ("--outlier", "outlier")):
        pair = getattr(args, field)
        if pair is None:
            continue
        if not all(v > 0 for v in pair):
            raise InvalidArgumentError(f"{flag} needs two positive numbers (metres, ratio), got {pair[0]:g} {pair[1]:g}")
        limits = dataclasses.replace(limits, **{field.replace("acc_", ""): (pair[0], pair[1])})
    return limits.validate()


def _run_pair(args: argparse.Namespace, out: Path) -> int:
    from motion4d.errors import InvalidArgumentError
    from pointclouds.scene_flow_pair import estimate_pair_to_folder

    if args.source is None or args.target is None:
        raise InvalidArgumentError("give SOURCE_CLOUD and TARGET_CLOUD files, or --dataset NAME --root DATA_DIR")
    result = estimate_pair_to_folder(args.source, args.target, out, method=args.method, options=_method_options(args),
                                     gt=args.gt, gt_name="--gt", progress=not args.no_progress,
                                     thresholds=_thresholds(args))
    line = f"sceneflow ({args.method}): {result.num_points} points, {result.report['time_s']:.2f} s"
    if "metrics" in result.report:
        line += f", EPE3D {result.report['metrics']['epe3d']:.4f} m"
    print(f"{line} -> {out}")
    return 0


def _run_dataset(args: argparse.Namespace, out: Path) -> int:
    from motion4d.errors import InvalidArgumentError
    from pointclouds.scene_flow_evaluation import evaluate_scene_flow

    if args.dataset != "synthetic" and args.root is None:
        raise InvalidArgumentError(f"--dataset {args.dataset} needs --root")
    summary = evaluate_scene_flow(
        args.dataset, args.root, out, method=args.method, options=_method_options(args), split=args.split,
        num_points=args.num_points, limit=args.limit, seed=args.seed, visualize=args.visualize,
        overwrite=args.overwrite, progress=not args.no_progress, thresholds=_thresholds(args),
    )
    m = summary["scene_averaged"]
    print(
        f"sceneflow ({args.method}) on {args.dataset}: {summary['num_scenes']} scenes ({summary['computed']} computed, "
        f"{summary['skipped']} resumed), EPE3D {m['epe3d']:.4f} m, AccS {m['acc_strict']:.3f}, "
        f"AccR {m['acc_relax']:.3f}, Outliers {m['outliers']:.3f} -> {out}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from motion4d.errors import InvalidArgumentError

    if args.threads is not None:
        if args.threads < 1:
            raise InvalidArgumentError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.dataset is not None:
        if args.source is not None:
            raise InvalidArgumentError("give either SOURCE_CLOUD TARGET_CLOUD or --dataset, not both")
        return _run_dataset(args, out)
    return _run_pair(args, out)
