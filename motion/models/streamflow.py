"""StreamFlow (Sun et al., NeurIPS 2024): all T-1 flows of a group of T frames in one pass.

* **SIM pipeline**: a group of T frames gives its T-1 consecutive forward flows in one forward
  pass; groups share their boundary frame (stride T-1) and the last group is aligned to the end of
  the video, so every flow is computed exactly once.
* **ISC** encoder: the Twins-SVT stages embed every frame with the same patch convolution and then
  process the T token grids stacked along the height axis as one tall image, so windowed attention,
  sub-sampled global attention and the position conv see several frames (no extra parameters).
* **GTR** decoder: the SKFlow motion encoder, GMA spatial aggregation, a zero-initialised temporal
  transformer across the T-1 motion features of every pixel, and a flow head that regresses all
  T-1 flow updates jointly from the concatenated hidden states. The head's width fixes T: the
  released weights need T = 4.

Module and parameter names follow the official code (``SKFlow_MF8`` + ``Twins_CSC`` +
``SKUpdateBlock_TAM_v3``): ``model.state_dict()`` equals the released checkpoints' ``['model']``
without the ``module.`` prefix.

``model(frames [B, N, 3, H, W] in [0, 1]) -> FlowOutput(forward [B, N-1, 2, H, W])`` for any N >= 2:
N = T is one group; longer clips are split into the groups above; shorter clips are completed with
copies of the first frame placed before it (the real pairs then take the last positions, as in
the official KITTI protocol, whose evaluated flow is the last of its group). ``model(clip)`` runs all
groups of a clip in one batch; :meth:`StreamFlow.stream` runs them one at a time (bounded memory,
used by :func:`motion.estimate_flow`).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from motion4d.checks import check_choice, check_finite, check_int
from motion4d.errors import CheckpointError, InvalidArgumentError, ShapeError

from ..padding import PAD_MODES, InputPadder
from ..protocols import ClipProtocol, SequenceProtocol
from ..registry import TrainingRecipe, register
from .base import FlowModel, FlowOutput
from .blocks import (
    MAX_FLOW,
    MOTION_KERNELS,
    UPDATER_KERNELS,
    GMAAggregate,
    GMAAttention,
    SKBlock,
    SKMotionEncoder,
    TwinsEncoder,
    convex_upsample,
    coords_grid,
    mask_head,
    normalize_images,
    sequence_loss,
)
from .cards import STREAMFLOW_CARD
from .checkpoint_settings import HyperParameter, iterations_parameter
from .multiframe import (
    ATTENTION_MODES,
    CORR_MODES,
    as_batch_frame,
    correlation,
    fused_attention,
)
from .twins import Mlp

HIDDEN = 128
CONTEXT = 128
MOTION = 128
MASK_SCALE = 0.25
RELEASED_GROUP_SIZE = 4
MIN_PADDED_SIZE = 64  # 4 correlation levels at 1/8 resolution, and Twins' 8x8 global summaries
SUPERVISION = ("all", "last")
_HEAD_OUT = "update_block.flow_head.ffn2.2.bias"  # [2 (T-1)]: fixes the group size


def _group_size(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ValueError(value)
    return value


#: ptlflow's StreamFlow arguments (``ptlflow/models/streamflow/streamflow.py``) and what motion4d builds.
HYPER_PARAMETERS = (
    HyperParameter("decoder_dim", built=HIDDEN + CONTEXT),
    HyperParameter("corr_levels", built=4),
    HyperParameter("corr_radius", built=4),
    HyperParameter("num_heads", built=1),
    HyperParameter("pcupdater_conv", built=list(UPDATER_KERNELS)),
    HyperParameter("k_conv", built=list(MOTION_KERNELS)),
    HyperParameter("use_gma", built=True),
    HyperParameter("T", option="group_size", to_option=_group_size),
    iterations_parameter("iters"),
)



@dataclass
class StreamFlowConfig:
    """Options of a StreamFlow model (the builder's keyword arguments).

    Attributes:
        group_size: frames per group T (the paper's T; released weights: 4). Fixed by the weights.
        iters: refinement iterations at test time (official: 15 for validation, 20 for submissions).
        train_iters: iterations in training mode (official: 12).
        pad_mode: replicate padding to a multiple of 8, ``"sintel"`` (both sides) or ``"kitti"``.
        corr_mode: ``"all_pairs"`` (official) or ``"on_the_fly"`` (memory O(hw)).
        corr_backend: backend of :class:`motion.ops.CorrelationVolume`.
        attention: GMA evaluation, ``"dense"``, ``"fused"`` or ``"auto"``.
        supervise: training loss on ``"all"`` T-1 flows (official) or only the ``"last"`` one (the
            official KITTI stage, where only the last flow of a group has ground truth).
    """

    group_size: int = RELEASED_GROUP_SIZE
    iters: int = 15
    train_iters: int = 12
    pad_mode: str = "sintel"
    corr_mode: str = "all_pairs"
    corr_backend: str = "auto"
    attention: str = "auto"
    supervise: str = "all"

    def validate(self) -> None:
        check_int(self.group_size, "group_size", minimum=2)
        check_int(self.iters, "iters", minimum=1)
        check_int(self.train_iters, "train_iters", minimum=1)
        check_choice(self.pad_mode, "pad_mode", PAD_MODES)
        check_choice(self.corr_mode, "corr_mode", CORR_MODES)
        check_choice(self.attention, "attention", ATTENTION_MODES)
        check_choice(self.supervise, "supervise", SUPERVISION)


def encode_stacked(encoder: TwinsEncoder, frames: torch.Tensor) -> torch.Tensor:
    """ISC encoding: ``frames [B, T, 3, H, W] -> [B, T, 256, H/8, W/8]``.

    Each stage embeds the frames separately, then runs its transformer blocks on the T token grids
    stacked along the height axis (one ``(T*h) x w`` grid), and splits them again.
    """
    svt = encoder.svt
    b, t = frames.shape[:2]
    x = frames.reshape(b * t, *frames.shape[2:])
    for stage, embed in enumerate(svt.patch_embeds):
        tokens, (h, w) = embed(x)  # [B*T, h*w, C]
        c = tokens.shape[-1]
        tokens = svt.run_blocks(stage, tokens.reshape(b, t * h * w, c), (t * h, w))
        x = tokens.reshape(b * t, h, w, c).permute(0, 3, 1, 2).contiguous()
    return x.reshape(b, t, *x.shape[1:])


class TemporalAttention(nn.Module):
    """Single-head self-attention over a short sequence (timm ``Attention``: ``qkv`` without bias)."""

    def __init__(self, dim: int, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, c = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, c))


class TemporalTransformer(nn.Module):
    """Pre-norm transformer block (attention + MLP with ratio 2) across the T-1 flows of a pixel."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = TemporalAttention(dim)
        self.mlp = Mlp(dim, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TemporalBlock(nn.Module):
    """``motion [(B P), C, h, w] -> [(B P), C, h, w]``: the P = T-1 features of each pixel attend to each
    other. Every parameter starts at zero, so the block starts as the identity (paper, Table 9)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.transformer_block = TemporalTransformer(dim)
        for parameter in self.parameters():
            nn.init.zeros_(parameter)

    def forward(self, motion: torch.Tensor, pairs: int) -> torch.Tensor:
        bp, c, h, w = motion.shape
        b = bp // pairs
        seq = motion.reshape(b, pairs, c, h, w).permute(0, 3, 4, 1, 2).reshape(b * h * w, pairs, c)
        seq = self.transformer_block(seq)
        return seq.reshape(b, h, w, pairs, c).permute(0, 3, 4, 1, 2).reshape(bp, c, h, w)


class StreamFlowUpdateBlock(nn.Module):
    """GTR decoder step for the P = T-1 pairs of a group (``SKUpdateBlock_TAM_v3``).

    ``forward(net, inp, corr, flow, attention, pairs)`` with per-pair tensors ``[(B P), ., h, w]``
    (pairs innermost) returns ``(net, mask logits [(B P), 576, h, w], Δflow [(B P), 2, h, w])``.
    """

    def __init__(self, group_size: int) -> None:
        super().__init__()
        pairs = group_size - 1
        self.encoder = SKMotionEncoder()
        self.aggregator = GMAAggregate(MOTION, heads=1, dim_head=MOTION)
        self.gru = SKBlock(HIDDEN + CONTEXT + 3 * MOTION, HIDDEN, UPDATER_KERNELS)
        self.mask = mask_head(HIDDEN)
        self.transformer_block = TemporalBlock(MOTION)
        self.flow_head = SKBlock(HIDDEN * pairs, 2 * pairs, MOTION_KERNELS)

    def forward(self, net, inp, corr, flow, attention, pairs: int):
        motion = self.encoder(flow, corr)
        motion_global = self.aggregator(attention, motion)
        motion_temporal = self.transformer_block(motion, pairs)
        net = self.gru(torch.cat([net, inp, motion, motion_global, motion_temporal], dim=1))
        bp, c, h, w = net.shape
        delta = self.flow_head(net.reshape(bp // pairs, pairs * c, h, w)).reshape(bp, 2, h, w)
        return net, MASK_SCALE * self.mask(net), delta


@dataclass
class GroupFlows:
    """Flows of one group at the padded resolution: ``flows [B, T-1, 2, H, W]``, ``low [B, T-1, 2, h, w]``,
    and the per-iteration ``iterations`` (when requested)."""

    flows: torch.Tensor
    low: torch.Tensor
    iterations: list[torch.Tensor]


class StreamFlow(FlowModel):
    """StreamFlow behind the :class:`FlowModel` interface (see the module docstring).

    In training mode (``N == group_size``) ``forward_iterations`` holds the per-iteration
    predictions ``[B, T-1, 2, H, W]`` for :meth:`loss`.
    """

    min_frames: ClassVar[int] = 2
    trainable: ClassVar[bool] = True
    checkpoint_hyper_parameters: ClassVar[tuple[HyperParameter, ...]] = HYPER_PARAMETERS

    def __init__(self, config: StreamFlowConfig | None = None, **options: Any) -> None:
        super().__init__()
        config = config or StreamFlowConfig(**options)
        config.validate()
        self.config = config
        self.frames_per_window = config.group_size
        self.fnet = TwinsEncoder()
        self.cnet = TwinsEncoder()
        self.update_block = StreamFlowUpdateBlock(config.group_size)
        self.att = GMAAttention(CONTEXT, heads=1, dim_head=CONTEXT)

    @property
    def group_size(self) -> int:
        return self.config.group_size

    # ------------------------------------------------------------------ training

    def loss(
        self, predictions: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor], gamma: float = 0.8,
        max_flow: float = MAX_FLOW,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """StreamFlow's loss (see :func:`streamflow_loss`), honouring ``config.supervise``:
        ``predictions`` ``[B, T-1, 2, H, W]`` from :meth:`training_predictions`, ``batch`` as
        :meth:`FlowModel.loss <motion.models.base.FlowModel.loss>` takes it."""
        return streamflow_loss(list(predictions), batch["flow_forward"], batch.get("valid_forward"), gamma, max_flow,
                               last_only=self.config.supervise == "last")

    # ------------------------------------------------------------------ public API

    def forward(self, frames: torch.Tensor) -> FlowOutput:
        b, n, h, w = self.validate_frames(frames)
        check_finite(frames, "frames")
        t = self.group_size
        if self.training and n != t:
            raise ShapeError(f"training needs clips of exactly group_size={t} frames, got {n}")
        padder = self._padder(frames.shape)
        images = normalize_images(padder.pad(frames.to(self._device())))
        plan = group_plan(n, t)
        clips = torch.cat([_clip(images, start, t) for start, _ in plan], dim=0)  # groups stacked on the batch axis
        result = self.estimate_group(clips, all_iterations=self.training)

        def assemble(x: torch.Tensor) -> torch.Tensor:
            parts = [x[g * b:(g + 1) * b, t - 1 - keep:] for g, (_, keep) in enumerate(plan)]
            return torch.cat(parts, dim=1)

        return FlowOutput(
            padder.unpad(assemble(result.flows)),
            forward_low=assemble(result.low),
            forward_iterations=[padder.unpad(assemble(f)) for f in result.iterations] if self.training else None,
        )

    @torch.no_grad()
    def stream(
        self,
        frames: Iterable[torch.Tensor],
        backward: bool = False,
        *,
        batch: int = 8,
        skip: Callable[[int], bool] | None = None,
    ) -> Iterator[FlowOutput]:
        """Flows over a frame sequence, one group of ``group_size`` frames at a time.

        Groups start every T-1 frames; the last group is aligned to the end and gives only its new
        pairs, so each flow is computed once and the result equals ``model(all frames)``.

        Args:
            frames: iterable of ``[3, H, W]`` or ``[B, 3, H, W]`` float frames in [0, 1].
            backward: must be False: StreamFlow gives forward flow only (InvalidArgumentError otherwise).
            batch, skip: accepted for :meth:`FlowModel.stream`'s interface and not used: every group is run.

        Yields:
            ``FlowOutput(forward [B, k, 2, H, W])`` for pairs ``first_pair .. first_pair + k - 1``
            (``first_pair``), in order.
        """
        if backward:
            raise InvalidArgumentError(f"{type(self).__name__} gives forward flow only; use backward=False")
        t = self.group_size
        device = self._device()
        recent: deque[torch.Tensor] = deque(maxlen=t)
        padder: InputPadder | None = None
        first_shape = None
        count = emitted = 0
        for index, frame in enumerate(frames):
            frame = as_batch_frame(frame, f"frames[{index}]")
            if padder is None:
                first_shape = tuple(frame.shape)
                padder = self._padder(frame.shape)
            elif tuple(frame.shape) != first_shape:
                raise ShapeError(f"frames[{index}] has shape {list(frame.shape)}, the first frame {list(first_shape)}")
            check_finite(frame, f"frames[{index}]")
            recent.append(normalize_images(padder.pad(frame.to(device))))
            count += 1
            if count - 1 - emitted == t - 1:
                yield self._emit(torch.stack(list(recent), dim=1), t - 1, emitted, padder)
                emitted += t - 1
        pending = count - 1 - emitted
        if pending > 0 and padder is not None:
            clip = torch.stack([recent[0]] * (t - len(recent)) + list(recent), dim=1)
            yield self._emit(clip, pending, emitted, padder)

    def _emit(self, clip: torch.Tensor, keep: int, first_pair: int, padder: InputPadder) -> FlowOutput:
        result = self.estimate_group(clip)
        return FlowOutput(padder.unpad(result.flows[:, -keep:]), first_pair=first_pair,
                          forward_low=result.low[:, -keep:])

    # ------------------------------------------------------------------ network

    def estimate_group(self, images: torch.Tensor, iters: int | None = None, all_iterations: bool = False) -> GroupFlows:
        """The network on groups ``images [B, T, 3, H, W]`` (normalised to [-1, 1], padded to /8)."""
        b, t = images.shape[:2]
        if t != self.group_size:
            raise ShapeError(f"a group must hold group_size={self.group_size} frames, got {t}")
        pairs = t - 1
        iters = iters or (self.config.train_iters if self.training else self.config.iters)
        fmaps = encode_stacked(self.fnet, images).float()
        ctx = encode_stacked(self.cnet, images[:, :-1])
        hh, ww = fmaps.shape[-2:]
        net, inp = torch.split(ctx.reshape(b * pairs, -1, hh, ww), [HIDDEN, CONTEXT], dim=1)
        net = torch.tanh(net)
        inp = torch.relu(inp)
        attention = self.att(inp, fused=fused_attention(self.config.attention, self.config.corr_mode))
        corr = correlation(fmaps[:, :-1].reshape(b * pairs, -1, hh, ww), fmaps[:, 1:].reshape(b * pairs, -1, hh, ww),
                           self.config.corr_mode, self.config.corr_backend)
        coords0 = coords_grid(b * pairs, hh, ww, device=images.device)
        coords1 = coords0.clone()
        iterations: list[torch.Tensor] = []
        flows = None
        for it in range(iters):
            coords1 = coords1.detach()
            net, mask, delta = self.update_block(net, inp, corr(coords1), coords1 - coords0, attention, pairs)
            coords1 = coords1 + delta
            if all_iterations or it == iters - 1:
                flows = convex_upsample(coords1 - coords0, mask).reshape(b, pairs, 2, 8 * hh, 8 * ww)
                if all_iterations:
                    iterations.append(flows)
        assert flows is not None
        return GroupFlows(flows, (coords1 - coords0).reshape(b, pairs, 2, hh, ww), iterations)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _padder(self, shape: Sequence[int]) -> InputPadder:
        padder = InputPadder(shape, mode=self.config.pad_mode)
        ph, pw = padder.padded_shape
        if ph < MIN_PADDED_SIZE or pw < MIN_PADDED_SIZE:
            raise ShapeError(f"frames of {shape[-2]}x{shape[-1]} are too small for StreamFlow: padded to a multiple "
                             f"of 8 they must be at least {MIN_PADDED_SIZE}x{MIN_PADDED_SIZE} pixels")
        return padder

    def validate_frames(self, frames: torch.Tensor) -> tuple[int, int, int, int]:
        b, t, h, w = super().validate_frames(frames)
        self._padder((h, w))
        return b, t, h, w


def group_plan(num_frames: int, group_size: int) -> list[tuple[int, int]]:
    """Groups ``(start, new pairs kept from its end)`` covering every pair of ``num_frames`` frames once.

    Starts every ``group_size - 1`` frames; the last group is aligned to the end and keeps only the
    pairs not yet covered. A clip shorter than a group is one group starting at a negative index
    (completed with copies of the first frame).
    """
    t = group_size
    if num_frames <= t:
        return [(num_frames - t, num_frames - 1)]
    plan = [(s, t - 1) for s in range(0, num_frames - t + 1, t - 1)]
    covered = plan[-1][0] + t - 1
    if covered < num_frames - 1:
        plan.append((num_frames - t, num_frames - 1 - covered))
    return plan


def _clip(images: torch.Tensor, start: int, t: int) -> torch.Tensor:
    if start >= 0:
        return images[:, start:start + t]
    return torch.cat([images[:, :1].expand(-1, -start, -1, -1, -1), images[:, :t + start]], dim=1)


def streamflow_loss(
    iterations: Sequence[torch.Tensor], target: torch.Tensor, valid: torch.Tensor | None = None,
    gamma: float = 0.8, max_flow: float = MAX_FLOW, last_only: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """StreamFlow's loss (paper Eq. 11): the RAFT sequence loss of every flow of the group, summed.

    Args:
        iterations: N predictions ``[B, P, 2, H, W]`` (P = T-1 pairs), last = final.
        target: ``[B, P, 2, H, W]``; valid: ``[B, P, H, W]`` or None.
        gamma: iteration weight base (official: 0.8 on FlyingThings, 0.85 for fine-tuning).
        last_only: supervise only the last flow (the official KITTI stage).

    Returns:
        ``(loss, metrics)``, metrics averaged over the supervised flows.
    """
    if not iterations:
        raise InvalidArgumentError("streamflow_loss needs at least one prediction")
    if target.shape != iterations[-1].shape:
        raise ShapeError(f"target has shape {list(target.shape)}, predictions {list(iterations[-1].shape)}")
    if valid is not None and valid.shape != target.shape[:2] + target.shape[3:]:
        raise ShapeError(f"valid has shape {list(valid.shape)}, expected {list(target.shape[:2] + target.shape[3:])}")
    pairs = range(target.shape[1] - 1, target.shape[1]) if last_only else range(target.shape[1])
    total = target.new_zeros(())
    collected: list[dict[str, float]] = []
    for p in pairs:
        loss, metrics = sequence_loss([it[:, p] for it in iterations], target[:, p],
                                      None if valid is None else valid[:, p], gamma, max_flow)
        total = total + loss
        collected.append(metrics)
    return total, {k: sum(m[k] for m in collected) / len(collected) for k in collected[0]}


# ---------------------------------------------------------------------------------------- weights


def group_size_of(state: Mapping[str, torch.Tensor]) -> int:
    """The T a StreamFlow state_dict was trained for, read from the joint flow head's width."""
    bias = state.get(_HEAD_OUT)
    if bias is None or bias.dim() != 1 or bias.numel() % 2:
        raise CheckpointError(f"weights: not a StreamFlow checkpoint (no valid {_HEAD_OUT!r} entry)")
    return bias.numel() // 2 + 1


def read_streamflow_weights(weights: Any) -> tuple[dict[str, torch.Tensor], str, str, dict[str, Any]]:
    """Read a checkpoint path or state_dict as ``(state_dict, format, source, meta)`` (see
    :func:`~motion.models.checkpoints.read_checkpoint` for ``meta``).

    Accepts ``{'model': ...}`` with ``module.`` keys (official), raw state_dicts, ptlflow's ``.ckpt``
    and our own checkpoints.
    """
    from .checkpoints import read_checkpoint

    state, fmt, meta = read_checkpoint(weights)
    if fmt == "motion4d" and meta.get("model") != "streamflow":
        raise CheckpointError(f"weights: checkpoint {weights} was saved for model {meta.get('model')!r}, not 'streamflow'")
    return state, fmt, "<state_dict>" if isinstance(weights, Mapping) else str(weights), meta


#: The official evaluation: Sintel / Things sequences in groups of T (stride T-1, end aligned);
#: KITTI's multi-view frames _08.._11, the last flow.
PROTOCOLS = {
    "sintel": SequenceProtocol("StreamFlow: groups of T frames, stride T-1, end aligned"),
    "kitti": ClipProtocol(4, 2, 2, description="StreamFlow: multi-view _08.._11, last flow"),
    "things": SequenceProtocol("StreamFlow: groups of T frames"),
}


#: StreamFlow's training recipe where it differs from the common stages (research note 4.6).
RECIPE = TrainingRecipe(stages={
    "things": {"steps": 300_000, "lr": 6e-4, "batch_size": 16, "crop": (400, 720), "weight_decay": 1e-5, "amp": "auto"},
    "sintel": {"mixture": "100*sintel_clean+100*sintel_final+50*kitti+5*hd1k+things", "steps": 180_000,
               "lr": 1.75e-4, "weight_decay": 1e-5},
})

@register("streamflow", "StreamFlow (NeurIPS 2024): T-frame in-batch flow, Twins ISC encoder + GTR decoder", trainable=True,
          card=STREAMFLOW_CARD, protocols=PROTOCOLS, recipe=RECIPE, hyper_parameters=HYPER_PARAMETERS)
def build_streamflow(weights: Any = None, **options: Any) -> StreamFlow:
    """StreamFlow. ``weights``: a checkpoint path, ``"things"`` | ``"sintel"`` | ``"kitti"`` | ``"spring"``,
    or None. ``group_size`` defaults to the T the weights were trained for (4 without weights)."""
    known = set(StreamFlowConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidArgumentError(f"unknown option(s) {unknown} for streamflow; accepted: {sorted(known)}")
    if weights is None:
        return StreamFlow(StreamFlowConfig(**options))
    from .checkpoints import check_model_settings, load_state

    state, fmt, source, meta = read_streamflow_weights(weights)
    needed = group_size_of(state)
    requested = options.setdefault("group_size", needed)
    if requested != needed:
        raise CheckpointError(f"weights {source} were trained for groups of T={needed} frames (group_size={needed}); "
                              f"they cannot run with group_size={requested}")
    model = StreamFlow(StreamFlowConfig(**options))
    check_model_settings(model, meta, source, "streamflow")
    load_state(model, state, source=source, fmt=fmt, strict=True)
    return model
