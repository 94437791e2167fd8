"""Per-frame motion evidence: the flow left once the camera motion is removed, checked both ways.

For a flow ``F`` anchored at frame ``a`` (towards ``b``) and the reverse flow ``B`` anchored at ``b``:

1. forward-backward consistency at every pixel, ``|F(p) + B(p + F(p))|² <= alpha (|F|² + |B|²) + beta``
   (Sundaram et al., ECCV 2010), the same check as :mod:`motion.tracking`;
2. the camera motion, a homography fitted with RANSAC (:func:`motion.objects.camera.fit_camera_motion`)
   to consistent flow vectors on a sparse grid;
3. the residual flow ``R = F - (H p - p)``: what moves relative to the background.

A frame ``t`` inside the video has two residuals anchored at it, the forward one of pair ``t`` and the
backward one of pair ``t - 1``. Their pointwise minimum magnitude is the moving evidence: both are
large on a mover, while the pixels a mover is about to cover (bad forward flow) or has just
uncovered (bad backward flow) are large in only one of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .camera import CameraMotion, camera_flow, fit_camera_motion

FIT_STEP = 8  # grid spacing (px) of the correspondences the camera motion is fitted to


@dataclass
class Residual:
    """Residual motion of one flow field (all anchored at the same frame).

    Attributes:
        flow: ``float32 [2, H, W]`` residual flow (camera motion removed).
        consistent: ``bool [H, W]`` forward-backward consistent pixels.
        camera: the fitted :class:`~motion.objects.camera.CameraMotion`.
        inlier_ratio: fraction of the consistent fit points the camera motion explains.
        photometric: ``float32 [H, W]`` absolute grey difference between the anchor frame and the other
            frame warped by the camera motion alone (what a static background would look like), or None.
    """

    flow: np.ndarray
    consistent: np.ndarray
    camera: CameraMotion
    inlier_ratio: float
    photometric: np.ndarray | None = None


def consistency(forward: np.ndarray, backward: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``bool [H, W]``: forward-backward check of ``forward [2, H, W]`` against ``backward [2, H, W]`` (at the target)."""
    _, h, w = forward.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xs + forward[0], ys + forward[1]
    back = np.stack([cv2.remap(backward[c], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                     for c in range(2)])
    error = ((forward + back) ** 2).sum(0)
    tolerance = alpha * ((forward ** 2).sum(0) + (back ** 2).sum(0)) + beta
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return (error <= tolerance) & inside


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), (5, 5), 1.0)


def photometric_error(anchor: np.ndarray, other: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``float32 [H, W]``: ``|I_a(p) - I_b(H p)|`` on blurred grey levels, ``H`` the camera motion ``a -> b``."""
    h, w = anchor.shape[:2]
    warped = cv2.warpPerspective(_grey(other), matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)
    return np.abs(_grey(anchor) - warped)


def residual_motion(forward: np.ndarray, backward: np.ndarray, camera: str = "homography", alpha: float = 0.01,
                    beta: float = 0.5, threshold: float = 1.0,
                    images: tuple[np.ndarray, np.ndarray] | None = None) -> Residual:
    """Residual of ``forward [2, H, W]`` (anchored at its source frame) once the camera motion is removed.

    ``images``: the ``uint8 [H, W, 3]`` anchor and target frames, for the :func:`photometric_error`.
    """
    forward = np.asarray(forward, np.float32)
    backward = np.asarray(backward, np.float32)
    _, h, w = forward.shape
    ok = consistency(forward, backward, alpha, beta)
    offset = FIT_STEP // 2
    ys, xs = np.mgrid[offset:h:FIT_STEP, offset:w:FIT_STEP]
    pick = ok[ys, xs]
    source = np.stack([xs[pick], ys[pick]], axis=1).astype(np.float64)
    target = source + forward[:, ys[pick], xs[pick]].T
    motion = fit_camera_motion(source, target, camera, threshold)
    ratio = float(motion.inliers.mean()) if len(source) else 0.0
    photo = None if images is None else photometric_error(images[0], images[1], motion.matrix)
    return Residual(flow=forward - camera_flow(motion.matrix, h, w), consistent=ok, camera=motion, inlier_ratio=ratio,
                    photometric=photo)


def moving_evidence(ahead: Residual | None, behind: Residual | None) -> tuple[np.ndarray, np.ndarray, float]:
    """``(magnitude [H, W], velocity [2, H, W], noise)`` of a frame from its forward residual ``ahead``
    and the backward residual ``behind`` anchored at it (either may be None at the ends of a video).

    ``velocity`` is the forward residual (the negated backward one where only that exists); ``noise`` is
    the larger of the two residual noise levels.
    """
    parts = [r for r in (ahead, behind) if r is not None]
    if not parts:
        raise ValueError("moving_evidence needs at least one residual")
    magnitudes = [np.linalg.norm(r.flow, axis=0) for r in parts]
    magnitude = np.minimum(*magnitudes) if len(magnitudes) == 2 else magnitudes[0]
    velocity = ahead.flow if ahead is not None else -behind.flow  # type: ignore[union-attr]
    noise = max(r.camera.noise for r in parts)
    return magnitude, velocity, noise


def photometric_evidence(ahead: Residual | None, behind: Residual | None) -> np.ndarray | None:
    """``float32 [H, W]``: the smaller of the two :func:`photometric_error` maps anchored at a frame (None
    without them). Large only where neither neighbour frame, aligned by the camera motion, looks the same:
    a mover, not the background it is about to cover or has just uncovered."""
    maps = [r.photometric for r in (ahead, behind) if r is not None and r.photometric is not None]
    if not maps:
        return None
    return np.minimum(*maps) if len(maps) == 2 else maps[0]
