"""VideoFlow (Shi et al., ICCV 2023): TROF / BOF (3 frames) and MOP / MOF (N frames) optical flow.

Both networks estimate, for every *interior* frame t of a clip, the flow to the next frame
(t -> t+1) and to the previous frame (t -> t-1) with one shared hidden state:

* **BOF** (``videoflow-bof``): each interior frame is an independent triplet (t-1, t, t+1).
* **MOF** (``videoflow-mof``): all interior frames are refined together and, at every iteration,
  a 48-channel motion state is passed between neighbours by warping it with the current flows.

Module and parameter names follow the official code, so ``model.state_dict()`` keys equal the
official checkpoints' keys without the ``module.`` prefix (``cnet``, ``fnet``, ``update_block``,
``att``; MOF's unused ``velocity_update_block`` and GMA's unused ``pos_emb`` are kept).

Mapping to :class:`~motion.models.base.FlowOutput` (frames ``[B, T, 3, H, W]``, T >= 2):
the clip is extended by repeating its first frame, ``[I0, I0, I1, ..., I_{T-1}]`` (the official
evaluation protocol), so that frames 0..T-2 are interior frames and ``forward[:, t]`` (t -> t+1) is
the forward flow of interior frame t. With ``backward=True`` the last frame is repeated as well,
making frame T-1 interior too, and ``backward[:, t]`` (t+1 -> t) is the backward flow of interior
frame t+1. (For MOF, the extra interior frame also feeds its motion state to frame T-2, so the last
forward flow differs slightly from the forward-only protocol; BOF triplets are independent.)

The raw network output (no repetition) is :meth:`VideoFlow.interior_flows`; long videos go through
:meth:`VideoFlow.stream`, which reproduces the official sliding-window protocol (windows of
``frames_per_window`` frames over the first-frame-repeated sequence, stride ``frames_per_window - 2``,
the last window aligned to the end).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from motion4d.checks import check_choice, check_finite, check_int, check_shape
from motion4d.errors import InvalidArgumentError, ShapeError
from motion4d.imaging import as_model_frames, as_stream_frame

from ..padding import InputPadder
from ..protocols import ClipProtocol, SequenceProtocol
from ..registry import TrainingRecipe, register
from .base import FlowModel, FlowOutput
from .blocks import (
    MAX_FLOW,
    MOTION_KERNELS,
    UPDATER_KERNELS,
    BasicEncoder,
    GMAAggregate,
    GMAAttention,
    SKBlock,
    TwinsEncoder,
    convex_upsample,
    coords_grid,
    mask_head,
    normalize_images,
    sample_bilinear,
    sequence_loss,
)
from .cards import VIDEOFLOW_BOF_CARD, VIDEOFLOW_MOF_CARD
from .checkpoint_settings import HyperParameter, encoder_parameters, iterations_parameter

HIDDEN = 128
CONTEXT = 128
CORR_LEVELS = 4
CORR_RADIUS = 4
CORR_CHANNELS = CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
STATE_CHANNELS = 48  # MOF motion state per interior frame
# the 4-level correlation pyramid needs >= 8x8 features at 1/8 resolution, i.e. 64x64 padded input
MIN_PADDED_SIZE = 64

CORR_MODES = ("all_pairs", "on_the_fly")
ATTENTION_MODES = ("auto", "dense", "fused")
ENCODERS = ("twins", "basic")

#: ptlflow's VideoFlow arguments (``ptlflow/models/videoflow/videoflow_{bof,mof}.py``, stored in its
#: ``.ckpt`` ``hyper_parameters``) and what motion4d builds for each.
BOF_HYPER_PARAMETERS = (
    HyperParameter("corr_levels", built=CORR_LEVELS),
    HyperParameter("corr_radius", built=CORR_RADIUS),
    *encoder_parameters(),
    HyperParameter("gma", built="GMA-SK2"),
    HyperParameter("cost_heads_num", built=1),
    iterations_parameter("decoder_depth"),
)
MOF_HYPER_PARAMETERS = BOF_HYPER_PARAMETERS + (
    HyperParameter("feat_dim", built=HIDDEN + CONTEXT),
    HyperParameter("Tfusion", built="stack"),
    HyperParameter("down_ratio", built=8),
    HyperParameter("context_3D", built=False),
)


@dataclass
class VideoFlowConfig:
    """Options of a VideoFlow model (the builder's keyword arguments).

    Attributes:
        variant: ``"bof"`` (independent triplets, mask logits x0.25) or ``"mof"`` (motion state,
            mask logits x100).
        iters: refinement iterations at test time (official: 32).
        train_iters: iterations in training mode (official: 12; 6 for MOF on FlyingThings).
        corr_mode: ``"all_pairs"`` (RAFT volume, official) or ``"on_the_fly"`` (local lookups,
            memory O(hw) instead of O((hw)^2)); the same numbers up to float rounding.
        corr_backend: backend of :class:`motion.ops.CorrelationVolume` (``"auto"``, ``"torch"``, ...).
        attention: GMA evaluation, ``"dense"`` (the official (hw)^2 matrix), ``"fused"``
            (``scaled_dot_product_attention``, never holds the matrix) or ``"auto"`` (dense with
            all-pairs correlation, fused with on-the-fly).
        mixed_precision: autocast (float16) for encoders and update block as in the official code;
            ``"auto"`` = on CUDA only. Correlation always runs in float32.
        encoder: ``"twins"`` (official) or ``"basic"`` (RAFT BasicEncoder; a light variant for
            experiments, no released weights).
        window: frames per call in :meth:`VideoFlow.stream` (MOF official: 5; BOF: 3).
        backward: also return backward flows (repeats the last frame, see module docs).
    """

    variant: str = "mof"
    iters: int = 32
    train_iters: int = 12
    corr_mode: str = "all_pairs"
    corr_backend: str = "auto"
    attention: str = "auto"
    mixed_precision: bool | str = "auto"
    encoder: str = "twins"
    window: int | None = None
    backward: bool = False

    def validate(self) -> None:
        check_choice(self.variant, "variant", ("bof", "mof"))
        check_choice(self.corr_mode, "corr_mode", CORR_MODES)
        check_choice(self.attention, "attention", ATTENTION_MODES)
        check_choice(self.encoder, "encoder", ENCODERS)
        check_choice(self.mixed_precision, "mixed_precision", (True, False, "auto"))
        check_int(self.iters, "iters", minimum=1)
        check_int(self.train_iters, "train_iters", minimum=1)
        check_int(self.window, "window", minimum=3, allow_none=True)


@dataclass
class InteriorFlows:
    """Flows of the N-2 interior frames of an N-frame clip (the raw network output).

    Attributes:
        forward: ``[B, N-2, 2, H, W]`` flow from interior frame t to t+1 (t = 1..N-2).
        backward: ``[B, N-2, 2, H, W]`` flow from interior frame t to t-1.
        forward_low, backward_low: the same at 1/8 resolution of the padded input, in 1/8 pixels.
        iterations: per refinement iteration ``(forward, backward)`` (only when requested or in
            training mode; the last entry equals ``(forward, backward)``).
    """

    forward: torch.Tensor
    backward: torch.Tensor
    forward_low: torch.Tensor
    backward_low: torch.Tensor
    iterations: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


class UnusedVelocityBlock(nn.Module):
    """Three 3x3 convs (214 -> 64 -> 64 -> 43) that MOF constructs but never calls.

    Kept so that the official MOF checkpoints (which contain ``velocity_update_block.mlp.*``) load
    strictly; :meth:`forward` is never used by the model.
    """

    def __init__(self, in_channels: int = 43 + 128 + 43, hidden: int = 64, out_channels: int = 43) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, out_channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class BidirectionalMotionEncoder(nn.Module):
    """VideoFlow's SK motion encoder for the two flows of a centre frame (+ MOF's motion state).

    ``convc1`` encodes each 324-channel lookup (shared weights), ``convc2`` the concatenation;
    ``convf1_``/``convf2`` the 4 flow channels ``[next, prev]``; ``conv`` fuses them (and, for MOF,
    the warped states of both neighbours and the frame's own state) into 124 channels (+ the new
    48-channel state). Output motion feature: ``[BK, 128, h, w]`` = 124 channels + the 4 flow channels.
    """

    def __init__(self, state_channels: int = 0) -> None:
        super().__init__()
        self.state_channels = state_channels
        self.convc1 = SKBlock(CORR_CHANNELS, 128, MOTION_KERNELS)
        self.convc2 = SKBlock(256, 192, MOTION_KERNELS)
        if state_channels:
            self.init_hidden_state = nn.Parameter(torch.randn(1, 1, state_channels, 1, 1))
        self.convf1_ = nn.Conv2d(4, 128, 1)
        self.convf2 = SKBlock(128, 64, MOTION_KERNELS)
        self.conv = SKBlock(64 + 192 + 3 * state_channels, 128 - 4 + state_channels, MOTION_KERNELS)
        if state_channels:
            self.velocity_update_block = UnusedVelocityBlock()

    def forward(
        self,
        flow_next: torch.Tensor,
        flow_prev: torch.Tensor,
        corr_next: torch.Tensor,
        corr_prev: torch.Tensor,
        state: torch.Tensor | None,
        coords0: torch.Tensor,
        batch: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Flows/corr ``[B*K, ., h, w]`` with the K interior frames innermost; state ``[B*K, 48, h, w]``."""
        cor = F.gelu(torch.cat([self.convc1(corr_next), self.convc1(corr_prev)], dim=1))
        cor = self.convc2(cor)
        flow = torch.cat([flow_next, flow_prev], dim=1)
        flo = self.convf2(self.convf1_(flow))
        if not self.state_channels:
            return torch.cat([self.conv(torch.cat([cor, flo], dim=1)), flow], dim=1), None

        bk, _, h, w = flow.shape
        k = bk // batch
        s = self.state_channels
        if state is None:
            state = self.init_hidden_state.repeat(batch, k, 1, h, w)
        else:
            state = state.reshape(batch, k, s, h, w)
        zeros = torch.zeros(batch, 1, s, h, w, device=state.device, dtype=state.dtype)
        # the state of frame t+1 seen from frame t along t -> t+1, and of frame t-1 along t -> t-1
        next_state = torch.cat([state[:, 1:], zeros], dim=1).reshape(bk, s, h, w)
        prev_state = torch.cat([zeros, state[:, :-1]], dim=1).reshape(bk, s, h, w)
        next_state = sample_bilinear(next_state.float(), coords0 + flow_next)
        prev_state = sample_bilinear(prev_state.float(), coords0 + flow_prev)
        fused = torch.cat([cor, flo, next_state, prev_state, state.reshape(bk, s, h, w)], dim=1)
        out, new_state = torch.split(self.conv(fused), [128 - 4, s], dim=1)
        return torch.cat([out, flow], dim=1), new_state


