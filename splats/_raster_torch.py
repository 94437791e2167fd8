"""Differentiable Gaussian rasteriser in plain PyTorch (the CPU backend and the reference).

It reproduces gsplat's classic rasteriser: EWA projection with a 0.3 px² low-pass, an
opacity-aware screen extent (``min(3.33, sqrt(2 ln(255 o)))`` sigma, where the Gaussian's alpha
falls below 1/255, as gsplat's CUDA projection; a flat 3.33 sigma without opacities, as its
``_torch_impl``), near/far culling, then front-to-back alpha compositing with
``alpha = min(0.999, o * exp(-q/2))``, alphas under 1/255 skipped and a ray stopped once its
transmittance would fall to 1e-4.

:func:`composite` (used by ``splats.rendering``) works on (pixel, Gaussian) pairs. Gaussians are
depth-sorted and split into chunks. For each row of a Gaussian's box the candidate pixels are the
x-interval where its alpha can reach 1/255 (the ellipse, not the whole box); candidates are
generated front to back and stably sorted by pixel, so each pixel's pairs sit together in depth
order. The transmittance before each pair is ``exp`` of a segmented exclusive cumulative sum of
``log(1 - alpha)`` (accumulated in float64), and pairs from a ray's termination on are dropped;
rays that terminate in one chunk take no pairs from later chunks. The backward pass is analytic
(a :class:`torch.autograd.Function` per chunk, all per-pair work vectorised, gradients scattered
with 1-D ``index_add``): with ``w_i = alpha_i T_i`` and ``c_i = dL/dout . f_i``,
``dL/dalpha_i = T_i c_i - (sum_{j behind i} w_j c_j + dL/dT_final T_final) / (1 - alpha_i)``.
:func:`composite_autograd` is the previous, slower compositor (whole boxes, autograd), kept as a
reference with the brute-force :func:`composite_dense`.

Coordinates inside this module follow gsplat: ``Ks`` put pixel centres at ``i + 0.5``
(``splats.rendering`` shifts our integer-centre intrinsics before calling in).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from motion4d.errors import InvalidArgumentError

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


@dataclass
class _Layout:
    """Depth-ordered visible Gaussians and their pixel boxes (no gradients)."""

    gids: torch.Tensor  # [G] int64 flat (camera * N + gaussian) ids, front to back per camera
    x0: torch.Tensor  # [G] int32 first covered pixel column
    y0: torch.Tensor  # [G] int32 first covered pixel row
    bw: torch.Tensor  # [G] int32 box width (>= 1)
    bh: torch.Tensor  # [G] int32 box height (>= 1)
    cam_off: torch.Tensor  # [G] int32 flat id of pixel (0, 0) of the Gaussian's camera
    bounds: list[int]  # chunk boundaries into the G rows, each chunk <= chunk_pairs box pixels where possible
    total: int  # box pixels of all Gaussians


def _layout(proj: Projection, width: int, height: int, chunk_pairs: int) -> _Layout:
    c, n = proj.depths.shape
    if c * height * width >= 2**31:
        raise InvalidArgumentError(
            f"{c} cameras of {width}x{height} are too many pixels for the int32 pair indices of the CPU "
            f"rasteriser (at most 2**31 - 1 in one call); render fewer cameras per call")
    with torch.no_grad():
        visible = (proj.radii > 0).all(-1).reshape(-1)
        gids = torch.nonzero(visible).squeeze(1)
        gids = gids[torch.argsort(proj.depths.detach().reshape(-1)[gids], stable=True)]
        m = proj.means2d.detach().reshape(c * n, 2)[gids]
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
        cam_off = torch.div(gids, n, rounding_mode="floor") * (height * width)
        x0, y0, bw, bh, cam_off = (t.int() for t in (x0, y0, bw, bh, cam_off))
        cum = torch.cumsum(bw.long() * bh.long(), 0)
        total = int(cum[-1]) if len(cum) else 0
        bounds = [0]
        if total > chunk_pairs:
            cuts = torch.searchsorted(cum, torch.arange(chunk_pairs, total, chunk_pairs, device=cum.device),
                                      right=True)
            for cut in cuts.tolist():
                if bounds[-1] < cut < len(gids):
                    bounds.append(cut)
        bounds.append(len(gids))
    return _Layout(gids, x0, y0, bw, bh, cam_off, bounds, total)


def _gaussian_table(proj: Projection, opacities: torch.Tensor, features: torch.Tensor, gids: torch.Tensor
                    ) -> torch.Tensor:
    """``[G, 6 + D]`` differentiable rows (mean x, mean y, conic a, b, c, opacity, features) of ``gids``."""
    c, n = proj.depths.shape
    return torch.cat([
        proj.means2d.reshape(c * n, 2)[gids], proj.conics.reshape(c * n, 3)[gids],
        opacities.expand(c, n).reshape(c * n)[gids, None], features.reshape(c * n, -1)[gids],
    ], dim=1)


# ------------------------------------------------------------------------------------------------
# Compositor with an analytic backward (the one render() uses)
# ------------------------------------------------------------------------------------------------

# Gaussians are composited in depth-ordered chunks of about this many box pixels: rays that
# terminate in one chunk take no pairs from the chunks behind it (fewer pairs to sort and keep).
CHUNK_PAIRS = 1 << 18

# Candidate pixels of a row are the ellipse's x-interval widened by these margins (in sigma and in
# pixels) so that float rounding cannot drop a pixel that passes the exact alpha test. With conic
# a <= 10, a c / det <= 100 and coordinates under 2**16 px, float32 errors stay below 1e-3 in sigma
# and 4e-3 px; Gaussians outside these bounds (thin, strongly correlated or far off-screen) fall
# back to their whole box row.
_SIGMA_MARGIN = 0.01
_PIXEL_MARGIN = 0.01
_MAX_CONIC_DIAG = 10.0
_MAX_CORRELATION_GAIN = 100.0
_MAX_COORD = 65536.0


@dataclass
class _Pairs:
    """Composited (pixel, Gaussian) pairs of one chunk, sorted by pixel and front to back inside a
    pixel, without those behind a ray's termination. All ``[M]``."""

    pix: torch.Tensor  # int32 flat pixel id
    gid: torch.Tensor  # int32 row of the chunk table
    dx: torch.Tensor  # pixel centre x minus mean x
    dy: torch.Tensor
    alpha: torch.Tensor  # min(0.999, o * exp(-sigma))
    trans: torch.Tensor  # transmittance in front of the pair (including the chunk's incoming one)
    grad_opacity: torch.Tensor  # bool: alpha below the 0.999 clamp, so it depends on the opacity
    grad_sigma: torch.Tensor  # bool: ... and on sigma (sigma >= 0, the clamp_min(0) gate)
    trans_local: torch.Tensor  # [P] transmittance through this chunk alone
    done: torch.Tensor  # [P] bool: ray terminated here or before


