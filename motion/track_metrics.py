"""TAP-Vid point-tracking metrics (Doersch et al., "TAP-Vid: A Benchmark for Tracking Any Point in a
Video", NeurIPS 2022 Datasets & Benchmarks), computed as the official evaluation code does.

For every track and every *evaluated* frame (all frames after the query frame in ``"first"`` mode,
all frames except the query frame in ``"strided"`` mode):

* occlusion accuracy ``OA`` = fraction of evaluated frames whose predicted occlusion flag is right;
* ``<δ^x`` = fraction of ground-truth-visible evaluated points predicted within ``x`` pixels
  (strictly: squared distance ``< x²``), ignoring the predicted occlusion, for ``x`` in (1, 2, 4, 8, 16);
  ``<δ_avg`` is their mean;
* ``Jaccard_x = TP / (TP + FN + FP)``, with TP = visible in both and within ``x``; TP + FN = all
  ground-truth-visible points; FP = predicted visible but occluded in the ground truth or farther
  than ``x``; ``AJ`` is the mean over the thresholds.

Counts are summed over the tracks of a video first, then divided (one value per video); a benchmark
score is the mean over videos. The paper's thresholds are in pixels of 256x256 frames: pass
``image_size`` to rescale coordinates to that resolution first, as the benchmark does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from motion4d.checks import check_choice, check_shape
from motion4d.errors import InvalidArgumentError

THRESHOLDS = (1, 2, 4, 8, 16)


def evaluation_mask(query_frames: np.ndarray, num_frames: int, query_mode: str) -> np.ndarray:
    """``bool [N, T]``: frames evaluated for each track given its query frame ``[N]``."""
    check_choice(query_mode, "query_mode", ("first", "strided"))
    frames = np.arange(num_frames)[None, :]
    q = np.round(np.asarray(query_frames)).astype(np.int64)[:, None]
    return frames > q if query_mode == "first" else frames != q


def tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str = "first",
    thresholds: tuple[float, ...] = THRESHOLDS,
    image_size: tuple[int, int] | None = None,
    resolution: tuple[int, int] = (256, 256),
) -> dict[str, float]:
    """TAP-Vid metrics of one video.

    Args:
        query_points: ``[N, 3]`` ``(t, y, x)`` as in TAP-Vid (only ``t`` is used).
        gt_occluded, pred_occluded: ``bool [N, T]``.
        gt_tracks, pred_tracks: ``[N, T, 2]`` ``(x, y)`` pixels.
        query_mode: ``"first"`` or ``"strided"``.
        thresholds: pixel thresholds δ.
        image_size: ``(H, W)`` of the coordinates; when given, positions are rescaled to ``resolution``
            (TAP-Vid's 256x256) before thresholding.

    Returns:
        ``occlusion_accuracy``, ``pts_within_{δ}``, ``jaccard_{δ}``, ``average_pts_within_thresh`` (<δ_avg)
        and ``average_jaccard`` (AJ), as floats in [0, 1].
    """
    dims = check_shape(gt_tracks, "gt_tracks", ("N", "T", 2))
    n, t = dims["N"], dims["T"]
    check_shape(pred_tracks, "pred_tracks", (n, t, 2))
    check_shape(gt_occluded, "gt_occluded", (n, t))
    check_shape(pred_occluded, "pred_occluded", (n, t))
    check_shape(query_points, "query_points", (n, 3))
    gt_tracks = np.asarray(gt_tracks, np.float64)
    pred_tracks = np.asarray(pred_tracks, np.float64)
    if image_size is not None:
        scale = np.array([resolution[1] / image_size[1], resolution[0] / image_size[0]])
        gt_tracks, pred_tracks = gt_tracks * scale, pred_tracks * scale
    evaluated = evaluation_mask(np.asarray(query_points)[:, 0], t, query_mode)
    if not evaluated.any():
        raise InvalidArgumentError("no frame is evaluated (every query is on the last frame in 'first' mode)")
    gt_visible = ~np.asarray(gt_occluded, bool)
    pred_visible = ~np.asarray(pred_occluded, bool)
    metrics: dict[str, float] = {
        "occlusion_accuracy": float(((pred_visible == gt_visible) & evaluated).sum() / evaluated.sum())
    }
    squared = ((pred_tracks - gt_tracks) ** 2).sum(-1)
    num_visible = (gt_visible & evaluated).sum()
    within_all, jaccard_all = [], []
    for delta in thresholds:
        within = squared < delta**2
        correct = within & gt_visible & evaluated
        frac = correct.sum() / num_visible if num_visible else float("nan")
        true_pos = (correct & pred_visible).sum()
        false_pos = (pred_visible & (~gt_visible | ~within) & evaluated).sum()
        denominator = num_visible + false_pos
        jaccard = true_pos / denominator if denominator else float("nan")
        metrics[f"pts_within_{delta:g}"] = float(frac)
        metrics[f"jaccard_{delta:g}"] = float(jaccard)
        within_all.append(frac)
        jaccard_all.append(jaccard)
    metrics["average_pts_within_thresh"] = float(np.mean(within_all))
    metrics["average_jaccard"] = float(np.mean(jaccard_all))
    return metrics


def evaluate_tracks(
    pred: Any,
    gt: Any,
    query_mode: str = "first",
    rescale_to_256: bool = True,
) -> dict[str, float]:
    """TAP-Vid metrics of predicted :class:`~motion.tracks.Tracks` against ground-truth ``Tracks``.

    Both must hold the same tracks and frames; the ground truth's ``query`` (or, without it, the first
    visible frame of each track, as TAP-Vid's "first" sampling) gives the query frames.
    """
    if pred.xy.shape != gt.xy.shape:
        raise InvalidArgumentError(f"pred tracks {list(pred.xy.shape)} and gt tracks {list(gt.xy.shape)} differ in shape")
    if gt.query is not None:
        query_t = gt.query[:, 0]
    else:
        if not gt.visible.any(axis=0).all():
            raise InvalidArgumentError("every ground-truth track needs a visible frame (or a query)")
        query_t = gt.visible.argmax(axis=0).astype(np.float32)
    query = np.stack([query_t, np.zeros_like(query_t), np.zeros_like(query_t)], axis=1)
    return tapvid_metrics(
        query,
        ~gt.visible.T,
        gt.xy.transpose(1, 0, 2),
        ~pred.visible.T,
        pred.xy.transpose(1, 0, 2),
        query_mode=query_mode,
        image_size=gt.image_size if rescale_to_256 else None,
    )
