"""Triton kernels of the correlation and splatting ops (the ``triton`` backend).

Same ops, layouts and arithmetic as the C++/CUDA kernels in ``csrc`` (``common.h`` documents the
geometry): every program handles ``BLOCK_P`` consecutive first-frame (or source) pixels of one
batch element, so loads of coordinates and stores of ``[B, K, h, w]`` outputs are coalesced along
the pixel axis. Window entries are processed one column at a time (the x offset, RAFT's slowest
channel axis) as ``[BLOCK_P, CP]`` tiles, ``CP`` the power of two that holds a patch column of
``P = 2r + 2`` entries.

Integer sizes are not specialised on (``do_not_specialize``): Triton would otherwise compile a
variant for every size that is 1 or a multiple of 16, and the launchers pick few block sizes, so
a GPU run compiles a couple of dozen kernels, not hundreds. Importing this module needs Triton. With ``TRITON_INTERPRET=1`` set before Triton is first
imported, the kernels run on CPU tensors through Triton's interpreter (that is how CI tests them).
Only scatter-type gradients (the on-the-fly correlation's ``fmap2`` gradient and the splatting
forward) use atomics.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _footprint(x, y, margin, width, height):
    """Base corner and fractions of a real position (``footprint`` in common.h).

    Returns ``(x0, y0, fx, fy, valid)``; invalid (non-finite or far outside) positions get
    ``x0 = y0 = 0`` and zero fractions, and callers mask every access with ``valid``.
    """
    finite = (tl.abs(x) < float("inf")) & (tl.abs(y) < float("inf"))  # false for inf and nan
    xf = tl.floor(tl.where(finite, x, 0.0))
    yf = tl.floor(tl.where(finite, y, 0.0))
    valid = (finite & (xf >= -margin - 1.0) & (xf <= width - 1.0 + margin) & (yf >= -margin - 1.0)
             & (yf <= height - 1.0 + margin))
    xf = tl.where(valid, xf, 0.0)
    yf = tl.where(valid, yf, 0.0)
    fx = tl.where(valid, x - xf, 0.0)
    fy = tl.where(valid, y - yf, 0.0)
    return xf.to(tl.int32), yf.to(tl.int32), fx, fy, valid


@triton.jit
def _shift_down(col, CP: tl.constexpr):
    """``out[:, j] = col[:, j + 1]`` (0 in the last entry) for a ``[BLOCK_P, CP]`` tile.

    A selection, not arithmetic: every output is one input value (or 0), so it is exact.
    """
    c = tl.arange(0, CP)
    pick = (c[:, None] + 1) == c[None, :]  # [j, c]
    return tl.sum(tl.where(pick[None, :, :], col[:, None, :], 0.0), axis=2)


# ---------------------------------------------------------------- all-pairs window lookup

@triton.jit(do_not_specialize=["hw", "H", "W", "r"])
def lookup_forward_kernel(vol_ptr, coords_ptr, out_ptr, hw, H, W, r, scale,
                          CP: tl.constexpr, BLOCK_P: tl.constexpr):
    """``out [B, K, h, w]`` from ``vol [B*h*w, H, W]`` and ``coords [B, 2, h, w]``."""
    b = tl.program_id(1)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < hw
    k = 2 * r + 1
    cx = tl.load(coords_ptr + (2 * b) * hw + p, mask=pm, other=0.0)
    cy = tl.load(coords_ptr + (2 * b + 1) * hw + p, mask=pm, other=0.0)
    x0, y0, fx, fy, valid = _footprint(cx * scale, cy * scale, r, W, H)
    valid = valid & pm
    base = (b * hw + p).to(tl.int64) * H * W  # [BLOCK_P]
    j = tl.arange(0, CP)
    jm = j < k
    fx2, fy2 = fx[:, None], fy[:, None]
    for i in range(k):
        x = x0[:, None] - r + i  # [BLOCK_P, 1]
        y = y0[:, None] - r + j[None, :]  # [BLOCK_P, CP]
        m = valid[:, None] & jm[None, :]
        in00 = m & (x >= 0) & (x < W) & (y >= 0) & (y < H)
        in10 = m & (x + 1 >= 0) & (x + 1 < W) & (y >= 0) & (y < H)
        in01 = m & (x >= 0) & (x < W) & (y + 1 >= 0) & (y + 1 < H)
        in11 = m & (x + 1 >= 0) & (x + 1 < W) & (y + 1 >= 0) & (y + 1 < H)
        at = base[:, None] + y * W + x
        v00 = tl.load(vol_ptr + at, mask=in00, other=0.0)
        v10 = tl.load(vol_ptr + at + 1, mask=in10, other=0.0)
        v01 = tl.load(vol_ptr + at + W, mask=in01, other=0.0)
        v11 = tl.load(vol_ptr + at + W + 1, mask=in11, other=0.0)
        value = ((1.0 - fx2) * (1.0 - fy2) * v00 + fx2 * (1.0 - fy2) * v10 + (1.0 - fx2) * fy2 * v01
                 + fx2 * fy2 * v11)
        channel = i * k + j  # [CP]
        tl.store(out_ptr + (b * k * k + channel[None, :]).to(tl.int64) * hw + p[:, None], value,
                 mask=pm[:, None] & jm[None, :])


@triton.jit(do_not_specialize=["hw", "H", "W", "r"])
def lookup_backward_kernel(gout_ptr, vol_ptr, coords_ptr, gvol_ptr, gcoords_ptr, hw, H, W, r, scale,
                           CP: tl.constexpr, BLOCK_P: tl.constexpr):
    """Volume and coordinate gradients; ``gvol`` must be zero-filled.

    A pixel's volume slice is its own, and each patch entry gets its whole gradient in one store
    (the adjoint of the bilinear window, ``patch_adjoint`` in common.h): no atomics.
    """
    b = tl.program_id(1)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < hw
    k = 2 * r + 1
    cx = tl.load(coords_ptr + (2 * b) * hw + p, mask=pm, other=0.0)
    cy = tl.load(coords_ptr + (2 * b + 1) * hw + p, mask=pm, other=0.0)
    x0, y0, fx, fy, valid = _footprint(cx * scale, cy * scale, r, W, H)
    valid = valid & pm
    base = (b * hw + p).to(tl.int64) * H * W
    gbase = (b * k * k).to(tl.int64) * hw + p  # [BLOCK_P]: window entry kk is at gbase + kk * hw
    c = tl.arange(0, CP)
    fx2, fy2 = fx[:, None], fy[:, None]
    gx = tl.zeros([BLOCK_P, CP], dtype=fx.dtype)
    gy = tl.zeros([BLOCK_P, CP], dtype=fx.dtype)
    for a in range(k + 1):  # patch column a: window columns a (weight 1 - fx) and a - 1 (weight fx)
        x = x0[:, None] - r + a
        y = y0[:, None] - r + c[None, :]
        m = valid[:, None] & (c[None, :] <= k)
        cur = m & ((c[None, :] * 0 + a) < k)  # (a < k) as a tile: the interpreter mis-types bool scalars
        prev = m & ((c[None, :] * 0 + a) >= 1)
        g00 = tl.load(gout_ptr + gbase[:, None] + (a * k + c[None, :]) * hw, mask=cur & (c[None, :] < k), other=0.0)
        g10 = tl.load(gout_ptr + gbase[:, None] + ((a - 1) * k + c[None, :]) * hw, mask=prev & (c[None, :] < k),
                      other=0.0)
        g01 = tl.load(gout_ptr + gbase[:, None] + (a * k + c[None, :] - 1) * hw, mask=cur & (c[None, :] >= 1),
                      other=0.0)
        g11 = tl.load(gout_ptr + gbase[:, None] + ((a - 1) * k + c[None, :] - 1) * hw,
                      mask=prev & (c[None, :] >= 1), other=0.0)
        adjoint = (1.0 - fx2) * (1.0 - fy2) * g00
        adjoint += fx2 * (1.0 - fy2) * g10
        adjoint += (1.0 - fx2) * fy2 * g01
        adjoint += fx2 * fy2 * g11
        inside = m & (x >= 0) & (x < W) & (y >= 0) & (y < H)
        tl.store(gvol_ptr + base[:, None] + y * W + x, adjoint, mask=inside)
        # Coordinate gradient: sum over the patch of value * d(window)/d(position) (see _coef_*).
        v = tl.load(vol_ptr + base[:, None] + y * W + x, mask=inside, other=0.0)
        gx += _coef_x(g00, g10, g01, g11, fy2) * v
        gy += _coef_y(g00, g10, g01, g11, fx2) * v
    tl.store(gcoords_ptr + (2 * b) * hw + p, tl.sum(gx, axis=1) * scale, mask=pm)
    tl.store(gcoords_ptr + (2 * b + 1) * hw + p, tl.sum(gy, axis=1) * scale, mask=pm)


@triton.jit
def _coef_x(g00, g10, g01, g11, fy):
    """Coefficient of patch entry (a, c) in ``sum_ij g[i, j] d window[i, j] / dx``.

    ``window[i, j] = (1-fx)(1-fy) P[i, j] + fx (1-fy) P[i+1, j] + (1-fx) fy P[i, j+1] + fx fy P[i+1, j+1]``
    with ``g00 = g[a, c]``, ``g10 = g[a-1, c]``, ``g01 = g[a, c-1]``, ``g11 = g[a-1, c-1]`` (zero outside the window).
    """
    return (1.0 - fy) * (g10 - g00) + fy * (g11 - g01)


@triton.jit
def _coef_y(g00, g10, g01, g11, fx):
    """Like :func:`_coef_x` for the y derivative."""
    return (1.0 - fx) * (g01 - g00) + fx * (g11 - g10)


# ---------------------------------------------------------------- on-the-fly correlation

@triton.jit(do_not_specialize=["hw", "H", "W", "D", "r"])
def local_forward_kernel(f1_ptr, f2_ptr, coords_ptr, out_ptr, hw, H, W, D, r, scale,
                         CP: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_D: tl.constexpr):
    """``out [B, K, h, w]`` from channels-last ``f1 [B, h, w, D]``, ``f2 [B, H, W, D]``.

    Patch column ``a`` (x = x0 - r + a) holds the correlations with the ``P`` rows above each
    other; window column ``a - 1`` is the bilinear mix of columns ``a - 1`` and ``a``.
    """
    b = tl.program_id(1)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < hw
    k = 2 * r + 1
    cx = tl.load(coords_ptr + (2 * b) * hw + p, mask=pm, other=0.0)
    cy = tl.load(coords_ptr + (2 * b + 1) * hw + p, mask=pm, other=0.0)
    x0, y0, fx, fy, valid = _footprint(cx * scale, cy * scale, r, W, H)
    valid = valid & pm
    inv_norm = 1.0 / tl.sqrt(tl.zeros([1], dtype=fx.dtype) + D)  # [1], in the data's precision
    c = tl.arange(0, CP)
    dd = tl.arange(0, BLOCK_D)
    f1_row = (b * hw + p).to(tl.int64) * D  # [BLOCK_P]
    f2_base = (b * H).to(tl.int64) * W * D
    y = y0[:, None] - r + c[None, :]  # [BLOCK_P, CP]
    ym = valid[:, None] & (c[None, :] <= k) & (y >= 0) & (y < H)
    fx2, fy2 = fx[:, None], fy[:, None]
    prev = tl.zeros([BLOCK_P, CP], dtype=fx.dtype)
    prev_down = tl.zeros([BLOCK_P, CP], dtype=fx.dtype)
    for a in range(k + 1):
        x = x0[:, None] - r + a  # [BLOCK_P, 1]
        inside = ym & (x >= 0) & (x < W)
        row = f2_base + (y * W + x).to(tl.int64) * D  # [BLOCK_P, CP]
        col = tl.zeros([BLOCK_P, CP], dtype=fx.dtype)
        for d0 in range(0, D, BLOCK_D):
            d = d0 + dd
            dm = d < D
            a1 = tl.load(f1_ptr + f1_row[:, None] + d[None, :], mask=pm[:, None] & dm[None, :], other=0.0)
            a2 = tl.load(f2_ptr + row[:, :, None] + d[None, None, :], mask=inside[:, :, None] & dm[None, None, :],
                         other=0.0)
            col += tl.sum(a1[:, None, :] * a2, axis=2)
        col = col * inv_norm
        col_down = _shift_down(col, CP)
        value = ((1.0 - fx2) * (1.0 - fy2) * prev + fx2 * (1.0 - fy2) * col + (1.0 - fx2) * fy2 * prev_down
                 + fx2 * fy2 * col_down)
        channel = (a - 1) * k + c
        tl.store(out_ptr + (b * k * k + channel[None, :]).to(tl.int64) * hw + p[:, None], value,
                 mask=pm[:, None] & (c[None, :] < k) & ((c[None, :] * 0 + a) >= 1))
        prev = col
        prev_down = col_down


@triton.jit(do_not_specialize=["hw", "H", "W", "D", "r"])
def local_backward_kernel(gout_ptr, f1_ptr, f2_ptr, coords_ptr, gf1_ptr, gf2_ptr, gcoords_ptr, hw, H, W, D, r,
                          scale, COORDS_GRAD: tl.constexpr, CP: tl.constexpr, BLOCK_P: tl.constexpr,
                          BLOCK_D: tl.constexpr):
    """Gradients of the on-the-fly correlation; ``gf2`` must be zero-filled (atomics add to it).

    Per channel slice and patch column: the patch gradient ``gc`` (adjoint of the bilinear window,
    times 1/sqrt(D)) gives ``gf1 += gc * f2`` and ``gf2 += gc * f1``; the coordinate gradient is
    linear in the patch correlations, so it is summed slice by slice.
    """
    b = tl.program_id(1)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pm = p < hw
    k = 2 * r + 1
    cx = tl.load(coords_ptr + (2 * b) * hw + p, mask=pm, other=0.0)
    cy = tl.load(coords_ptr + (2 * b + 1) * hw + p, mask=pm, other=0.0)
    x0, y0, fx, fy, valid = _footprint(cx * scale, cy * scale, r, W, H)
    valid = valid & pm
    inv_norm = 1.0 / tl.sqrt(tl.zeros([1], dtype=fx.dtype) + D)  # [1], in the data's precision
    c = tl.arange(0, CP)
    dd = tl.arange(0, BLOCK_D)
    f1_row = (b * hw + p).to(tl.int64) * D
    f2_base = (b * H).to(tl.int64) * W * D
    gbase = (b * k * k).to(tl.int64) * hw + p
    y = y0[:, None] - r + c[None, :]
    m = valid[:, None] & (c[None, :] <= k)
    ym = m & (y >= 0) & (y < H)
    fx2, fy2 = fx[:, None], fy[:, None]
    gx = tl.zeros([BLOCK_P, CP], dtype=fx.dtype)
    gy = tl.zeros([BLOCK_P, CP], dtype=fx.dtype)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + dd
        dm = d < D
        a1 = tl.load(f1_ptr + f1_row[:, None] + d[None, :], mask=pm[:, None] & dm[None, :], other=0.0)
        acc1 = tl.zeros([BLOCK_P, BLOCK_D], dtype=fx.dtype)
        for a in range(k + 1):
            x = x0[:, None] - r + a
            inside = ym & (x >= 0) & (x < W)
            cur = m & ((c[None, :] * 0 + a) < k)  # (a < k) as a tile: the interpreter mis-types bool scalars
            prev = m & ((c[None, :] * 0 + a) >= 1)
            g00 = tl.load(gout_ptr + gbase[:, None] + (a * k + c[None, :]) * hw, mask=cur & (c[None, :] < k),
                          other=0.0)
            g10 = tl.load(gout_ptr + gbase[:, None] + ((a - 1) * k + c[None, :]) * hw,
                          mask=prev & (c[None, :] < k), other=0.0)
            g01 = tl.load(gout_ptr + gbase[:, None] + (a * k + c[None, :] - 1) * hw, mask=cur & (c[None, :] >= 1),
                          other=0.0)
            g11 = tl.load(gout_ptr + gbase[:, None] + ((a - 1) * k + c[None, :] - 1) * hw,
                          mask=prev & (c[None, :] >= 1), other=0.0)
            gc = (1.0 - fx2) * (1.0 - fy2) * g00
            gc += fx2 * (1.0 - fy2) * g10
            gc += (1.0 - fx2) * fy2 * g01
            gc += fx2 * fy2 * g11
            gc = tl.where(inside, gc * inv_norm, 0.0)
            row = f2_base + (y * W + x).to(tl.int64) * D
            m3 = inside[:, :, None] & dm[None, None, :]
            a2 = tl.load(f2_ptr + row[:, :, None] + d[None, None, :], mask=m3, other=0.0)
            acc1 += tl.sum(gc[:, :, None] * a2, axis=1)
            tl.atomic_add(gf2_ptr + row[:, :, None] + d[None, None, :], gc[:, :, None] * a1[:, None, :],
                          mask=m3 & (gc[:, :, None] != 0))
            if COORDS_GRAD:
                part = tl.sum(a1[:, None, :] * a2, axis=2)  # this slice's share of the patch correlations
                gx += _coef_x(g00, g10, g01, g11, fy2) * part
                gy += _coef_y(g00, g10, g01, g11, fx2) * part
        tl.store(gf1_ptr + f1_row[:, None] + d[None, :], acc1, mask=pm[:, None] & dm[None, :])
    tl.store(gcoords_ptr + (2 * b) * hw + p, tl.sum(gx, axis=1) * inv_norm * scale, mask=pm)
    tl.store(gcoords_ptr + (2 * b + 1) * hw + p, tl.sum(gy, axis=1) * inv_norm * scale, mask=pm)


# ---------------------------------------------------------------- summation splatting

@triton.jit
def _splat_corners(flow_ptr, b, p, pm, H, W):
    """Targets of source pixels ``p``: base corner, fractions and the in-image masks of the 4 corners."""
    hw = H * W
    u = tl.load(flow_ptr + (2 * b) * hw + p, mask=pm, other=0.0)
    v = tl.load(flow_ptr + (2 * b + 1) * hw + p, mask=pm, other=0.0)
    x0, y0, fx, fy, valid = _footprint((p % W).to(u.dtype) + u, (p // W).to(u.dtype) + v, 0, W, H)
    valid = valid & pm
    ok00 = valid & (x0 >= 0) & (y0 >= 0)  # footprint's margin 0 bounds x0 <= W - 1 and y0 <= H - 1
    ok10 = valid & (x0 + 1 < W) & (y0 >= 0)
    ok01 = valid & (x0 >= 0) & (y0 + 1 < H)
    ok11 = valid & (x0 + 1 < W) & (y0 + 1 < H)
    return y0 * W + x0, fx, fy, ok00, ok10, ok01, ok11


@triton.jit(do_not_specialize=["C", "H", "W"])
def splat_forward_kernel(in_ptr, flow_ptr, out_ptr, C, H, W, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """``out [B, C, H, W]`` (zero-filled) += bilinear scatter of ``in`` along ``flow``."""
    b = tl.program_id(1)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    hw = H * W
    pm = p < hw
    t, fx, fy, ok00, ok10, ok01, ok11 = _splat_corners(flow_ptr, b, p, pm, H, W)
    w00, w10 = (1.0 - fx) * (1.0 - fy), fx * (1.0 - fy)
    w01, w11 = (1.0 - fx) * fy, fx * fy
    cc = tl.arange(0, BLOCK_C)
    for c0 in range(0, C, BLOCK_C):
        ch = c0 + cc
        plane = (b * C + ch).to(tl.int64) * hw  # [BLOCK_C]
        cm = (ch < C)[None, :]
        value = tl.load(in_ptr + plane[None, :] + p[:, None], mask=pm[:, None] & cm, other=0.0)
        dst = out_ptr + plane[None, :] + t[:, None]
        tl.atomic_add(dst, w00[:, None] * value, mask=ok00[:, None] & cm)
        tl.atomic_add(dst + 1, w10[:, None] * value, mask=ok10[:, None] & cm)
        tl.atomic_add(dst + W, w01[:, None] * value, mask=ok01[:, None] & cm)
        tl.atomic_add(dst + W + 1, w11[:, None] * value, mask=ok11[:, None] & cm)


@triton.jit(do_not_specialize=["C", "H", "W"])
def splat_backward_kernel(gout_ptr, in_ptr, flow_ptr, gin_ptr, gflow_ptr, C, H, W, BLOCK_P: tl.constexpr,
                          BLOCK_C: tl.constexpr):
    """Gradients of the splatting: a gather of ``gout`` at the 4 targets (no atomics)."""
    b = tl.program_id(1)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    hw = H * W
    pm = p < hw
    t, fx, fy, ok00, ok10, ok01, ok11 = _splat_corners(flow_ptr, b, p, pm, H, W)
    w00, w10 = (1.0 - fx) * (1.0 - fy), fx * (1.0 - fy)
    w01, w11 = (1.0 - fx) * fy, fx * fy
    gx = tl.zeros([BLOCK_P, BLOCK_C], dtype=fx.dtype)
    gy = tl.zeros([BLOCK_P, BLOCK_C], dtype=fx.dtype)
    cc = tl.arange(0, BLOCK_C)
    for c0 in range(0, C, BLOCK_C):
        ch = c0 + cc
        plane = (b * C + ch).to(tl.int64) * hw
        cm = (ch < C)[None, :]
        src = gout_ptr + plane[None, :] + t[:, None]
        g00 = tl.load(src, mask=ok00[:, None] & cm, other=0.0)
        g10 = tl.load(src + 1, mask=ok10[:, None] & cm, other=0.0)
        g01 = tl.load(src + W, mask=ok01[:, None] & cm, other=0.0)
        g11 = tl.load(src + W + 1, mask=ok11[:, None] & cm, other=0.0)
        s = w00[:, None] * g00 + w10[:, None] * g10 + w01[:, None] * g01 + w11[:, None] * g11
        # d weight / d x: -(1-fy), (1-fy), -fy, fy; d weight / d y: -(1-fx), -fx, (1-fx), fx
        sx = (1.0 - fy)[:, None] * (g10 - g00) + fy[:, None] * (g11 - g01)
        sy = (1.0 - fx)[:, None] * (g01 - g00) + fx[:, None] * (g11 - g10)
        value = tl.load(in_ptr + plane[None, :] + p[:, None], mask=pm[:, None] & cm, other=0.0)
        tl.store(gin_ptr + plane[None, :] + p[:, None], s, mask=pm[:, None] & cm)
        gx += value * sx
        gy += value * sy
    tl.store(gflow_ptr + (2 * b) * hw + p, tl.sum(gx, axis=1), mask=pm)
    tl.store(gflow_ptr + (2 * b + 1) * hw + p, tl.sum(gy, axis=1), mask=pm)
