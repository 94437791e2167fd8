"""A CPU stand-in for ``gsplat.rasterization`` with gsplat's conventions (tests only).

It takes the keyword arguments of ``gsplat.rasterization`` that :mod:`splats.gsplat_bridge` may pass,
with gsplat's defaults (an argument it does not model is a TypeError, an unsupported value a
ValueError), and renders with gsplat's own pure-PyTorch functions where they run on the CPU
(``gsplat.cuda._torch_impl``): covariances from ``w, x, y, z`` quaternions and scales, the
world-to-camera transform (``R = viewmats[..., :3, :3]``, ``t = viewmats[..., :3, 3]``), the EWA
projection with intrinsics whose pixel centres sit at ``i + 0.5``, SH colours (camera position from
the inverse view matrix, ``+ 0.5`` then clamped at 0), tile intersection and depth sort.

gsplat's PyTorch compositing (``_rasterize_to_pixels``) calls a CUDA kernel and needs nerfacc, so
the per-tile compositing below follows gsplat's CUDA forward kernel instead: for each pixel of a
tile, the tile's Gaussians front to back, ``sigma`` at the pixel centre ``(x + 0.5, y + 0.5)``,
``alpha = min(0.999, o * exp(-sigma))``, skipped when ``sigma < 0`` or ``alpha < 1/255``, the ray
stopped before a Gaussian that would bring its transmittance to ``1e-4`` or below, then
``colour + T * background``. It is written independently of :mod:`splats._raster_torch`.
"""
from __future__ import annotations

import math
from typing import Any

import torch

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4


