"""Pure-PyTorch reference implementations: the oracle for the compiled kernels and their fallback.

Everything here is plain autograd-differentiable PyTorch. The compiled backends (``cpp``, ``cuda``)
must reproduce these numbers; the parity tests compare against these functions.

Conventions (RAFT):
    * pixel centres are integer coordinates, bilinear sampling uses ``align_corners=True`` semantics
      with zero padding outside the map;
    * the lookup window of radius ``r`` has ``K = (2r+1)^2`` channels and channel ``i*(2r+1)+j``
      samples the offset ``dx = i - r, dy = j - r`` (the x-offset varies slowest).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def window_offsets(radius: int, device: torch.device | None = None,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Window offsets in RAFT's channel order: ``[(2r+1)^2, 2]`` rows of ``(dx, dy)``, dx slowest."""
    d = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dx, dy = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)


def bilinear_sample(image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Sample ``image [N, C, H, W]`` at pixel positions ``xy [N, Hg, Wg, 2]`` -> ``[N, C, Hg, Wg]``.

    Bilinear with zero padding, pixel centres at integers (``grid_sample(align_corners=True)``).
    A map that is one pixel wide or high is zero-padded to two pixels first: ``grid_sample``
    normalises by ``W - 1`` and would otherwise divide by zero (RAFT returns NaN there).

    The same operation as :func:`motion.flow_geometry.sample_bilinear`, kept here on purpose: this
    file is the numerical definition of the ops (it imports only torch), and its normalisation
    ``xy * (2 / (W - 1)) - 1`` differs from RAFT's ``2 x / (W - 1) - 1`` in the last bit for about
    half of all positions, so sharing one sampler would change either the op outputs or the models'.
    """
    pad_w = 1 if image.shape[-1] == 1 else 0
    pad_h = 1 if image.shape[-2] == 1 else 0
    if pad_w or pad_h:
        image = F.pad(image, (0, pad_w, 0, pad_h))
    h, w = image.shape[-2:]
    scale = torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)], device=xy.device, dtype=xy.dtype)
    grid = xy * scale - 1.0
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def pool_pyramid(fmap: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """``num_levels`` maps, each a 2x2 average pooling (floor on odd sizes) of the previous one."""
    levels = [fmap]
    for _ in range(num_levels - 1):
        levels.append(F.avg_pool2d(levels[-1], 2, stride=2))
    return levels


def all_pairs_pyramid(fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """RAFT's correlation pyramid.

    Args:
        fmap1: ``[B, D, h, w]`` features of the first frame.
        fmap2: ``[B, D, h2, w2]`` features of the second frame.

    Returns:
        ``num_levels`` volumes ``[B*h*w, 1, h2_l, w2_l]``: level 0 is ``f1ᵀ f2 / sqrt(D)``, each
        further level a 2x2 average pooling over the second frame's axes.
    """
    b, d, h, w = fmap1.shape
    h2, w2 = fmap2.shape[-2:]
    corr = torch.matmul(fmap1.reshape(b, d, h * w).transpose(1, 2), fmap2.reshape(b, d, h2 * w2))
    corr = corr.reshape(b * h * w, 1, h2, w2).div_(math.sqrt(d))  # in place: the volume is the peak memory
    return pool_pyramid(corr, num_levels)


def lookup_level(volume: torch.Tensor, coords: torch.Tensor, radius: int, scale: float) -> torch.Tensor:
    """Window lookup in one all-pairs level.

    Args:
        volume: ``[B*h*w, 1, H, W]`` correlation of every first-frame pixel with the (pooled) second frame.
        coords: ``[B, 2, h, w]`` (x, y) lookup centres in level-0 pixels.
        radius: window radius r.
        scale: level scale ``1 / 2^l`` applied to ``coords``.

    Returns:
        ``[B, (2r+1)^2, h, w]`` in RAFT's channel order.
    """
    b, _, h, w = coords.shape
    k = 2 * radius + 1
    centres = coords.permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2) * scale
    xy = centres + window_offsets(radius, coords.device, coords.dtype).view(1, k, k, 2)
    sampled = bilinear_sample(volume, xy)  # [B*h*w, 1, k, k]; [:, :, i, j] is (dx=i-r, dy=j-r)
    return sampled.reshape(b, h, w, k * k).permute(0, 3, 1, 2)


def lookup(pyramid: list[torch.Tensor], coords: torch.Tensor, radius: int) -> torch.Tensor:
    """All-pairs lookup over every level -> ``[B, L*(2r+1)^2, h, w]`` (level-major)."""
    return torch.cat([lookup_level(vol, coords, radius, 0.5 ** lvl) for lvl, vol in enumerate(pyramid)], 1)


def _patch_column(fmap1: torch.Tensor, fmap2: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Dot products of rows ``fmap1 [B, n, D]`` with rows ``index [B, n, m]`` of ``fmap2 [B, N, D]``.

    Returns ``[B, n, m]``, zero where ``valid`` is 0.
    """
    b, n, m = index.shape
    flat = index + torch.arange(b, device=index.device).view(b, 1, 1) * fmap2.shape[1]
    rows = fmap2.reshape(-1, fmap2.shape[-1]).index_select(0, flat.reshape(-1)).view(b, n, m, -1)
    return torch.einsum("bnd,bnmd->bnm", fmap1, rows) * valid


def local_level(fmap1: torch.Tensor, fmap2: torch.Tensor, coords: torch.Tensor, radius: int,
                scale: float) -> torch.Tensor:
    """On-the-fly correlation for one level: the numbers of :func:`lookup_level` without the volume.

    Pooling the volume over the second frame's axes equals correlating with the pooled second
    frame, and zero padding the volume equals zero padding ``fmap2``. All window positions share
    the fractional part of the centre, so the window is the bilinear mix of the ``(2r+2)^2``
    correlations of ``fmap1`` with ``fmap2`` at the integer positions around it (zero outside).
    One patch column at a time keeps the memory at ``O((2r+2)*B*D*h*w)``; under autograd each
    column is checkpointed so the backward pass recomputes its gather instead of storing all.

    Args:
        fmap1: ``[B, D, h, w]``.
        fmap2: ``[B, D, H, W]`` (second-frame features, pooled to this level).
        coords: ``[B, 2, h, w]`` level-0 pixel positions (x, y).
        scale: ``1 / 2^l``.

    Returns:
        ``[B, (2r+1)^2, h, w]`` in RAFT's channel order.
    """
    b, d, h, w = fmap1.shape
    hh, ww = fmap2.shape[-2:]
    k, p = 2 * radius + 1, 2 * radius + 2
    xy = coords.permute(0, 2, 3, 1).reshape(b, h * w, 2) * scale
    # Non-finite or far-away centres see only zero padding; move them to a finite far-away place.
    far = torch.tensor([-radius - 3.0, -radius - 3.0], dtype=xy.dtype, device=xy.device)
    xy = torch.where(torch.isfinite(xy), xy, far)
    limit = torch.tensor([ww + radius + 2.0, hh + radius + 2.0], dtype=xy.dtype, device=xy.device)
    xy = torch.minimum(torch.maximum(xy, far), limit)
    base = torch.floor(xy).detach()
    frac = xy - base
    rows1 = fmap1.reshape(b, d, h * w).transpose(1, 2).contiguous()
    rows2 = fmap2.reshape(b, d, hh * ww).transpose(1, 2).contiguous()
    track = torch.is_grad_enabled() and any(t.requires_grad for t in (fmap1, fmap2))
    offsets = torch.arange(p, device=xy.device, dtype=xy.dtype) - radius
    columns = []
    for a in range(p):  # one x position of the patch, all its y positions at once
        x = (base[..., 0] + (a - radius)).unsqueeze(-1).expand(-1, -1, p)
        y = base[..., 1].unsqueeze(-1) + offsets
        valid = (x >= 0) & (x <= ww - 1) & (y >= 0) & (y <= hh - 1)
        index = (y.clamp(0, hh - 1) * ww + x.clamp(0, ww - 1)).long()
        mask = valid.to(rows1.dtype)
        if track:
            columns.append(checkpoint(_patch_column, rows1, rows2, index, mask, use_reentrant=False))
        else:
            columns.append(_patch_column(rows1, rows2, index, mask))
    patch = torch.stack(columns, 2) / math.sqrt(d)  # [B, h*w, a, c]: x-major
    fx = frac[..., 0, None, None]
    fy = frac[..., 1, None, None]
    window = ((1 - fx) * (1 - fy) * patch[:, :, :-1, :-1] + fx * (1 - fy) * patch[:, :, 1:, :-1]
              + (1 - fx) * fy * patch[:, :, :-1, 1:] + fx * fy * patch[:, :, 1:, 1:])
    return window.reshape(b, h, w, k * k).permute(0, 3, 1, 2)


def local(fmap1: torch.Tensor, fmap2_pyramid: list[torch.Tensor], coords: torch.Tensor,
          radius: int) -> torch.Tensor:
    """On-the-fly correlation over every level -> ``[B, L*(2r+1)^2, h, w]``."""
    return torch.cat([local_level(fmap1, f2, coords, radius, 0.5 ** lvl)
                      for lvl, f2 in enumerate(fmap2_pyramid)], 1)


def splat(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Forward-warp (summation splatting) ``features [B, C, H, W]`` by ``flow [B, 2, H, W]``.

    Each source pixel ``p`` adds ``w_k * features[p]`` to the four integer neighbours ``q_k`` of
    ``p + flow[p]`` with bilinear weights; neighbours outside the image and non-finite targets are
    dropped. Returns ``[B, C, H, W]``.
    """
    b, c, h, w = features.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=flow.device, dtype=flow.dtype),
                            torch.arange(w, device=flow.device, dtype=flow.dtype), indexing="ij")
    tx = xs + flow[:, 0]
    ty = ys + flow[:, 1]
    finite = torch.isfinite(tx) & torch.isfinite(ty)
    tx = torch.where(finite, tx, torch.zeros_like(tx))
    ty = torch.where(finite, ty, torch.zeros_like(ty))
    x0 = torch.floor(tx).detach()
    y0 = torch.floor(ty).detach()
    fx = tx - x0
    fy = ty - y0
    out = features.new_zeros(b, c, h * w)
    src = features.reshape(b, c, h * w)
    for cx, cy, weight in ((x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)),
                           (x0, y0 + 1, (1 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)):
        inside = finite & (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long().reshape(b, 1, h * w)
        weight = torch.where(inside, weight, torch.zeros_like(weight)).reshape(b, 1, h * w)
        out = out.scatter_add(2, index.expand(b, c, h * w), src * weight.to(src.dtype))
    return out.reshape(b, c, h, w)
