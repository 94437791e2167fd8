"""SCOOP (Lang et al., CVPR 2023): self-supervised correspondence + test-time flow refinement.

Stage 1, a pure correspondence network. Each cloud is embedded by three SetConv layers
(3 -> 32 -> 64 -> 128 channels) on its k = 32 nearest-neighbour graph (self included, edge
feature ``p_j - p_i``); a layer concatenates the neighbour's feature with the edge feature and
applies three times [1x1 conv without bias, InstanceNorm (affine), LeakyReLU(0.1)], then takes the
maximum over the neighbours. With L2-normalised features, ``S = F_P F_Q^T`` (cosine similarity),
the kernel ``K = exp(-(1 - S) / eps) * [|p_i - q_j|^2 < 10^2]`` (``eps = exp(epsilon) + 0.03``,
learned) goes through ``nb_iter`` (1) unbalanced Sinkhorn iterations (``power = gamma / (gamma +
eps)``, uniform marginals) to a transport plan ``T``; each source point keeps its top-64 entries of
``T``, normalised to sum 1, and ``q_hat_i = sum_j w_ij q_j``, ``f0_i = q_hat_i - p_i``, confidence
``c_i = max(0, sum_j w_ij S_ij)``.

Stage 2, refinement at test time: a free offset ``delta [N, 3]`` (zeros) is optimised with Adam so
that ``p + f0 + delta`` fits the target (confidence-weighted squared chamfer, backward term
weighted) while staying smooth over the source kNN graph (mean L1 difference to the neighbours).
The settings of the released evaluation scripts are the presets of :data:`REFINE_PRESETS`; the
default (150 steps, lr 0.2, no backward term) is ``evaluate_scoop.py``'s own default.

Self-supervised training loss: ``chamfer(q_hat, Q)`` (forward term weighted by ``c`` when
``use_confidence``) ``+ w_conf (1 - mean c) + w_smooth L_smooth(f0)``.

The state-dict layout matches the released checkpoints (``feat_conv{1,2,3}.fc{1,2,3}.weight``,
``feat_conv{1,2,3}.bn{1,2,3}.{weight,bias}``, ``epsilon``, ``gamma``): :func:`load_scoop` reads the
authors' ``.tar`` files (``{"args", "model", "optimizer", "scheduler"}``) and our own checkpoints.
The dense ``N x M`` matrices of the reference code are computed in row chunks here.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from motion4d.atomic import atomic_path
from motion4d.checks import check_choice, check_file, check_float, check_int
from motion4d.device import resolve_device
from motion4d.errors import CheckpointError, ShapeError
from pointclouds.neighbors import chamfer_distance, knn

from .cards import SCOOP_CARD
from .common import SceneFlowOutput, Timer, check_pair, split_options
from .registry import register_method

CHECKPOINT_FORMAT = "motion4d.scoop"
CHECKPOINT_VERSION = 1
SUPPORT_RADIUS = 10.0
ROWS_PER_CHUNK = 2048
SPACINGS_PER_UNIT = 4.0
PACKAGED_WEIGHTS = {"synthetic": "weights/scoop_synthetic.pt"}
"""Checkpoints inside the package (``weights=NAME``); see :func:`packaged_weights`."""


class Graph(NamedTuple):
    """Directed kNN graph of a batch of clouds.

    Attributes:
        idx: ``int64 [B, N, k]`` neighbour indices (the point itself first).
        edges: ``float32 [B, N, k, 3]`` edge features ``p_j - p_i``.
    """

    idx: torch.Tensor
    edges: torch.Tensor


def build_graph(points: torch.Tensor, k: int) -> Graph:
    """kNN graph of ``points [B, N, 3]`` with ``min(k, N)`` neighbours (KD-tree on the CPU)."""
    k = min(k, points.shape[1])
    with torch.no_grad():
        idx = knn(points, points, k).idx
    neighbours = _gather(points, idx)
    return Graph(idx, neighbours - points.unsqueeze(2))


def _gather(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``values [B, M, C]``, ``idx [B, N, k]`` -> ``[B, N, k, C]``."""
    B, N, k = idx.shape
    C = values.shape[-1]
    flat = idx.reshape(B, N * k, 1).expand(B, N * k, C)
    return torch.gather(values, 1, flat).reshape(B, N, k, C)