def rasterization(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: torch.Tensor | None = None,
    render_mode: str = "RGB",
    rasterize_mode: str = "classic",
    channel_chunk: int = 32,
    camera_model: str = "pinhole",
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """gsplat's ``rasterization`` for ``means [..., N, 3]``, ``viewmats [..., C, 4, 4]`` (see gsplat)."""
    from gsplat.cuda._torch_impl import (
        _fully_fused_projection,
        _isect_offset_encode,
        _isect_tiles,
        _quat_scale_to_covar_preci,
        _spherical_harmonics,
    )

    if camera_model != "pinhole":
        raise ValueError(f"camera_model={camera_model!r} is not modelled")
    if render_mode not in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
        raise ValueError(f"render_mode={render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode={rasterize_mode!r}")
    batch_dims = means.shape[:-2]
    n = means.shape[-2]
    c = viewmats.shape[-3]
    assert quats.shape == batch_dims + (n, 4) and scales.shape == batch_dims + (n, 3), (quats.shape, scales.shape)
    assert opacities.shape == batch_dims + (n,), opacities.shape
    assert viewmats.shape == batch_dims + (c, 4, 4) and Ks.shape == batch_dims + (c, 3, 3), (viewmats.shape, Ks.shape)
    image_dims = batch_dims + (c,)

    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    radii, means2d, depths, conics, compensations = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
        calc_compensations=rasterize_mode == "antialiased")
    radii = torch.where((radii <= radius_clip).all(dim=-1, keepdim=True), torch.zeros_like(radii), radii)
    opac = torch.broadcast_to(opacities[..., None, :], image_dims + (n,))
    if compensations is not None:
        opac = opac * compensations

    if sh_degree is None:
        per_view = colors.dim() == len(image_dims) + 2
        feats = colors if per_view else torch.broadcast_to(colors[..., None, :, :], image_dims + colors.shape[-2:])
    else:
        assert (sh_degree + 1) ** 2 <= colors.shape[-2], colors.shape
        per_view = colors.dim() == len(image_dims) + 3
        shs = colors if per_view else torch.broadcast_to(colors[..., None, :, :, :], image_dims + colors.shape[-3:])
        campos = torch.inverse(viewmats)[..., :3, 3]  # [..., C, 3]
        dirs = means[..., None, :, :] - campos[..., None, :]  # [..., C, N, 3]
        feats = torch.clamp_min(_spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)
    if render_mode in ("D", "ED"):
        feats = depths[..., None]
    elif render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, depths[..., None]], dim=-1)
    if backgrounds is not None:
        if render_mode in ("D", "ED"):
            backgrounds = torch.zeros(image_dims + (1,), dtype=feats.dtype)
        elif render_mode in ("RGB+D", "RGB+ED"):
            backgrounds = torch.cat([backgrounds, torch.zeros(image_dims + (1,), dtype=feats.dtype)], dim=-1)

    tile_w, tile_h = math.ceil(width / tile_size), math.ceil(height / tile_size)
    _, isect_ids, flatten_ids = _isect_tiles(means2d, radii, depths, tile_size, tile_w, tile_h)
    n_images = math.prod(image_dims)
    offsets = _isect_offset_encode(isect_ids, n_images, tile_w, tile_h).flatten().tolist() + [len(flatten_ids)]
    images, alphas = _composite_tiles(
        means2d.reshape(n_images * n, 2), conics.reshape(n_images * n, 3), opac.reshape(n_images * n),
        feats.reshape(n_images * n, feats.shape[-1]), flatten_ids.tolist(), offsets,
        None if backgrounds is None else backgrounds.reshape(n_images, -1), n_images, width, height, tile_size)
    images = images.reshape(image_dims + images.shape[1:])
    alphas = alphas.reshape(image_dims + alphas.shape[1:])
    if render_mode in ("ED", "RGB+ED"):
        images = torch.cat([images[..., :-1], images[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)

    meta: dict[str, Any] = {"width": width, "height": height, "n_cameras": c, "n_batches": math.prod(batch_dims),
                            "tile_size": tile_size}
    if packed:
        keep = (radii > 0).all(dim=-1)  # [..., C, N]
        index = keep.reshape(-1, c, n).nonzero()  # [nnz, 3]: batch, camera, Gaussian
        meta.update(batch_ids=index[:, 0], camera_ids=index[:, 1], gaussian_ids=index[:, 2], radii=radii[keep],
                    means2d=means2d[keep], depths=depths[keep], conics=conics[keep], opacities=opac[keep])
    else:
        meta.update(batch_ids=None, camera_ids=None, gaussian_ids=None, radii=radii, means2d=means2d,
                    depths=depths, conics=conics, opacities=opac)
    return images, alphas, meta


def _composite_tiles(means2d, conics, opacities, feats, flatten_ids, offsets, backgrounds, n_images, width, height,
                     tile_size):
    """Front-to-back compositing per tile; the Gaussians of tile ``k`` are
    ``flatten_ids[offsets[k]:offsets[k + 1]]`` (indices into ``n_images * N``, depth-sorted)."""
    d = feats.shape[-1]
    images = torch.zeros(n_images, height, width, d, dtype=feats.dtype)
    alphas = torch.zeros(n_images, height, width, 1, dtype=feats.dtype)
    tile_w, tile_h = math.ceil(width / tile_size), math.ceil(height / tile_size)
    for image in range(n_images):
        for ty in range(tile_h):
            for tx in range(tile_w):
                k = (image * tile_h + ty) * tile_w + tx
                y0, x0 = ty * tile_size, tx * tile_size
                y1, x1 = min(y0 + tile_size, height), min(x0 + tile_size, width)
                ys, xs = torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1), indexing="ij")
                px, py = xs.flatten().to(feats.dtype) + 0.5, ys.flatten().to(feats.dtype) + 0.5
                trans = torch.ones_like(px)
                colour = torch.zeros(px.shape[0], d, dtype=feats.dtype)
                done = torch.zeros(px.shape[0], dtype=torch.bool)
                for g in flatten_ids[offsets[k]:offsets[k + 1]]:
                    dx, dy = px - means2d[g, 0], py - means2d[g, 1]
                    a, b, cc = conics[g]
                    sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
                    alpha = torch.clamp_max(opacities[g] * torch.exp(-sigma), ALPHA_MAX)
                    used = ~done & (sigma >= 0) & (alpha >= ALPHA_MIN)
                    next_trans = trans * (1 - alpha)
                    stop = used & (next_trans <= T_MIN)
                    done = done | stop
                    used = used & ~stop
                    colour = colour + torch.where(used, alpha * trans, 0.0)[:, None] * feats[g]
                    trans = torch.where(used, next_trans, trans)
                if backgrounds is not None:
                    colour = colour + trans[:, None] * backgrounds[image]
                images[image, y0:y1, x0:x1] = colour.reshape(y1 - y0, x1 - x0, d)
                alphas[image, y0:y1, x0:x1, 0] = (1 - trans).reshape(y1 - y0, x1 - x0)
    return images, alphas