class VideoFlowUpdateBlock(nn.Module):
    """SK update block (``SKUpdateBlock6_Deep_nopoolres_AllDecoder2``) refining both flows at once."""

    def __init__(self, state_channels: int, mask_scale: float) -> None:
        super().__init__()
        self.mask_scale = mask_scale
        self.encoder = BidirectionalMotionEncoder(state_channels)
        self.gru = SKBlock(128 + HIDDEN + CONTEXT + 128, HIDDEN, UPDATER_KERNELS)
        self.flow_head = SKBlock(HIDDEN, 4, MOTION_KERNELS)
        self.mask = mask_head(HIDDEN, num_flows=2)
        self.aggregator = GMAAggregate(128, heads=1, dim_head=128)

    def forward(self, net, inp, attention, flow_next, flow_prev, corr_next, corr_prev, state, coords0, batch):
        """Returns ``(net, state, mask logits [BK, 1152, h, w], delta [BK, 4, h, w] = [next, prev])``."""
        motion, state = self.encoder(flow_next, flow_prev, corr_next, corr_prev, state, coords0, batch)
        motion_global = self.aggregator(attention, motion)
        net = self.gru(torch.cat([net, inp, motion, motion_global], dim=1))
        return net, state, self.mask_scale * self.mask(net), self.flow_head(net)


