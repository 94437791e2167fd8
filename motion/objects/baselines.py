"""The two baselines objects from motion are measured against, run the same way (same outputs).

* :func:`background_subtraction_objects`: OpenCV's MOG2 background model (Zivkovic 2004/2006) ->
  foreground mask -> morphological clean-up -> connected components -> :class:`IoUTracker`.
* :func:`frame_difference_objects`: thresholded absolute difference of consecutive grey frames ->
  the same clean-up, components and tracker.

Both assume a static camera; on a moving camera the whole background changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from motion4d.checks import check_int

from ..frames import open_video
from .evaluate import box_iou
from .result import Objects


@dataclass
class IoUTracker:
    """Greedy-free IoU tracker: detections of consecutive frames are matched by the Hungarian
    algorithm on IoU (pairs below ``min_iou`` never match); a track survives ``max_missing`` frames
    without a match; tracks seen in fewer than ``min_frames`` frames are dropped at the end."""

    min_iou: float = 0.3
    max_missing: int = 3
    min_frames: int = 3
    _boxes: dict[int, np.ndarray] = field(default_factory=dict)
    _missing: dict[int, int] = field(default_factory=dict)
    _next_id: int = 1
    rows: list[tuple[int, int, np.ndarray]] = field(default_factory=list)

    def update(self, t: int, boxes: np.ndarray) -> None:
        """Add the detections ``boxes [k, 4]`` of frame ``t`` (frames in increasing order)."""
        live = list(self._boxes)
        assigned: dict[int, int] = {}
        if live and len(boxes):
            iou = box_iou(np.stack([self._boxes[i] for i in live]), boxes)
            rows, cols = linear_sum_assignment(-iou)
            assigned = {int(c): live[r] for r, c in zip(rows, cols) if iou[r, c] >= self.min_iou}
        for j, box in enumerate(boxes):
            track = assigned.get(j)
            if track is None:
                track, self._next_id = self._next_id, self._next_id + 1
            self._boxes[track], self._missing[track] = box, 0
            self.rows.append((t, track, box))
        for track in live:
            if track not in assigned.values():
                self._missing[track] += 1
                if self._missing[track] > self.max_missing:
                    del self._boxes[track], self._missing[track]

    def result(self, num_frames: int, image_size: tuple[int, int], metadata: dict[str, Any]) -> Objects:
        ids = np.array([r[1] for r in self.rows], np.int64)
        keep = np.isin(ids, [i for i, c in zip(*np.unique(ids, return_counts=True)) if c >= self.min_frames])
        frames = np.array([r[0] for r in self.rows], np.int64)[keep]
        boxes = np.array([r[2] for r in self.rows], np.float32).reshape(-1, 4)[keep]
        ids = _renumber(ids[keep])
        return Objects(frame=frames, ids=ids, boxes=boxes, num_frames=num_frames, image_size=image_size,
                       metadata=metadata)


def _renumber(ids: np.ndarray) -> np.ndarray:
    """Ids 1, 2, ... in order of first appearance."""
    order = {}
    for i in ids.tolist():
        order.setdefault(i, len(order) + 1)
    return np.array([order[i] for i in ids.tolist()], np.int64)


def mask_components(mask: np.ndarray, min_area: int, kernel: int = 3) -> np.ndarray:
    """``[k, 4]`` boxes of the connected components (>= ``min_area`` px) of a cleaned ``mask [H, W]``."""
    mask = mask.astype(np.uint8)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, element)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * kernel + 1,) * 2))
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = [stats[i, :4] for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def _run(source: Any, detect: Any, tracker: IoUTracker, name: str, options: dict[str, Any], **selection: Any) -> Objects:
    count, size, indices = 0, None, []
    with open_video(source, **selection) as video:
        for frame in video:
            size = frame.image.shape[:2]
            tracker.update(count, detect(frame.image))
            indices.append(frame.index)
            count += 1
    result = tracker.result(count, size, {"method": name, **options})
    result.frame_indices = np.asarray(indices, np.int64)
    return result


def background_subtraction_objects(source: Any, *, history: int = 100, var_threshold: float = 16.0,
                                   min_area: int = 64, tracker: IoUTracker | None = None, **selection: Any) -> Objects:
    """MOG2 foreground -> components -> IoU tracker. ``selection``: start, stop, stride, max_frames, resize."""
    check_int(min_area, "min_area", minimum=1)
    model = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=var_threshold, detectShadows=False)

    def detect(image: np.ndarray) -> np.ndarray:
        foreground = model.apply(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return mask_components(foreground > 0, min_area)

    options = {"history": history, "var_threshold": var_threshold, "min_area": min_area}
    return _run(source, detect, tracker or IoUTracker(), "mog2", options, **selection)


def frame_difference_objects(source: Any, *, threshold: float = 20.0, min_area: int = 64,
                             tracker: IoUTracker | None = None, **selection: Any) -> Objects:
    """``|I_t - I_{t-1}| > threshold`` (grey levels) -> components -> IoU tracker (no box in frame 0)."""
    check_int(min_area, "min_area", minimum=1)
    previous: list[np.ndarray] = []

    def detect(image: np.ndarray) -> np.ndarray:
        grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (5, 5), 0).astype(np.int16)
        boxes = mask_components(np.abs(grey - previous[0]) > threshold, min_area) if previous else np.zeros((0, 4))
        previous[:] = [grey]
        return boxes

    options = {"threshold": threshold, "min_area": min_area}
    return _run(source, detect, tracker or IoUTracker(), "frame difference", options, **selection)
