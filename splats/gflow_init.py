"""GFlow's pixel-wise Gaussian creation: edge-weighted sampling, unprojection of prior depth.

Frame 0 is initialised by drawing pixel positions with a probability that follows the image's
gradient magnitude (Sobel on the grey image, plus the smallest non-zero value everywhere so flat
regions keep some Gaussians), and every later densification draws pixels inside a mask, uniformly
(new content) or in proportion to the photometric error. Each drawn pixel becomes an isotropic
Gaussian on the prior depth surface, coloured by the pixel, nearly opaque, with a size that follows
the local sampling density: ``n`` samples drawn with probability ``p`` per pixel are about
``1 / sqrt(n p)`` pixels apart, so that is the Gaussian's footprint on screen.
"""
from __future__ import annotations

import math

import torch
from kornia.color import rgb_to_grayscale
from kornia.filters import sobel

from motion.flow_geometry import sample_at_points
from motion4d.checks import check_shape
from motion4d.errors import InvalidArgumentError


def edge_probability(image: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` sampling probability from the Sobel magnitude of ``image [3, H, W]`` (sums to 1)."""
    check_shape(image, "image", (3, "H", "W"))
    magnitude = sobel(rgb_to_grayscale(image[None].float()))[0, 0]
    positive = magnitude[magnitude > 0]
    floor = positive.min() if positive.numel() else torch.tensor(1.0, device=image.device)
    weights = magnitude + floor
    return weights / weights.sum()


def masked_probability(mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor | None:
    """``[H, W]`` probability inside ``mask [H, W]`` (uniform, or proportional to ``weights``); None if empty."""
    w = mask.float() if weights is None else mask.float() * weights.clamp_min(0).float()
    total = w.sum()
    if total <= 0:
        return None
    return w / total


def sample_pixels(probability: torch.Tensor, count: int, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``count`` pixels (with replacement) from ``probability [H, W]``.

    Returns:
        ``xy [count, 2]`` positions jittered uniformly inside their pixel (x, y; pixel centres are
        integers) and ``p [count]`` the probability of the drawn pixel.
    """
    if count < 1:
        raise InvalidArgumentError(f"count must be >= 1, got {count}")
    h, w = probability.shape
    flat = probability.reshape(-1)
    index = torch.multinomial(flat.cpu(), count, replacement=True, generator=generator).to(flat.device)
    jitter = torch.rand(count, 2, generator=generator).to(flat.device) - 0.5
    xy = torch.stack([(index % w).float(), torch.div(index, w, rounding_mode="floor").float()], dim=-1)
    xy = (xy + jitter).clamp(torch.zeros(2, device=xy.device), torch.tensor([w - 1.0, h - 1.0], device=xy.device))
    return xy, flat[index]


def unproject(xy: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor) -> torch.Tensor:
    """World points ``[N, 3]`` at pixels ``xy [N, 2]`` with camera depth ``depth [N]`` (z, not range)."""
    ones = torch.ones_like(xy[:, :1])
    rays = torch.linalg.solve(K.to(xy.dtype), torch.cat([xy, ones], dim=-1).T).T  # [N, 3] with z = 1
    cam = rays * depth[:, None]
    c2w = torch.linalg.inv(world_to_cam.to(xy.dtype))
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def pixel_gaussians(
    image: torch.Tensor,
    depth: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    xy: torch.Tensor,
    footprint_px: torch.Tensor,
    opacity: float = 0.99,
) -> dict[str, torch.Tensor]:
    """Parameters of Gaussians created at pixels ``xy [N, 2]`` of ``image [3, H, W]``.

    ``depth [H, W]`` is the prior depth in scene units and ``footprint_px [N]`` the screen standard
    deviation in pixels. Returns ``means, quats, log_scales, logit_opacities, colors`` (storage form).
    """
    colors = sample_at_points(image, xy).clamp(0.0, 1.0)
    z = sample_at_points(depth[None], xy)[:, 0]
    means = unproject(xy, z, K, world_to_cam)
    focal = 0.5 * (K[0, 0] + K[1, 1])
    sigma = footprint_px * z / focal
    n = len(xy)
    return {
        "means": means,
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0], device=xy.device).repeat(n, 1),
        "log_scales": sigma.clamp_min(1e-8).log()[:, None].repeat(1, 3),
        "logit_opacities": torch.full((n,), math.log(opacity / (1 - opacity)), device=xy.device),
        "colors": colors,
    }


def density_footprint(p: torch.Tensor, count: int, scale: float = 0.7, low: float = 0.35, high: float = 6.0
                      ) -> torch.Tensor:
    """Screen standard deviation (px) of Gaussians drawn ``count`` times with pixel probability ``p [N]``."""
    return (scale / torch.sqrt(count * p).clamp_min(1e-12)).clamp(low, high)
