"""Flow geometry shared by the models, the point tracker and the splatting code.

Conventions: a flow is ``[2, H, W]`` (or ``[N, 2, H, W]``) in pixels, channel 0 = x (right),
1 = y (down), anchored at the source frame; pixel centres are integer coordinates, so the pixel
``(x, y)`` covers ``[x - 0.5, x + 0.5] x [y - 0.5, y + 0.5]``.

* :func:`pixel_grid` / :func:`coords_grid`: the coordinates of every pixel centre.
* :func:`sample_bilinear`: RAFT's sampler, dense maps at dense positions, zeros outside.
* :func:`sample_at_points`: a field at scattered points, border values outside.
* :func:`warp_backward`: a field of the target frame brought to the source frame along a flow.
* :func:`forward_backward_error`: the forward-backward consistency test of Sundaram et al.
  (ECCV 2010), with the published tolerances :data:`FB_ALPHA` and :data:`FB_BETA`.
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


__all__ = [
    "FB_ALPHA",
    "FB_BETA",
    "coords_grid",
    "forward_backward_error",
    "pixel_grid",
    "sample_at_points",
    "sample_bilinear",
    "warp_backward",
]
