"""Neural Scene Flow Prior (Li et al., NeurIPS 2021) and its fast distance-transform mode (Fast NSF).

NSFP fits, per pair, a coordinate MLP ``g: R^3 -> R^3`` (8 hidden layers of 128, ReLU) so that
``p + g(p)`` matches the target under a truncated chamfer loss (squared nearest-neighbour
distances, terms ``>= 2 m^2`` dropped). An optional backward ("cycle") MLP ``h`` maps the warped
points back (``p' = w - h(w)``) with a second chamfer term against the source. Adam (lr 8e-3,
weight decay 1e-4); early stopping on the loss (``patience`` iterations without an improvement
larger than ``min_delta``); the flow returned is that of the lowest-loss iteration. Unlike the
released code, the networks are re-initialised (seeded) for every pair; ``warm_start`` passes a
previous field explicitly.

The ``nsfp-fast`` preset is the scale-free fast fit of :mod:`~pointclouds.methods.nsfp_fast`
(``loss="nearest"``, ``scale_free=True``: lengths in point spacings, a rigid start, a rigid-or-field
choice; issue #21). The grid mode below (``loss="dt"``) was the preset before; it remains an option.

Grid mode (``loss="dt"``) follows Fast NSF (ICCV 2023): a lookup structure of
the target, built once per pair (:class:`~.dt.DistanceGrid`), replaces the per-iteration
nearest-neighbour search, only the forward network is fitted (no cycle network), with Xavier init.
Where this differs from the released Fast NSF, and why (measured on synthetic 8,192-point pairs,
1 CPU thread, where the MLP and not the search dominates an iteration, so that a speed-up must come
from fewer / cheaper network steps):

* The grid is a closest-point transform: the loss of a warped point is its exact distance to the
  target point assigned to its grid node, with the chamfer gradient towards that point, instead of
  a trilinear distance to voxel centres (piecewise-constant gradients, up to 0.087 m seed error).
* The term is Fast NSF's unsquared distance, truncated like NSFP's chamfer but leaky: beyond
  ``sqrt(truncate)`` (1 m) it continues with slope ``truncate_slope`` (0.1). Without a cut, points
  with no counterpart drag their neighbourhood; a hard cut at 1 m^2 or below lets the field run
  away where every point is cut (flows of hundreds of metres on some seeds).
* A target-to-source term (``reverse_weight``, 1): every target point pulls the warped source
  point nearest to it, like the second half of NSFP's chamfer. Forward-only fitting let a small
  moving object next to larger ones be dragged onto the wrong surface (seen: a 0.6 m cylinder moved
  2.3 m off); the nearest indices cannot come from a grid (the warped source changes), so they are
  found with a KD-tree every ``reverse_refresh`` (5) mini-batch steps and at every full-cloud step.
  Staler indices cost accuracy: refreshing every 10 / 20 / 30 steps gave EPE3D 0.32 / 0.40 / 0.45
  against 0.29 every 5 (6 scenes x 2 seeds, 300 mini-batch steps).
* The first ``batch_iterations`` (200) steps each fit a fresh random subset of ``batch_points``
  (256) source points plus as many target points' reverse terms under a cosine learning-rate decay
  from 8e-3; an exponential moving average of these steps' weights (``batch_average`` 0.95) starts
  the full-cloud steps, which run with Fast NSF's early stopping (patience 10, min_delta 1e-3) up
  to ``max_iterations`` (210) and NSFP's best-loss snapshot. Fast NSF's own schedule (full cloud,
  constant lr, patience 5-10) either stops after tens of steps far from convergence or needs as
  many steps as NSFP.

Measured on ``pointclouds.synthetic`` scenes only (6 scenes at 8,192 points, each solved by both
methods back to back, 1 thread): a tenth of NSFP's time or less at an EPE3D of 0.32 against NSFP's
0.36. Its settings are metres (0.1 m voxels, 1 m truncation, raw-metre inputs): on scenes of other
sizes and frames it did not hold (issue #21), hence the scale-free preset.

Clouds above ``chunk_size`` points are processed in chunks with exact gradient accumulation: the
nearest-neighbour indices are found on the whole warped cloud without gradients, then each chunk's
share of the loss is recomputed with gradients and back-propagated.

:func:`accumulate` chains fitted fields over a sequence of sweeps (``x <- x + g_t(x)``, evaluating
each continuous field at the already-moved points) to densify lidar sweeps in the last frame.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from motion4d.checks import check_choice, check_float, check_int
from motion4d.device import resolve_device
from motion4d.errors import InvalidArgumentError
from pointclouds.neighbors import knn

from .cards import NSFP_CARD, NSFP_FAST_CARD
from .common import SceneFlowOutput, Timer, as_points, check_pair, chunks
from .dt import DistanceGrid
from .fitting import EarlyStopping, NearestIndex, StopForecast
from .fitting import cosine_lr as _cosine_lr
from .registry import register_method

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}
LOSSES = ("chamfer", "dt", "nearest")
INITS = ("default", "xavier")
LR_SCHEDULES = ("constant", "cosine")
HIDDEN_DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class NSFPConfig:
    """Options of :func:`fit_nsfp` (defaults: NSFP as released for 2,048-point KITTI/Argoverse).

    Attributes:
        hidden_size: width of the MLP.
        num_layers: hidden layers (NSFP: 8, i.e. 9 linear layers).
        activation: ``"relu"`` or ``"sigmoid"``.
        backward_flow: also fit the cycle network (NSFP: on; Fast NSF: off).
        loss: ``"chamfer"`` (NSFP) or ``"dt"`` (Fast NSF distance transform).
        truncate: chamfer terms with squared distance ``>= truncate`` (m^2) are dropped; None keeps all.
        lr, weight_decay: Adam settings.
        max_iterations: iteration cap.
        patience, min_delta: early stopping on the loss.
        init: ``"default"`` (PyTorch) or ``"xavier"`` (Xavier-uniform weights, zero bias; Fast NSF).
        seed: seed of the network initialisation and of the point batches (the fit is deterministic
            on the CPU).
        lr_schedule: ``"constant"`` (NSFP) or ``"cosine"`` (from ``lr`` down to ``lr * lr_min_factor``
            at ``max_iterations``).
        lr_min_factor: final learning rate of the cosine schedule, as a fraction of ``lr``.
        batch_points, batch_iterations: the first ``batch_iterations`` steps each fit a fresh random
            subset of ``batch_points`` source points (``loss="dt"`` only; None: every step uses all
            points). Early stopping and the best-loss snapshot only look at the full-cloud steps.
        batch_average: the full-cloud steps start from an exponential moving average of the
            mini-batch steps' weights with this decay (0: from the last weights).
        reverse_weight: weight of the target-to-source term (``loss="dt"`` only; 0: forward-only,
            as released Fast NSF): each target point pulls its nearest warped source point.
        reverse_refresh: mini-batch steps between searches of those nearest points (full-cloud
            steps search at every step).
        voxel_size: lookup grid spacing (``loss="dt"``).
        dt_band: exact near field of the lookup grid in voxels (see :class:`~.dt.DistanceGrid`).
        chunk_size: points per chunk above which the loss is accumulated chunk by chunk.
        backend: kNN back-end (see :func:`pointclouds.neighbors.knn`).
        hidden_dtype: precision of the MLP's hidden products: ``"float32"`` (default: NSFP's results),
            ``"bfloat16"`` (float32 accumulation) or ``"auto"`` (bfloat16 on CPUs with native bf16, else
            float32). bf16 makes an 8k-point NSFP step about 2x faster on such CPUs but changes the
            trajectory: early stopping ends at other iterations, EPE3D moves by several percent either
            way (``bench/nsfp_speed.py``).
        scale_free: the scale-free fast fit of :mod:`~pointclouds.methods.nsfp_fast` (``loss="nearest"``):
            lengths in units of ``length_scale`` point spacings (``truncate`` in those units squared,
            ``min_delta`` in those units), ``batch_points`` None = an eighth of the cloud (256-1,024 points).
        length_scale: the scale-free unit, in median point spacings of the source.
        rigid_init: start from the rigid motion of three ICP passes (coarse to fine); the field fits the residual.
        start_at_rigid: zero the field's last layer so that the fit starts exactly at the rigid flow
            (else the field starts from its random initialisation around it).
        rigid_min_fitness: use the rigid start only when it puts at least this share of the source
            points it keeps in the target's view on the target's surfaces (with open3d:
            :func:`~pointclouds.methods.nsfp_fast.surface_share`; without, within 1.5 point spacings of
            a target point): the scene's dominant motion; scenes that are mostly movers are fitted from no
            motion, without the rigid-or-field choice.
        mover_icp: with the rigid start, clusters of points that the dominant motion leaves off the target
            get their own ICP start (:func:`~pointclouds.methods.nsfp_fast.mover_starts`; open3d only;
            no effect without ``rigid_init``).
        rigid_margin: keep the rigid flow where it fits the target at most this many local sampling
            gaps worse than the field (neighbourhood means); None keeps the field everywhere.
    """

    hidden_size: int = 128
    num_layers: int = 8
    activation: str = "relu"
    backward_flow: bool = True
    loss: str = "chamfer"
    truncate: float | None = 2.0
    truncate_slope: float = 0.0
    lr: float = 8e-3
    weight_decay: float = 1e-4
    max_iterations: int = 5000
    patience: int = 30
    min_delta: float = 1e-4
    init: str = "default"
    seed: int = 0
    lr_schedule: str = "constant"
    lr_min_factor: float = 0.05
    batch_points: int | None = None
    batch_iterations: int = 0
    batch_average: float = 0.0
    reverse_weight: float = 0.0
    reverse_refresh: int = 5
    voxel_size: float = 0.1
    dt_band: int = 6
    chunk_size: int = 100_000
    backend: str = "auto"
    hidden_dtype: str = "float32"
    scale_free: bool = False
    length_scale: float = 10.0
    rigid_init: bool = False
    rigid_margin: float | None = None
    start_at_rigid: bool = True
    rigid_min_fitness: float = 0.5
    mover_icp: bool = False

    def validate(self) -> "NSFPConfig":
        check_int(self.hidden_size, "hidden_size", 1)
        check_int(self.num_layers, "num_layers", 1)
        check_choice(self.activation, "activation", tuple(ACTIVATIONS))
        check_choice(self.loss, "loss", LOSSES)
        check_choice(self.init, "init", INITS)
        if self.truncate is not None:
            check_float(self.truncate, "truncate")
        check_float(self.truncate_slope, "truncate_slope", strict=False)
        if self.truncate_slope > 0 and self.loss == "chamfer":
            raise InvalidArgumentError("truncate_slope applies to loss='dt' only (NSFP drops truncated chamfer terms)")
        check_float(self.lr, "lr")
        check_float(self.weight_decay, "weight_decay", strict=False)
        check_int(self.max_iterations, "max_iterations", 1)
        check_int(self.patience, "patience", 1)
        check_float(self.min_delta, "min_delta", strict=False)
        check_int(self.seed, "seed", 0)
        check_choice(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        check_float(self.lr_min_factor, "lr_min_factor", strict=False)
        if self.lr_min_factor > 1.0:
            raise InvalidArgumentError(f"lr_min_factor must lie in [0, 1], got {self.lr_min_factor}")
        check_int(self.batch_iterations, "batch_iterations", 0)
        check_float(self.batch_average, "batch_average", strict=False)
        if self.batch_average >= 1.0:
            raise InvalidArgumentError(f"batch_average must lie in [0, 1), got {self.batch_average}")
        if self.batch_points is not None:
            check_int(self.batch_points, "batch_points", 1)
            if self.loss == "chamfer":
                raise InvalidArgumentError("batch_points needs loss='dt' or 'nearest' (a chamfer term over a subset is biased)")
        check_float(self.reverse_weight, "reverse_weight", strict=False)
        check_int(self.reverse_refresh, "reverse_refresh", 1)
        if self.reverse_weight > 0 and self.loss == "chamfer":
            raise InvalidArgumentError("reverse_weight applies to loss='dt' only (NSFP's chamfer already has its target-to-source term)")
        check_float(self.voxel_size, "voxel_size")
        check_int(self.dt_band, "dt_band", 1)
        check_int(self.chunk_size, "chunk_size", 1)
        check_choice(self.hidden_dtype, "hidden_dtype", HIDDEN_DTYPES)
        if self.loss in ("dt", "nearest") and self.backward_flow:
            raise InvalidArgumentError(f"loss={self.loss!r} is forward-only: set backward_flow=False")
        check_float(self.length_scale, "length_scale")
        if self.rigid_margin is not None:
            check_float(self.rigid_margin, "rigid_margin", strict=False)
        if (self.loss == "nearest") != bool(self.scale_free):
            raise InvalidArgumentError("loss='nearest' and scale_free=True go together (the scale-free fast fit)")
        if self.rigid_init and not self.scale_free:
            raise InvalidArgumentError("rigid_init needs scale_free=True")
        return self


PRESETS: dict[str, NSFPConfig] = {
    "nsfp": NSFPConfig(),
    "nsfp-fast": NSFPConfig(
        loss="nearest",
        scale_free=True,
        rigid_init=True,
        rigid_margin=0.25,
        mover_icp=True,
        length_scale=10.0,
        hidden_size=64,
        num_layers=4,
        hidden_dtype="float32",  # 64-wide products gain nothing from bf16 (measured 0.9 s against 1.4 s per pair)
        backward_flow=False,
        init="xavier",
        truncate=1.0,
        truncate_slope=0.1,
        lr_schedule="cosine",
        reverse_weight=1.0,
        reverse_refresh=5,
        batch_points=None,
        batch_iterations=150,
        batch_average=0.95,
        max_iterations=158,
        patience=3,
        min_delta=1e-3,
    ),
}


def make_config(preset: str = "nsfp", **options: Any) -> NSFPConfig:
    """A validated config: ``preset`` (``"nsfp"`` / ``"nsfp-fast"``) with ``options`` overriding fields."""
    check_choice(preset, "preset", tuple(PRESETS))
    names = {f.name for f in dataclasses.fields(NSFPConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise InvalidArgumentError(f"unknown NSFP options {unknown}; known: {sorted(names)}")
    return dataclasses.replace(PRESETS[preset], **options).validate()


def native_bf16() -> bool:
    """True when this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX), where a bf16 GEMM
    with float32 accumulation runs 2-3x faster than a float32 one; False elsewhere (emulated bf16 is slower)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_hidden_dtype(name: str, device: torch.device) -> torch.dtype:
    """``"float32"`` / ``"bfloat16"``, or ``"auto"``: bfloat16 on CPUs with native bf16 (:func:`native_bf16`)."""
    check_choice(name, "hidden_dtype", HIDDEN_DTYPES)
    if name == "auto":
        return torch.bfloat16 if device.type == "cpu" and native_bf16() else torch.float32
    return torch.bfloat16 if name == "bfloat16" else torch.float32


