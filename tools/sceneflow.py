"""``motion4d sceneflow``: scene flow for one pair of point-cloud files or over a data-set split.

Pair mode::

    motion4d sceneflow SOURCE TARGET --out DIR [--method nsfp] [--gt FLOW.npy]

writes ``DIR/flow.npy`` (``float32 [N, 3]``), ``DIR/flow.png`` (source / target / warped source),
``DIR/flow.ply`` (the three clouds coloured red / green / blue), ``DIR/metrics.json`` when ``--gt``
is given, and ``DIR/sceneflow_config.json``.

Data-set mode::

    motion4d sceneflow --dataset kitti_s --root KITTI_processed_occ_final --out DIR --method nsfp-fast

evaluates every scene (``--limit`` to cap): per-scene ``DIR/scenes/<name>.json`` and
``DIR/flows/<name>.npy``, aggregated ``DIR/metrics.json`` and ``DIR/metrics.md`` (EPE3D, AccS,
AccR, Outliers, angle; scene-averaged as in the literature, plus point-pooled), pictures of the
first ``--visualize`` scenes in ``DIR/vis/``. Interrupted runs resume: scenes whose JSON exists
are not recomputed (``--overwrite`` recomputes).

Data sets: ``ft3d_s`` (HPLFlowNet FlyingThings3D subset, split train/val/train_all/test),
``kitti_s`` (HPLFlowNet KITTI), ``kitti_o`` (FlowNet3D KITTI, split all/test/train),
``npz`` (a folder of ``.npz`` pairs with ``pc1``, ``pc2``, ``flow``, optional ``mask``) and
``synthetic`` (seeded pairs from ``pointclouds.synthetic``).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from tools._common import parse_options

DATASETS = ("ft3d_s", "kitti_s", "kitti_o", "npz", "synthetic")


def build_parser(parser: argparse.ArgumentParser) -> None:
    from pointclouds.methods import METHODS

    parser.add_argument("source", nargs="?", help="source cloud (.ply .pcd .npz .npy .bin) in pair mode")
    parser.add_argument("target", nargs="?", help="target cloud in pair mode")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--method", default="nsfp", choices=METHODS, help="scene-flow method (default nsfp)")
    parser.add_argument("--weights", default=None, help="SCOOP checkpoint (the authors' .tar or ours)")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="method option, repeatable (e.g. patience=10)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--gt", default=None, help="pair mode: ground-truth flow [N, 3] (.npy, or .npz with 'flow')")
    group = parser.add_argument_group("data-set mode")
    group.add_argument("--dataset", choices=DATASETS, default=None, help="evaluate a data-set split instead of a pair")
    group.add_argument("--root", default=None, help="data-set folder")
    group.add_argument("--split", default=None, help="split name (ft3d_s: test|val|train|train_all; kitti_o: all|test|train)")
    group.add_argument("--num-points", type=int, default=8192, help="points per cloud (0 = all; default 8192)")
    group.add_argument("--limit", type=int, default=None, help="evaluate at most this many scenes")
    group.add_argument("--seed", type=int, default=0, help="subsampling seed (and synthetic scene seed)")
    group.add_argument("--visualize", type=int, default=3, help="pictures for the first N scenes (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="recompute scenes that are already done")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


# ------------------------------------------------------------------------------------- helpers
def _method_options(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_options(args.option)
    options["device"] = args.device
    if args.weights is not None:
        options["weights"] = args.weights
    return options


def _load_flow(path: str, n: int) -> Any:
    import numpy as np

    from motion4d.checks import check_file, check_finite, check_shape
    from motion4d.errors import InputFileError

    p = check_file(path, "--gt")
    try:
        data = np.load(p, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if "flow" not in data.files:
                    raise InputFileError(f"{p} has no 'flow' array (keys: {data.files})")
                data = data["flow"]
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(f"{p} is not a readable .npy/.npz file: {exc}") from exc
    check_shape(data, f"--gt {p}", (n, 3))
    check_finite(data, f"--gt {p}")
    return data.astype(np.float32)


def _write_json(path: Path, payload: Any) -> None:
    from motion4d.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def _safe_name(name: str, index: int) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    return cleaned or f"scene_{index:06d}"


def _open_dataset(args: argparse.Namespace) -> Any:
    from motion4d.errors import InvalidArgumentError
    from pointclouds import data

    num_points = args.num_points or None
    common = {"num_points": num_points, "seed": args.seed}
    if args.dataset == "synthetic":
        from pointclouds.synthetic import make_scene_flow_pair

        count = args.limit or 10
        n = num_points or 8192

        class _Synthetic:
            def __len__(self) -> int:
                return count

            def __getitem__(self, i: int) -> Any:
                return make_scene_flow_pair(n, seed=args.seed + i, nonrigid=bool(i % 2), overlap=0.9, noise=0.01)

        return _Synthetic()
    if args.root is None:
        raise InvalidArgumentError(f"--dataset {args.dataset} needs --root")
    if args.split and data.dataset_splits(args.dataset):  # ignored by data sets without splits
        common["split"] = args.split
    return data.open_dataset(args.dataset, args.root, **common)


def _markdown(method: str, dataset: str, summary: dict[str, Any]) -> str:
    scene, pooled = summary["scene_averaged"], summary["point_pooled"]
    lines = [
        f"# Scene flow: {method} on {dataset}",
        "",
        f"{summary['num_scenes']} scenes, {summary['num_points']} evaluated points, "
        f"{summary['mean_time_s']:.3f} s per pair on average.",
        "",
        "| averaging | EPE3D (m) | AccS | AccR | Outliers | angle (rad) |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in (("per scene", scene), ("per point", pooled)):
        lines.append(
            f"| {label} | {m['epe3d']:.4f} | {m['acc_strict']:.4f} | {m['acc_relax']:.4f} | "
            f"{m['outliers']:.4f} | {m['angle']:.4f} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- run
def _run_pair(args: argparse.Namespace, out: Path) -> int:
    import numpy as np

    from motion4d.errors import InvalidArgumentError
    from pointclouds.cloud import read_cloud
    from pointclouds.methods import estimate_scene_flow
    from pointclouds.methods.visualize import render_flow_png, write_flow_ply
    from pointclouds.metrics import scene_flow_metrics

    if args.source is None or args.target is None:
        raise InvalidArgumentError("give SOURCE and TARGET files, or --dataset NAME --root DIR")
    source, target = read_cloud(args.source), read_cloud(args.target)
    gt = _load_flow(args.gt, len(source)) if args.gt else None
    options = _method_options(args)
    options_record = {k: v for k, v in options.items()}
    _write_json(out / "sceneflow_config.json", {"mode": "pair", "source": args.source, "target": args.target,
                                                "method": args.method, "options": options_record, "gt": args.gt})
    if args.method in ("nsfp", "nsfp-fast", "scoop"):
        options["progress"] = not args.no_progress
    result = estimate_scene_flow(source, target, method=args.method, **options)
    flow = result.numpy()
    from motion4d.atomic import atomic_path

    with atomic_path(out / "flow.npy") as tmp:
        np.save(tmp, flow)
    warped = source.points + flow
    render_flow_png(out / "flow.png", source.points, target.points, warped, title=f"{args.method}: {Path(args.source).name}")
    write_flow_ply(out / "flow.ply", source.points, target.points, warped)
    report: dict[str, Any] = {"method": args.method, **result.summary()}
    if gt is not None:
        report["metrics"] = scene_flow_metrics(flow, gt)
    _write_json(out / "metrics.json", report)
    line = f"sceneflow ({args.method}): {len(source)} points, {result.time_s:.2f} s"
    if gt is not None:
        line += f", EPE3D {report['metrics']['epe3d']:.4f} m"
    print(f"{line} -> {out}")
    return 0


def _run_dataset(args: argparse.Namespace, out: Path) -> int:
    import numpy as np

    from motion4d.atomic import atomic_path
    from pointclouds.methods import estimate_scene_flow
    from pointclouds.methods.visualize import render_flow_png
    from pointclouds.metrics import SceneFlowMetricAccumulator, scene_flow_metrics

    dataset = _open_dataset(args)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    options = _method_options(args)
    _write_json(out / "sceneflow_config.json", {"mode": "dataset", "dataset": args.dataset, "root": args.root,
                                                "split": args.split, "num_points": args.num_points, "limit": args.limit,
                                                "seed": args.seed, "method": args.method, "options": options})
    scenes_dir, flows_dir, vis_dir = out / "scenes", out / "flows", out / "vis"
    for d in (scenes_dir, flows_dir):
        d.mkdir(parents=True, exist_ok=True)
    accumulator = SceneFlowMetricAccumulator()
    times: list[float] = []
    computed = skipped = 0
    indices = range(count)
    if not args.no_progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"sceneflow {args.method}")
    for i in indices:
        sample = dataset[i]
        name = _safe_name(getattr(sample, "name", ""), i)
        record_path, flow_path = scenes_dir / f"{i:06d}_{name}.json", flows_dir / f"{i:06d}_{name}.npy"
        if record_path.exists() and flow_path.exists() and not args.overwrite:
            flow = np.load(flow_path)
            record = json.loads(record_path.read_text())
            skipped += 1
        else:
            result = estimate_scene_flow(sample.source, sample.target, method=args.method, **options)
            flow = result.numpy()
            record = {"index": i, "name": sample.name, "num_points": len(sample), **result.summary(),
                      "metrics": scene_flow_metrics(flow, sample.flow, sample.mask)}
            with atomic_path(flow_path) as tmp:
                np.save(tmp, flow)
            _write_json(record_path, record)
            computed += 1
        accumulator.update(flow, sample.flow, sample.mask)
        times.append(float(record["time_s"]))
        if i < args.visualize:
            render_flow_png(vis_dir / f"{i:06d}_{name}.png", sample.source, sample.target, sample.source + flow,
                            title=f"{args.method} on {sample.name}: EPE3D {record['metrics']['epe3d']:.3f} m")
    summary = {
        "method": args.method,
        "dataset": args.dataset,
        "num_scenes": len(accumulator),
        "num_points": accumulator.compute()["num_points"],
        "mean_time_s": float(np.mean(times)) if times else float("nan"),
        "scene_averaged": accumulator.compute(),
        "point_pooled": accumulator.compute(pooled=True),
    }
    _write_json(out / "metrics.json", summary)
    from motion4d.atomic import atomic_write_text

    atomic_write_text(out / "metrics.md", _markdown(args.method, args.dataset, summary))
    m = summary["scene_averaged"]
    print(
        f"sceneflow ({args.method}) on {args.dataset}: {len(accumulator)} scenes ({computed} computed, {skipped} resumed), "
        f"EPE3D {m['epe3d']:.4f} m, AccS {m['acc_strict']:.3f}, AccR {m['acc_relax']:.3f}, "
        f"Outliers {m['outliers']:.3f} -> {out}"
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
            raise InvalidArgumentError("give either SOURCE TARGET or --dataset, not both")
        return _run_dataset(args, out)
    return _run_pair(args, out)
