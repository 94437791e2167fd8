"""RAFT update-block parts: motion encoders, SepConvGRU, flow and mask heads."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .sk import MOTION_KERNELS, SKBlock

CORR_CHANNELS = 4 * 81  # 4 pyramid levels x (2 * 4 + 1)^2 lookups


class BasicMotionEncoder(nn.Module):
    """RAFT motion encoder: ``(flow [B, 2, h, w], corr [B, 324, h, w]) -> [B, 128, h, w]``.

    The last two channels are the raw flow, appended after the convolutions.
    """

    def __init__(self, corr_channels: int = CORR_CHANNELS) -> None:
        super().__init__()
        self.convc1 = nn.Conv2d(corr_channels, 256, 1)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        out = F.relu(self.conv(torch.cat([cor, flo], dim=1)))
        return torch.cat([out, flow], dim=1)


class SKMotionEncoder(nn.Module):
    """SKFlow motion encoder (two-frame, as in StreamFlow): ``(flow [B, 2], corr [B, 324]) -> [B, 128]``."""

    def __init__(self, corr_channels: int = CORR_CHANNELS, kernels=MOTION_KERNELS) -> None:
        super().__init__()
        self.convc1 = SKBlock(corr_channels, 256, kernels)
        self.convc2 = SKBlock(256, 192, kernels)
        self.convf1 = nn.Conv2d(2, 128, 1)
        self.convf2 = SKBlock(128, 64, kernels)
        self.conv = SKBlock(64 + 192, 128 - 2, kernels)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = self.convc2(F.gelu(self.convc1(corr)))
        flo = self.convf2(self.convf1(flow))
        return torch.cat([self.conv(torch.cat([cor, flo], dim=1)), flow], dim=1)


class SepConvGRU(nn.Module):
    """RAFT's separable ConvGRU: a 1x5 then a 5x1 gated update of ``h [B, hidden, h, w]``."""

    def __init__(self, hidden: int = 128, input_dim: int = 192 + 128) -> None:
        super().__init__()
        both = hidden + input_dim
        self.convz1 = nn.Conv2d(both, hidden, (1, 5), padding=(0, 2))
        self.convr1 = nn.Conv2d(both, hidden, (1, 5), padding=(0, 2))
        self.convq1 = nn.Conv2d(both, hidden, (1, 5), padding=(0, 2))
        self.convz2 = nn.Conv2d(both, hidden, (5, 1), padding=(2, 0))
        self.convr2 = nn.Conv2d(both, hidden, (5, 1), padding=(2, 0))
        self.convq2 = nn.Conv2d(both, hidden, (5, 1), padding=(2, 0))

    @staticmethod
    def _gated(h: torch.Tensor, x: torch.Tensor, convz: nn.Conv2d, convr: nn.Conv2d, convq: nn.Conv2d) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(convz(hx))
        r = torch.sigmoid(convr(hx))
        q = torch.tanh(convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self._gated(h, x, self.convz1, self.convr1, self.convq1)
        return self._gated(h, x, self.convz2, self.convr2, self.convq2)


class FlowHead(nn.Module):
    """RAFT flow head: ``[B, 128, h, w] -> Δflow [B, 2, h, w]`` (3x3 conv, ReLU, 3x3 conv)."""

    def __init__(self, in_channels: int = 128, hidden: int = 256, out_channels: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


def mask_head(in_channels: int = 128, num_flows: int = 1, factor: int = 8) -> nn.Sequential:
    """Convex-upsampling mask logits: ``[B, in, h, w] -> [B, num_flows * 9 * factor^2, h, w]``.

    Returned as ``Sequential(conv3x3, ReLU, conv1x1)`` so parameters are named ``0.*`` and ``2.*`` as
    in RAFT-family checkpoints. The caller applies the model's logit scale (0.25 in RAFT).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, num_flows * 9 * factor * factor, 1),
    )
