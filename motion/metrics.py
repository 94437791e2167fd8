"""Optical-flow accuracy metrics as the benchmarks define them.

All functions take flow fields ``[..., 2, H, W]`` (torch tensors or numpy arrays, any float dtype),
or channels-last ``[..., H, W, 2]`` as :func:`motion.read_flow` returns them; every field over the
leading dimensions counts as one image. Masks are ``[..., H, W]``:

* ``valid``: pixels that have ground truth (KITTI's valid channel, ``~invalid`` for Sintel). Pixels
  whose ground truth is not finite (NaN / inf, how several readers mark unknown flow) are invalid too.
* ``occlusion``: pixels of the source frame not visible in the target frame.

Definitions (EPE = Euclidean distance between predicted and true flow vectors, in pixels):

* ``epe``: mean EPE.
* ``px1``, ``px3``, ``px5``: **fraction** of pixels with EPE < 1, 3, 5 px (accuracies, as ptlflow).
* ``fl_all``: **percentage** of outliers, KITTI 2015: EPE > 3 px **and** EPE / |gt| > 5 %.
* ``*_noc`` / ``*_occ``: the same on non-occluded / occluded valid pixels. These are Sintel's
  "matched" (visible in both frames) and "unmatched" (visible in one frame only) regions.
* ``epe_s0_10``, ``epe_s10_40``, ``epe_s40plus``: Sintel speed buckets, EPE over pixels whose
  ground-truth speed |gt| is in [0, 10), [10, 40) and [40, inf) px/frame.

Two ways to average over a set of images:

* ``reduction="pooled"``: every valid pixel of the set weighs the same (KITTI's official Fl-all and
  the Sintel leaderboard).
* ``reduction="per_image"``: the metric of each image, then the mean over images (ptlflow and the
  repos' validation scripts; images without pixels in a region are skipped for that region).

:class:`FlowMetricsAccumulator` gives both for a data set streamed image by image, and merges
shards computed on different workers.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch

from motion4d.checks import check_choice, check_finite, check_floating, check_shape
from motion4d.errors import ShapeError

__all__ = [
    "endpoint_error",
    "outlier_mask",
    "epe",
    "fl_all",
    "accuracy",
    "flow_metrics",
    "sintel_metrics",
    "FlowMetricsAccumulator",
    "merge_accumulators",
    "METRIC_KEYS",
]

ABS_OUTLIER_PX = 3.0
REL_OUTLIER = 0.05
SPEED_BUCKETS = ((0.0, 10.0), (10.0, 40.0), (40.0, math.inf))

_REGIONS = ("all", "noc", "occ", "s0_10", "s10_40", "s40plus")
_STATS = ("count", "epe", "px1", "px3", "px5", "outliers")
_SUFFIX = {"all": "", "noc": "_noc", "occ": "_occ"}

#: Every key :func:`flow_metrics` and :meth:`FlowMetricsAccumulator.compute` may return.
METRIC_KEYS = (
    "epe", "px1", "px3", "px5", "fl_all",
    "epe_noc", "px1_noc", "px3_noc", "px5_noc", "fl_noc",
    "epe_occ", "px1_occ", "px3_occ", "px5_occ", "fl_occ",
    "epe_s0_10", "epe_s10_40", "epe_s40plus",
    "num_images", "num_pixels",
)

Array = Any  # torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------------------------
# input handling


def _as_tensor(x: Array, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ShapeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _channels_first(flow: torch.Tensor) -> torch.Tensor:
    """``[..., H, W, 2]`` (a flow file's layout) -> ``[..., 2, H, W]``; ``[..., 2, H, W]`` unchanged."""
    if flow.dim() >= 3 and flow.shape[-1] == 2 and flow.shape[-3] != 2:
        return flow.movedim(-1, -3)
    return flow


def _mask(x: Array | None, name: str, like: torch.Tensor) -> torch.Tensor | None:
    """``bool [N, H, W]`` mask from bool or 0/1 numeric input shaped like the flows' ``[..., H, W]``."""
    if x is None:
        return None
    t = _as_tensor(x, name).to(like.device)
    if tuple(t.shape) != tuple(like.shape[:-3]) + tuple(like.shape[-2:]):
        raise ShapeError(
            f"{name} must have shape {list(like.shape[:-3]) + list(like.shape[-2:])} (the flows' [..., H, W]), "
            f"got {list(t.shape)}")
    if t.dtype != torch.bool:
        t = t > 0.5
    return t.reshape(-1, *t.shape[-2:])


def _prepare(pred: Array, gt: Array, valid: Array | None, occlusion: Array | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Flatten to ``pred, gt [N, 2, H, W]`` (float64), ``valid [N, H, W]``, ``occlusion [N, H, W]``."""
    p, g = _channels_first(_as_tensor(pred, "pred")), _channels_first(_as_tensor(gt, "gt"))
    check_shape(p, "pred", ("...", 2, "H", "W"))
    if tuple(p.shape) != tuple(g.shape):
        raise ShapeError(f"pred {list(p.shape)} and gt {list(g.shape)} must have the same shape [..., 2, H, W]")
    check_floating(p, "pred")
    check_floating(g, "gt")
    check_finite(p, "pred")
    g = g.to(p.device)
    ok = torch.isfinite(g).all(dim=-3).reshape(-1, *g.shape[-2:])
    v = _mask(valid, "valid", p)
    v = ok if v is None else v & ok
    occ = _mask(occlusion, "occlusion", p)
    p = p.reshape(-1, *p.shape[-3:]).to(torch.float64)
    g = torch.where(torch.isfinite(g), g, torch.zeros((), dtype=g.dtype, device=g.device))
    g = g.reshape(-1, *g.shape[-3:]).to(torch.float64)
    return p, g, v, occ


# ----------------------------------------------------------------------------------------------
# per-pixel maps


def _length(flow: torch.Tensor) -> torch.Tensor:
    """``|flow|`` over the channel axis of ``[..., 2, H, W]``."""
    return torch.hypot(flow[..., 0, :, :], flow[..., 1, :, :])


def endpoint_error(pred: Array, gt: Array) -> Array:
    """Per-pixel end-point error ``[..., H, W]`` (same library as ``pred``)."""
    p, g = _channels_first(_as_tensor(pred, "pred")), _channels_first(_as_tensor(gt, "gt"))
    check_shape(p, "pred", ("...", 2, "H", "W"))
    if tuple(p.shape) != tuple(g.shape):
        raise ShapeError(f"pred {list(p.shape)} and gt {list(g.shape)} must have the same shape [..., 2, H, W]")
    err = _length(p.to(torch.float64) - g.to(p.device, torch.float64))
    return err.numpy() if isinstance(pred, np.ndarray) else err.to(p.dtype if p.is_floating_point() else torch.float32)


def _outliers(err: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    # the KITTI devkit's test: err > 3 && err / mag > 0.05 (err / 0 = inf counts as relative outlier)
    return (err > ABS_OUTLIER_PX) & (err / mag > REL_OUTLIER)


def outlier_mask(pred: Array, gt: Array) -> Array:
    """KITTI outliers ``bool [..., H, W]``: EPE > 3 px and EPE > 5 % of the true flow's length."""
    p, g = _channels_first(_as_tensor(pred, "pred")), _channels_first(_as_tensor(gt, "gt"))
    err = _as_tensor(endpoint_error(p, g), "epe").to(torch.float64)
    mag = _length(g.to(p.device, torch.float64))
    out = _outliers(err, mag)
    return out.numpy() if isinstance(pred, np.ndarray) else out


# ----------------------------------------------------------------------------------------------
# sufficient statistics


def _image_stats(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor,
                 occlusion: torch.Tensor | None) -> torch.Tensor:
    """``float64 [N, R, S]`` sums per image, region (``_REGIONS``) and statistic (``_STATS``)."""
    err = _length(pred - gt)  # [N, H, W]
    mag = _length(gt)
    per_pixel = torch.stack([
        torch.ones_like(err), err, (err < 1.0).double(), (err < 3.0).double(), (err < 5.0).double(),
        _outliers(err, mag).double(),
    ], dim=-1).flatten(1, 2)  # [N, H*W, S]
    regions = [valid]
    if occlusion is not None:
        regions += [valid & ~occlusion, valid & occlusion]
    else:
        empty = torch.zeros_like(valid)
        regions += [empty, empty]
    for low, high in SPEED_BUCKETS:
        regions.append(valid & (mag >= low) & (mag < high))
    masks = torch.stack(regions, dim=1).flatten(2).double()  # [N, R, H*W]
    return torch.bmm(masks, per_pixel)


def _finalise(sums: np.ndarray, with_occlusion: bool) -> dict[str, float]:
    """Metric dict from region-by-statistic means ``[R, S]`` (count column ignored)."""
    out: dict[str, float] = {}
    for r, region in enumerate(_REGIONS):
        if region in _SUFFIX:
            if region != "all" and not with_occlusion:
                continue
            sfx = _SUFFIX[region]
            out[f"epe{sfx}"] = float(sums[r, 1])
            out[f"px1{sfx}"] = float(sums[r, 2])
            out[f"px3{sfx}"] = float(sums[r, 3])
            out[f"px5{sfx}"] = float(sums[r, 4])
            out["fl_all" if region == "all" else f"fl{sfx}"] = 100.0 * float(sums[r, 5])
        else:
            out[f"epe_{region}"] = float(sums[r, 1])
    return out


class FlowMetricsAccumulator:
    """Streams flow metrics over a data set; pooled and per-image averages from one pass.

    Example::

        acc = FlowMetricsAccumulator()
        for pred, gt, valid in loader:
            acc.update(pred, gt, valid=valid)
        acc.compute()                       # pooled over pixels
        acc.compute(reduction="per_image")  # mean of per-image metrics

    Shards computed on different workers combine with :meth:`merge` (or :meth:`all_reduce` inside a
    ``torch.distributed`` job); the result equals a single pass over all images.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        nr, ns = len(_REGIONS), len(_STATS)
        self.pixel_sums = np.zeros((nr, ns))  # summed over all pixels of all images
        self.image_mean_sums = np.zeros((nr, ns))  # sum over images of per-image means (col 0 unused)
        self.image_counts = np.zeros(nr)  # images with at least one pixel in each region
        self.num_images = 0
        self.with_occlusion = False

    def update(self, pred: Array, gt: Array, valid: Array | None = None, occlusion: Array | None = None) -> None:
        """Add one image or a batch: ``pred, gt [..., 2, H, W]``, masks ``[..., H, W]``."""
        p, g, v, occ = _prepare(pred, gt, valid, occlusion)
        self._add(_image_stats(p, g, v, occ).cpu().numpy(), occ is not None)

    def _add(self, stats: np.ndarray, with_occlusion: bool) -> None:
        counts = stats[:, :, 0]  # [N, R]
        self.pixel_sums += stats.sum(0)
        has = counts > 0
        means = np.divide(stats, counts[..., None], out=np.zeros_like(stats), where=has[..., None])
        self.image_mean_sums += means.sum(0)
        self.image_counts += has.sum(0)
        self.num_images += stats.shape[0]
        self.with_occlusion |= with_occlusion

    def merge(self, other: "FlowMetricsAccumulator") -> "FlowMetricsAccumulator":
        """Add another accumulator's images to this one (in place); returns ``self``."""
        if not isinstance(other, FlowMetricsAccumulator):
            raise ShapeError(f"other must be a FlowMetricsAccumulator, got {type(other).__name__}")
        self.pixel_sums += other.pixel_sums
        self.image_mean_sums += other.image_mean_sums
        self.image_counts += other.image_counts
        self.num_images += other.num_images
        self.with_occlusion |= other.with_occlusion
        return self

    def state_tensor(self) -> torch.Tensor:
        """All state as one ``float64`` vector (for ``torch.distributed.all_reduce``)."""
        return torch.from_numpy(np.concatenate([
            self.pixel_sums.ravel(), self.image_mean_sums.ravel(), self.image_counts,
            [self.num_images, float(self.with_occlusion)],
        ]))

    def load_state_tensor(self, state: torch.Tensor) -> None:
        """Inverse of :meth:`state_tensor` (occlusion flag set if any shard had occlusion)."""
        s = state.detach().cpu().to(torch.float64).numpy()
        nr, ns = len(_REGIONS), len(_STATS)
        if s.shape != (2 * nr * ns + nr + 2,):
            raise ShapeError(f"state must have shape [{2 * nr * ns + nr + 2}], got {list(s.shape)}")
        self.pixel_sums = s[: nr * ns].reshape(nr, ns).copy()
        self.image_mean_sums = s[nr * ns: 2 * nr * ns].reshape(nr, ns).copy()
        self.image_counts = s[2 * nr * ns: 2 * nr * ns + nr].copy()
        self.num_images = int(round(s[-2]))
        self.with_occlusion = bool(s[-1] > 0)

    def all_reduce(self, group: Any = None) -> "FlowMetricsAccumulator":
        """Sum the state over all ranks of an initialised ``torch.distributed`` process group."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        state = self.state_tensor()
        if dist.get_backend(group) == "nccl":
            state = state.cuda()
        dist.all_reduce(state, op=dist.ReduceOp.SUM, group=group)
        self.load_state_tensor(state)
        return self

    def compute(self, reduction: str = "pooled") -> dict[str, float]:
        """Metrics (keys in :data:`METRIC_KEYS`; ``*_noc``/``*_occ`` only if occlusion was given).

        Regions without pixels give NaN. ``num_images`` and ``num_pixels`` (valid pixels) are
        included as floats.
        """
        check_choice(reduction, "reduction", ("pooled", "per_image"))
        if reduction == "pooled":
            counts = self.pixel_sums[:, :1]
            sums = np.divide(self.pixel_sums, counts, out=np.full_like(self.pixel_sums, np.nan), where=counts > 0)
        else:
            counts = self.image_counts[:, None]
            sums = np.divide(self.image_mean_sums, counts, out=np.full_like(self.image_mean_sums, np.nan),
                             where=counts > 0)
        out = _finalise(sums, self.with_occlusion)
        out["num_images"] = float(self.num_images)
        out["num_pixels"] = float(self.pixel_sums[0, 0])
        return out


# ----------------------------------------------------------------------------------------------
# one-shot functions


def flow_metrics(pred: Array, gt: Array, valid: Array | None = None, occlusion: Array | None = None,
                 reduction: str = "pooled") -> dict[str, float]:
    """All metrics of :data:`METRIC_KEYS` for flows ``[..., 2, H, W]`` (see the module docstring)."""
    acc = FlowMetricsAccumulator()
    acc.update(pred, gt, valid=valid, occlusion=occlusion)
    return acc.compute(reduction)


def epe(pred: Array, gt: Array, valid: Array | None = None, reduction: str = "pooled") -> float:
    """Mean end-point error in pixels over valid pixels (NaN when there are none)."""
    return flow_metrics(pred, gt, valid, reduction=reduction)["epe"]


def fl_all(pred: Array, gt: Array, valid: Array | None = None, reduction: str = "pooled") -> float:
    """KITTI Fl-all in percent: share of valid pixels with EPE > 3 px and > 5 % of |gt|."""
    return flow_metrics(pred, gt, valid, reduction=reduction)["fl_all"]


def accuracy(pred: Array, gt: Array, threshold: float, valid: Array | None = None,
             reduction: str = "pooled") -> float:
    """Fraction of valid pixels with EPE strictly below ``threshold`` px (``px1`` is threshold 1)."""
    check_choice(reduction, "reduction", ("pooled", "per_image"))
    p, g, v, _ = _prepare(pred, gt, valid, None)
    good = (_length(p - g) < float(threshold)) & v
    counts = v.flatten(1).sum(1).double()
    hits = good.flatten(1).sum(1).double()
    if reduction == "pooled":
        return float(hits.sum() / counts.sum()) if counts.sum() > 0 else math.nan
    has = counts > 0
    return float((hits[has] / counts[has]).mean()) if has.any() else math.nan


def sintel_metrics(pred: Array, gt: Array, occlusion: Array, invalid: Array | None = None,
                   reduction: str = "pooled") -> dict[str, float]:
    """The Sintel leaderboard's EPE columns: ``epe_all``, ``epe_matched``, ``epe_unmatched``,
    ``s0_10``, ``s10_40``, ``s40plus``.

    Args:
        occlusion: ``[..., H, W]`` Sintel ``occlusions/`` masks (pixels not visible in the next frame).
        invalid: ``[..., H, W]`` Sintel ``invalid/`` masks; these pixels are left out of every column.
    """
    valid = None
    if invalid is not None:
        inv = _mask(invalid, "invalid", _as_tensor(pred, "pred"))
        valid = ~inv.reshape(_as_tensor(invalid, "invalid").shape)
    m = flow_metrics(pred, gt, valid=valid, occlusion=occlusion, reduction=reduction)
    return {"epe_all": m["epe"], "epe_matched": m["epe_noc"], "epe_unmatched": m["epe_occ"],
            "s0_10": m["epe_s0_10"], "s10_40": m["epe_s10_40"], "s40plus": m["epe_s40plus"]}


def merge_accumulators(accumulators: Iterable[FlowMetricsAccumulator]) -> FlowMetricsAccumulator:
    """One accumulator holding the images of all ``accumulators``."""
    total = FlowMetricsAccumulator()
    for acc in accumulators:
        total.merge(acc)
    return total
