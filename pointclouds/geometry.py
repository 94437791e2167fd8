"""Ego motion, dynamic masks and ground removal for scene flow on lidar / depth clouds.

Scene-flow ground truth in KITTI / Argoverse 2 / NSFP data includes the sensor's own motion:
a static point moves by ``ego_flow = T p - p`` where ``T [4, 4]`` maps frame-0 coordinates to
frame-1 coordinates. These helpers separate that part (AV2 calls a point *dynamic* when its flow
differs from the ego flow by >= 0.05 m per sweep, i.e. 0.5 m/s at 10 Hz).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from motion4d.checks import check_choice, check_finite, check_positive, check_shape, require
from motion4d.errors import InvalidArgumentError

DYNAMIC_THRESHOLD = 0.05  # metres per sweep (AV2)


def _array(x: Any, name: str, pattern: tuple) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    check_shape(arr, name, pattern)
    check_finite(arr, name)
    return arr


def rigid_flow(points: Any, transform: Any) -> np.ndarray:
    """Flow ``T p - p`` (``float32 [N, 3]``) that the rigid ``transform [4, 4]`` induces on ``points [N, 3]``."""
    p = _array(points, "points", ("N", 3))
    T = _array(transform, "transform", (4, 4))
    return (p @ T[:3, :3].T + T[:3, 3] - p).astype(np.float32)


def compensate_ego(flow: Any, points: Any, ego_motion: Any) -> np.ndarray:
    """Flow without the ego motion: ``flow - (T p - p)``, ``float32 [N, 3]``."""
    n = check_shape(np.asarray(points), "points", ("N", 3))["N"]
    f = _array(flow, "flow", (n, 3))
    return (f - rigid_flow(points, ego_motion)).astype(np.float32)


def dynamic_mask(flow: Any, points: Any, ego_motion: Any, threshold: float = DYNAMIC_THRESHOLD) -> np.ndarray:
    """``bool [N]``: points whose flow differs from the ego flow by at least ``threshold`` metres."""
    check_positive(threshold, "threshold")
    residual = compensate_ego(flow, points, ego_motion)
    return np.linalg.norm(residual, axis=1) >= threshold


def ground_mask(
    points: Any,
    method: str = "height",
    *,
    height: float = -1.4,
    axis: int = 2,
    distance: float = 0.2,
    iterations: int = 200,
    seed: int = 0,
) -> np.ndarray:
    """``bool [N]`` of ground points.

    ``method="height"``: ``points[:, axis] < height`` (KITTI_s uses ``axis=1, height=-1.4`` in its
    y-up camera frame). ``method="plane"``: RANSAC plane fit with open3d's ``segment_plane``
    (inliers within ``distance`` m); the plane must be roughly perpendicular to ``axis``
    (within 30 degrees), otherwise an InvalidArgumentError says no ground was found.
    """
    check_choice(method, "method", ("height", "plane"))
    check_choice(axis, "axis", (0, 1, 2))
    p = _array(points, "points", ("N", 3))
    if method == "height":
        return p[:, axis] < height
    if len(p) < 3:
        raise InvalidArgumentError(f"plane fitting needs at least 3 points, got {len(p)}")
    o3d = require("open3d", "ground_mask(method='plane')", extra="pointclouds")
    o3d.utility.random.seed(seed)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
    plane, inliers = pcd.segment_plane(distance_threshold=distance, ransac_n=3, num_iterations=iterations)
    normal = np.asarray(plane[:3]) / np.linalg.norm(plane[:3])
    if abs(normal[axis]) < np.cos(np.deg2rad(30.0)):
        raise InvalidArgumentError(
            f"the dominant plane (normal {np.round(normal, 3).tolist()}) is not perpendicular to axis {axis}"
        )
    mask = np.zeros(len(p), dtype=bool)
    mask[np.asarray(inliers, dtype=np.int64)] = True
    return mask


__all__ = ["rigid_flow", "compensate_ego", "dynamic_mask", "ground_mask", "DYNAMIC_THRESHOLD"]
