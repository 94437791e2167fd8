"""Point tracks -> moving objects: which tracks move against the camera, and which move together.

Works on the arrays of :class:`~motion.tracks.Tracks` (``xy [T, N, 2]``, ``visible [T, N]``) so that
:mod:`motion.track_formats` can use it without importing the class.

1. **Camera motion** per step ``t -> t+1``: a RANSAC homography fitted to the tracks visible in both
   frames (:func:`motion.objects.camera.fit_camera_motion`); the residual of a track is its step minus
   the camera's.
2. **Moving tracks**: a step moves when its residual exceeds ``max(min_motion, noise_factor x noise)``;
   a track moves when at least ``moving_fraction`` of its visible steps (and two of them) do.
3. **Groups**: moving tracks are linked when, over the frames where both are visible, they stay
   within ``link_distance`` pixels of each other (median) and their residual steps differ by at most
   ``motion_tolerance`` px/frame (median); the connected components of these links with at least
   ``min_tracks`` tracks are the objects (single linkage: an object is a chain of nearby points
   moving alike).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from motion4d.checks import check_int, check_shape

from .camera import fit_camera_motion


def track_residuals(xy: np.ndarray, visible: np.ndarray, camera: str = "homography",
                    threshold: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(residual [T-1, N, 2], valid [T-1, N], noise [T-1])``: each track step minus the camera motion."""
    t, n = visible.shape
    residual = np.zeros((max(t - 1, 0), n, 2), np.float32)
    valid = visible[:-1] & visible[1:]
    noise = np.zeros(max(t - 1, 0))
    for s in range(t - 1):
        both = valid[s]
        if not both.any():
            continue
        motion = fit_camera_motion(xy[s, both], xy[s + 1, both], camera, threshold)
        residual[s, both] = xy[s + 1, both] - motion.apply(xy[s, both])
        noise[s] = motion.noise
    return residual, valid, noise


def group_track_arrays(
    xy: np.ndarray,
    visible: np.ndarray,
    image_size: tuple[int, int],
    *,
    camera: str = "homography",
    min_motion: float = 1.0,
    noise_factor: float = 4.0,
    moving_fraction: float = 0.5,
    link_distance: float | None = None,
    motion_tolerance: float = 1.0,
    min_tracks: int = 3,
) -> np.ndarray:
    """``int64 [N]`` object id of each track (1, 2, ... by decreasing size; 0 = background).

    Args:
        xy: ``[T, N, 2]`` positions; visible: ``bool [T, N]``; image_size: ``(H, W)``.
        link_distance: pixels (default: 3 x the median nearest-neighbour spacing of the tracks, at least 8).
        Others: see the module notes.
    """
    xy = np.asarray(xy, np.float64)
    visible = np.asarray(visible, bool)
    dims = check_shape(xy, "xy", ("T", "N", 2))
    check_shape(visible, "visible", (dims["T"], dims["N"]))
    check_int(min_tracks, "min_tracks", minimum=1)
    n = dims["N"]
    labels = np.zeros(n, np.int64)
    if dims["T"] < 2 or n == 0:
        return labels
    residual, valid, noise = track_residuals(xy, visible, camera)
    speed = np.linalg.norm(residual, axis=2)
    threshold = np.maximum(min_motion, noise_factor * noise)[:, None]
    moving_steps = (speed > threshold) & valid
    count_valid = valid.sum(0)
    count_moving = moving_steps.sum(0)
    moving = (count_moving >= 2) & (count_moving >= moving_fraction * np.maximum(count_valid, 1))
    members = np.nonzero(moving)[0]
    if len(members) < min_tracks:
        return labels
    first = visible.argmax(axis=0)
    start = xy[first, np.arange(n)]
    if link_distance is None:
        spacing, _ = cKDTree(start).query(start, k=2) if n > 1 else (np.zeros((1, 2)), None)
        link_distance = max(8.0, 3.0 * float(np.median(spacing[:, 1])))
    # candidate pairs: moving tracks close together in some frame
    candidates: set[tuple[int, int]] = set()
    for s in range(0, dims["T"], max(1, dims["T"] // 20)):
        here = members[visible[s, members]]
        if len(here) < 2:
            continue
        for a, b in cKDTree(xy[s, here]).query_pairs(r=link_distance):
            candidates.add((int(min(here[a], here[b])), int(max(here[a], here[b]))))
    if not candidates:
        return labels
    pairs = np.array(sorted(candidates))
    a, b = pairs[:, 0], pairs[:, 1]
    both = visible[:, a] & visible[:, b]
    distance = np.linalg.norm(xy[:, a] - xy[:, b], axis=2)
    steps = valid[:, a] & valid[:, b]
    difference = np.linalg.norm(residual[:, a] - residual[:, b], axis=2)
    median_distance = _masked_median(distance, both)
    median_difference = _masked_median(difference, steps)
    linked = (median_distance <= link_distance) & (median_difference <= motion_tolerance)
    index = {int(m): k for k, m in enumerate(members)}
    rows = np.array([index[int(i)] for i in a[linked]], np.int64)
    cols = np.array([index[int(i)] for i in b[linked]], np.int64)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(members), len(members)))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    order = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] >= min_tracks]
    for new, c in enumerate(order, 1):
        labels[members[component == c]] = new
    return labels


def _masked_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median over axis 0 of ``values [T, P]`` where ``mask``; inf where nothing is masked in."""
    masked = np.where(mask, values, np.nan)
    out = np.full(values.shape[1], np.inf)
    some = mask.any(0)
    out[some] = np.nanmedian(masked[:, some], axis=0)
    return out


def group_tracks(tracks: Any, **options: Any) -> np.ndarray:
    """:func:`group_track_arrays` of a :class:`~motion.tracks.Tracks`: ``int64 [N]`` object ids (0 = background)."""
    return group_track_arrays(tracks.xy, tracks.visible, tracks.image_size, **options)
