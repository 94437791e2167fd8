"""Differentiable Gaussian rasteriser in plain PyTorch (the CPU backend and the reference).

It reproduces gsplat's classic rasteriser: EWA projection with a 0.3 px² low-pass, a 3.33 sigma
screen extent (where a fully opaque Gaussian falls below the 1/255 alpha cut-off), near/far culling,
then front-to-back alpha compositing with ``alpha = min(0.999, o * exp(-q/2))``, alphas under 1/255
skipped and a ray stopped once its transmittance would fall to 1e-4.

Compositing enumerates (pixel, Gaussian) pairs inside each Gaussian's screen box: Gaussians are
depth-sorted, pairs are generated in that order and then stably sorted by pixel, so each pixel's
pairs sit together front to back. The transmittance before each pair is ``exp`` of a segmented
exclusive cumulative sum of ``log(1 - alpha)`` (accumulated in float64). Gradients come from
autograd. Gaussians are processed in depth-ordered chunks of at most ``max_pairs`` pairs, carrying
the transmittance from chunk to chunk; with several chunks under autograd each chunk is
checkpointed, so memory stays bounded by one chunk.

Coordinates inside this module follow gsplat: ``Ks`` put pixel centres at ``i + 0.5``
(``splats.render`` shifts our integer-centre intrinsics before calling in).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from .gaussians import covariance_3d

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
EXTENT_SIGMA = 3.33


@dataclass
class Projection:
    """Screen-space Gaussians of C cameras (N per camera, culled ones have zero radii)."""

    means2d: torch.Tensor  # [C, N, 2]
    conics: torch.Tensor  # [C, N, 3] inverse 2D covariance (a, b, c) of [[a, b], [b, c]]
    depths: torch.Tensor  # [C, N] camera z
    radii: torch.Tensor  # [C, N, 2] int32 half extents in pixels, 0 = culled


def project(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    opacities: torch.Tensor | None = None,
) -> Projection:
    """EWA splatting of 3D Gaussians to C pinhole cameras.

    Args:
        means: ``[N, 3]`` or per camera ``[C, N, 3]``; quats ``[(C,) N, 4]`` wxyz; scales ``[(C,) N, 3]``
            linear; viewmats ``[C, 4, 4]`` world-to-camera; Ks ``[C, 3, 3]`` (pixel centres at +0.5).
        opacities: ``[(C,) N]``; when given, extents shrink to where ``o * exp(-q/2)`` reaches 1/255
            and Gaussians fainter than 1/255 are culled (as gsplat's CUDA projection does); without
            them the extent is 3.33 sigma (as gsplat's ``_torch_impl``).
    """
    rot = viewmats[:, None, :3, :3]  # [C, 1, 3, 3]
    trans = viewmats[:, None, :3, 3]
    means_c = (rot @ means[..., None])[..., 0] + trans  # [C, N, 3]
    cov_c = rot @ covariance_3d(quats, scales) @ rot.transpose(-1, -2)  # [C, N, 3, 3]

    tx, ty, tz = means_c.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    # The Jacobian is evaluated at a point clamped to 1.3x the field of view, as in 3DGS, so that
    # Gaussians far off-screen do not get huge footprints.
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    u = (tx / tz).clamp(-(cx / fx + 0.3 * tan_x), (width - cx) / fx + 0.3 * tan_x)
    v = (ty / tz).clamp(-(cy / fy + 0.3 * tan_y), (height - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(tz)
    jac = torch.stack([fx / tz, zero, -fx * u / tz, zero, fy / tz, -fy * v / tz], dim=-1)
    jac = jac.reshape(tz.shape + (2, 3))
    cov2d = jac @ cov_c @ jac.transpose(-1, -2)
    a = cov2d[..., 0, 0] + eps2d
    c = cov2d[..., 1, 1] + eps2d
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    det = a * c - b * b
    det_safe = det.clamp_min(1e-10)
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)

    with torch.no_grad():
        extent = torch.full_like(a, EXTENT_SIGMA)
        valid = (det > 0) & (tz > near_plane) & (tz < far_plane)
        if opacities is not None:
            opac = opacities.detach().expand_as(a)
            valid &= opac >= ALPHA_MIN
            extent = torch.minimum(extent, torch.sqrt(2 * torch.log(opac.clamp_min(ALPHA_MIN) / ALPHA_MIN)))
        radius = torch.stack([torch.ceil(extent * a.sqrt()), torch.ceil(extent * c.sqrt())], dim=-1)
        m = means2d.detach()
        inside = (
            (m[..., 0] + radius[..., 0] > 0) & (m[..., 0] - radius[..., 0] < width)
            & (m[..., 1] + radius[..., 1] > 0) & (m[..., 1] - radius[..., 1] < height)
        )
        radius = torch.where((valid & inside)[..., None], radius, torch.zeros_like(radius))
    return Projection(means2d=means2d, conics=conics, depths=tz, radii=radius.int())


def _composite_chunk(
    table: torch.Tensor,  # [G, 6 + D] rows (-mx, -my, conic a, b, c, opacity, features) front to back
    trans_in: torch.Tensor | None,  # [P] transmittance in front of this chunk
    done_in: torch.Tensor | None,  # [P] bool: ray already terminated
    base: torch.Tensor,  # [G] int64 flat pixel id of each box's top-left corner
    x0: torch.Tensor, y0: torch.Tensor, bw: torch.Tensor, bh: torch.Tensor,  # [G] int64 boxes
    width: int, n_pixels: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite one depth-ordered chunk; returns (features [P, D], transmittance [P], done [P])."""
    with torch.no_grad():
        # int32 pair arithmetic: half the memory traffic and a much faster sort than int64
        counts = bw * bh
        local_g = torch.repeat_interleave(torch.arange(len(bw), device=bw.device, dtype=torch.int32), counts)
        local = torch.arange(len(local_g), device=bw.device, dtype=torch.int32)
        local = local - (torch.cumsum(counts, 0, dtype=torch.int32) - counts)[local_g]
        bwg = bw[local_g]
        dy_i = torch.div(local, bwg, rounding_mode="floor")
        dx_i = local - dy_i * bwg
        pix = base[local_g] + dy_i * width + dx_i
        # pixel centre coordinates (gsplat convention: + 0.5)
        cx = (x0[local_g] + dx_i).to(table.dtype) + 0.5
        cy = (y0[local_g] + dy_i).to(table.dtype) + 0.5
        rows = table.detach()[:, :6].contiguous().index_select(0, local_g)
        dx, dy = cx + rows[:, 0], cy + rows[:, 1]
        sigma = 0.5 * (rows[:, 2] * dx * dx + rows[:, 4] * dy * dy) + rows[:, 3] * dx * dy
        keep = rows[:, 5] * torch.exp(-sigma.clamp_min(0)) >= ALPHA_MIN
        idx = torch.nonzero(keep).squeeze(1)
        pix, local_g, cx, cy = pix[idx], local_g[idx], cx[idx], cy[idx]
        if done_in is not None:
            alive = torch.nonzero(~done_in[pix]).squeeze(1)
            pix, local_g, cx, cy = pix[alive], local_g[alive], cx[alive], cy[alive]
        pix, order = torch.sort(pix, stable=True)
        local_g, cx, cy = local_g[order], cx[order], cy[order]
        n = len(pix)
        new_seg = torch.ones(n, dtype=torch.bool, device=pix.device)
        new_seg[1:] = pix[1:] != pix[:-1]
        seg_id = torch.cumsum(new_seg, 0) - 1
        seg_start = torch.nonzero(new_seg).squeeze(1)

    # one split (a single concatenation in backward) instead of per-column slices, each of which
    # would allocate a full-size zero gradient
    neg_mx, neg_my, con_a, con_b, con_c, opac, feats = torch.split(
        table.index_select(0, local_g), [1, 1, 1, 1, 1, 1, table.shape[1] - 6], dim=1)
    dx, dy = cx + neg_mx[:, 0], cy + neg_my[:, 0]
    sigma = 0.5 * (con_a[:, 0] * dx * dx + con_c[:, 0] * dy * dy) + con_b[:, 0] * dx * dy
    alpha = (opac[:, 0] * torch.exp(-sigma.clamp_min(0))).clamp_max(ALPHA_MAX)
    log_keep = torch.log1p(-alpha)
    excl = torch.cumsum(log_keep.double(), 0)
    excl = excl - log_keep
    excl = (excl - excl[seg_start][seg_id]).to(alpha.dtype)
    trans = torch.exp(excl)
    if trans_in is not None:
        trans = trans * trans_in[pix]
    with torch.no_grad():
        included = trans * (1 - alpha) > T_MIN
        done = torch.zeros(n_pixels, dtype=torch.bool, device=pix.device)
        done[pix[~included]] = True
        if done_in is not None:
            done |= done_in
        incl_f = included.to(alpha.dtype)
    weights = alpha * trans * incl_f
    out = torch.zeros(n_pixels, table.shape[1] - 6, dtype=table.dtype, device=table.device)
    out = out.index_add(0, pix, weights[:, None] * feats)
    log_t = torch.zeros(n_pixels, dtype=alpha.dtype, device=alpha.device).index_add(0, pix, log_keep * incl_f)
    trans_out = torch.exp(log_t) if trans_in is None else trans_in * torch.exp(log_t)
    return out, trans_out, done


def composite(
    proj: Projection,
    opacities: torch.Tensor,
    features: torch.Tensor,
    width: int,
    height: int,
    max_pairs: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back alpha compositing of projected Gaussians.

    Args:
        proj: projection of N Gaussians to C cameras.
        opacities: ``[N]`` or ``[C, N]`` in (0, 1).
        features: ``[C, N, D]`` per-camera features (colours, depth, ...).
        max_pairs: chunk size in (pixel, Gaussian) pairs.

    Returns:
        ``features [C, H, W, D]`` (no background) and ``alphas [C, H, W, 1]``.
    """
    c, n = proj.depths.shape
    d = features.shape[-1]
    n_pixels = c * height * width
    means2d = proj.means2d.reshape(c * n, 2)
    conics = proj.conics.reshape(c * n, 3)
    opac = opacities.expand(c, n).reshape(c * n)
    feats = features.reshape(c * n, d)
    with torch.no_grad():
        visible = (proj.radii > 0).all(-1).reshape(-1)
        gids = torch.nonzero(visible).squeeze(1)
        gids = gids[torch.argsort(proj.depths.detach().reshape(-1)[gids], stable=True)]
        m = means2d.detach()[gids]
        r = proj.radii.reshape(c * n, 2)[gids].to(m.dtype)
        # pixel i has its centre at i + 0.5: cover centres strictly inside (mean - r, mean + r)
        x0 = torch.ceil(m[:, 0] - r[:, 0] - 0.5).clamp(0, width).long()
        x1 = torch.floor(m[:, 0] + r[:, 0] - 0.5).clamp(-1, width - 1).long()
        y0 = torch.ceil(m[:, 1] - r[:, 1] - 0.5).clamp(0, height).long()
        y1 = torch.floor(m[:, 1] + r[:, 1] - 0.5).clamp(-1, height - 1).long()
        bw = (x1 - x0 + 1).clamp_min(0)
        bh = (y1 - y0 + 1).clamp_min(0)
        nonempty = torch.nonzero((bw * bh) > 0).squeeze(1)
        gids, x0, y0, bw, bh = gids[nonempty], x0[nonempty], y0[nonempty], bw[nonempty], bh[nonempty]
        base = torch.div(gids, n, rounding_mode="floor") * (height * width) + y0 * width + x0
        if n_pixels >= 2**31:
            raise ValueError("images too large for the int32 pair indices of the CPU rasteriser")
        base, x0, y0, bw, bh = (t.int() for t in (base, x0, y0, bw, bh))
        cum = torch.cumsum(bw * bh, 0)
        total = int(cum[-1]) if len(cum) else 0
        bounds = [0]
        if total > max_pairs:
            cuts = torch.searchsorted(cum, torch.arange(max_pairs, total, max_pairs, device=cum.device), right=True)
            for cut in cuts.tolist():
                if bounds[-1] < cut < len(gids):
                    bounds.append(cut)
        bounds.append(len(gids))

    # one differentiable row per visible Gaussian, front to back
    table = torch.cat([-means2d[gids], conics[gids], opac[gids, None], feats[gids]], dim=1)
    out = torch.zeros(n_pixels, d, dtype=feats.dtype, device=feats.device)
    trans: torch.Tensor | None = None
    done: torch.Tensor | None = None
    use_checkpoint = len(bounds) > 2 and torch.is_grad_enabled()
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        args = (table[lo:hi], trans, done, base[lo:hi], x0[lo:hi], y0[lo:hi], bw[lo:hi], bh[lo:hi], width, n_pixels)
        if use_checkpoint:
            part, trans, done = checkpoint(_composite_chunk, *args, use_reentrant=False)
        else:
            part, trans, done = _composite_chunk(*args)
        out = out + part
    if trans is None:
        trans = torch.ones(n_pixels, dtype=feats.dtype, device=feats.device)
    alphas = (1 - trans).reshape(c, height, width, 1)
    return out.reshape(c, height, width, d), alphas


def composite_dense(
    proj: Projection, opacities: torch.Tensor, features: torch.Tensor, width: int, height: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute-force reference: every pixel against every Gaussian, explicit front-to-back loop.

    Only for tests (O(C * H * W * N) memory and a Python loop over Gaussians).
    """
    c, n = proj.depths.shape
    d = features.shape[-1]
    opac = opacities.expand(c, n)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=features.dtype), torch.arange(width, dtype=features.dtype),
                            indexing="ij")
    out = torch.zeros(c, height, width, d, dtype=features.dtype)
    trans_final = torch.ones(c, height, width, dtype=features.dtype)
    for ci in range(c):
        order = torch.argsort(proj.depths[ci].detach(), stable=True)
        trans = torch.ones(height, width, dtype=features.dtype)
        done = torch.zeros(height, width, dtype=torch.bool)
        acc = torch.zeros(height, width, d, dtype=features.dtype)
        for g in order.tolist():
            if not (proj.radii[ci, g] > 0).all():
                continue
            dx = xs + 0.5 - proj.means2d[ci, g, 0]
            dy = ys + 0.5 - proj.means2d[ci, g, 1]
            a, b, cc = proj.conics[ci, g]
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            alpha = (opac[ci, g] * torch.exp(-sigma.clamp_min(0))).clamp_max(ALPHA_MAX)
            use = (alpha >= ALPHA_MIN) & ~done
            stop = use & (trans * (1 - alpha) <= T_MIN)
            done = done | stop
            use = use & ~stop
            w = torch.where(use, alpha * trans, torch.zeros_like(alpha))
            acc = acc + w[..., None] * features[ci, g]
            trans = torch.where(use, trans * (1 - alpha), trans)
        out[ci] = acc
        trans_final[ci] = trans
    return out, (1 - trans_final)[..., None]
