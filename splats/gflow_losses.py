"""GFlow's loss terms (AAAI 2025): photometric (L2 + SSIM), depth with learnable scale and shift,
flow of projected centres, isotropy of scales.

Masks are ``bool [H, W]`` of the pixels that count; a masked mean over no pixel is zero.
"""
from __future__ import annotations

import torch
from kornia.metrics import ssim

from motion.flow_geometry import sample_at_points
from motion4d.checks import check_choice


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values [..., H, W]`` over the pixels of ``mask [H, W]`` (all channels)."""
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype).expand_as(values)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def photometric_loss(rendered: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                     lambda_ssim: float = 1.0, window: int = 11) -> torch.Tensor:
    """``MSE + lambda_ssim * (1 - SSIM)`` of ``rendered, target [3, H, W]`` in [0, 1] over ``mask``."""
    loss = _masked_mean((rendered - target).pow(2), mask)
    if lambda_ssim > 0:
        win = min(window, 2 * (min(rendered.shape[-2:]) // 2) - 1)
        similarity = ssim(rendered[None], target[None], max(win, 3), max_val=1.0)[0]
        loss = loss + lambda_ssim * (1.0 - _masked_mean(similarity, mask))
    return loss


def depth_loss(rendered: torch.Tensor, prior: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
               mask: torch.Tensor | None = None, kind: str = "l1") -> torch.Tensor:
    """Depth term between ``scale * rendered + shift`` and ``prior`` (both ``[H, W]``) over ``mask``.

    ``kind="l1"``: ``|a D + b - D_prior|`` (the paper); ``"relative"``: ``(a D + b - D_prior)² / (a D + b +
    D_prior)`` (the released code).
    """
    check_choice(kind, "depth loss kind", ("l1", "relative"))
    aligned = scale * rendered + shift
    diff = aligned - prior
    values = diff.abs() if kind == "l1" else diff.pow(2) / (aligned + prior).abs().clamp_min(1e-6)
    return _masked_mean(values, mask)


def flow_loss(uv_previous: torch.Tensor, uv_current: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """MSE between centre displacements ``uv_current - uv_previous [N, 2]`` and ``flow [2, H, W]`` at ``uv_previous``."""
    if len(uv_previous) == 0:
        return uv_current.sum() * 0.0
    target = sample_at_points(flow, uv_previous.detach())
    return (uv_current - uv_previous.detach() - target).pow(2).sum(-1).mean()


def isotropy_loss(log_scales: torch.Tensor) -> torch.Tensor:
    """Mean over Gaussians of the standard deviation of their three scales (fights needles)."""
    if len(log_scales) == 0:
        return log_scales.sum() * 0.0
    return log_scales.exp().std(dim=-1).mean()
