"""The dominant (camera) motion between two frames, and the motion left once it is removed.

The camera's image motion is modelled by a homography (exact for a rotating camera or a planar
scene, a good approximation for distant backgrounds), fitted robustly with OpenCV's RANSAC to point
correspondences of the background; moving objects are the RANSAC outliers. With fewer than
``MIN_POINTS`` correspondences, or when RANSAC finds no model, the camera is taken as static.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from motion4d.checks import check_choice, check_shape

CAMERA_MODELS = ("homography", "affine", "translation", "none")
MIN_POINTS = 8


@dataclass(frozen=True)
class CameraMotion:
    """A fitted camera motion: ``matrix [3, 3]`` maps frame-``t`` pixels to frame ``t+1`` pixels.

    Attributes:
        matrix: homography (affine and translation models have a last row ``0, 0, 1``).
        inliers: ``bool [P]`` correspondences the fit explains (all True for ``"none"``).
        noise: robust scale (1.4826 x median) of the inliers' residuals in pixels.
    """

    matrix: np.ndarray
    inliers: np.ndarray
    noise: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        """``[P, 2]`` pixel positions moved by the camera motion."""
        return apply_homography(self.matrix, points)


def apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``[P, 2]`` -> ``[P, 2]``: ``points`` mapped by the ``[3, 3]`` homography."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    q = p @ matrix[:2, :2].T + matrix[:2, 2]
    w = p @ matrix[2, :2] + matrix[2, 2]
    return q / np.where(np.abs(w) < 1e-12, 1e-12, w)[:, None]


def fit_camera_motion(source: np.ndarray, target: np.ndarray, model: str = "homography",
                      threshold: float = 1.0) -> CameraMotion:
    """Fit the camera motion taking ``source [P, 2]`` to ``target [P, 2]`` (pixels), robust to movers.

    Args:
        model: ``"homography"``, ``"affine"`` (4 degrees of freedom: rotation, scale, shift),
            ``"translation"`` (median shift) or ``"none"`` (static camera).
        threshold: RANSAC inlier distance in pixels.
    """
    check_choice(model, "model", CAMERA_MODELS)
    source = np.asarray(source, np.float64).reshape(-1, 2)
    target = np.asarray(target, np.float64).reshape(-1, 2)
    check_shape(target, "target", (len(source), 2))
    matrix = None
    if model != "none" and len(source) >= MIN_POINTS:
        if model == "homography":
            matrix, inliers = cv2.findHomography(source, target, cv2.RANSAC, threshold, maxIters=2000, confidence=0.995)
        elif model == "affine":
            affine, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC,
                                                          ransacReprojThreshold=threshold, maxIters=2000)
            matrix = None if affine is None else np.vstack([affine, [0.0, 0.0, 1.0]])
        else:
            shift = np.median(target - source, axis=0)
            matrix = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]], [0.0, 0.0, 1.0]])
    if matrix is None or not np.isfinite(matrix).all():
        matrix = np.eye(3)
    residual = np.linalg.norm(target - apply_homography(matrix, source), axis=1) if len(source) else np.zeros(0)
    inliers = residual <= threshold
    noise = float(1.4826 * np.median(residual[inliers])) if inliers.any() else 0.0
    return CameraMotion(matrix=matrix, inliers=inliers, noise=noise)


def camera_flow(matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """``float32 [2, H, W]``: the flow the camera motion ``matrix`` induces at every pixel."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    p = np.stack([xs.ravel(), ys.ravel()], axis=1)
    return (apply_homography(matrix, p) - p).T.reshape(2, height, width).astype(np.float32)
