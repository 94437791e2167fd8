"""Shared RAFT-family building blocks (VideoFlow, SplatFlow, StreamFlow).

This module holds the RAFT parts (BasicEncoder, convex x8 upsampling, input normalisation, sequence
loss) and re-exports the parts kept in their own modules, so model code can import everything from
one place:

* :mod:`motion.flow_geometry` - ``coords_grid``, ``sample_bilinear`` (RAFT's ``bilinear_sampler``)
* :mod:`motion.models.twins`  - ``TwinsEncoder`` (Twins-SVT-Large stages 0-1, timm key names)
* :mod:`motion.models.sk`     - ``SKBlock`` (SKFlow ``PCBlock4_Deep_nopool_res``)
* :mod:`motion.models.gma`    - ``GMAAttention``, ``GMAAggregate``
* :mod:`motion.models.update` - ``BasicMotionEncoder``, ``SKMotionEncoder``, ``SepConvGRU``,
  ``FlowHead``, ``mask_head``

Correlation volumes come from :class:`motion.ops.CorrelationVolume` (all-pairs or on-the-fly).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from motion4d.checks import check_choice

from ..flow_geometry import coords_grid, sample_bilinear  # noqa: F401 (re-exported)
from .gma import GMAAggregate, GMAAttention, GMAKeys, RelativePositionEmbedding  # noqa: F401 (re-exported)
from .sk import MOTION_KERNELS, UPDATER_KERNELS, SKBlock  # noqa: F401 (re-exported)
from .twins import TwinsEncoder  # noqa: F401 (re-exported)
from .update import (  # noqa: F401 (re-exported)
    BasicMotionEncoder,
    FlowHead,
    SepConvGRU,
    SKMotionEncoder,
    mask_head,
)

MAX_FLOW = 400.0  # ground truth beyond this magnitude is excluded from the loss (RAFT)


def normalize_images(frames: torch.Tensor) -> torch.Tensor:
    """Map frames in [0, 1] to the [-1, 1] range the RAFT-family networks expect."""
    return 2.0 * frames - 1.0


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor, factor: int = 8) -> torch.Tensor:
    """RAFT's convex upsampling: ``flow [N, 2, h, w]``, ``mask [N, 9*factor^2, h, w]`` -> ``[N, 2, fh, fw]``.

    Each fine pixel is a softmax-weighted combination of the 3x3 coarse neighbours of its cell;
    the flow is scaled by ``factor`` to fine-pixel units.
    """
    n, _, h, w = flow.shape
    weights = torch.softmax(mask.view(n, 1, 9, factor, factor, h, w), dim=2)
    neighbours = F.unfold(factor * flow, [3, 3], padding=1).view(n, 2, 9, 1, 1, h, w)
    up = torch.sum(weights * neighbours, dim=2)  # [N, 2, f, f, h, w]
    return up.permute(0, 1, 4, 2, 5, 3).reshape(n, 2, factor * h, factor * w)


def sequence_loss(
    predictions: Sequence[torch.Tensor],
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    gamma: float = 0.8,
    max_flow: float = MAX_FLOW,
) -> tuple[torch.Tensor, dict[str, float]]:
    """RAFT's exponentially weighted L1 loss over the refinement iterations.

    ``loss = sum_i gamma^(N-1-i) * mean(valid * |pred_i - target|)``, the mean over all pixels and
    both channels (invalid pixels count as zeros, as in RAFT / VideoFlow).

    Args:
        predictions: N tensors ``[..., 2, H, W]``, one per iteration (last = final).
        target: ``[..., 2, H, W]`` ground truth.
        valid: ``[..., H, W]`` (bool or float >= 0.5 for valid); None means all valid. Pixels with
            ``|target| >= max_flow`` or non-finite targets are excluded too.

    Returns:
        ``(loss, metrics)`` with metrics ``epe``, ``1px``, ``3px``, ``5px`` of the final prediction.
    """
    if not predictions:
        raise ValueError("sequence_loss needs at least one prediction")
    finite = torch.isfinite(target).all(dim=-3)
    target = torch.where(finite.unsqueeze(-3), target, torch.zeros_like(target))
    mask = finite & (target.norm(dim=-3) < max_flow)
    if valid is not None:
        mask = mask & (valid >= 0.5 if valid.is_floating_point() else valid.bool())
    weight = mask.unsqueeze(-3).to(target.dtype)
    n = len(predictions)
    loss = target.new_zeros(())
    for i, pred in enumerate(predictions):
        loss = loss + gamma ** (n - 1 - i) * (weight * (pred - target).abs()).mean()
    with torch.no_grad():
        epe = (predictions[-1].float() - target.float()).norm(dim=-3)[mask]
        if epe.numel() == 0:
            metrics = {"epe": float("nan"), "1px": float("nan"), "3px": float("nan"), "5px": float("nan")}
        else:
            metrics = {"epe": epe.mean().item(), **{f"{t}px": (epe < t).float().mean().item() for t in (1, 3, 5)}}
    return loss, metrics


class ResidualBlock(nn.Module):
    """RAFT residual block: two 3x3 convs with norm + ReLU, 1x1 projection when strided.

    As in RAFT, ``norm3`` is the same module as ``downsample.1``, so checkpoints list it twice.
    """

    def __init__(self, in_planes: int, planes: int, norm_fn: str = "instance", stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.norm1 = _norm(norm_fn, planes)
        self.norm2 = _norm(norm_fn, planes)
        self.downsample: nn.Module | None = None
        if stride != 1:
            self.norm3 = _norm(norm_fn, planes)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class BasicEncoder(nn.Module):
    """RAFT feature / context encoder: ``[B, 3, H, W]`` in [-1, 1] -> ``[B, output_dim, H/8, W/8]``.

    ``norm_fn``: ``"instance"`` (feature net; not affine, no parameters), ``"batch"`` (context net),
    ``"group"`` or ``"none"``.
    """

    def __init__(self, output_dim: int = 256, norm_fn: str = "instance", dropout: float = 0.0) -> None:
        super().__init__()
        check_choice(norm_fn, "norm_fn", ("instance", "batch", "group", "none"))
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.norm1 = _norm(norm_fn, 64)
        self.relu1 = nn.ReLU(inplace=True)
        self.layer1 = self._layer(64, 64, norm_fn, stride=1)
        self.layer2 = self._layer(64, 96, norm_fn, stride=2)
        self.layer3 = self._layer(96, 128, norm_fn, stride=2)
        self.conv2 = nn.Conv2d(128, output_dim, 1)
        self.dropout = nn.Dropout2d(p=dropout) if dropout > 0 else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _layer(in_planes: int, planes: int, norm_fn: str, stride: int) -> nn.Sequential:
        return nn.Sequential(ResidualBlock(in_planes, planes, norm_fn, stride), ResidualBlock(planes, planes, norm_fn, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.conv2(x)
        if self.dropout is not None and self.training:
            x = self.dropout(x)
        return x


def _norm(norm_fn: str, planes: int) -> nn.Module:
    if norm_fn == "instance":
        return nn.InstanceNorm2d(planes)
    if norm_fn == "batch":
        return nn.BatchNorm2d(planes)
    if norm_fn == "group":
        return nn.GroupNorm(planes // 8, planes)
    return nn.Identity()