class SetConv(nn.Module):
    """PointNet++-like graph convolution: ``[B, N, C_in] -> [B, N, C_out]``."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels_in + 3, channels_out, 1, bias=False)
        self.bn1 = nn.InstanceNorm2d(channels_out, affine=True)
        self.fc2 = nn.Conv2d(channels_out, channels_out, 1, bias=False)
        self.bn2 = nn.InstanceNorm2d(channels_out, affine=True)
        self.fc3 = nn.Conv2d(channels_out, channels_out, 1, bias=False)
        self.bn3 = nn.InstanceNorm2d(channels_out, affine=True)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, features: torch.Tensor, graph: Graph) -> torch.Tensor:
        x = torch.cat([_gather(features, graph.idx), graph.edges], dim=-1)  # [B, N, k, C + 3]
        x = x.permute(0, 3, 1, 2)  # [B, C + 3, N, k]; InstanceNorm statistics span all N * k edges
        for conv, norm in ((self.fc1, self.bn1), (self.fc2, self.bn2), (self.fc3, self.bn3)):
            x = self.act(norm(conv(x)))
        return x.max(dim=3).values.transpose(1, 2)  # [B, N, C_out]


class SCOOPOutput(NamedTuple):
    """Network output for a batch: ``flow [B, N, 3]``, ``confidence [B, N]``, ``recon [B, N, 3]``."""

    flow: torch.Tensor
    confidence: torch.Tensor
    recon: torch.Tensor
    graph: Graph


class SCOOP(nn.Module):
    """SCOOP's correspondence network.

    Args:
        nb_iter: unrolled Sinkhorn iterations (released models: 1).
        nb_neigh_cross_recon: candidates kept per source point (64); 0 uses the full row of T.
        k: graph neighbours (32).
        linear_corr_conf: map the confidence as ``(c + 1) / 2`` instead of ``max(c, 0)``.
        rows_per_chunk: source rows of the ``N x M`` matrices computed at a time.
        normalize: work in scene-normalised coordinates (not in the released models): both clouds
            are centred on the source's centroid and divided by :data:`SPACINGS_PER_UNIT` times the
            source's median point spacing, so that one network serves a 5 m room and a 100 m street
            (and SCOOP's 10-unit support radius spans 40 point spacings); flows come back in metres.
    """

    def __init__(
        self,
        nb_iter: int = 1,
        nb_neigh_cross_recon: int = 64,
        k: int = 32,
        linear_corr_conf: bool = False,
        rows_per_chunk: int = ROWS_PER_CHUNK,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.normalize = bool(normalize)
        self.nb_iter = check_int(nb_iter, "nb_iter", 0)
        self.nb_neigh_cross_recon = check_int(nb_neigh_cross_recon, "nb_neigh_cross_recon", 0)
        self.k = check_int(k, "k", 1)
        self.linear_corr_conf = bool(linear_corr_conf)
        self.rows_per_chunk = check_int(rows_per_chunk, "rows_per_chunk", 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.epsilon = nn.Parameter(torch.zeros(1))
        self.feat_conv1 = SetConv(3, 32)
        self.feat_conv2 = SetConv(32, 64)
        self.feat_conv3 = SetConv(64, 128)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (stored in our checkpoints)."""
        return {
            "nb_iter": self.nb_iter,
            "nb_neigh_cross_recon": self.nb_neigh_cross_recon,
            "k": self.k,
            "linear_corr_conf": self.linear_corr_conf,
            "normalize": self.normalize,
        }

    @torch.no_grad()
    def frame(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Centre ``[B, 1, 3]`` and unit ``[B, 1, 1]`` (metres) of the normalised coordinates of
        ``source [B, N, 3]`` (zeros and ones when ``normalize`` is off)."""
        B = source.shape[0]
        if not self.normalize:
            return source.new_zeros(B, 1, 3), source.new_ones(B, 1, 1)
        centre = source.mean(1, keepdim=True)
        k = min(2, source.shape[1])
        spacing = knn(source, source, k).sqdist[..., k - 1].clamp_min(0).sqrt().median(1).values
        unit = (SPACINGS_PER_UNIT * spacing).clamp_min(1e-6)
        return centre, unit.view(B, 1, 1)

    def features(self, points: torch.Tensor) -> tuple[torch.Tensor, Graph]:
        """``points [B, N, 3]`` -> features ``[B, N, 128]`` and the graph they were computed on."""
        graph = build_graph(points, self.k)
        x = self.feat_conv1(points, graph)
        x = self.feat_conv2(x, graph)
        return self.feat_conv3(x, graph), graph

    def _kernel(self, fs: torch.Tensor, ft: torch.Tensor, ps: torch.Tensor, pt: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of ``K`` and ``S`` (``[B, r, M]``) for source rows ``fs [B, r, C]``, ``ps [B, r, 3]``."""
        similarity = fs @ ft.transpose(1, 2)
        d2 = torch.cdist(ps, pt, compute_mode="donot_use_mm_for_euclid_dist").square()
        support = (d2 < SUPPORT_RADIUS**2).to(similarity.dtype)
        return torch.exp(-(1.0 - similarity) / eps) * support, similarity

    def correspond(self, source: torch.Tensor, target: torch.Tensor, fs: torch.Tensor, ft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft correspondences: ``recon [B, N, 3]`` and ``confidence [B, N]``."""
        B, N, _ = source.shape
        M = target.shape[1]
        fs = fs / torch.sqrt(fs.square().sum(-1, keepdim=True) + 1e-8)
        ft = ft / torch.sqrt(ft.square().sum(-1, keepdim=True) + 1e-8)
        eps = torch.exp(self.epsilon) + 0.03
        power = torch.exp(self.gamma) / (torch.exp(self.gamma) + eps)
        rows = [slice(s, min(N, s + self.rows_per_chunk)) for s in range(0, N, self.rows_per_chunk)]
        kernel = lambda r: self._kernel(fs[:, r], ft, source[:, r], target, eps)  # noqa: E731
        a = source.new_full((B, N, 1), 1.0 / N)
        b = source.new_ones((B, M, 1))
        for _ in range(self.nb_iter):
            kta = sum(kernel(r)[0].transpose(1, 2) @ a[:, r] for r in rows)  # [B, M, 1]
            b = torch.pow((1.0 / M) / (kta + 1e-8), power)
            a = torch.cat([torch.pow((1.0 / N) / (kernel(r)[0] @ b + 1e-8), power) for r in rows], dim=1)
        recon, confidence = [], []
        for r in rows:
            K, S = kernel(r)
            T = K if self.nb_iter == 0 else a[:, r] * K * b.transpose(1, 2)
            if self.nb_neigh_cross_recon > 0:
                top = min(self.nb_neigh_cross_recon, M)
                weight, idx = T.topk(top, dim=-1)  # [B, r, top]
                weight = weight / (weight.sum(-1, keepdim=True) + 1e-8)
                recon.append((weight.unsqueeze(-1) * _gather(target, idx)).sum(2))
                sim = torch.gather(S, 2, idx)
                conf = (sim * weight).sum(-1)
                confidence.append((conf + 1.0) / 2.0 if self.linear_corr_conf else conf.clamp_min(0.0))
            else:
                recon.append((T @ target) / (T.sum(-1, keepdim=True) + 1e-8))
                confidence.append(torch.ones_like(T[..., 0]))
        return torch.cat(recon, 1), torch.cat(confidence, 1)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> SCOOPOutput:
        """``source [B, N, 3]``, ``target [B, M, 3]`` -> :class:`SCOOPOutput`."""
        if source.dim() != 3 or target.dim() != 3 or source.shape[-1] != 3 or target.shape[-1] != 3:
            raise ShapeError(f"source and target must be [B, N, 3] and [B, M, 3], got {list(source.shape)} and {list(target.shape)}")
        centre, unit = self.frame(source)
        src, tgt = (source - centre) / unit, (target - centre) / unit
        fs, graph = self.features(src)
        ft, _ = self.features(tgt)
        recon, confidence = self.correspond(src, tgt, fs, ft)
        recon = recon * unit + centre
        return SCOOPOutput(recon - source, confidence, recon, graph)


# ------------------------------------------------------------------------------------- losses
def smoothness_loss(flow: torch.Tensor, graph_idx: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Mean over points and their neighbours (self excluded) of ``|f_i - f_j|_1``.

    Args:
        flow: ``[B, N, 3]``.
        graph_idx: ``[B, N, k0]`` neighbour indices with the point itself first.
        k: use the first ``k`` neighbours after the point itself (default: all).
    """
    idx = graph_idx[..., 1:] if k is None else graph_idx[..., 1 : k + 1]
    if idx.shape[-1] == 0:
        return flow.new_zeros(())
    return (flow.unsqueeze(2) - _gather(flow, idx)).abs().sum(-1).mean()


@dataclass
class LossConfig:
    """Weights of SCOOP's self-supervised training loss (defaults: ``train_on_ft3d_o``)."""

    use_confidence: bool = True
    confidence_weight: float = 0.1
    backward_weight: float = 0.0
    smooth_weight: float = 10.0
    smooth_k: int = 32


def training_loss(out: SCOOPOutput, target: torch.Tensor, cfg: LossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """SCOOP's loss for a batch; returns the scalar and its named parts."""
    weights = out.confidence if cfg.use_confidence else None
    chamfer = chamfer_distance(out.recon, target, a_weights=weights, backward_weight=cfg.backward_weight).loss
    total = chamfer
    parts = {"chamfer": chamfer.item()}
    if cfg.use_confidence:
        conf_term = 1.0 - out.confidence.mean()
        total = total + cfg.confidence_weight * conf_term
        parts["confidence"] = conf_term.item()
    if cfg.smooth_weight > 0:
        smooth = smoothness_loss(out.flow, out.graph.idx, cfg.smooth_k)
        total = total + cfg.smooth_weight * smooth
        parts["smooth"] = smooth.item()
    parts["total"] = total.item()
    return total, parts


# --------------------------------------------------------------------------------- refinement
@dataclass(frozen=True)
class RefineConfig:
    """Test-time refinement (defaults: the released ``evaluate_scoop.py`` defaults, preset ``"default"``).

    Attributes:
        steps: Adam steps on the offsets (0 returns the network's flow).
        lr: Adam learning rate.
        target_weight: weight of the chamfer term.
        backward_weight: weight of its target -> warped-source direction (0 for clouds sampled
            independently with partial overlap, as FlowNet3D's KITTI_o / FT3D_o; 1 for the
            HPLFlowNet data, whose target is a one-to-one image of the source).
        smooth_weight: weight of the smoothness term.
        smooth_k: neighbours used by the smoothness term, taken from a 32-neighbour graph that
            includes the point itself (so at most 31 are used, as in the released refiner).
        use_confidence: weight the forward chamfer term by the network's confidence.
    """

    steps: int = 150
    lr: float = 0.2
    target_weight: float = 1.0
    backward_weight: float = 0.0
    smooth_weight: float = 1.0
    smooth_k: int = 32
    use_confidence: bool = True

    def validate(self) -> "RefineConfig":
        check_int(self.steps, "steps", 0)
        check_float(self.lr, "lr")
        for name in ("target_weight", "backward_weight", "smooth_weight"):
            check_float(getattr(self, name), name, strict=False)
        check_int(self.smooth_k, "smooth_k", 1)
        return self


#: The released evaluation settings (``scripts/evaluate_*.sh``; ``default`` is the argparse default of
#: ``evaluate_scoop.py``, which the ``*_all_points`` scripts use).
REFINE_PRESETS: dict[str, RefineConfig] = {
    "default": RefineConfig(),
    "kitti_o": RefineConfig(steps=1000, lr=0.05, backward_weight=0.0),
    "kitti_t": RefineConfig(steps=1000, lr=0.05, backward_weight=0.0),
    "kitti_s": RefineConfig(steps=1000, lr=0.05, backward_weight=1.0),
    "ft3d_s": RefineConfig(steps=1000, lr=0.1, backward_weight=1.0, smooth_k=16),
}

#: Neighbours of the source graph built by the released refiner (the point itself included).
REFINE_GRAPH_K = 32


def refine_config(preset: str = "default", **options: Any) -> RefineConfig:
    """A validated :class:`RefineConfig`: a :data:`REFINE_PRESETS` entry with ``options`` replacing fields."""
    check_choice(preset, "preset", tuple(REFINE_PRESETS))
    names = {f.name for f in dataclasses.fields(RefineConfig)}
    split_options(options, names, "scoop")
    return dataclasses.replace(REFINE_PRESETS[preset], **options).validate()


def refine_flow(
    source: torch.Tensor,
    target: torch.Tensor,
    flow0: torch.Tensor,
    confidence: torch.Tensor,
    cfg: RefineConfig,
    progress: bool = False,
) -> tuple[torch.Tensor, float]:
    """Optimise per-point offsets on top of ``flow0``; all inputs unbatched (``[N, 3]``, ``[N]``).

    Returns the refined flow ``[N, 3]`` (after the last step) and the last loss.
    """
    cfg.validate()
    if cfg.steps == 0:
        return flow0.detach(), float("nan")
    with torch.no_grad():
        graph_idx = knn(source, source, min(REFINE_GRAPH_K, len(source))).idx[None]
    delta = torch.zeros_like(flow0, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=cfg.lr)
    weights = confidence.detach() if cfg.use_confidence else None
    f0 = flow0.detach()
    steps = range(cfg.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="scoop refine", leave=False)
    loss_value = float("nan")
    for _ in steps:
        optimizer.zero_grad(set_to_none=True)
        flow = f0 + delta
        loss = cfg.target_weight * chamfer_distance(
            source + flow, target, a_weights=weights, backward_weight=cfg.backward_weight
        ).loss
        if cfg.smooth_weight > 0:
            loss = loss + cfg.smooth_weight * smoothness_loss(flow[None], graph_idx, cfg.smooth_k)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
    return (f0 + delta).detach(), loss_value


# -------------------------------------------------------------------------------- checkpoints
def save_scoop(path: str | os.PathLike, model: SCOOP, **extra: Any) -> Path:
    """Write our checkpoint format atomically: ``{"format", "version", "config", "model", **extra}``."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": model.config(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt or foreign files
        raise CheckpointError(f"{path} is not a readable SCOOP checkpoint: {exc}") from exc


def load_scoop(checkpoint: str | os.PathLike | dict, device: Any = "cpu", **overrides: Any) -> SCOOP:
    """Build a :class:`SCOOP` from a released ``.tar`` checkpoint, our format or a bare state dict.

    The authors' files hold ``{"args": Namespace, "model": state_dict, ...}``; ``nb_iter``,
    ``nb_neigh_cross_recon`` and ``linear_corr_conf`` are read from ``args`` when present.
    ``overrides`` replace constructor arguments (e.g. ``rows_per_chunk``).

    Raises:
        MissingFileError, CheckpointError (unreadable file, missing / unexpected / mis-shaped keys).
    """
    if isinstance(checkpoint, dict):
        data, where = checkpoint, "checkpoint"
    else:
        path = check_file(checkpoint, "checkpoint")
        data, where = _torch_load(path), str(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: expected a dict, got {type(data).__name__}")
    config: dict[str, Any] = {}
    if data.get("format") == CHECKPOINT_FORMAT:
        state, config = data["model"], dict(data.get("config", {}))
    elif "model" in data and isinstance(data["model"], dict):
        state = data["model"]
        args = data.get("args")
        args = vars(args) if isinstance(args, argparse.Namespace) else (args or {})
        for key in ("nb_iter", "nb_neigh_cross_recon", "linear_corr_conf"):
            if key in args:
                config[key] = args[key]
    else:
        state = data
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    config.update(overrides)
    model = SCOOP(**config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    )
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{where} does not match SCOOP: missing keys {missing[:8]}, unexpected keys {unexpected[:8]}, "
            f"shape mismatches {shapes[:8]}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(resolve_device(device)).eval()


def packaged_weights(name: str = "synthetic") -> Path:
    """Path of a checkpoint shipped inside the package (:data:`PACKAGED_WEIGHTS`).

    ``"synthetic"``: trained by ``motion4d train-scoop`` on synthetic street scenes (randomly
    rotated, scene-normalised); *not* the paper's weights (the authors' FT3D / KITTI checkpoints
    load with ``weights=PATH``). The exact command, data seed and training time are in
    ``pointclouds/methods/weights/README.md``.
    """
    check_choice(name, "weights", tuple(PACKAGED_WEIGHTS))
    path = Path(__file__).with_name(PACKAGED_WEIGHTS[name].split("/")[0]) / PACKAGED_WEIGHTS[name].split("/", 1)[1]
    return check_file(path, f"packaged SCOOP weights {name!r}")


def untrained_scoop(seed: int = 0, **options: Any) -> SCOOP:
    """A randomly initialised SCOOP (seeded), e.g. as the starting point of training."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SCOOP(**options)


# ------------------------------------------------------------------------------ the interface
@register_method(
    "scoop",
    "SCOOP correspondence network + test-time refinement (packaged synthetic weights, or the authors' files)",
    options=("weights", "preset", "device", "progress", "rows_per_chunk", *(f.name for f in dataclasses.fields(RefineConfig))),
    card=SCOOP_CARD,
)
def scoop_flow(
    source: Any,
    target: Any,
    *,
    weights: Any = None,
    preset: str = "default",
    device: Any = "auto",
    progress: bool = False,
    rows_per_chunk: int = ROWS_PER_CHUNK,
    **refine_options: Any,
) -> SceneFlowOutput:
    """SCOOP behind the common interface.

    Args:
        weights: checkpoint path (released ``.tar`` or ours), a :class:`SCOOP` module,
            ``"synthetic"`` (the packaged checkpoint of :func:`packaged_weights`, used with a one-line
            notice when ``weights`` is omitted) or ``"untrained"`` for a seeded random network (then
            the result is mostly the refinement's work; useful only as an ablation).
        preset: refinement settings of one released evaluation script (:data:`REFINE_PRESETS`:
            ``default`` = 150 Adam steps at lr 0.2 without the backward chamfer term, ``kitti_o`` /
            ``kitti_t`` = 1000 steps at 0.05 for 2,048-point clouds, ``kitti_s`` / ``ft3d_s`` for
            the one-to-one HPLFlowNet data at 8,192 points).
        refine_options: :class:`RefineConfig` fields replacing the preset's (``steps=0`` skips
            refinement).

    ``extras``: ``flow_network`` (the unrefined flow ``[N, 3]``), ``network_s``, ``refine_s``.
    """
    refine_cfg = refine_config(preset, **refine_options)
    dev = resolve_device(device)
    src, tgt = check_pair(source, target, dev)
    if weights is None:
        warnings.warn("method='scoop' without weights=: using the packaged checkpoint trained on synthetic "
                      "scenes by motion4d train-scoop (weights='synthetic'; not the paper's weights)",
                      UserWarning, stacklevel=3)
        weights = "synthetic"
    if isinstance(weights, SCOOP):
        model = weights.to(dev).eval()
    elif isinstance(weights, str) and weights == "untrained":
        model = untrained_scoop(rows_per_chunk=rows_per_chunk).to(dev).eval()
    elif isinstance(weights, str) and weights in PACKAGED_WEIGHTS:
        model = load_scoop(packaged_weights(weights), device=dev, rows_per_chunk=rows_per_chunk)
    else:
        model = load_scoop(weights, device=dev, rows_per_chunk=rows_per_chunk)
    with Timer(dev) as total:
        with Timer(dev) as net_timer, torch.no_grad():
            out = model(src[None], tgt[None])
        flow0, confidence = out.flow[0], out.confidence[0]
        with Timer(dev) as refine_timer:
            # the refinement's step size and support are in the network's units (metres unless normalised)
            centre, unit = (v[0] for v in model.frame(src[None]))
            flow, loss = refine_flow((src - centre) / unit, (tgt - centre) / unit, flow0 / unit, confidence,
                                     refine_cfg, progress=progress)
            flow = flow * unit
    return SceneFlowOutput(
        flow.cpu(),
        "scoop",
        time_s=total.seconds,
        iterations=refine_cfg.steps,
        loss=loss,
        confidence=confidence.cpu(),
        extras={"flow_network": flow0.cpu(), "network_s": net_timer.seconds, "refine_s": refine_timer.seconds},
    )


__all__ = [
    "SCOOP",
    "SCOOPOutput",
    "SetConv",
    "Graph",
    "build_graph",
    "smoothness_loss",
    "LossConfig",
    "training_loss",
    "RefineConfig",
    "REFINE_PRESETS",
    "refine_config",
    "refine_flow",
    "save_scoop",
    "load_scoop",
    "untrained_scoop",
    "packaged_weights",
    "scoop_flow",
    "PACKAGED_WEIGHTS",
]
