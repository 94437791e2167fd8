"""Moving-region masks from optical flow: epipolar (Sampson) error, rigid-flow residual, occlusion.

GFlow (AAAI 2025 version) separates still from moving content with the epipolar geometry of each
frame pair: a fundamental matrix is fitted robustly (OpenCV ``findFundamentalMat``, LMedS) to the
correspondences ``x -> x + flow(x)`` of all pixels, the Sampson distance of every correspondence to
it is computed (kornia), thresholded and cleaned by a morphological opening. Static scene points
obey the epipolar constraint; independently moving ones violate it unless they move along their
epipolar line.

Two additions complete it: :func:`rigid_flow_residual` compares the flow with the flow a static
scene would produce given depth and the two camera poses (it also catches motion along epipolar
lines), and :func:`forward_backward_occlusion` marks pixels whose flow fails the forward-backward
consistency check (content that appears or disappears between the frames).

All flows are ``[2, H, W]`` pixels (u right, v down) anchored at the source frame; pixel centres are
integer coordinates.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from kornia.geometry.epipolar import sampson_epipolar_distance
from kornia.morphology import opening

from motion.flow_geometry import FB_ALPHA, FB_BETA, forward_backward_error, pixel_grid, warp_backward
from motion4d.checks import check_finite, check_positive, check_shape


def fundamental_from_flow(flow: torch.Tensor, valid: torch.Tensor | None = None, max_points: int = 8000,
                          seed: int = 0) -> torch.Tensor | None:
    """Fundamental matrix of the pair from its dense flow (LMedS on a random subset of pixels).

    Args:
        flow: ``[2, H, W]``; valid: optional ``bool [H, W]`` of trusted correspondences.
    Returns:
        ``F [3, 3]`` float64 with ``x2^T F x1 = 0``, or None when the fit is degenerate (e.g. a
        camera that does not translate, or too few correspondences).
    """
    check_shape(flow, "flow", (2, "H", "W"))
    h, w = flow.shape[-2:]
    grid = pixel_grid(h, w, flow.device, flow.dtype)
    src = grid.reshape(2, -1).T
    dst = (grid + flow).reshape(2, -1).T
    keep = (dst[:, 0] >= 0) & (dst[:, 0] <= w - 1) & (dst[:, 1] >= 0) & (dst[:, 1] <= h - 1)
    if valid is not None:
        keep &= valid.reshape(-1).to(keep.device)
    index = torch.nonzero(keep).squeeze(1).cpu().numpy()
    if len(index) < 16:
        return None
    if len(index) > max_points:
        index = np.sort(np.random.default_rng(seed).choice(index, max_points, replace=False))
    p1 = src.detach().cpu().double().numpy()[index]
    p2 = dst.detach().cpu().double().numpy()[index]
    if np.median(np.linalg.norm(p2 - p1, axis=1)) < 1e-3:
        return None  # no motion at all: the epipolar geometry is undefined
    fm, _ = cv2.findFundamentalMat(p1, p2, cv2.FM_LMEDS, 1.0, 0.999)
    if fm is None or fm.shape != (3, 3) or not np.isfinite(fm).all():
        return None
    return torch.from_numpy(fm)


def sampson_error(flow: torch.Tensor, fundamental: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` Sampson distance (pixels, not squared) of every flow correspondence to ``fundamental``."""
    check_shape(flow, "flow", (2, "H", "W"))
    check_shape(fundamental, "fundamental", (3, 3))
    h, w = flow.shape[-2:]
    grid = pixel_grid(h, w, flow.device, torch.float64)
    src = grid.reshape(2, -1).T
    dst = (grid + flow.double()).reshape(2, -1).T
    err = sampson_epipolar_distance(src[None], dst[None], fundamental.to(flow.device, torch.float64)[None],
                                    squared=False)
    return err[0].reshape(h, w).to(flow.dtype)


def _disk(radius: int, device: torch.device) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius + 1e-6).float()


