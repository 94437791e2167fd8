"""RAFT correlation volume: all-pairs pyramid or on-the-fly (memory-efficient) lookup."""
from __future__ import annotations

import torch

from motion4d.checks import check_choice, check_floating, check_int, check_shape
from motion4d.errors import InvalidArgumentError, ShapeError

from . import _backend, _reference

MODES = ("all_pairs", "on_the_fly")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32/float64 stay; half and bfloat16 are computed in float32 (see the class docs)."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class CorrelationVolume:
    """Correlation of two feature maps, queried with RAFT's multi-level window lookup.

    Built once per frame pair, called once per refinement iteration::

        corr = CorrelationVolume(fmap1, fmap2, num_levels=4, radius=4)
        features = corr(coords)          # [B, 4 * 81, h, w]

    Semantics (identical to RAFT's ``CorrBlock``): ``C = f1ᵀ f2 / sqrt(D)``; level ``l`` is the
    volume average-pooled ``l`` times by 2x2 over the second frame's axes (odd sizes floor); the
    lookup samples a ``(2r+1)^2`` window around ``coords / 2^l`` bilinearly with zero padding
    (pixel centres at integers); channel ``l*(2r+1)^2 + i*(2r+1) + j`` holds level ``l`` at offset
    ``dx = i - r, dy = j - r`` (x-offset slowest). Levels of width or height 1 are handled
    (RAFT divides by zero there).

    Modes:
        ``all_pairs``: materialises the pyramid, ``B*h*w*h2*w2*4/3`` numbers; fastest lookups.
        ``on_the_fly``: stores only ``fmap1`` and the pooled ``fmap2`` pyramid and correlates
            ``fmap1`` with the bilinearly sampled window at each call (pooling the volume equals
            correlating with pooled features). Same numbers up to float rounding, ``O(B*D*h*w)``
            memory.

    Gradients: both modes are differentiable w.r.t. ``fmap1``, ``fmap2`` and ``coords`` (RAFT
    detaches ``coords`` before the lookup; callers that do so lose nothing). The coordinate
    gradient is the one of bilinear interpolation (one-sided at integer positions, like
    ``grid_sample``).

    Precision: float32 and float64 are computed as given; float16/bfloat16 inputs (and autocast
    regions) are computed in float32 and the result is float32, as RAFT's ``.float()`` does.

    Args:
        fmap1: ``[B, D, h, w]`` features of the first frame.
        fmap2: ``[B, D, h2, w2]`` features of the second frame; ``h2, w2 >= 2^(num_levels-1)``.
        num_levels: pyramid levels ``L >= 1``.
        radius: window radius ``r >= 0``.
        mode: ``"all_pairs"`` or ``"on_the_fly"``.
        backend: ``"auto"`` (compiled kernels when available, else the reference), ``"torch"``
            (reference), ``"cpp"`` (C++ CPU kernels), ``"cuda"`` (CUDA C++ kernels) or ``"triton"``
            (Triton kernels; see :mod:`motion.ops`).
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, radius: int = 4,
                 mode: str = "all_pairs", backend: str = "auto") -> None:
        check_choice(mode, "mode", MODES)
        check_int(num_levels, "num_levels", minimum=1)
        check_int(radius, "radius", minimum=0)
        size = check_shape(fmap1, "fmap1", ("B", "D", "h", "w"))
        check_shape(fmap2, "fmap2", (size["B"], size["D"], "h2", "w2"))
        check_floating(fmap1, "fmap1")
        check_floating(fmap2, "fmap2")
        if fmap1.device != fmap2.device:
            raise InvalidArgumentError(f"fmap1 and fmap2 must be on one device, got {fmap1.device} and {fmap2.device}")
        coarsest = 2 ** (num_levels - 1)
        if fmap2.shape[-2] < coarsest or fmap2.shape[-1] < coarsest:
            raise ShapeError(f"fmap2 of size {tuple(fmap2.shape[-2:])} is too small for {num_levels} levels "
                             f"(needs height and width >= {coarsest})")
        self.num_levels = num_levels
        self.radius = radius
        self.mode = mode
        self.shape = (size["B"], size["h"], size["w"])
        self.backend = _backend.resolve(backend, fmap1.device)
        if self.backend != "torch" and radius > _backend.MAX_COMPILED_RADIUS:
            if backend != "auto":
                raise InvalidArgumentError(f"backend={backend!r} supports radius <= "
                                           f"{_backend.MAX_COMPILED_RADIUS}, got {radius}; use backend='torch'")
            self.backend = "torch"
        dtype = _compute_dtype(torch.promote_types(fmap1.dtype, fmap2.dtype))
        fmap1, fmap2 = fmap1.to(dtype), fmap2.to(dtype)
        self.dtype = dtype
        with torch.autocast(fmap1.device.type, enabled=False):
            if mode == "all_pairs":
                self.pyramid = _reference.all_pairs_pyramid(fmap1, fmap2, num_levels)
            else:
                self.fmap1 = fmap1
                self.fmap2_pyramid = _reference.pool_pyramid(fmap2, num_levels)
                if self.backend != "torch":  # the kernels read channels-last rows of D features
                    self.fmap1 = fmap1.permute(0, 2, 3, 1).contiguous()
                    self.fmap2_pyramid = [f.permute(0, 2, 3, 1).contiguous() for f in self.fmap2_pyramid]

    @property
    def out_channels(self) -> int:
        """``num_levels * (2r+1)^2``."""
        return self.num_levels * (2 * self.radius + 1) ** 2

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """Look up windows around ``coords [B, 2, h, w]`` (x, y in level-0 pixels).

        Returns:
            ``[B, num_levels * (2r+1)^2, h, w]``.
        """
        b, h, w = self.shape
        check_shape(coords, "coords", (b, 2, h, w))
        check_floating(coords, "coords")
        coords = coords.to(self.dtype)
        with torch.autocast(coords.device.type, enabled=False):
            if self.backend == "torch":
                if self.mode == "all_pairs":
                    return _reference.lookup(self.pyramid, coords, self.radius)
                return _reference.local(self.fmap1, self.fmap2_pyramid, coords, self.radius)
            coords = coords.contiguous()
            ops = torch.ops.motion4d
            if self.mode == "all_pairs":
                lookup = ops.corr_lookup if self.backend == "compiled" else ops.triton_corr_lookup
                levels = [lookup(vol.view(vol.shape[0], vol.shape[2], vol.shape[3]), coords, self.radius, 0.5 ** lvl)
                          for lvl, vol in enumerate(self.pyramid)]
            else:
                local = ops.corr_local if self.backend == "compiled" else ops.triton_corr_local
                levels = [local(self.fmap1, f2, coords, self.radius, 0.5 ** lvl)
                          for lvl, f2 in enumerate(self.fmap2_pyramid)]
            return torch.cat(levels, 1)

    def __repr__(self) -> str:
        b, h, w = self.shape
        return (f"CorrelationVolume(batch={b}, size=({h}, {w}), num_levels={self.num_levels}, "
                f"radius={self.radius}, mode={self.mode!r}, backend={self.backend!r})")


def correlation_lookup(fmap1: torch.Tensor, fmap2: torch.Tensor, coords: torch.Tensor, num_levels: int = 4,
                       radius: int = 4, mode: str = "all_pairs", backend: str = "auto") -> torch.Tensor:
    """One-shot ``CorrelationVolume(fmap1, fmap2, ...)(coords)`` -> ``[B, L*(2r+1)^2, h, w]``."""
    return CorrelationVolume(fmap1, fmap2, num_levels, radius, mode, backend)(coords)
