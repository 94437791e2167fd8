"""A closest-point transform of a point cloud on a grid: Fast NSF's lookup loss with exact gradients.

Fast NSF (Li et al., ICCV 2023) replaces NSFP's per-iteration nearest-neighbour search by a
distance transform (DT) of the target, built once per pair on a 0.1 m grid whose seeds are the
voxels holding a target point, and read with trilinear ``grid_sample``. Two things limit that
field: the seeds are voxel centres (up to 0.087 m off the points at 0.1 m), and trilinear
interpolation of a distance gives gradients that are piecewise constant per voxel and point to
voxel centres, not to the points.

This module keeps the idea (one lookup structure per pair, built from the target only, then O(1)
per query and iteration) but stores the *closest-point transform*: for every grid node the index
of its nearest target point. A query ``q`` takes the point ``p`` assigned to its nearest node and
returns ``|q - p|``, so the value is the true distance to an actual target point and its gradient
is the chamfer gradient ``(q - p) / |q - p|`` towards it. ``p`` is the exact nearest neighbour of
the node; for the query it is within ``sqrt(3) * voxel_size`` of optimal
(``|q - p| <= d(q) + 2 |q - node|``) and in practice the true nearest point (the target's point
spacing is coarser than the voxel). The structure is built in pure torch at a cost that does not
grow with the empty space of the grid:

* **Near field (exact).** Every target point offers itself to the nodes of a ball of
  ``band + 1`` voxels around its own voxel; each node keeps the closest offer (a ``scatter_reduce``
  minimum over int64 keys ``squared distance bits << 32 | point index``). A node whose nearest
  point lies within ``band`` voxels is always inside that point's ball (``band + sqrt(3)/2 <
  band + 1``), so those nodes get their exact nearest point; nodes farther than ``band`` voxels
  from every point are marked ``-1``.
* **Far field.** A grid ``coarse_factor`` times coarser holds the exact nearest point of each of its
  nodes (one KD-tree query per coarse node at build time). Queries whose fine node is outside the
  band take the point of their nearest coarse node (within ``sqrt(3) * coarse_factor * voxel_size``
  of optimal; this only happens farther than ``band`` voxels from the cloud, where NSFP's
  truncation starts to matter anyway).

Grid nodes sit at ``origin + voxel_size * (i, j, k)``; the grid covers the bounding box of the
target (and of any ``cover`` points, e.g. the source) plus a margin of at least the band; queries
outside are clamped to the border nodes (their distance is still measured to the real point).
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any

import torch

from motion4d.checks import check_float, check_int
from motion4d.errors import InputTooLargeError, InvalidArgumentError
from pointclouds.neighbors import knn

from .common import as_points

GRID_BYTES = 512 << 20
"""Memory budget of a grid's build (index + scatter keys): sparse clouds spread over a large extent
get a coarser grid instead of gigabytes."""
BYTES_PER_VOXEL = 12  # int32 nearest-point index + int64 scatter key during the build
SPLAT_PAIRS_PER_CHUNK = 1 << 22
NO_POINT = -1
_EMPTY_KEY = torch.iinfo(torch.int64).max


def _grid_box(points: torch.Tensor, h: float, margin: float, band: int, factor: int) -> tuple[torch.Tensor, list[int]]:
    """Origin ``[3]`` and node counts of the grid of spacing ``h`` around ``points`` (plus margin and band);
    sizes are ``factor * k + 1`` so that every coarse node is a fine node."""
    pad = max(margin, (band + 2) * h)
    lo = torch.floor((points.min(0).values - pad) / h) * h
    hi = torch.ceil((points.max(0).values + pad) / h) * h
    return lo, [factor * -(-int(round(float(v))) // factor) + 1 for v in ((hi - lo) / h)]


def ball_offsets(radius: int, device: Any = None) -> torch.Tensor:
    """Integer offsets ``[K, 3]`` with ``|o| <= radius`` (voxel units)."""
    r = torch.arange(-radius, radius + 1, device=device)
    grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    return grid[grid.square().sum(-1) <= radius * radius]


def splat_nearest(coords: torch.Tensor, dims: list[int], band: int) -> torch.Tensor:
    """Index of the nearest point at every node within ``band`` voxels of one, ``-1`` elsewhere.

    Args:
        coords: ``float32 [M, 3]`` point positions in voxel units (node ``(i, j, k)`` sits at
            ``(i, j, k)``), each at least ``band + 1`` voxels inside the grid.
        dims: grid size ``[X, Y, Z]``.
        band: exactness radius in voxels (>= 1).

    Returns:
        ``int32 [X, Y, Z]``: for every node whose nearest point is at most ``band`` voxels away, the
        index of that point (ties: the lower index); ``-1`` for the other nodes.
    """
    device = coords.device
    strides = torch.tensor([dims[1] * dims[2], dims[2], 1], device=device)
    cells = torch.round(coords).long()
    # Sorting the points by voxel makes the scatter below walk memory nearly in order (4x faster).
    order = torch.argsort(cells @ strides)
    cells, frac = cells[order], (cells - coords)[order]
    offsets = ball_offsets(band + 1, device)
    offset_flat = offsets @ strides
    off = offsets.to(coords.dtype)
    off_sq = off.square().sum(-1)
    keys = torch.full((math.prod(dims),), _EMPTY_KEY, dtype=torch.int64, device=device)
    per_chunk = max(1, SPLAT_PAIRS_PER_CHUNK // len(offsets))
    for start in range(0, len(cells), per_chunk):
        stop = min(len(cells), start + per_chunk)
        r = frac[start:stop]
        # squared distance node -> point: |o + (c - u)|^2 = |o|^2 + 2 o.(c - u) + |c - u|^2
        d2 = torch.addmm(r.square().sum(-1, keepdim=True), r, off.T, alpha=2.0).add_(off_sq).clamp_min_(0.0)
        # Non-negative float32 values order like their bit patterns: one int64 amin keeps both the
        # smallest distance and its point.
        key = d2.view(torch.int32).to(torch.int64).bitwise_left_shift_(32)
        key.bitwise_or_(order[start:stop, None])
        flat = (cells[start:stop] @ strides)[:, None] + offset_flat
        keys.scatter_reduce_(0, flat.view(-1), key.view(-1), reduce="amin")
    limit = torch.tensor(float(band * band), dtype=torch.float32).view(torch.int32).to(torch.int64)
    outside = keys > ((limit << 32) | 0xFFFFFFFF)
    index = keys.bitwise_and_(0x7FFFFFFF).to(torch.int32)  # the low word: the point index
    index.masked_fill_(outside, NO_POINT)
    return index.view(dims)


def _safe_norm(v: torch.Tensor) -> torch.Tensor:
    """``|v|`` over the last axis with a zero (not NaN) gradient where ``v = 0``."""
    sq = v.square().sum(-1)
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


class DistanceGrid:
    """Distance (metres) to a point cloud through a precomputed closest-point grid.

    Build with :meth:`build`; call with ``query [N, 3]`` to get ``[N]`` distances to the assigned
    target points, differentiable w.r.t. the query (the gradient is the unit vector from that
    point to the query). :meth:`nearest` gives the assigned point indices.

    Attributes:
        points: ``float32 [M, 3]`` the cloud.
        index: ``int32 [X, Y, Z]`` nearest point of every node within ``band`` voxels, else ``-1``.
        coarse_index: ``int32 [Xc, Yc, Zc]`` nearest point of every ``coarse_factor``-th node.
        origin: ``float32 [3]`` position of node ``(0, 0, 0)``.
        voxel_size: node spacing in metres.
        band: exact near-field radius in voxels.
        build_seconds: time :meth:`build` took.
    """

    def __init__(
        self,
        points: torch.Tensor,
        index: torch.Tensor,
        coarse_index: torch.Tensor,
        origin: torch.Tensor,
        voxel_size: float,
        coarse_factor: int,
        band: int,
        build_seconds: float = 0.0,
    ) -> None:
        if index.dim() != 3 or min(index.shape) < 2:
            raise InvalidArgumentError(f"index must be [X, Y, Z] with sizes >= 2, got {list(index.shape)}")
        if coarse_index.dim() != 3:
            raise InvalidArgumentError(f"coarse_index must be [Xc, Yc, Zc], got {list(coarse_index.shape)}")
        self.points, self.index, self.coarse_index = points, index, coarse_index
        self.origin = origin.to(points.device, torch.float32)
        self.voxel_size = float(voxel_size)
        self.coarse_factor = int(coarse_factor)
        self.band = int(band)
        self.build_seconds = build_seconds
        self._fine_max = torch.tensor(index.shape, device=points.device) - 1
        self._coarse_max = torch.tensor(coarse_index.shape, device=points.device) - 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Fine grid size ``(X, Y, Z)``."""
        return tuple(self.index.shape)  # type: ignore[return-value]

    @classmethod
    def build(
        cls,
        points: Any,
        *,
        voxel_size: float = 0.1,
        margin: float = 1.0,
        cover: Any = None,
        band: int = 6,
        coarse_factor: int = 4,
        device: Any = None,
        max_bytes: int | None = None,
        coarsen: bool = True,
    ) -> "DistanceGrid":
        """Closest-point grid of ``points [M, 3]`` with ``voxel_size`` m spacing.

        Args:
            points: the cloud whose distance is looked up (the target).
            voxel_size: grid spacing (Fast NSF: 0.1 m).
            margin: extra space (m) around the bounding box (raised to the band when smaller).
            cover: optional ``[K, 3]`` points the grid must also cover (e.g. the source).
            band: radius of the exact near field in voxels (>= 1); build cost grows as ``band^3``.
            coarse_factor: far-field grid spacing in voxels (>= 1).
            device: where the grid lives (default: the points' device).
            max_bytes: memory budget of the build (default :data:`GRID_BYTES`).
            coarsen: over the budget, enlarge ``voxel_size`` until it fits (with a RuntimeWarning)
                instead of raising InputTooLargeError.
        """
        start = time.perf_counter()
        pts = as_points(points, "points", device=device)
        h = check_float(voxel_size, "voxel_size")
        band = check_int(band, "band", 1)
        factor = check_int(coarse_factor, "coarse_factor", 1)
        margin = check_float(margin, "margin", strict=False)
        budget = GRID_BYTES if max_bytes is None else check_int(max_bytes, "max_bytes", minimum=1)
        extent_pts = pts if cover is None else torch.cat([pts, as_points(cover, "cover", device=pts.device)])
        lo, dims = _grid_box(extent_pts, h, margin, band, factor)
        total = math.prod(dims)
        if total * BYTES_PER_VOXEL > budget:
            if not coarsen:
                raise InputTooLargeError(
                    f"a {dims} grid ({total / 1e6:.0f} M voxels, {total * BYTES_PER_VOXEL / 2**20:.0f} MiB) at "
                    f"voxel_size={h} exceeds the {budget / 2**20:.0f} MiB budget; use a larger voxel_size or crop "
                    "the clouds")
            requested = h
            while total * BYTES_PER_VOXEL > budget:
                h *= 1.05 * (total * BYTES_PER_VOXEL / budget) ** (1 / 3)
                lo, dims = _grid_box(extent_pts, h, margin, band, factor)
                total = math.prod(dims)
            warnings.warn(f"the clouds span {[round(d * h, 1) for d in dims]} m: the lookup grid uses voxel_size "
                          f"{h:.3g} m instead of {requested:.3g} m to stay within {budget / 2**20:.0f} MiB",
                          RuntimeWarning, stacklevel=2)
        if len(pts) >= 2**31:
            raise InvalidArgumentError(f"points holds {len(pts)} points; at most 2**31 - 1 are supported")
        index = splat_nearest((pts - lo) / h, dims, band)

        coarse_dims = [(d - 1) // factor + 1 for d in dims]
        # Coarse node (a, b, c) is fine node factor * (a, b, c): where that node is in the band its
        # nearest point is already known; search the others only.
        picks = [torch.arange(n, device=pts.device) * factor for n in coarse_dims]
        coarse_index = index[picks[0][:, None, None], picks[1][None, :, None], picks[2][None, None, :]].contiguous()
        unknown = torch.nonzero(coarse_index.view(-1) == NO_POINT)[:, 0]
        if len(unknown):
            ijk = torch.stack(torch.unravel_index(unknown, tuple(coarse_dims)), -1)
            nodes = lo + h * torch.stack([picks[i][ijk[:, i]] for i in range(3)], -1).float()
            # scipy's KD-tree: no open3d import (seconds) inside a build that is timed per pair
            found = knn(nodes, pts, 1, backend="scipy", workers=torch.get_num_threads())
            coarse_index.view(-1)[unknown] = found.idx[:, 0].to(torch.int32)
        return cls(pts, index, coarse_index, lo, h, factor, band, time.perf_counter() - start)

    @torch.no_grad()
    def nearest(self, query: torch.Tensor) -> torch.Tensor:
        """``int64 [N]`` index of the target point assigned to each ``query [N, 3]``."""
        cells = (query.detach() - self.origin) / self.voxel_size
        node = torch.round(cells).long().clamp_(min=torch.zeros_like(self._fine_max), max=self._fine_max)
        idx = self.index[node[:, 0], node[:, 1], node[:, 2]].long()
        far = idx < 0
        if far.any():
            coarse = torch.round(cells[far] / self.coarse_factor).long()
            coarse = coarse.clamp_(min=torch.zeros_like(self._coarse_max), max=self._coarse_max)
            idx[far] = self.coarse_index[coarse[:, 0], coarse[:, 1], coarse[:, 2]].long()
        return idx

    def __call__(self, query: torch.Tensor) -> torch.Tensor:
        """Distances ``[N]`` (m) from ``query [N, 3]`` to their assigned points, differentiable."""
        return _safe_norm(query - self.points[self.nearest(query)])

    def dense(self) -> torch.Tensor:
        """The field at every fine node, ``float32 [X, Y, Z]`` (for inspection and tests)."""
        X, Y, Z = self.shape
        axes = [torch.arange(n, dtype=torch.float32, device=self.points.device) for n in (X, Y, Z)]
        cells = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        with torch.no_grad():
            return self(cells * self.voxel_size + self.origin).reshape(X, Y, Z)


__all__ = ["DistanceGrid", "splat_nearest", "ball_offsets"]