class VideoFlow(FlowModel):
    """VideoFlow network behind the :class:`FlowModel` interface (see the module docstring).

    ``model(frames [B, T, 3, H, W] in [0, 1]) -> FlowOutput(forward [B, T-1, 2, H, W], backward)``.
    In training mode ``forward_iterations`` (and ``backward_iterations``) hold the
    per-iteration predictions for :func:`~motion.models.blocks.sequence_loss`.
    """

    min_frames: ClassVar[int] = 2
    trainable: ClassVar[bool] = True
    repeats_first_frame: ClassVar[bool] = True

    def __init__(self, config: VideoFlowConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        mof = config.variant == "mof"
        self.frames_per_window = config.window or (5 if mof else 3)
        if config.encoder == "twins":
            self.cnet: nn.Module = TwinsEncoder()
            self.fnet: nn.Module = TwinsEncoder()
        else:
            self.cnet = BasicEncoder(256, norm_fn="batch")
            self.fnet = BasicEncoder(256, norm_fn="instance")
        self.update_block = VideoFlowUpdateBlock(STATE_CHANNELS if mof else 0, mask_scale=100.0 if mof else 0.25)
        self.att = GMAAttention(CONTEXT, heads=1, dim_head=128, max_pos_size=160)
        # BOF's mask logits list the c->prev mask first, MOF's the forward (c->next) mask first
        self._mask_next_first = mof

    # ------------------------------------------------------------------ training

    def training_predictions(self, frames: torch.Tensor, iters: int | None = None) -> list[torch.Tensor]:
        """The official training forward: the N-2 interior frames of each clip ``[B, N, 3, H, W]`` in
        both directions (:meth:`interior_flows`), one prediction ``[B, 2(N-2), 2, H, W]`` per
        iteration: the forward flows of frames 1..N-2, then their backward flows."""
        out = self.interior_flows(frames, iters=iters, all_iterations=True)
        return [torch.cat([f, b], dim=1) for f, b in out.iterations]

    def loss(
        self, predictions: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor], gamma: float = 0.8,
        max_flow: float = MAX_FLOW,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Sequence loss of :meth:`training_predictions` against the interior frames' ground truth:
        forward pairs 1..N-2 and backward pairs 0..N-3 of ``batch`` (as :meth:`FlowModel.loss
        <motion.models.base.FlowModel.loss>` takes it)."""
        target = torch.cat([batch["flow_forward"][:, 1:], batch["flow_backward"][:, :-1]], dim=1)
        valid = torch.cat([batch["valid_forward"][:, 1:], batch["valid_backward"][:, :-1]], dim=1)
        return sequence_loss(predictions, target, valid, gamma=gamma, max_flow=max_flow)

    # ------------------------------------------------------------------ public API

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def registry_name(self) -> str:
        """The name :func:`motion.create` knows this model by (stored in our checkpoints)."""
        return f"videoflow-{self.config.variant}"

    def forward(self, frames: torch.Tensor) -> FlowOutput:
        b, t, h, w = self.validate_frames(frames)
        check_finite(frames, "frames")
        index = [0] + list(range(t)) + ([t - 1] if self.config.backward else [])
        padder = InputPadder(frames.shape, mode="sintel")
        images = normalize_images(padder.pad(frames))
        result = self._interior(images, index, all_iterations=self.training)
        out_fwd = padder.unpad(result.forward[:, : t - 1])
        out_bwd = padder.unpad(result.backward[:, 1:t]) if self.config.backward else None
        out = FlowOutput(out_fwd, out_bwd, forward_low=result.forward_low[:, : t - 1])
        if self.config.backward:
            out.backward_low = result.backward_low[:, 1:t]
        if result.iterations:
            out.forward_iterations = [padder.unpad(f[:, : t - 1]) for f, _ in result.iterations]
            if self.config.backward:
                out.backward_iterations = [padder.unpad(bw[:, 1:t]) for _, bw in result.iterations]
        return out

    def interior_flows(
        self, frames: torch.Tensor, iters: int | None = None, all_iterations: bool | None = None
    ) -> InteriorFlows:
        """The raw network on an N-frame clip (N >= 3): flows of frames 1..N-2 to both neighbours.

        Args:
            frames: ``[B, N, 3, H, W]`` in [0, 1] (H, W >= 57; padded internally, "sintel" mode), or uint8
                frames as the readers give them (:func:`motion4d.imaging.as_model_frames`).
            iters: refinement iterations (default: ``config.iters``, or ``config.train_iters`` in
                training mode).
            all_iterations: keep every iteration's prediction (default: in training mode).
        """
        frames = as_model_frames(frames)
        dims = check_shape(frames, "frames", ("B", "N", 3, "H", "W"))
        if dims["N"] < 3:
            raise ShapeError(f"interior_flows needs at least 3 frames, got N={dims['N']}")
        self._check_size(dims["H"], dims["W"])
        check_finite(frames, "frames")
        padder = InputPadder(frames.shape, mode="sintel")
        images = normalize_images(padder.pad(frames))
        keep = self.training if all_iterations is None else all_iterations
        result = self._interior(images, list(range(dims["N"])), iters=iters, all_iterations=keep)
        return InteriorFlows(
            padder.unpad(result.forward),
            padder.unpad(result.backward),
            result.forward_low,
            result.backward_low,
            [(padder.unpad(f), padder.unpad(bw)) for f, bw in result.iterations],
        )

    @torch.no_grad()
    def stream(
        self,
        frames: Iterable[torch.Tensor],
        backward: bool = False,
        *,
        batch: int = 8,
        skip: Callable[[int], bool] | None = None,
        window: int | None = None,
    ) -> Iterator[FlowOutput]:
        """Flow over a long frame sequence with bounded memory, following the official protocol.

        The sequence is extended by repeating its first frame (and, for backward flows, its last
        frame); windows of ``window`` frames (default ``frames_per_window``) start every
        ``window - 2`` frames and the last window is aligned to the end; each window's interior
        flows give the pairs not yet emitted. This reproduces VideoFlow's Sintel submission script.

        Args:
            frames: iterable of ``[B, 3, H, W]`` (or ``[3, H, W]``) float frames in [0, 1].
            backward: also give backward flows.
            batch, skip: accepted for :meth:`FlowModel.stream`'s interface and not used: the windows
                overlap by two frames, so every window is run.
            window: frames per window (at least 3).

        Yields:
            ``FlowOutput`` chunks in order: ``forward [B, k, 2, H, W]`` for pairs
            ``first_pair .. first_pair + k - 1``, ``backward`` likewise or None. Chunks hold at
            most ``window - 2`` pairs.
        """
        size = window or self.frames_per_window
        check_int(size, "window", minimum=3)
        plan = _WindowPlan(size)
        for frame in frames:
            frame = as_stream_frame(frame, "frame")
            for clip, positions in plan.push(frame):
                yield from plan.collect(self.interior_flows(clip), positions, backward)
        if plan.num_frames < 2:
            return
        for clip, positions in plan.finish(backward):
            yield from plan.collect(self.interior_flows(clip), positions, backward)

    # ------------------------------------------------------------------ network

    def _autocast(self, device: torch.device):
        enabled = self.config.mixed_precision
        if enabled == "auto":
            enabled = device.type == "cuda"
        if not enabled:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)

    def _check_size(self, h: int, w: int) -> None:
        if -(-h // 8) * 8 < MIN_PADDED_SIZE or -(-w // 8) * 8 < MIN_PADDED_SIZE:
            smallest = MIN_PADDED_SIZE - 7
            raise ShapeError(
                f"frames must be at least {smallest}x{smallest} pixels for VideoFlow ({MIN_PADDED_SIZE}x{MIN_PADDED_SIZE} "
                f"after padding to a multiple of 8, for the 4-level correlation pyramid), got {h}x{w}"
            )

    def validate_frames(self, frames: torch.Tensor) -> tuple[int, int, int, int]:
        b, t, h, w = super().validate_frames(frames)
        self._check_size(h, w)
        return b, t, h, w

    def _interior(
        self, images: torch.Tensor, index: Sequence[int], iters: int | None = None, all_iterations: bool = False
    ) -> InteriorFlows:
        """Core: ``images [B, T, 3, H, W]`` normalised and padded; clip = ``images[:, index]``.

        Returns padded-resolution interior flows of clip positions 1..len(index)-2.
        """
        device = next(self.parameters()).device
        images = images.to(device)
        b, t, _, h, w = images.shape
        iters = iters or (self.config.train_iters if self.training else self.config.iters)
        centres = list(index[1:-1])
        nexts = list(index[2:])
        prevs = list(index[:-2])
        k = len(centres)
        autocast = self._autocast(device)

        with autocast:
            fmaps = self.fnet(images.reshape(b * t, 3, h, w))
        fmaps = fmaps.float().reshape(b, t, -1, h // 8, w // 8)
        hh, ww = fmaps.shape[-2:]

        def gather(ids: list[int]) -> torch.Tensor:
            return fmaps[:, ids].reshape(b * k, -1, hh, ww)

        f_centre = gather(centres)
        corr_next = self._correlation(f_centre, gather(nexts))
        corr_prev = self._correlation(f_centre, gather(prevs))

        with autocast:
            ctx = self.cnet(images[:, centres].reshape(b * k, 3, h, w))
            net, inp = torch.split(ctx, [HIDDEN, CONTEXT], dim=1)
            net = torch.tanh(net)
            inp = torch.relu(inp)
            attention = self.att(inp, fused=self._fused_attention())

        coords0 = coords_grid(b * k, hh, ww, device=device)
        coords_next = coords0.clone()
        coords_prev = coords0.clone()
        state = None
        iterations: list[tuple[torch.Tensor, torch.Tensor]] = []
        up_next = up_prev = None
        for it in range(iters):
            coords_next = coords_next.detach()
            coords_prev = coords_prev.detach()
            c_next = corr_next(coords_next)
            c_prev = corr_prev(coords_prev)
            flow_next = coords_next - coords0
            flow_prev = coords_prev - coords0
            with autocast:
                net, state, mask, delta = self.update_block(
                    net, inp, attention, flow_next, flow_prev, c_next, c_prev, state, coords0, b
                )
            first, second = torch.split(mask, [9 * 64, 9 * 64], dim=1)
            mask_next, mask_prev = (first, second) if self._mask_next_first else (second, first)
            coords_next = coords_next + delta[:, 0:2]
            coords_prev = coords_prev + delta[:, 2:4]
            if all_iterations or it == iters - 1:
                up_next = convex_upsample(coords_next - coords0, mask_next).reshape(b, k, 2, h, w)
                up_prev = convex_upsample(coords_prev - coords0, mask_prev).reshape(b, k, 2, h, w)
                if all_iterations:
                    iterations.append((up_next, up_prev))
        assert up_next is not None and up_prev is not None
        return InteriorFlows(
            up_next,
            up_prev,
            (coords_next - coords0).reshape(b, k, 2, hh, ww),
            (coords_prev - coords0).reshape(b, k, 2, hh, ww),
            iterations,
        )

    def _fused_attention(self) -> bool:
        if self.config.attention == "auto":
            return self.config.corr_mode == "on_the_fly"
        return self.config.attention == "fused"

    def _correlation(self, fmap1: torch.Tensor, fmap2: torch.Tensor):
        from ..ops import CorrelationVolume  # imported lazily: the ops package may compile kernels

        return CorrelationVolume(
            fmap1, fmap2, num_levels=CORR_LEVELS, radius=CORR_RADIUS,
            mode=self.config.corr_mode, backend=self.config.corr_backend,
        )


class _WindowPlan:
    """Bookkeeping of :meth:`VideoFlow.stream`: which windows to run and which pairs they give.

    Sequence positions: 0 is the repeated first frame, position j >= 1 is original frame j - 1
    (and, for backward flows, one more repeated last frame at the end). Interior position i gives
    forward pair i - 1 and backward pair i - 2.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.stride = size - 2
        self.buffer: list[torch.Tensor] = []
        self.offset = 0  # sequence position of buffer[0]
        self.next_start = 0
        self.done = 0  # interior positions 1..done already produced
        self.num_frames = 0
        self.pending: dict[str, dict[int, torch.Tensor]] = {"forward": {}, "backward": {}}
        self.emitted = 0

    @property
    def length(self) -> int:
        return self.offset + len(self.buffer)

    def push(self, frame: torch.Tensor) -> Iterator[tuple[torch.Tensor, range]]:
        if self.num_frames == 0:
            self.buffer.append(frame)
        self.buffer.append(frame)
        self.num_frames += 1
        yield from self._regular_windows()

    def finish(self, backward: bool) -> Iterator[tuple[torch.Tensor, range]]:
        if backward:
            self.buffer.append(self.buffer[-1])
            yield from self._regular_windows()
        if self.done < self.length - 2:
            start = max(0, self.length - self.size)
            yield self._window(start, self.length)

    def _regular_windows(self) -> Iterator[tuple[torch.Tensor, range]]:
        while self.length - self.next_start >= self.size:
            start = self.next_start
            self.next_start += self.stride
            yield self._window(start, start + self.size)
            keep_from = min(self.next_start, self.length - (self.size - 1))
            if keep_from > self.offset:
                del self.buffer[: keep_from - self.offset]
                self.offset = keep_from

    def _window(self, start: int, stop: int) -> tuple[torch.Tensor, range]:
        clip = torch.stack(self.buffer[start - self.offset: stop - self.offset], dim=1)
        return clip, range(start + 1, stop - 1)

    def collect(self, result: InteriorFlows, positions: range, backward: bool) -> Iterator[FlowOutput]:
        for j, i in enumerate(positions):
            if i <= self.done:
                continue
            self.pending["forward"][i - 1] = result.forward[:, j]
            if i >= 2:
                self.pending["backward"][i - 2] = result.backward[:, j]
        self.done = max(self.done, positions.stop - 1)
        yield from self.emit(backward)

    def emit(self, backward: bool) -> Iterator[FlowOutput]:
        """Yield the pairs that are complete, in order. A forward flow towards the repeated last
        frame never becomes complete (its pair has no backward flow), so nothing invalid leaves."""
        fwd: list[torch.Tensor] = []
        bwd: list[torch.Tensor] = []
        while self.emitted in self.pending["forward"] and (not backward or self.emitted in self.pending["backward"]):
            fwd.append(self.pending["forward"].pop(self.emitted))
            if backward:
                bwd.append(self.pending["backward"].pop(self.emitted))
            self.emitted += 1
        if fwd:
            yield FlowOutput(
                torch.stack(fwd, dim=1),
                torch.stack(bwd, dim=1) if backward else None,
                first_pair=self.emitted - len(fwd),
            )


class VideoFlowBOF(VideoFlow):
    """VideoFlow TROF/BOF: independent triplets, one flow to each neighbour of the centre frame."""

    frames_per_window: ClassVar[int] = 3
    checkpoint_hyper_parameters: ClassVar[tuple[HyperParameter, ...]] = BOF_HYPER_PARAMETERS

    def __init__(self, config: VideoFlowConfig | None = None, **options: Any) -> None:
        config = config or VideoFlowConfig(**{"variant": "bof", **options})
        if config.variant != "bof":
            raise InvalidArgumentError(f"VideoFlowBOF needs variant='bof', got {config.variant!r}")
        super().__init__(config)


class VideoFlowMOF(VideoFlow):
    """VideoFlow MOP/MOF: all interior frames refined jointly with a propagated motion state."""

    frames_per_window: ClassVar[int] = 5
    checkpoint_hyper_parameters: ClassVar[tuple[HyperParameter, ...]] = MOF_HYPER_PARAMETERS

    def __init__(self, config: VideoFlowConfig | None = None, **options: Any) -> None:
        config = config or VideoFlowConfig(**{"variant": "mof", **options})
        if config.variant != "mof":
            raise InvalidArgumentError(f"VideoFlowMOF needs variant='mof', got {config.variant!r}")
        super().__init__(config)


def _build(variant: str, weights: Any, options: dict[str, Any]) -> VideoFlow:
    known = set(VideoFlowConfig.__dataclass_fields__) - {"variant"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidArgumentError(f"unknown option(s) {unknown} for videoflow-{variant}; accepted: {sorted(known)}")
    config = VideoFlowConfig(variant=variant, **options)
    model: VideoFlow = VideoFlowBOF(config) if variant == "bof" else VideoFlowMOF(config)
    if weights is not None:
        from .checkpoints import load_weights

        load_weights(model, weights, model_name=f"videoflow-{variant}")
    return model


#: The official evaluation: BOF on triplets through the raw network (interior frame = centre);
#: MOF on whole sequences (5-frame windows over the first-frame-repeated sequence), KITTI's
#: multi-view _08.._12 with the centre frame _10.
BOF_PROTOCOLS = {
    "sintel": ClipProtocol(3, 1, 0, call="interior", description="VideoFlow-BOF: triplets, first frame repeated"),
    "kitti": ClipProtocol(3, 1, 0, call="interior", description="VideoFlow-BOF: multi-view _09.._11"),
    "things": ClipProtocol(3, 1, 0, call="interior", description="VideoFlow-BOF: triplets"),
}
MOF_PROTOCOLS = {
    "sintel": SequenceProtocol("VideoFlow-MOF: 5-frame windows over the first-frame-repeated sequence"),
    "kitti": ClipProtocol(5, 2, 1, call="interior", description="VideoFlow-MOF: multi-view _08.._12, centre"),
    "things": SequenceProtocol("VideoFlow-MOF: 5-frame windows"),
}


#: VideoFlow's training recipes (research note 2.7): BOF is the common staged recipe with RAFT's
#: eraser in its 3-frame augmentor; MOF trains longer on Things with 6 iterations, shorter later.
BOF_RECIPE = TrainingRecipe(eraser_prob=0.5)
MOF_RECIPE = TrainingRecipe(stages={
    "things": {"steps": 125_000, "amp": "auto", "iters": 6},
    "sintel": {"mixture": "100*sintel_clean+100*sintel_final+50*kitti+5*hd1k+things", "steps": 40_000, "amp": "auto"},
    "kitti": {"steps": 25_000},
})

@register("videoflow-bof", "VideoFlow TROF/BOF (ICCV 2023): 3-frame bidirectional flow, Twins-SVT + SK update", trainable=True,
          card=VIDEOFLOW_BOF_CARD, protocols=BOF_PROTOCOLS, recipe=BOF_RECIPE, hyper_parameters=BOF_HYPER_PARAMETERS)
def build_videoflow_bof(weights: Any = None, **options: Any) -> VideoFlow:
    """VideoFlow-BOF. ``weights``: a checkpoint path, a weight set of its card (``"things"``, ``"sintel"``,
    ``"kitti"``), or None."""
    return _build("bof", weights, options)


@register("videoflow-mof", "VideoFlow MOP/MOF (ICCV 2023): N-frame flow with motion propagation", trainable=True,
          card=VIDEOFLOW_MOF_CARD, protocols=MOF_PROTOCOLS, recipe=MOF_RECIPE, hyper_parameters=MOF_HYPER_PARAMETERS)
def build_videoflow_mof(weights: Any = None, **options: Any) -> VideoFlow:
    """VideoFlow-MOF. ``weights``: a checkpoint path, a weight set of its card (``"things"``,
    ``"things_288960noise"``, ``"sintel"``, ``"kitti"``), or None."""
    return _build("mof", weights, options)
