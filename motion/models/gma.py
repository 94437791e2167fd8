"""GMA global motion aggregation (Jiang et al., 2021): attention from context, applied to motion.

``GMAAttention`` computes, once per forward pass, the attention of every 1/8 pixel over all others
from the context features. ``GMAAggregate`` then mixes the motion features with it at every
iteration: ``out = mf + gamma * softmax(q k^T / sqrt(d)) v(mf)``, ``gamma`` initialised to 0.

Two evaluation paths give the same numbers up to float rounding: ``dense`` materialises the
``[B, heads, hw, hw]`` matrix once (the official code), ``fused`` keeps only ``q`` and ``k`` and calls
``scaled_dot_product_attention`` at every iteration, which never holds the matrix (memory O(hw)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GMAKeys:
    """Queries and keys for the fused path: each ``[B, heads, hw, d]`` (queries not yet scaled)."""

    q: torch.Tensor
    k: torch.Tensor


class RelativePositionEmbedding(nn.Module):
    """GMA's relative position tables. VideoFlow creates them but never uses them in ``forward``;
    the module exists so the official checkpoints (which contain ``att.pos_emb.*``) load strictly."""

    def __init__(self, max_pos_size: int, dim_head: int) -> None:
        super().__init__()
        self.rel_height = nn.Embedding(2 * max_pos_size - 1, dim_head)
        self.rel_width = nn.Embedding(2 * max_pos_size - 1, dim_head)
        pos = torch.arange(max_pos_size)
        self.register_buffer("rel_ind", pos.view(1, -1) - pos.view(-1, 1) + max_pos_size - 1)


class GMAAttention(nn.Module):
    """``context [B, dim, h, w] -> attention [B, heads, hw, hw]`` (dense) or :class:`GMAKeys` (fused)."""

    def __init__(self, dim: int = 128, heads: int = 1, dim_head: int = 128, max_pos_size: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.to_qk = nn.Conv2d(dim, 2 * heads * dim_head, 1, bias=False)
        self.pos_emb = RelativePositionEmbedding(max_pos_size, dim_head) if max_pos_size else None

    def forward(self, context: torch.Tensor, fused: bool = False) -> torch.Tensor | GMAKeys:
        b, _, h, w = context.shape
        q, k = self.to_qk(context).chunk(2, dim=1)
        q = q.reshape(b, self.heads, self.dim_head, h * w).transpose(-1, -2)
        k = k.reshape(b, self.heads, self.dim_head, h * w).transpose(-1, -2)
        if fused:
            return GMAKeys(q, k)
        sim = (q * self.dim_head**-0.5) @ k.transpose(-1, -2)
        return sim.softmax(dim=-1)


class GMAAggregate(nn.Module):
    """``(attention, motion [B, dim, h, w]) -> motion + gamma * aggregated`` (same shape)."""

    def __init__(self, dim: int = 128, heads: int = 1, dim_head: int = 128) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_v = nn.Conv2d(dim, inner, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.project = nn.Conv2d(inner, dim, 1, bias=False) if dim != inner else None

    def forward(self, attention: torch.Tensor | GMAKeys, motion: torch.Tensor) -> torch.Tensor:
        b, _, h, w = motion.shape
        v = self.to_v(motion).reshape(b, self.heads, -1, h * w).transpose(-1, -2)  # [B, heads, hw, d]
        if isinstance(attention, GMAKeys):
            q, k = attention.q, attention.k
            dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
            # contiguous: with a strided last dimension the CPU kernel falls back to the math path,
            # which materialises the [B, heads, hw, hw] matrix (twice) - the memory fused must avoid
            out = F.scaled_dot_product_attention(q.to(dtype).contiguous(), k.to(dtype).contiguous(),
                                                 v.to(dtype).contiguous())
        else:
            out = attention @ v
        out = out.transpose(-1, -2).reshape(b, -1, h, w)
        if self.project is not None:
            out = self.project(out)
        return motion + self.gamma * out
