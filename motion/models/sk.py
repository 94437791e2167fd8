"""SKFlow's super-kernel block (``PCBlock4_Deep_nopool_res``), the conv unit of VideoFlow and StreamFlow.

It replaces every conv stack of the RAFT update block, including the "GRU": there is no recurrent
gating, the hidden state is simply recomputed as ``net = SKBlock(concat(net, inputs...))``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SKBlock(nn.Module):
    """``[B, C_in, h, w] -> [B, C_out, h, w]``.

    ``x = gelu(x + ffn1(x))``; for each kernel k: ``x = gelu(x + depthwise_k(x))``;
    ``x = gelu(x + pw(x))``; ``out = ffn2(x)``. The FFNs expand to ``int(1.5 * C_in)`` channels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernels: Sequence[int]) -> None:
        super().__init__()
        hidden = int(1.5 * in_channels)
        self.conv_list = nn.ModuleList(
            nn.Conv2d(in_channels, in_channels, k, padding=k // 2, groups=in_channels) for k in kernels
        )
        self.ffn1 = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, in_channels, 1))
        self.pw = nn.Conv2d(in_channels, in_channels, 1)
        self.ffn2 = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(x + self.ffn1(x))
        for conv in self.conv_list:
            x = F.gelu(x + conv(x))
        x = F.gelu(x + self.pw(x))
        return self.ffn2(x)


MOTION_KERNELS = (1, 15)   # SKFlow's k_conv: motion encoder and flow head
UPDATER_KERNELS = (1, 7)   # SKFlow's PCUpdater_conv: the feed-forward "GRU"