class FlowField(nn.Module):
    """The NSFP prior: an MLP ``[N, 3] -> [N, 3]`` (``num_layers`` hidden layers of ``hidden_size``).

    ``hidden_dtype=torch.bfloat16`` runs the hidden ``hidden_size x hidden_size`` products in bfloat16
    with float32 accumulation (CPU autocast); the first and last layers, the weights, the optimiser
    and the loss stay float32. The flow differs from the float32 one by about 0.1 % of its size.
    """

    def __init__(self, hidden_size: int = 128, num_layers: int = 8, activation: str = "relu",
                 hidden_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        check_choice(activation, "activation", tuple(ACTIVATIONS))
        layers: list[nn.Module] = []
        width_in = 3
        for _ in range(num_layers):
            layers += [nn.Linear(width_in, hidden_size), ACTIVATIONS[activation]()]
            width_in = hidden_size
        layers.append(nn.Linear(width_in, 3))
        self.mlp = nn.Sequential(*layers)
        self.hidden_dtype = hidden_dtype

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Flow ``[N, 3]`` at ``points [N, 3]``."""
        if self.hidden_dtype == torch.float32 or len(self.mlp) < 5 or points.dtype != torch.float32:
            return self.mlp(points)
        layers = list(self.mlp)
        h = layers[1](layers[0](points))
        with torch.autocast(points.device.type, dtype=self.hidden_dtype):
            for layer in layers[2:-1]:
                h = layer(h)
        return layers[-1](h.float())

    @torch.no_grad()
    def flow_at(self, points: torch.Tensor, chunk_size: int = 100_000) -> torch.Tensor:
        """Flow at arbitrary points without gradients, chunked (``[N, 3] -> [N, 3]``)."""
        return torch.cat([self(points[s]) for s in chunks(len(points), chunk_size)]) if len(points) else points.clone()


def build_field(config: NSFPConfig, device: torch.device) -> FlowField:
    """A freshly initialised field, seeded by ``config.seed`` (independent of the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        field = FlowField(config.hidden_size, config.num_layers, config.activation,
                          resolve_hidden_dtype(config.hidden_dtype, device))
        if config.init == "xavier":
            for module in field.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_uniform_(module.weight)
                    nn.init.zeros_(module.bias)
    return field.to(device)


@dataclass
class NSFPResult:
    """What :func:`fit_nsfp` returns: the best flow and the fitted field (for :func:`accumulate`)."""

    flow: torch.Tensor  # [N, 3] flow of the lowest-loss iteration
    field: FlowField  # the forward network after the last iteration
    best_loss: float
    best_iteration: int
    iterations: int
    time_s: float
    dt_build_s: float = 0.0
    losses: list[float] = dataclasses.field(default_factory=list)  # loss of every full-cloud step
    point_steps: int = 0  # points pushed through a network forward and backward, summed over steps and networks
    # (a forward pass alone counts a third: the backward pass costs about twice the forward one)


# --------------------------------------------------------------------------------------- losses
def _chamfer_terms(a: torch.Tensor, b: torch.Tensor, a_index: NearestIndex | None, b_index: NearestIndex | None,
                   truncate: float | None, backend: str = "auto") -> torch.Tensor:
    """NSFP's truncated squared chamfer of ``a [N, 3]`` and ``b [M, 3]`` (mean of each direction), with
    prebuilt indices of whichever cloud is fixed (None: built now with ``backend``)."""
    with torch.no_grad():
        ab = (b_index or NearestIndex(b, backend)).query(a)
        ba = (a_index or NearestIndex(a, backend)).query(b)
    d_ab = (a - b[ab]).square().sum(-1)
    d_ba = (b - a[ba]).square().sum(-1)
    return _truncated(d_ab, truncate).mean() + _truncated(d_ba, truncate).mean()


def _truncated(d2: torch.Tensor, truncate: float | None) -> torch.Tensor:
    if truncate is None:
        return d2
    return torch.where(d2.detach() < truncate, d2, torch.zeros_like(d2))


def _dt_terms(grid: DistanceGrid, warped: torch.Tensor, truncate: float | None, slope: float = 0.0) -> torch.Tensor:
    """Fast NSF's per-point term ``[N]``: the (unsquared) distance ``d`` to the target. Where
    ``d^2 >= truncate`` the term continues as ``r + slope * (d - r)`` (``r = sqrt(truncate)``): with
    ``slope = 0`` such points no longer pull (NSFP's truncation); a small slope keeps a weak pull so
    that the field cannot run away where every point is beyond the threshold."""
    return _leaky_truncated(grid(warped), truncate, slope)


def _leaky_truncated(d: torch.Tensor, truncate: float | None, slope: float) -> torch.Tensor:
    """Distances ``d`` kept below ``r = sqrt(truncate)``, continued as ``r + slope * (d - r)`` beyond."""
    if truncate is None:
        return d
    r = math.sqrt(truncate)
    return torch.where(d.detach() < r, d, r + slope * (d - r))


def _chunked_chamfer_step(
    net: nn.Module, inverse: nn.Module | None, src: torch.Tensor, tgt: torch.Tensor, cfg: NSFPConfig
) -> tuple[float, torch.Tensor]:
    """One chunked loss evaluation with gradients accumulated into the networks' ``.grad``.

    Returns the loss value and the (detached) flow of the current parameters.
    """
    n, m = len(src), len(tgt)
    size = cfg.chunk_size
    with torch.no_grad():
        flow = net.flow_at(src, size)
        warped = src + flow
        fwd_idx = knn(warped, tgt, 1, backend=cfg.backend).idx[:, 0]
        bwd_idx = knn(tgt, warped, 1, backend=cfg.backend).idx[:, 0]  # target -> warped source
        if inverse is not None:
            back = warped - inverse.flow_at(warped, size)
            cyc_idx = knn(back, src, 1, backend=cfg.backend).idx[:, 0]
            cyc_bwd_idx = knn(src, back, 1, backend=cfg.backend).idx[:, 0]  # source -> back-warped
    total = 0.0
    for part in chunks(n, size):
        w = src[part] + net(src[part])
        loss = _truncated((w - tgt[fwd_idx[part]]).square().sum(-1), cfg.truncate).sum() / n
        hits = (bwd_idx >= part.start) & (bwd_idx < part.stop)
        if hits.any():
            d2 = (tgt[hits] - w[bwd_idx[hits] - part.start]).square().sum(-1)
            loss = loss + _truncated(d2, cfg.truncate).sum() / m
        if inverse is not None:
            b = w - inverse(w)
            loss = loss + _truncated((b - src[cyc_idx[part]]).square().sum(-1), cfg.truncate).sum() / n
            hits = (cyc_bwd_idx >= part.start) & (cyc_bwd_idx < part.stop)
            if hits.any():
                d2 = (src[hits] - b[cyc_bwd_idx[hits] - part.start]).square().sum(-1)
                loss = loss + _truncated(d2, cfg.truncate).sum() / n
        loss.backward()
        total += loss.item()
    return total, flow


def _reverse_terms(warped: torch.Tensor, targets: torch.Tensor, truncate: float | None, slope: float) -> torch.Tensor:
    """Target-to-source terms ``[K]``: distance of each target point to its (stale) nearest warped
    source point, truncated like :func:`_dt_terms`."""
    return _leaky_truncated((warped - targets).square().sum(-1).clamp_min(1e-12).sqrt(), truncate, slope)


def _loss_step(
    net: nn.Module,
    inverse: nn.Module | None,
    src: torch.Tensor,
    tgt: torch.Tensor,
    grid: DistanceGrid | None,
    cfg: NSFPConfig,
    reverse_idx: torch.Tensor | None = None,
    indices: tuple[NearestIndex, NearestIndex] | None = None,
) -> tuple[float, torch.Tensor]:
    """Loss value and detached flow of the current parameters; gradients accumulated.

    ``reverse_idx [M]`` (lookup loss only): for every target point the index of its nearest warped
    source point (found without gradients at an earlier step), adding the target-to-source term.
    ``indices``: prebuilt :class:`NearestIndex` of the source and the target (chamfer loss)."""
    n = len(src)
    if grid is not None:
        total, flows = 0.0, []
        for part in chunks(n, cfg.chunk_size):
            f = net(src[part])
            loss = _dt_terms(grid, src[part] + f, cfg.truncate, cfg.truncate_slope).sum() / n
            if reverse_idx is not None:
                hits = (reverse_idx >= part.start) & (reverse_idx < part.stop)
                if hits.any():
                    j = reverse_idx[hits] - part.start
                    rev = _reverse_terms(src[part][j] + f[j], tgt[hits], cfg.truncate, cfg.truncate_slope)
                    loss = loss + cfg.reverse_weight * rev.sum() / len(tgt)
            loss.backward()
            total += loss.item()
            flows.append(f.detach())
        return total, torch.cat(flows)
    if n > cfg.chunk_size or len(tgt) > cfg.chunk_size:
        return _chunked_chamfer_step(net, inverse, src, tgt, cfg)
    src_index, tgt_index = indices if indices is not None else (NearestIndex(src, cfg.backend), NearestIndex(tgt, cfg.backend))
    flow = net(src)
    warped = src + flow
    if not bool(torch.isfinite(warped).all()):
        return math.nan, flow.detach()
    loss = _chamfer_terms(warped, tgt, None, tgt_index, cfg.truncate, cfg.backend)
    if inverse is not None:
        back = warped - inverse(warped)
        if not bool(torch.isfinite(back).all()):
            return math.nan, flow.detach()
        loss = loss + _chamfer_terms(back, src, None, src_index, cfg.truncate, cfg.backend)
    loss.backward()
    return loss.item(), flow.detach()


# ------------------------------------------------------------------------------------------ fit
def fit_nsfp(
    source: Any,
    target: Any,
    config: NSFPConfig | None = None,
    *,
    device: Any = "auto",
    warm_start: FlowField | None = None,
    progress: bool = False,
) -> NSFPResult:
    """Fit an NSFP field from ``source [N, 3]`` to ``target [M, 3]``.

    Args:
        config: :class:`NSFPConfig` (default: the ``nsfp`` preset).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        warm_start: start from a copy of this field instead of a fresh initialisation.
        progress: show a tqdm bar over iterations.
    """
    cfg = (config or NSFPConfig()).validate()
    dev = resolve_device(device)
    src, tgt = check_pair(source, target, dev)
    if cfg.scale_free:
        from .nsfp_fast import fit_fast

        net = copy.deepcopy(warm_start).to(dev) if warm_start is not None else build_field(cfg, dev)
        fit = fit_fast(src, tgt, cfg, dev, net, start_rigid=warm_start is None and cfg.start_at_rigid, progress=progress)
        result = NSFPResult(fit["flow"], net, fit["best_loss"], fit["best_iteration"], fit["iterations"], fit["seconds"],
                            0.0, fit["losses"], fit["point_steps"])
        result.extras = fit["extras"]
        return result
    with Timer(dev) as timer:
        net = copy.deepcopy(warm_start).to(dev) if warm_start is not None else build_field(cfg, dev)
        inverse = copy.deepcopy(net) if cfg.backward_flow else None
        groups = [{"params": net.parameters(), "weight_decay": cfg.weight_decay}]
        if inverse is not None:
            groups.append({"params": inverse.parameters(), "weight_decay": cfg.weight_decay})
        # foreach: one fused update for all layers (the per-tensor loop is a sizeable share of a
        # 512-point step on the CPU)
        optimizer = torch.optim.Adam(groups, lr=cfg.lr, foreach=True)
        grid = None
        dt_seconds = 0.0
        if cfg.loss == "dt":
            grid = DistanceGrid.build(tgt, voxel_size=cfg.voxel_size, cover=src, band=cfg.dt_band)
            dt_seconds = grid.build_seconds
        indices = None
        if grid is None and len(src) <= cfg.chunk_size and len(tgt) <= cfg.chunk_size:
            indices = (NearestIndex(src, cfg.backend), NearestIndex(tgt, cfg.backend))
        batch = cfg.batch_points if cfg.batch_points is not None and cfg.batch_points < len(src) else None
        batch_steps = min(cfg.batch_iterations, cfg.max_iterations - 1) if batch is not None else 0
        generator = torch.Generator().manual_seed(cfg.seed)
        averaged = [p.detach().clone() for p in net.parameters()] if batch_steps and cfg.batch_average > 0 else None
        stopper = EarlyStopping(cfg.patience, cfg.min_delta)
        best_loss, best_flow, best_iteration = math.inf, torch.zeros_like(src), 0
        bar, history, point_steps = None, [], 0
        forecast = StopForecast(cfg.patience, cfg.min_delta, cfg.max_iterations)
        if progress:
            from tqdm.auto import tqdm

            # no total (hence no ETA) until the early-stopping forecast has seen enough of the loss curve
            bar = tqdm(total=None, desc=f"nsfp ({cfg.loss})", leave=False)
        reverse = cfg.reverse_weight > 0 and grid is not None
        reverse_idx = None
        last_flow: torch.Tensor | None = None
        iteration = 0
        for iteration in range(1, cfg.max_iterations + 1):
            if cfg.lr_schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = _cosine_lr(cfg, iteration)
            optimizer.zero_grad(set_to_none=True)
            if averaged is not None and iteration == batch_steps + 1:
                with torch.no_grad():
                    for p, a in zip(net.parameters(), averaged):
                        p.copy_(a)
            if reverse and (iteration > batch_steps or reverse_idx is None or (iteration - 1) % cfg.reverse_refresh == 0):
                # nearest warped source point of every target point, refreshed every few mini-batch
                # steps and at every full-cloud step (from the previous step's flow)
                with torch.no_grad():
                    fresh = last_flow is None or iteration == batch_steps + 1
                    flow_now = net.flow_at(src, cfg.chunk_size) if fresh else last_flow
                    reverse_idx = knn(tgt, src + flow_now, 1, backend=cfg.backend).idx[:, 0]
            if iteration <= batch_steps:
                # a fresh random subset of the source: cheap steps that shape the field
                pick = torch.randperm(len(src), generator=generator)[:batch].to(src.device)
                points = src[pick]
                if reverse:
                    # the same number of target points, each pulling its nearest warped source point
                    pick_t = torch.randperm(len(tgt), generator=generator)[:batch].to(src.device)
                    pulled = src[reverse_idx[pick_t]]
                    points = torch.cat([points, pulled])
                f = net(points)
                term = _dt_terms(grid, points[:batch] + f[:batch], cfg.truncate, cfg.truncate_slope).mean()
                if reverse:
                    rev = _reverse_terms(pulled + f[batch:], tgt[pick_t], cfg.truncate, cfg.truncate_slope)
                    term = term + cfg.reverse_weight * rev.mean()
                term.backward()
                loss = term.item()
                point_steps += len(points)
                if not math.isfinite(loss):
                    break
            else:
                loss, flow = _loss_step(net, inverse, src, tgt, grid, cfg, reverse_idx if reverse else None, indices)
                history.append(loss)
                point_steps += len(src) * (2 if inverse is not None else 1)
                last_flow = flow
                if math.isfinite(loss) and loss < best_loss:
                    best_loss, best_flow, best_iteration = loss, flow, iteration
                if stopper.step(loss):
                    break
            optimizer.step()
            if averaged is not None and iteration <= batch_steps:
                with torch.no_grad():
                    torch._foreach_lerp_(averaged, list(net.parameters()), 1.0 - cfg.batch_average)
            if bar is not None:
                if iteration > batch_steps:
                    expected = forecast.update(iteration, loss)
                    if expected is not None and expected != bar.total:
                        bar.total = expected
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", stall=f"{stopper.bad_steps}/{cfg.patience}")
        if bar is not None:
            bar.close()
    return NSFPResult(best_flow, net, best_loss, best_iteration, iteration, timer.seconds, dt_seconds, history,
                      point_steps)


def nsfp_flow(source: Any, target: Any, *, preset: str = "nsfp", device: Any = "auto", progress: bool = False, **options: Any) -> SceneFlowOutput:
    """:func:`fit_nsfp` behind the common interface (``method="nsfp"`` / ``"nsfp-fast"``)."""
    cfg = make_config(preset, **options)
    result = fit_nsfp(source, target, cfg, device=device, progress=progress)
    return SceneFlowOutput(
        result.flow.cpu(),
        preset,
        time_s=result.time_s,
        iterations=result.iterations,
        loss=result.best_loss,
        extras={"best_iteration": result.best_iteration, "dt_build_s": result.dt_build_s, "config": dataclasses.asdict(cfg),
                "point_steps": result.point_steps,
                "network_parameters": sum(p.numel() for p in result.field.parameters()),
                **getattr(result, "extras", {})},
    )



_NSFP_OPTIONS = ("device", "progress", *(f.name for f in dataclasses.fields(NSFPConfig)))


@register_method("nsfp", "Neural Scene Flow Prior (per-pair MLP fit, truncated chamfer, cycle network)",
                 options=_NSFP_OPTIONS, card=NSFP_CARD)
def nsfp_method(source: Any, target: Any, **options: Any) -> SceneFlowOutput:
    """:func:`nsfp_flow` with the ``"nsfp"`` preset."""
    return nsfp_flow(source, target, preset="nsfp", **options)


@register_method("nsfp-fast", "scale-free fast scene flow: point-to-plane ICP start + small residual field on "
                 "KD-tree neighbours (Fast NSF's idea of a cheap per-pair loss)",
                 options=_NSFP_OPTIONS, card=NSFP_FAST_CARD)
def nsfp_fast_method(source: Any, target: Any, **options: Any) -> SceneFlowOutput:
    """:func:`nsfp_flow` with the ``"nsfp-fast"`` preset."""
    return nsfp_flow(source, target, preset="nsfp-fast", **options)


# ----------------------------------------------------------------------------------- accumulate
def accumulate(
    sequence: Sequence[Any],
    *,
    preset: str = "nsfp",
    device: Any = "auto",
    return_frames: bool = False,
    progress: bool = False,
    **options: Any,
) -> Any:
    """Merge a sequence of sweeps into the frame of the last one by chaining NSFP fields.

    For every consecutive pair ``(t, t+1)`` a field ``g_t`` is fitted; the points of sweep ``t``
    are then moved by ``x <- x + g_k(x)`` for ``k = t .. T-2`` (each field evaluated at the
    already-moved positions, which the continuous MLP allows).

    Args:
        sequence: ``T >= 2`` clouds (PointCloud, tensors or arrays ``[N_t, 3]``), in time order.
        preset, options: NSFP configuration as in :func:`make_config`.
        return_frames: also return ``int64 [sum N_t]`` source-sweep index of every merged point.

    Returns:
        The merged :class:`~pointclouds.cloud.PointCloud` (colours / intensity kept when every
        sweep has them), and the frame indices when ``return_frames``.
    """
    from pointclouds.cloud import PointCloud

    if isinstance(sequence, (str, bytes)) or len(sequence) < 2:
        raise InvalidArgumentError(f"sequence must hold at least 2 clouds, got {len(sequence) if not isinstance(sequence, (str, bytes)) else sequence!r}")
    cfg = make_config(preset, **options)
    dev = resolve_device(device)
    clouds = [as_points(c, f"sequence[{i}]", dev) for i, c in enumerate(sequence)]
    fields = []
    pairs = range(len(clouds) - 1)
    if progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc="accumulate", leave=False)
    for t in pairs:
        fields.append(fit_nsfp(clouds[t], clouds[t + 1], cfg, device=dev).field)
    moved = []
    for t, points in enumerate(clouds):
        x = points
        for field in fields[t:]:
            x = x + field.flow_at(x, cfg.chunk_size)
        moved.append(x.cpu().numpy())
    merged = np.concatenate(moved)
    attrs: dict[str, Any] = {}
    if all(isinstance(c, PointCloud) for c in sequence):
        for key in ("colors", "intensity"):
            values = [getattr(c, key) for c in sequence]
            if all(v is not None for v in values):
                attrs[key] = np.concatenate(values)
    cloud = PointCloud(merged, **attrs)
    if return_frames:
        frames = np.concatenate([np.full(len(c), t, dtype=np.int64) for t, c in enumerate(clouds)])
        return cloud, frames
    return cloud


__all__ = [
    "NSFPConfig",
    "PRESETS",
    "make_config",
    "FlowField",
    "build_field",
    "EarlyStopping",
    "StopForecast",
    "NearestIndex",
    "NSFPResult",
    "fit_nsfp",
    "nsfp_flow",
    "accumulate",
]
