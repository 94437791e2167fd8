"""Flow geometry shared by the models, the point tracker and the splatting code.

Conventions: a flow is ``[2, H, W]`` (or ``[N, 2, H, W]``) in pixels, channel 0 = x (right),
1 = y (down), anchored at the source frame; pixel centres are integer coordinates, so the pixel
``(x, y)`` covers ``[x - 0.5, x + 0.5] x [y - 0.5, y + 0.5]``.

* :func:`pixel_grid` / :func:`coords_grid`: the coordinates of every pixel centre.
* :func:`sample_bilinear`: RAFT's sampler, dense maps at dense positions, zeros outside.
* :func:`sample_at_points`: a field at scattered points, border values outside.
* :func:`warp_backward`: a field of the target frame brought to the source frame along a flow.
* :func:`forward_backward_error`: the forward-backward consistency test of Sundaram et al.
  (ECCV 2010), with the published tolerances :data:`FB_ALPHA` and :data:`FB_BETA`;
  :func:`forward_backward_check` turns it into a verdict and a confidence, and
  :func:`forward_backward_occlusion` applies it to every pixel: the occlusion masks and confidence
  maps of :class:`~motion.models.base.FlowOutput` and :func:`motion.estimate_flow`, and, at the
  tracked points, the visibility and confidence of :func:`motion.track_points`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FB_ALPHA = 0.01
"""Relative tolerance of the forward-backward check (Sundaram et al.'s ``alpha_1``)."""
FB_BETA = 0.5
"""Absolute tolerance of the forward-backward check in squared pixels (Sundaram et al.'s ``alpha_2``)."""


def pixel_grid(height: int, width: int, device: torch.device | str | None = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[2, H, W]`` pixel-centre coordinates: channel 0 = x (column), 1 = y (row)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys])


