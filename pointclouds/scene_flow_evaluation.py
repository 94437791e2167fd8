"""Scene-flow evaluation over a data-set split, resumable, with per-scene records and a summary table.

Outputs in ``out_dir``: per-scene ``scenes/<index>_<name>.json`` and ``flows/<index>_<name>.npy``,
aggregated ``metrics.json`` and ``metrics.md`` (EPE3D, AccS, AccR, Outliers, angle; scene-averaged
as in the literature, plus point-pooled), pictures of the first ``visualize`` scenes in ``vis/``
and ``sceneflow_config.json``. Scenes whose record exists are not recomputed unless ``overwrite``.

Data sets: ``ft3d_s`` (HPLFlowNet FlyingThings3D subset, split train/val/train_all/test),
``kitti_s`` (HPLFlowNet KITTI), ``kitti_o`` (FlowNet3D KITTI, split all/test/train), ``npz`` (a
folder of ``.npz`` pairs with ``pc1``, ``pc2``, ``flow``, optional ``mask``) and ``synthetic``
(seeded pairs from :mod:`pointclouds.synthetic`).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.errors import InvalidArgumentError

from .scene_flow_pair import write_json

DATASETS = ("ft3d_s", "kitti_s", "kitti_o", "npz", "synthetic")


class SyntheticEvaluationSet:
    """``count`` seeded synthetic pairs of ``num_points`` points, alternately rigid and non-rigid."""

    def __init__(self, count: int, num_points: int, seed: int) -> None:
        self.count, self.num_points, self.seed = count, num_points, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Any:
        from pointclouds.synthetic import make_scene_flow_pair

        return make_scene_flow_pair(self.num_points, seed=self.seed + i, nonrigid=bool(i % 2), overlap=0.9, noise=0.01)


def open_evaluation_set(name: str, root: str | os.PathLike | None, *, split: str | None = None,
                        num_points: int | None = 8192, limit: int | None = None, seed: int = 0) -> Any:
    """The scenes of data set ``name`` (see :data:`DATASETS`); ``split`` is ignored by data sets without splits.

    ``num_points`` None keeps every point; ``synthetic`` makes ``limit`` (default 10) pairs of
    ``num_points`` (default 8192) points.
    """
    from pointclouds import data

    if name == "synthetic":
        return SyntheticEvaluationSet(limit or 10, num_points or 8192, seed)
    if root is None:
        raise InvalidArgumentError(f"dataset {name!r} needs a root folder")
    common: dict[str, Any] = {"num_points": num_points, "seed": seed}
    if split and data.dataset_splits(name):
        common["split"] = split
    return data.open_dataset(name, root, **common)


def _safe_name(name: str, index: int) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    return cleaned or f"scene_{index:06d}"


def _thresholds_line(thresholds: dict[str, list[float]] | None) -> str:
    if not thresholds:
        return "Thresholds: AccS 0.05 m or 5 %, AccR 0.1 m or 10 %, Outliers 0.3 m or 10 %."
    (sa, sr), (ra, rr), (oa, orel) = thresholds["strict"], thresholds["relax"], thresholds["outlier"]
    return (f"Thresholds: AccS {sa:g} m or {sr:.0%}, AccR {ra:g} m or {rr:.0%}, "
            f"Outliers {oa:g} m or {orel:.0%}.")


def markdown_report(method: str, dataset: str, summary: dict[str, Any]) -> str:
    """``metrics.md``: scene-averaged and point-pooled metrics of an evaluation summary."""
    scene, pooled = summary["scene_averaged"], summary["point_pooled"]
    lines = [
        f"# Scene flow: {method} on {dataset}",
        "",
        f"{summary['num_scenes']} scenes, {summary['num_points']} evaluated points, "
        f"{summary['mean_time_s']:.3f} s per pair on average.",
        "",
        _thresholds_line(summary.get("thresholds")),
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


def evaluate_scene_flow(
    dataset: str,
    root: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    method: str = "nsfp",
    options: dict[str, Any] | None = None,
    split: str | None = None,
    num_points: int = 8192,
    limit: int | None = None,
    seed: int = 0,
    visualize: int = 3,
    overwrite: bool = False,
    progress: bool = True,
    thresholds: Any = "lidar",
) -> dict[str, Any]:
    """Evaluate ``method`` on every scene of ``dataset`` (at most ``limit``); returns the ``metrics.json`` summary.

    ``num_points`` 0 keeps every point; ``options`` go to
    :func:`~pointclouds.methods.estimate_scene_flow`. The summary also holds ``computed`` and
    ``skipped`` (scenes taken from an earlier run). ``thresholds`` sets the accuracy / outlier tests
    (:func:`~pointclouds.metrics.resolve_thresholds`); resumed scenes are re-scored with them.
    """
    from motion4d.numpy_io import load_npy
    from pointclouds.methods import estimate_scene_flow
    from pointclouds.methods.visualize import render_flow_png
    from pointclouds.metrics import SceneFlowMetricAccumulator, resolve_thresholds, scene_flow_metrics

    limits = resolve_thresholds(thresholds)
    out = Path(out_dir)
    scenes = open_evaluation_set(dataset, root, split=split, num_points=num_points or None, limit=limit, seed=seed)
    count = len(scenes) if limit is None else min(limit, len(scenes))
    options = dict(options or {})
    write_json(out / "sceneflow_config.json", {"mode": "dataset", "dataset": dataset, "root": root, "split": split,
                                               "num_points": num_points, "limit": limit, "seed": seed,
                                               "method": method, "options": options,
                                               "thresholds": limits.as_dict()})
    scenes_dir, flows_dir, vis_dir = out / "scenes", out / "flows", out / "vis"
    for d in (scenes_dir, flows_dir):
        d.mkdir(parents=True, exist_ok=True)
    accumulator = SceneFlowMetricAccumulator(thresholds=limits)
    times: list[float] = []
    computed = skipped = 0
    indices: Any = range(count)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=f"sceneflow {method}")
    for i in indices:
        sample = scenes[i]
        name = _safe_name(getattr(sample, "name", ""), i)
        record_path, flow_path = scenes_dir / f"{i:06d}_{name}.json", flows_dir / f"{i:06d}_{name}.npy"
        if record_path.exists() and flow_path.exists() and not overwrite:
            flow = load_npy(flow_path)
            record = json.loads(record_path.read_text())
            metrics = scene_flow_metrics(flow, sample.flow, sample.mask, thresholds=limits)
            if record.get("metrics") != metrics:  # re-scored with this run's thresholds
                record["metrics"] = metrics
                write_json(record_path, record)
            skipped += 1
        else:
            result = estimate_scene_flow(sample.source, sample.target, method=method, **options)
            flow = result.numpy()
            record = {"index": i, "name": sample.name, "num_points": len(sample), **result.summary(),
                      "metrics": scene_flow_metrics(flow, sample.flow, sample.mask, thresholds=limits)}
            with atomic_path(flow_path) as tmp:
                np.save(tmp, flow)
            write_json(record_path, record)
            computed += 1
        accumulator.update(flow, sample.flow, sample.mask)
        times.append(float(record["time_s"]))
        if i < visualize:
            render_flow_png(vis_dir / f"{i:06d}_{name}.png", sample.source, sample.target, sample.source + flow,
                            title=f"{method} on {sample.name}: EPE3D {record['metrics']['epe3d']:.3f} m")
    summary = {
        "method": method,
        "dataset": dataset,
        "num_scenes": len(accumulator),
        "num_points": accumulator.compute()["num_points"],
        "thresholds": limits.as_dict(),
        "mean_time_s": float(np.mean(times)) if times else float("nan"),
        "scene_averaged": accumulator.compute(),
        "point_pooled": accumulator.compute(pooled=True),
    }
    write_json(out / "metrics.json", summary)
    atomic_write_text(out / "metrics.md", markdown_report(method, dataset, summary))
    return {**summary, "computed": computed, "skipped": skipped}