def _row_intervals(cols: list[torch.Tensor], layout_chunk: tuple[torch.Tensor, ...], width: int
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per box row, the pixels whose centre can pass the alpha cut-off.

    Returns ``row_g [R]`` (int32 table row), ``dy [R]`` (row centre minus mean y), ``base [R]``
    (int32 flat pixel id of the row's column 0), ``col0 [R]`` (int32 first candidate column) and
    ``count [R]`` (int32 number of candidates).
    """
    mx, my, ca, cb, cc, op = cols[:6]
    x0, y0, bw, bh, cam_off = layout_chunk
    dtype, dev = mx.dtype, mx.device
    row_g = torch.repeat_interleave(torch.arange(len(bh), dtype=torch.int32, device=dev), bh)
    row_in_box = torch.arange(len(row_g), dtype=torch.int32, device=dev) \
        - (torch.cumsum(bh, 0, dtype=torch.int32) - bh)[row_g]
    py = y0[row_g] + row_in_box
    dy = (py.to(dtype) + 0.5) - my[row_g]
    a, b, c = ca[row_g], cb[row_g], cc[row_g]
    # alpha >= 1/255  <=>  sigma = a dx^2 / 2 + b dx dy + c dy^2 / 2 <= log(255 o): solve for dx
    thr = torch.log(op / ALPHA_MIN)
    s = (thr + _SIGMA_MARGIN + 1e-3 * thr.abs())[row_g]
    det = a * c - b * b
    disc = 2 * a * s - det * dy * dy
    half = torch.sqrt(disc.clamp_min(0)) / a + _PIXEL_MARGIN
    centre = mx[row_g] - 0.5 - b * dy / a  # column whose centre minimises sigma on this row
    box_lo = x0[row_g].to(dtype)
    box_hi = box_lo + (bw[row_g] - 1).to(dtype)
    reliable = (a > 0) & (a <= _MAX_CONIC_DIAG) & (a * c <= _MAX_CORRELATION_GAIN * det) \
        & (centre.abs() + half < _MAX_COORD)
    lo = torch.where(reliable, torch.maximum(torch.ceil(centre - half), box_lo), box_lo)
    hi = torch.where(reliable, torch.minimum(torch.floor(centre + half), box_hi), box_hi)
    hi = torch.where(reliable & (disc < 0), lo - 1, hi)
    count = (hi - lo + 1).clamp_min(0).to(torch.int32)
    return row_g, dy, cam_off[row_g] + py * width, lo.to(torch.int32), count


def _chunk_pairs(table: torch.Tensor, trans_in: torch.Tensor | None, done_in: torch.Tensor | None,
                 layout_chunk: tuple[torch.Tensor, ...], width: int, n_pixels: int) -> _Pairs:
    """Enumerate, sort, cull and composite-order the pairs of one depth-ordered chunk (no autograd)."""
    cols = list(table.t().contiguous())
    mx, ca, cb, cc, op = cols[0], cols[2], cols[3], cols[4], cols[5]
    dtype, dev = table.dtype, table.device
    row_g, row_dy, row_base, row_col0, count = _row_intervals(cols, layout_chunk, width)
    # candidates are generated front to back (Gaussians are depth-sorted), so a stable sort by pixel
    # leaves each pixel's candidates in depth order; only (pixel, row) travel through the sort
    pair_row = torch.repeat_interleave(torch.arange(len(count), dtype=torch.int32, device=dev), count)
    shift = row_base + row_col0 - (torch.cumsum(count, 0, dtype=torch.int32) - count)
    pix = shift.index_select(0, pair_row) + torch.arange(len(pair_row), dtype=torch.int32, device=dev)
    if done_in is not None:  # terminated rays take no more pairs: sort them past every pixel id
        pix = torch.where(done_in.index_select(0, pix), torch.tensor(n_pixels, dtype=pix.dtype, device=dev), pix)
    pix, order = torch.sort(pix, stable=True)
    if done_in is not None:
        n_live = int((pix < n_pixels).sum())
        pix, order = pix[:n_live], order[:n_live]
    pair_row = pair_row.index_select(0, order)
    gid = row_g.index_select(0, pair_row)
    dx = ((pix - row_base.index_select(0, pair_row)).to(dtype) + 0.5) - mx.index_select(0, gid)
    dy = row_dy.index_select(0, pair_row)
    sigma = 0.5 * (ca.index_select(0, gid) * dx * dx + cc.index_select(0, gid) * dy * dy) \
        + cb.index_select(0, gid) * dx * dy
    raw = op.index_select(0, gid) * torch.exp(-sigma.clamp_min(0))
    keep = raw >= ALPHA_MIN
    alpha = raw.clamp_max(ALPHA_MAX)
    # culled candidates stay in place with log(1 - alpha) = 0, i.e. they leave the transmittance alone
    log_keep = torch.where(keep, torch.log1p(-alpha), torch.zeros((), dtype=dtype, device=dev))

    n = len(pix)
    # exclusive per-pixel cumulative sum of log(1 - alpha); accumulated in float64 against drift
    log_keep64 = log_keep.double()
    excl = torch.cumsum(log_keep64, 0) - log_keep64
    seg_start = torch.ones(n, dtype=torch.bool, device=dev)
    seg_start[1:] = pix[1:] != pix[:-1]
    starts = torch.nonzero(seg_start).squeeze(1)
    base = torch.zeros(n_pixels, dtype=excl.dtype, device=dev)
    base[pix.index_select(0, starts)] = excl.index_select(0, starts)
    trans = torch.exp((excl - base.index_select(0, pix)).to(dtype))
    if trans_in is not None:
        trans = trans * trans_in.index_select(0, pix)
    alive = trans * (1 - alpha) > T_MIN  # False from a ray's terminating pair on
    done = torch.zeros(n_pixels, dtype=torch.bool, device=dev)
    done[pix[keep & ~alive]] = True
    if done_in is not None:
        done |= done_in
    idx = torch.nonzero(keep & alive).squeeze(1)
    pix, gid, dx, dy, raw, sigma, alpha, trans, log_keep = (
        t.index_select(0, idx) for t in (pix, gid, dx, dy, raw, sigma, alpha, trans, log_keep))
    trans_local = torch.exp(_scatter(pix, log_keep, n_pixels))
    grad_opacity = raw <= ALPHA_MAX
    return _Pairs(pix=pix, gid=gid, dx=dx, dy=dy, alpha=alpha, trans=trans, grad_opacity=grad_opacity,
                  grad_sigma=grad_opacity & (sigma >= 0), trans_local=trans_local, done=done)


def _scatter(index: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    """``[size]`` sums of ``values [M]`` by ``index [M]``."""
    return torch.zeros(size, dtype=values.dtype, device=values.device).index_add_(0, index, values)


class _CompositeChunk(torch.autograd.Function):
    """One depth-ordered chunk: ``(table [G, 6 + D], trans_in [P] | None) -> (features [P, D],
    trans_out [P], done [P])``; the backward is the analytic front-to-back compositing gradient."""

    @staticmethod
    def forward(ctx, table, trans_in, done_in, layout_chunk, width, n_pixels, keep_pairs):
        with torch.no_grad():
            pairs = _chunk_pairs(table, trans_in, done_in, layout_chunk, width, n_pixels)
            w = pairs.alpha * pairs.trans
            feats = table[:, 6:].t().contiguous()
            out = torch.stack([_scatter(pairs.pix, w * f.index_select(0, pairs.gid), n_pixels) for f in feats], 1)
            trans_out = pairs.trans_local if trans_in is None else trans_in * pairs.trans_local
        ctx.mark_non_differentiable(pairs.done)
        ctx.args = (done_in, layout_chunk, width, n_pixels)
        ctx.pairs = pairs if keep_pairs else None
        ctx.save_for_backward(table, trans_in)
        return out, trans_out, pairs.done

    @staticmethod
    def backward(ctx, grad_out, grad_trans, _grad_done):
        table, trans_in = ctx.saved_tensors
        done_in, layout_chunk, width, n_pixels = ctx.args
        pairs = ctx.pairs
        if pairs is None:  # memory-bounded mode: rebuild the pairs instead of having kept them
            pairs = _chunk_pairs(table.detach(), None if trans_in is None else trans_in.detach(), done_in,
                                 layout_chunk, width, n_pixels)
        ctx.pairs = None
        pix, gid, dx, dy, alpha, trans = pairs.pix, pairs.gid, pairs.dx, pairs.dy, pairs.alpha, pairs.trans
        cols = list(table.detach().t().contiguous())
        n_rows = table.shape[0]
        grad_px = [g.index_select(0, pix) for g in grad_out.t().contiguous()]  # dL/d(out) at each pair's pixel
        w = alpha * trans
        colour_dot = sum(gp * f.index_select(0, gid) for gp, f in zip(grad_px, cols[6:]))
        contrib = w * colour_dot
        # sum of contrib over the pairs behind each pair in its pixel: per-pixel total minus inclusive
        # prefix, in float64 so the difference keeps float32 accuracy
        incl = torch.cumsum(contrib.double(), 0)
        seg_end = torch.ones(len(pix), dtype=torch.bool, device=pix.device)
        seg_end[:-1] = pix[1:] != pix[:-1]
        ends = torch.nonzero(seg_end).squeeze(1)
        total = torch.zeros(n_pixels, dtype=incl.dtype, device=pix.device)
        total[pix.index_select(0, ends)] = incl.index_select(0, ends)
        behind = (total.index_select(0, pix) - incl).to(alpha.dtype)
        trans_out = pairs.trans_local if trans_in is None else trans_in.detach() * pairs.trans_local
        behind = behind + grad_trans.index_select(0, pix) * trans_out.index_select(0, pix)
        grad_alpha = trans * colour_dot - behind / (1 - alpha)

        ca, cb, cc, op = (cols[i].index_select(0, gid) for i in (2, 3, 4, 5))
        zero = torch.zeros((), dtype=alpha.dtype, device=alpha.device)
        grad_sigma = torch.where(pairs.grad_sigma, -alpha * grad_alpha, zero)
        grad_op = torch.where(pairs.grad_opacity, grad_alpha * (alpha / op), zero)
        grad_dx = grad_sigma * (ca * dx + cb * dy)
        grad_dy = grad_sigma * (cb * dx + cc * dy)
        half_sigma = 0.5 * grad_sigma
        grads = [
            -_scatter(gid, grad_dx, n_rows), -_scatter(gid, grad_dy, n_rows),
            _scatter(gid, half_sigma * dx * dx, n_rows), _scatter(gid, grad_sigma * dx * dy, n_rows),
            _scatter(gid, half_sigma * dy * dy, n_rows), _scatter(gid, grad_op, n_rows),
        ] + [_scatter(gid, w * gp, n_rows) for gp in grad_px]
        grad_table = torch.stack(grads, 1)
        grad_trans_in = None
        if trans_in is not None and ctx.needs_input_grad[1]:
            # out = trans_in * (local sum) and trans_out = trans_in * trans_local
            t_in = trans_in.detach()
            per_pixel = _scatter(pix, contrib, n_pixels)
            grad_trans_in = torch.where(t_in > 0, per_pixel / t_in.clamp_min(1e-30), zero) \
                + grad_trans * pairs.trans_local
        return grad_table, grad_trans_in, None, None, None, None, None


def composite(
    proj: Projection,
    opacities: torch.Tensor,
    features: torch.Tensor,
    width: int,
    height: int,
    max_pairs: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back alpha compositing of projected Gaussians (analytic backward).

    Args:
        proj: projection of N Gaussians to C cameras.
        opacities: ``[N]`` or ``[C, N]`` in (0, 1).
        features: ``[C, N, D]`` per-camera features (colours, depth, ...).
        max_pairs: the most box pixels (pair candidates) whose compositing state is kept for the
            backward pass; larger renders under autograd keep only each chunk's inputs and rebuild
            its pairs in the backward pass, so memory stays bounded by one chunk.

    Returns:
        ``features [C, H, W, D]`` (no background) and ``alphas [C, H, W, 1]``.
    """
    c, n = proj.depths.shape
    d = features.shape[-1]
    n_pixels = c * height * width
    lay = _layout(proj, width, height, min(max_pairs, CHUNK_PAIRS))
    table = _gaussian_table(proj, opacities, features, lay.gids)
    out: torch.Tensor | None = None
    trans: torch.Tensor | None = None
    done: torch.Tensor | None = None
    keep_pairs = lay.total <= max_pairs or not torch.is_grad_enabled()
    for lo, hi in zip(lay.bounds[:-1], lay.bounds[1:]):
        if hi <= lo:
            continue
        chunk = tuple(t[lo:hi] for t in (lay.x0, lay.y0, lay.bw, lay.bh, lay.cam_off))
        part, trans, done = _CompositeChunk.apply(table[lo:hi], trans, done, chunk, width, n_pixels, keep_pairs)
        out = part if out is None else out + part
    if out is None:
        out = torch.zeros(n_pixels, d, dtype=features.dtype, device=features.device)
    if trans is None:
        trans = torch.ones(n_pixels, dtype=features.dtype, device=features.device)
    alphas = (1 - trans).reshape(c, height, width, 1)
    return out.reshape(c, height, width, d), alphas


# ------------------------------------------------------------------------------------------------
# Autograd reference (the previous compositor): same pairs from the full boxes, gradients by autograd
# ------------------------------------------------------------------------------------------------
def _composite_chunk_autograd(
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


def composite_autograd(
    proj: Projection,
    opacities: torch.Tensor,
    features: torch.Tensor,
    width: int,
    height: int,
    max_pairs: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for :func:`composite` (same arguments and results): every pixel of each Gaussian's box
    is a candidate and gradients come from autograd, with each chunk checkpointed when there are
    several. Slower; kept for tests and ``bench/render.py``."""
    c, n = proj.depths.shape
    d = features.shape[-1]
    n_pixels = c * height * width
    lay = _layout(proj, width, height, max_pairs)
    base = lay.cam_off + lay.y0 * width + lay.x0
    table = _gaussian_table(proj, opacities, features, lay.gids)
    table = torch.cat([-table[:, :2], table[:, 2:]], dim=1)
    out = torch.zeros(n_pixels, d, dtype=features.dtype, device=features.device)
    trans: torch.Tensor | None = None
    done: torch.Tensor | None = None
    use_checkpoint = len(lay.bounds) > 2 and torch.is_grad_enabled()
    for lo, hi in zip(lay.bounds[:-1], lay.bounds[1:]):
        if hi <= lo:
            continue
        args = (table[lo:hi], trans, done, base[lo:hi], lay.x0[lo:hi], lay.y0[lo:hi], lay.bw[lo:hi],
                lay.bh[lo:hi], width, n_pixels)
        if use_checkpoint:
            part, trans, done = checkpoint(_composite_chunk_autograd, *args, use_reentrant=False)
        else:
            part, trans, done = _composite_chunk_autograd(*args)
        out = out + part
    if trans is None:
        trans = torch.ones(n_pixels, dtype=features.dtype, device=features.device)
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
