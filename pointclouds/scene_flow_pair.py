"""Scene flow for one pair of point-cloud files, written to a folder with pictures and metrics.

Outputs: ``flow.npy`` (``float32 [N, 3]``), ``flow.png`` (source / target / warped source),
``flow.ply`` (the three clouds coloured red / green / blue), ``metrics.json`` (the method's summary
and, given ground truth, :func:`~pointclouds.metrics.scene_flow_metrics`) and
``sceneflow_config.json``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.checks import check_file, check_finite, check_shape
from motion4d.errors import InputFileError

#: methods that take a ``progress`` option
PROGRESS_METHODS = ("nsfp", "nsfp-fast", "scoop")


def read_flow_array(path: str | os.PathLike, num_points: int, name: str = "gt") -> np.ndarray:
    """Scene flow ``float32 [num_points, 3]`` from ``.npy`` or ``.npz`` (array ``flow``); ``name`` labels errors."""
    p = check_file(path, name)
    try:
        data = np.load(p, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if "flow" not in data.files:
                    raise InputFileError(f"{p} has no 'flow' array (keys: {data.files})")
                data = data["flow"]
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(f"{p} is not a readable .npy/.npz file: {exc}") from exc
    check_shape(data, f"{name} {p}", (num_points, 3))
    check_finite(data, f"{name} {p}")
    return data.astype(np.float32)


@dataclass
class PairFlowResult:
    """What :func:`estimate_pair_to_folder` computed: ``flow float32 [N, 3]`` and the ``metrics.json`` report."""

    flow: np.ndarray
    report: dict[str, Any]

    @property
    def num_points(self) -> int:
        return len(self.flow)


def write_json(path: Path, payload: Any) -> None:
    """``payload`` as indented JSON (non-JSON values as strings), written atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def estimate_pair_to_folder(
    source: str | os.PathLike,
    target: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    method: str = "nsfp",
    options: dict[str, Any] | None = None,
    gt: str | os.PathLike | None = None,
    gt_name: str = "gt",
    progress: bool = True,
    thresholds: Any = "lidar",
) -> PairFlowResult:
    """Scene flow from the cloud file ``source`` to ``target`` with ``method``, written to ``out_dir``.

    ``options`` go to :func:`~pointclouds.methods.estimate_scene_flow`; ``gt`` is a ground-truth
    flow file (``[N, 3]`` .npy, or .npz with ``flow``) scored against (``gt_name`` labels its
    errors); ``thresholds`` sets the accuracy / outlier tests of the metrics
    (:func:`~pointclouds.metrics.resolve_thresholds`: ``"lidar"``, ``"object"`` or a Thresholds).
    """
    from pointclouds.cloud import read_cloud
    from pointclouds.methods import estimate_scene_flow
    from pointclouds.methods.visualize import render_flow_png, write_flow_ply
    from pointclouds.metrics import resolve_thresholds, scene_flow_metrics

    limits = resolve_thresholds(thresholds)
    out = Path(out_dir)
    source_cloud, target_cloud = read_cloud(source), read_cloud(target)
    truth = read_flow_array(gt, len(source_cloud), gt_name) if gt is not None else None
    options = dict(options or {})
    write_json(out / "sceneflow_config.json", {"mode": "pair", "source": os.fspath(source), "target": os.fspath(target),
                                               "method": method, "options": dict(options),
                                               "gt": None if gt is None else os.fspath(gt),
                                               "thresholds": limits.as_dict()})
    if method in PROGRESS_METHODS:
        options["progress"] = progress
    result = estimate_scene_flow(source_cloud, target_cloud, method=method, **options)
    flow = result.numpy()
    with atomic_path(out / "flow.npy") as tmp:
        np.save(tmp, flow)
    warped = source_cloud.points + flow
    render_flow_png(out / "flow.png", source_cloud.points, target_cloud.points, warped,
                    title=f"{method}: {Path(source).name}")
    write_flow_ply(out / "flow.ply", source_cloud.points, target_cloud.points, warped)
    report: dict[str, Any] = {"method": method, **result.summary()}
    if truth is not None:
        report["metrics"] = scene_flow_metrics(flow, truth, thresholds=limits)
        report["thresholds"] = limits.as_dict()
    write_json(out / "metrics.json", report)
    return PairFlowResult(flow, report)
