"""Twins-SVT-Large, first two stages: the feature and context encoder of VideoFlow and StreamFlow.

Our own implementation of the Twins "SVT" backbone (Chu et al., 2021) truncated after stage 1, so a
``[B, 3, H, W]`` image becomes a ``[B, 256, H/8, W/8]`` feature map. Parameter names follow timm's
``twins_svt_large`` exactly (``patch_embeds``, ``blocks``, ``pos_block``, ``norm``), so the official
VideoFlow / StreamFlow checkpoints and the ImageNet Twins weights load without renaming. The final
``norm`` (1024 channels) belongs to the deleted stage 3 and is unused; it is kept because the released
checkpoints contain it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from motion4d.errors import ShapeError

# twins_svt_large: embed_dims (128, 256, 512, 1024), heads (4, 8, 16, 32), sr (8, 4, 2, 1), window 7.
STAGE_DIMS = (128, 256)
STAGE_HEADS = (4, 8)
STAGE_SR = (8, 4)
WINDOW = 7
PATCH_SIZES = (4, 2)
FINAL_DIM = 1024
BLOCK_NORM_EPS = 1e-6  # timm builds the blocks with LayerNorm(eps=1e-6); patch-embed/GSA norms use 1e-5


class PatchEmbed(nn.Module):
    """Strided conv + LayerNorm: ``[B, C, H, W] -> tokens [B, H/p * W/p, D]`` and the grid size."""

    def __init__(self, in_chans: int, dim: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        size = (x.shape[-2] // self.patch, x.shape[-1] // self.patch)
        return self.norm(self.proj(x).flatten(2).transpose(1, 2)), size


class LocallyGroupedAttention(nn.Module):
    """LSA: multi-head self-attention inside non-overlapping ``window x window`` groups.

    The grid is zero-padded at the bottom/right to a multiple of the window and padded tokens take
    part in the attention unmasked, exactly as in timm (weights were trained that way).
    """

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        h, w = size
        ws = self.window
        x = x.view(b, h, w, c)
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        gh, gw = x.shape[1] // ws, x.shape[2] // ws
        x = x.reshape(b, gh, ws, gw, ws, c).transpose(2, 3)
        qkv = self.qkv(x).reshape(b, gh * gw, ws * ws, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)  # [B, groups, heads, ws*ws, d]
        x = x.transpose(2, 3).reshape(b, gh, gw, ws, ws, c)
        x = x.transpose(2, 3).reshape(b, gh * ws, gw * ws, c)[:, :h, :w, :]
        return self.proj(x.reshape(b, n, c))


class GlobalSubsampledAttention(nn.Module):
    """GSA: every token attends to a ``sr x sr``-strided summary of the whole grid."""

    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, d).permute(0, 2, 1, 3)
        summary = self.sr(x.permute(0, 2, 1).reshape(b, c, *size)).reshape(b, c, -1).permute(0, 2, 1)
        kv = self.kv(self.norm(summary)).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """Two linear layers with GELU (timm's ``Mlp``: ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TwinsBlock(nn.Module):
    """Pre-norm transformer block with LSA (``window`` given) or GSA (``sr_ratio`` given) attention."""

    def __init__(self, dim: int, heads: int, window: int | None = None, sr_ratio: int | None = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        if window is not None:
            self.attn: nn.Module = LocallyGroupedAttention(dim, heads, window)
        else:
            self.attn = GlobalSubsampledAttention(dim, heads, int(sr_ratio or 1))
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), size)
        return x + self.mlp(self.norm2(x))


class PosConv(nn.Module):
    """Conditional position encoding: 3x3 depthwise conv added to the tokens (``proj.0``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim))

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, n, c = x.shape
        grid = x.transpose(1, 2).reshape(b, c, *size)
        return (self.proj(grid) + grid).flatten(2).transpose(1, 2)


class TwinsSVTLargeStages(nn.Module):
    """Stages 0-1 of timm's ``twins_svt_large`` with timm's parameter names.

    ``forward(x [B, 3, H, W]) -> [B, 256, H/8, W/8]``; ``H`` and ``W`` must be multiples of 8 and at
    least 32 (stage 0's global attention summarises 8x8 token blocks of the 1/4 grid).
    """

    def __init__(self) -> None:
        super().__init__()
        in_chans = (3,) + STAGE_DIMS[:-1]
        self.patch_embeds = nn.ModuleList(
            PatchEmbed(c_in, dim, p) for c_in, dim, p in zip(in_chans, STAGE_DIMS, PATCH_SIZES)
        )
        self.blocks = nn.ModuleList(
            nn.ModuleList([TwinsBlock(dim, heads, window=WINDOW), TwinsBlock(dim, heads, sr_ratio=sr)])
            for dim, heads, sr in zip(STAGE_DIMS, STAGE_HEADS, STAGE_SR)
        )
        self.pos_block = nn.ModuleList(PosConv(dim) for dim in STAGE_DIMS)
        self.norm = nn.LayerNorm(FINAL_DIM, eps=BLOCK_NORM_EPS)  # unused; present in every checkpoint
        self.apply(_init_twins_weights)

    def run_blocks(self, stage: int, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The two transformer blocks of ``stage`` with the position conv after the first."""
        first, second = self.blocks[stage]
        tokens = self.pos_block[stage](first(tokens, size), size)
        return second(tokens, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] < 32 or x.shape[-1] < 32:
            raise ShapeError(f"Twins encoder input must be at least 32x32 pixels, got {list(x.shape[-2:])}")
        b = x.shape[0]
        for stage in range(len(STAGE_DIMS)):
            tokens, size = self.patch_embeds[stage](x)
            tokens = self.run_blocks(stage, tokens, size)
            x = tokens.reshape(b, *size, -1).permute(0, 3, 1, 2).contiguous()
        return x


class TwinsEncoder(nn.Module):
    """Holder named like the official ``twins_svt_large`` wrapper so keys read ``<name>.svt.*``."""

    output_dim = STAGE_DIMS[-1]

    def __init__(self) -> None:
        super().__init__()
        self.svt = TwinsSVTLargeStages()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised to [-1, 1] -> ``[B, 256, H/8, W/8]``."""
        return self.svt(x)


def _init_twins_weights(m: nn.Module) -> None:
    # timm's Twins initialisation, used when training from scratch.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
