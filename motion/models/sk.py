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
            x = F.gelu(x + depthwise(conv, x))
        x = F.gelu(x + self.pw(x))
        return self.ffn2(x)


def depthwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a depthwise ``conv`` (``groups == channels``), ``[B, C, h, w] -> [B, C, h, w]``.

    The same numbers by faster routes on the CPU, where oneDNN's depthwise kernel is slow on NCHW
    tensors (measured at 324 x 55 x 128, one thread): a 1 x 1 kernel is a per-channel scale and
    shift (3.3 ms -> ~1 ms), the large SK kernels run on a channels-last copy (15 x 15: 348 -> 20 ms;
    7 x 7: 15 -> 3.5 ms; not for 3 x 3, which channels-last makes slower). Other devices call the
    convolution as is.
    """
    if x.device.type != "cpu":
        return conv(x)
    channels = conv.weight.shape[0]
    if conv.kernel_size == (1, 1):
        out = x * conv.weight.view(1, channels, 1, 1)
        return out + conv.bias.view(1, channels, 1, 1) if conv.bias is not None else out
    if min(conv.kernel_size) >= 7:
        return conv(x.contiguous(memory_format=torch.channels_last)).contiguous()
    return conv(x)


MOTION_KERNELS = (1, 15)   # SKFlow's k_conv: motion encoder and flow head
UPDATER_KERNELS = (1, 7)   # SKFlow's PCUpdater_conv: the feed-forward "GRU"