def coords_grid(batch: int, height: int, width: int, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """:func:`pixel_grid` repeated over a batch: ``[batch, 2, H, W]`` (RAFT's ``coords_grid``)."""
    return pixel_grid(height, width, device, dtype)[None].expand(batch, 2, height, width).contiguous()


def sample_bilinear(image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Sample ``image [N, C, H, W]`` at pixel positions ``coords [N, 2, h, w]`` -> ``[N, C, h, w]``.

    Bilinear, zeros outside, pixel centres at integers (RAFT's ``bilinear_sampler``, with its
    normalisation ``2 x / (W - 1) - 1``, so results match the official code bit for bit). A map
    that is one pixel wide or high is zero-padded to two first, where RAFT would divide by
    ``W - 1 = 0``.
    """
    if image.shape[-1] == 1 or image.shape[-2] == 1:
        image = F.pad(image, (0, int(image.shape[-1] == 1), 0, int(image.shape[-2] == 1)))
    h, w = image.shape[-2:]
    x = 2 * coords[:, 0] / (w - 1) - 1
    y = 2 * coords[:, 1] / (h - 1) - 1
    grid = torch.stack([x, y], dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def sample_at_points(field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``field [C, H, W]`` at ``points [N, 2]`` (x, y px) -> ``[N, C]``.

    Points outside the image take the value at the nearest border (a flow is extrapolated as
    constant). The field is cast to the points' dtype.
    """
    h, w = field.shape[-2:]
    grid = torch.stack([points[:, 0] * (2.0 / max(w - 1, 1)) - 1, points[:, 1] * (2.0 / max(h - 1, 1)) - 1], dim=-1)
    out = F.grid_sample(field[None].to(points.dtype), grid[None, None], mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out[0, :, 0].T


def warp_backward(field: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``field [C, H, W]`` of the target frame read at ``p + flow(p)`` for every source pixel ``p``.

    ``flow [2, H, W]`` goes source -> target; sampling as :func:`sample_at_points` (border values
    outside). Returns ``[C, H, W]`` on the source frame's grid.
    """
    h, w = flow.shape[-2:]
    target = (pixel_grid(h, w, flow.device, flow.dtype) + flow).reshape(2, -1).T
    return sample_at_points(field, target).T.reshape(-1, h, w)


def forward_backward_error(forward: torch.Tensor, backward: torch.Tensor, alpha: float = FB_ALPHA,
                           beta: float = FB_BETA, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward-backward consistency (Sundaram et al., ECCV 2010): squared error and its tolerance.

    ``forward`` is the flow at a point ``p`` and ``backward`` the reverse flow at ``p + forward``,
    both with their 2 components along ``dim``. A pair is consistent where ``error <= tolerance``::

        error     = |F + B|²
        tolerance = alpha (|F|² + |B|²) + beta

    Returns:
        ``(error, tolerance)``, the shape of the inputs without ``dim``.
    """
    error = (forward + backward).square().sum(dim)
    tolerance = alpha * (forward.square().sum(dim) + backward.square().sum(dim)) + beta
    return error, tolerance


def forward_backward_check(forward: torch.Tensor, backward: torch.Tensor, alpha: float = FB_ALPHA,
                           beta: float = FB_BETA, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The verdict and confidence of :func:`forward_backward_error` (same arguments).

    Returns:
        ``(consistent, confidence)``: ``error <= tolerance`` (bool) and ``exp(-error / (2 tolerance))``
        (1 for a perfect round trip, ``exp(-1/2)`` at the tolerance), the shape of the inputs without ``dim``.
    """
    error, tolerance = forward_backward_error(forward, backward, alpha, beta, dim)
    return error <= tolerance, torch.exp(-0.5 * error / tolerance)


def forward_backward_occlusion(forward: torch.Tensor, backward: torch.Tensor, alpha: float = FB_ALPHA,
                               beta: float = FB_BETA) -> tuple[torch.Tensor, torch.Tensor]:
    """Occlusion masks and confidence maps of flows from their reverse flows (the dense forward-backward check).

    For every pixel ``p`` of the source frame, the reverse flow is read at ``p + F(p)`` (bilinear,
    border values, as :func:`sample_at_points`) and :func:`forward_backward_check` is applied. A pixel
    is occluded where the check fails or where ``p + F(p)`` leaves the pixel-centre rectangle
    ``[0, W-1] x [0, H-1]`` (the definition of :func:`motion.make_sequence`'s exact masks); its
    confidence is 0 there.

    Args:
        forward: ``[..., 2, H, W]`` flow source -> target, anchored at the source frame.
        backward: ``[..., 2, H, W]`` flow target -> source, anchored at the target frame.

    Returns:
        ``occluded bool [..., H, W]`` and ``confidence float32 [..., H, W]`` in [0, 1], on the source frame.
    """
    if forward.shape != backward.shape or forward.dim() < 3 or forward.shape[-3] != 2:
        from motion4d.errors import ShapeError

        raise ShapeError(f"forward and backward must both have shape [..., 2, H, W], got {list(forward.shape)} "
                         f"and {list(backward.shape)}")
    lead, (h, w) = forward.shape[:-3], forward.shape[-2:]
    fwd = forward.reshape(-1, 2, h, w).float()
    target = pixel_grid(h, w, fwd.device) + fwd
    grid = torch.stack([target[:, 0] * (2.0 / max(w - 1, 1)) - 1, target[:, 1] * (2.0 / max(h - 1, 1)) - 1], dim=-1)
    reverse = F.grid_sample(backward.reshape(-1, 2, h, w).float(), grid, mode="bilinear", padding_mode="border",
                            align_corners=True)
    consistent, confidence = forward_backward_check(fwd, reverse, alpha, beta, dim=1)
    inside = (target[:, 0] >= 0) & (target[:, 0] <= w - 1) & (target[:, 1] >= 0) & (target[:, 1] <= h - 1)
    confidence = torch.where(inside, confidence, torch.zeros_like(confidence))
    return (~(consistent & inside)).reshape(*lead, h, w), confidence.reshape(*lead, h, w)


__all__ = [
    "FB_ALPHA",
    "FB_BETA",
    "coords_grid",
    "forward_backward_check",
    "forward_backward_error",
    "forward_backward_occlusion",
    "pixel_grid",
    "sample_at_points",
    "sample_bilinear",
    "warp_backward",
]