def open_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Morphological opening of ``bool [H, W]`` with a disk of ``radius`` pixels (kornia)."""
    if radius <= 0:
        return mask
    out = opening(mask.float()[None, None], _disk(radius, mask.device))
    return out[0, 0] > 0.5


def dilate_mask(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """``bool [H, W]`` grown by ``radius`` pixels (a square of side ``2 radius + 1``)."""
    if radius <= 0:
        return mask
    return torch.nn.functional.max_pool2d(mask.float()[None, None], 2 * radius + 1, 1, radius)[0, 0] > 0.5


def epipolar_moving_mask(flow: torch.Tensor, threshold: float = 1.0, normalize: bool = False,
                         opening_radius: int = 1, valid: torch.Tensor | None = None,
                         static_threshold: float = 1.0, seed: int = 0) -> torch.Tensor:
    """``bool [H, W]``: pixels whose flow violates the pair's epipolar geometry.

    Args:
        flow: ``[2, H, W]`` forward flow of the pair.
        threshold: on the Sampson distance in pixels, or (``normalize=True``, the published GFlow
            recipe) on the error divided by its maximum over the image (the paper uses 0.01).
        opening_radius: radius of the disk of the morphological opening (0 disables it).
        valid: optional ``bool [H, W]`` of trusted correspondences used for the fit.
        static_threshold: when the camera does not translate the fundamental matrix is undefined;
            pixels moving more than this many pixels are then marked moving.
    """
    check_shape(flow, "flow", (2, "H", "W"))
    check_finite(flow, "flow")
    check_positive(threshold, "threshold")
    fundamental = fundamental_from_flow(flow, valid, seed=seed)
    if fundamental is None:
        mask = flow.norm(dim=0) > static_threshold
    else:
        err = sampson_error(flow, fundamental)
        if normalize:
            err = err / err.max().clamp_min(1e-12)
        mask = err > threshold
    return open_mask(mask, opening_radius)


def forward_backward_occlusion(forward: torch.Tensor, backward: torch.Tensor, alpha: float = FB_ALPHA,
                               beta: float = FB_BETA) -> torch.Tensor:
    """``bool [H, W]`` pixels of the source frame whose forward flow fails the consistency check.

    ``forward [2, H, W]`` goes source -> target, ``backward [2, H, W]`` target -> source (anchored at the
    target). A pixel ``p`` is inconsistent when ``|F(p) + B(p + F(p))|² > alpha (|F|² + |B|²) + beta``
    (:func:`motion.flow_geometry.forward_backward_error`) or when ``p + F(p)`` leaves the image. Called
    with the roles swapped (``backward`` first) it marks content of the target that the source does not
    show: new content.
    """
    check_shape(forward, "forward", (2, "H", "W"))
    check_shape(backward, "backward", tuple(forward.shape))
    h, w = forward.shape[-2:]
    back = warp_backward(backward, forward)
    err, tol = forward_backward_error(forward, back, alpha, beta, dim=0)
    x, y = pixel_grid(h, w, forward.device, forward.dtype) + forward
    outside = (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
    return (err > tol) | outside


def rigid_flow(depth: torch.Tensor, K: torch.Tensor, source_w2c: torch.Tensor, target_w2c: torch.Tensor
               ) -> torch.Tensor:
    """``[2, H, W]`` flow a static scene with ``depth [H, W]`` (camera z of the source) would produce."""
    h, w = depth.shape
    grid = pixel_grid(h, w, depth.device, depth.dtype)
    ones = torch.ones_like(depth)[None]
    rays = torch.linalg.solve(K.to(depth.dtype), torch.cat([grid, ones]).reshape(3, -1))
    cam = rays * depth.reshape(1, -1)
    rel = target_w2c.to(depth.dtype) @ torch.linalg.inv(source_w2c.to(depth.dtype))
    moved = rel[:3, :3] @ cam + rel[:3, 3:]
    uvw = K.to(depth.dtype) @ moved
    uv = uvw[:2] / uvw[2:].clamp_min(1e-8)
    return (uv.reshape(2, h, w) - grid)


def rigid_flow_residual(flow: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, source_w2c: torch.Tensor,
                        target_w2c: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` end-point distance (px) between the observed flow and the static-scene flow."""
    return (flow - rigid_flow(depth, K, source_w2c, target_w2c)).norm(dim=0)
