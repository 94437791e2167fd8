"""MOTA / IDF1 of objects against ground truth, computed by py-motmetrics from MOTChallenge files.

Both sides go through the MOT files and py-motmetrics' own loader (``motmetrics.io.loadtxt``), so
the scores also check the export. Boxes are matched at IoU >= ``iou_threshold`` (0.5, as in
MOTChallenge); the IoU is computed here because py-motmetrics 1.4's ``iou_matrix`` uses a NumPy
function that NumPy 2 removed.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.checks import check_float, require
from motion4d.errors import InvalidArgumentError

from .result import Objects

METRICS = ("mota", "idf1", "motp", "num_switches", "num_false_positives", "num_misses", "precision", "recall",
           "mostly_tracked", "num_unique_objects")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[A, B]`` IoU of ``(left, top, width, height)`` boxes ``a [A, 4]`` and ``b [B, 4]``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    union = np.prod(a[:, 2:], axis=1)[:, None] + np.prod(b[:, 2:], axis=1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def evaluate_mot_files(truth: str | os.PathLike, predicted: str | os.PathLike, iou_threshold: float = 0.5
                       ) -> dict[str, float]:
    """py-motmetrics scores of the MOT file ``predicted`` against ``truth`` (see :data:`METRICS`)."""
    mm = require("motmetrics", "MOT evaluation", extra="dev")
    check_float(iou_threshold, "iou_threshold", minimum=0.0, maximum=1.0)
    if not Path(truth).read_text(encoding="utf-8").strip():
        raise InvalidArgumentError(f"truth: {truth} holds no box")
    gt = mm.io.loadtxt(str(truth), fmt="mot15-2D")
    # an empty prediction (nothing detected) is valid: all misses
    empty = not Path(predicted).read_text(encoding="utf-8").strip()
    hyp = gt.iloc[0:0] if empty else mm.io.loadtxt(str(predicted), fmt="mot15-2D")
    columns = ["X", "Y", "Width", "Height"]
    accumulator = mm.MOTAccumulator(auto_id=False)
    gt_frames = gt.index.get_level_values(0)
    hyp_frames = hyp.index.get_level_values(0)
    for frame in sorted(set(gt_frames.unique()) | set(hyp_frames.unique())):
        g = gt[gt_frames == frame]
        h = hyp[hyp_frames == frame]
        iou = box_iou(g[columns].to_numpy(), h[columns].to_numpy())
        distance = np.where(iou >= iou_threshold, 1.0 - iou, np.nan)
        accumulator.update(g.index.get_level_values(1).tolist(), h.index.get_level_values(1).tolist(), distance,
                           frameid=int(frame))
    host = mm.metrics.create()
    table = host.compute(accumulator, metrics=list(METRICS), name="sequence")
    return {name: float(table[name].iloc[0]) for name in METRICS}


def mot_metrics(truth: Objects, predicted: Objects, iou_threshold: float = 0.5) -> dict[str, Any]:
    """:func:`evaluate_mot_files` of two :class:`Objects` (written to temporary MOT files)."""
    with tempfile.TemporaryDirectory(prefix="motion4d-mot-") as folder:
        gt_path = truth.save_mot(Path(folder) / "gt.txt")
        pred_path = predicted.save_mot(Path(folder) / "pred.txt")
        return evaluate_mot_files(gt_path, pred_path, iou_threshold)
