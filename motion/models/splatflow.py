"""SplatFlow (Wang et al., IJCV 2024): multi-frame flow by splatting the previous pair's motion feature.

A GMA network (RAFT BasicEncoders, all-pairs correlation, global motion aggregation, SepConvGRU)
estimates the flows of a video pair by pair in temporal order. When pair ``(t-1, t)`` has converged,
its final motion feature (the 128-channel output of the motion encoder at the last iteration) is
forward-warped with the pair's low-resolution flow onto frame t's grid by
:func:`motion.ops.softsplat` in ``"average"`` mode, and fed to **every** iteration of pair
``(t, t+1)`` through a separate update branch (``gru_sp``, ``flow_head_sp``, ``mask_sp``). The first
pair of a video has no previous feature and runs in two-frame mode (the plain GMA branch).

Module and parameter names follow the official code, so ``model.state_dict()`` equals the released
``splatflow_kitti_50k.pth`` key for key (``fnet``, ``cnet``, ``att``, ``update``; the residual
blocks' ``norm3`` is the same module as ``downsample.1`` and appears under both names).

Two ways to carry the temporal feature over a video (``carry``):

* ``"stream"`` (default): the feature comes from the previous pair's own estimate, so a video of N
  frames costs N-1 pair estimations; frame features are computed once per frame.
* ``"triplet"``: the official evaluation protocol (``run_test.py``): for every pair ``(t, t+1)`` the
  previous pair ``(t-1, t)`` is first re-estimated in two-frame mode (the first pair already is),
  which costs 2N-4 estimations for N >= 3 frames and reproduces the published protocol.

``model(frames [B, T, 3, H, W] in [0, 1]) -> FlowOutput(forward [B, T-1, 2, H, W])`` for any T >= 2;
:meth:`SplatFlow.stream` gives the same flows one pair at a time with bounded memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from motion4d.checks import check_choice, check_finite, check_int
from motion4d.errors import CheckpointError, InvalidArgumentError, ShapeError

from ..padding import PAD_MODES, InputPadder
from ..protocols import ClipProtocol, SequenceProtocol
from ..registry import TrainingRecipe, register
from .base import FlowModel, FlowOutput
from .blocks import (
    MAX_FLOW,
    BasicEncoder,
    BasicMotionEncoder,
    FlowHead,
    GMAAggregate,
    GMAAttention,
    SepConvGRU,
    convex_upsample,
    coords_grid,
    mask_head,
    normalize_images,
)
from .cards import SPLATFLOW_CARD
from .checkpoint_settings import HyperParameter, iterations_parameter
from .multiframe import (
    ATTENTION_MODES,
    CORR_MODES,
    as_batch_frame,
    correlation,
    fused_attention,
)

HIDDEN = 128
CONTEXT = 128
MOTION = 128
MASK_SCALE = 0.25
MIN_PADDED_SIZE = 64  # the coarsest of 4 correlation levels must be >= 1 pixel at 1/8 resolution
CARRY_MODES = ("stream", "triplet")
#: ptlflow's SplatFlow arguments (``ptlflow/models/splatflow/splatflow.py``) and what motion4d
#: builds; ptlflow's ``iters`` default is 32, the official scripts' 24.
HYPER_PARAMETERS = (
    HyperParameter("corr_levels", built=4),
    HyperParameter("corr_radius", built=4),
    iterations_parameter("iters"),
)
STAGES = ("full", "part")
SP_BRANCH = ("update.gru_sp.", "update.flow_head_sp.", "update.mask_sp.")
# legacy names of the temporal branch in older training checkpoints (run_test.py's replacements)
_LEGACY_NAMES = (("update_block.", "update."), ("gru_tf.", "gru_sp."), ("flow_head_tf.", "flow_head_sp."),
                 ("mask_tf.", "mask_sp."))



@dataclass
class SplatFlowConfig:
    """Options of a SplatFlow model (the builder's keyword arguments).

    Attributes:
        iters: refinement iterations per pair at test time (official: 24).
        train_iters: iterations in training mode (official: 12).
        carry: ``"stream"`` (N-1 estimations per video) or ``"triplet"`` (official protocol, see the
            module docs).
        pad_mode: replicate padding to a multiple of 8, ``"sintel"`` (both sides) or ``"kitti"``
            (bottom only; the official KITTI evaluation).
        corr_mode: ``"all_pairs"`` (RAFT volume, official) or ``"on_the_fly"`` (local lookups,
            memory O(hw)); same numbers up to float rounding.
        corr_backend: backend of :class:`motion.ops.CorrelationVolume`.
        splat_backend: backend of :func:`motion.ops.softsplat`.
        attention: GMA evaluation, ``"dense"``, ``"fused"`` or ``"auto"``.
        stage: ``"full"`` trains every parameter; ``"part"`` trains only the temporal branch
            (``gru_sp``, ``flow_head_sp``, ``mask_sp``) and keeps the GMA backbone, including the
            context net's BatchNorm statistics, fixed (the official first training stage).
    """

    iters: int = 24
    train_iters: int = 12
    carry: str = "stream"
    pad_mode: str = "sintel"
    corr_mode: str = "all_pairs"
    corr_backend: str = "auto"
    splat_backend: str = "auto"
    attention: str = "auto"
    stage: str = "full"

    def validate(self) -> None:
        check_int(self.iters, "iters", minimum=1)
        check_int(self.train_iters, "train_iters", minimum=1)
        check_choice(self.carry, "carry", CARRY_MODES)
        check_choice(self.pad_mode, "pad_mode", PAD_MODES)
        check_choice(self.corr_mode, "corr_mode", CORR_MODES)
        check_choice(self.attention, "attention", ATTENTION_MODES)
        check_choice(self.stage, "stage", STAGES)


@dataclass
class PairContext:
    """Context of a pair's source frame: hidden state, context features and GMA attention."""

    net: torch.Tensor
    inp: torch.Tensor
    attention: Any


@dataclass
class PairEstimate:
    """One pair estimation at the padded resolution.

    Attributes:
        flow: ``[B, 2, H, W]`` final upsampled flow.
        low: ``[B, 2, H/8, W/8]`` final flow at 1/8 resolution, in 1/8 pixels.
        motion: ``[B, 128, H/8, W/8]`` motion feature of the last iteration (computed from the flow
            before the last update, as in the official code).
        iterations: the upsampled flow of every iteration (when requested).
    """

    flow: torch.Tensor
    low: torch.Tensor
    motion: torch.Tensor
    iterations: list[torch.Tensor] = field(default_factory=list)


@dataclass
class _Previous:
    """What the next pair needs from the previous one."""

    fmap1: torch.Tensor
    fmap2: torch.Tensor
    context: PairContext
    estimate: PairEstimate
    two_frame: bool


class SplatFlowUpdate(nn.Module):
    """GMA update block with SplatFlow's separate temporal branch (``Update`` in the official code).

    ``forward(net, inp, corr, flow, attention, temporal=None) -> (net, mask logits, Δflow, motion)``:
    without ``temporal`` the GMA branch (``gru``, ``flow_head``, ``mask``) runs on
    ``[inp, mf, mf_global]``; with it the ``_sp`` branch runs on ``[inp, mf, mf_global, temporal]``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = BasicMotionEncoder()
        self.gru = SepConvGRU(HIDDEN, input_dim=CONTEXT + 2 * MOTION)
        self.flow_head = FlowHead(HIDDEN, hidden=256)
        self.mask = mask_head(HIDDEN)
        self.aggregator = GMAAggregate(MOTION, heads=1, dim_head=MOTION)
        self.gru_sp = SepConvGRU(HIDDEN, input_dim=CONTEXT + 3 * MOTION)
        self.flow_head_sp = FlowHead(HIDDEN, hidden=256)
        self.mask_sp = mask_head(HIDDEN)

    def forward(self, net, inp, corr, flow, attention, temporal=None):
        motion = self.encoder(flow, corr)
        motion_global = self.aggregator(attention, motion)
        if temporal is None:
            net = self.gru(net, torch.cat([inp, motion, motion_global], dim=1))
            return net, MASK_SCALE * self.mask(net), self.flow_head(net), motion
        net = self.gru_sp(net, torch.cat([inp, motion, motion_global, temporal], dim=1))
        return net, MASK_SCALE * self.mask_sp(net), self.flow_head_sp(net), motion


class SplatFlow(FlowModel):
    """SplatFlow behind the :class:`FlowModel` interface (see the module docstring).

    In training mode ``forward_iterations`` holds the per-iteration predictions
    ``[B, T-1, 2, H, W]`` for :meth:`loss`.
    """

    frames_per_window: ClassVar[int] = 3
    min_frames: ClassVar[int] = 2
    trainable: ClassVar[bool] = True
    checkpoint_hyper_parameters: ClassVar[tuple[HyperParameter, ...]] = HYPER_PARAMETERS

    def __init__(self, config: SplatFlowConfig | None = None, **options: Any) -> None:
        super().__init__()
        config = config or SplatFlowConfig(**options)
        config.validate()
        self.config = config
        self.fnet = BasicEncoder(256, norm_fn="instance")
        self.cnet = BasicEncoder(HIDDEN + CONTEXT, norm_fn="batch")
        self.att = GMAAttention(CONTEXT, heads=1, dim_head=CONTEXT)
        self.update = SplatFlowUpdate()
        self.set_stage(config.stage)

    # ------------------------------------------------------------------ training

    def set_stage(self, stage: str) -> None:
        """``"full"``: train everything; ``"part"``: train only the ``_sp`` branch (backbone frozen)."""
        check_choice(stage, "stage", STAGES)
        self.config.stage = stage
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(stage == "full" or name.startswith(SP_BRANCH))
        self.train(self.training)

    def train(self, mode: bool = True) -> "SplatFlow":
        super().train(mode)
        if self.config.stage == "part":
            self.cnet.eval()  # frozen backbone: its BatchNorm statistics stay fixed too
        return self

    def loss(
        self, predictions: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor], gamma: float = 0.8,
        max_flow: float = MAX_FLOW,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """SplatFlow's sequence loss over all forward pairs of the clip (see :func:`splatflow_loss`):
        ``predictions`` ``[B, T-1, 2, H, W]`` from :meth:`training_predictions`, ``batch`` as
        :meth:`FlowModel.loss <motion.models.base.FlowModel.loss>` takes it."""
        return splatflow_loss(list(predictions), batch["flow_forward"], batch.get("valid_forward"), gamma, max_flow)

    # ------------------------------------------------------------------ public API

    def forward(self, frames: torch.Tensor) -> FlowOutput:
        b, t, h, w = self.validate_frames(frames)
        check_finite(frames, "frames")
        padder = self._padder(frames.shape)
        device = self._device()
        images = normalize_images(padder.pad(frames.to(device)))
        fmaps = self.fnet(images.reshape(b * t, *images.shape[2:])).float()
        fmaps = fmaps.reshape(b, t, *fmaps.shape[1:])
        keep = self.training
        previous: _Previous | None = None
        flows, lows, iterations = [], [], []
        for i in range(t - 1):
            previous = self._advance(images[:, i], fmaps[:, i], fmaps[:, i + 1], previous, keep)
            flows.append(padder.unpad(previous.estimate.flow))
            lows.append(previous.estimate.low)
            iterations.append([padder.unpad(f) for f in previous.estimate.iterations])
        return FlowOutput(
            torch.stack(flows, dim=1),
            forward_low=torch.stack(lows, dim=1),
            forward_iterations=[torch.stack(its, dim=1) for its in zip(*iterations)] if keep else None,
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
        """Flows of consecutive pairs of a frame sequence, one pair per output.

        Each frame's features are computed once; the previous pair's motion feature and
        low-resolution flow are carried to the next pair, so N frames cost N-1 pair estimations
        (``carry="stream"``). Equals ``model(all frames)``.

        Args:
            frames: iterable of ``[3, H, W]`` or ``[B, 3, H, W]`` float frames in [0, 1].
            backward: must be False: SplatFlow gives forward flow only (InvalidArgumentError otherwise).
            batch, skip: accepted for :meth:`FlowModel.stream`'s interface and not used: the motion
                feature of every pair feeds the next, so every pair is run.

        Yields:
            ``FlowOutput(forward [B, 1, 2, H, W])`` for pair ``first_pair`` (``forward_low``
            holds its 1/8-resolution flow).
        """
        if backward:
            raise InvalidArgumentError(f"{type(self).__name__} gives forward flow only; use backward=False")
        device = self._device()
        padder: InputPadder | None = None
        first_shape = None
        previous: _Previous | None = None
        image1 = fmap1 = None
        for index, frame in enumerate(frames):
            frame = as_batch_frame(frame, f"frames[{index}]")
            if padder is None:
                first_shape = tuple(frame.shape)
                self._check_size(frame.shape[-2], frame.shape[-1])
                padder = self._padder(frame.shape)
            elif tuple(frame.shape) != first_shape:
                raise ShapeError(f"frames[{index}] has shape {list(frame.shape)}, the first frame {list(first_shape)}")
            check_finite(frame, f"frames[{index}]")
            image2 = normalize_images(padder.pad(frame.to(device)))
            fmap2 = self.fnet(image2).float()
            if image1 is not None:
                previous = self._advance(image1, fmap1, fmap2, previous, False)
                yield FlowOutput(padder.unpad(previous.estimate.flow)[:, None], first_pair=index - 1,
                                 forward_low=previous.estimate.low[:, None])
            image1, fmap1 = image2, fmap2

    # ------------------------------------------------------------------ network

    def context(self, image: torch.Tensor) -> PairContext:
        """Context of a source frame ``[B, 3, H, W]`` (normalised, padded)."""
        net, inp = torch.split(self.cnet(image), [HIDDEN, CONTEXT], dim=1)
        inp = torch.relu(inp)
        fused = fused_attention(self.config.attention, self.config.corr_mode)
        return PairContext(torch.tanh(net), inp, self.att(inp, fused=fused))

    def estimate_pair(
        self, fmap1: torch.Tensor, fmap2: torch.Tensor, context: PairContext, temporal: torch.Tensor | None = None,
        iters: int | None = None, all_iterations: bool = False,
    ) -> PairEstimate:
        """One pair estimation from cached features ``[B, 256, h, w]`` (the official ``forward``).

        ``temporal``: the splatted motion feature of the previous pair ``[B, 128, h, w]``, or None
        for two-frame mode.
        """
        iters = iters or (self.config.train_iters if self.training else self.config.iters)
        corr = correlation(fmap1, fmap2, self.config.corr_mode, self.config.corr_backend)
        b, _, h, w = fmap1.shape
        coords0 = coords_grid(b, h, w, device=fmap1.device)
        coords1 = coords0.clone()
        net = context.net
        iterations: list[torch.Tensor] = []
        flow_up = motion = None
        for it in range(iters):
            coords1 = coords1.detach()
            lookup = corr(coords1)
            net, mask, delta, motion = self.update(net, context.inp, lookup, coords1 - coords0, context.attention, temporal)
            coords1 = coords1 + delta
            if all_iterations or it == iters - 1:
                flow_up = convex_upsample(coords1 - coords0, mask)
                if all_iterations:
                    iterations.append(flow_up)
        assert flow_up is not None and motion is not None
        return PairEstimate(flow_up, coords1 - coords0, motion, iterations)

    def splat_motion(self, estimate: PairEstimate) -> torch.Tensor:
        """Forward-warp a pair's motion feature along its low-resolution flow (``average`` splatting)."""
        from ..ops import softsplat

        return softsplat(estimate.motion, estimate.low, mode="average", backend=self.config.splat_backend)

    def _advance(self, image1, fmap1, fmap2, previous: _Previous | None, all_iterations: bool) -> _Previous:
        temporal = None
        if previous is not None:
            source = previous.estimate
            if self.config.carry == "triplet" and not previous.two_frame:
                source = self.estimate_pair(previous.fmap1, previous.fmap2, previous.context)
            temporal = self.splat_motion(source)
        context = self.context(image1)
        estimate = self.estimate_pair(fmap1, fmap2, context, temporal, all_iterations=all_iterations)
        return _Previous(fmap1, fmap2, context, estimate, temporal is None)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _padder(self, shape: Sequence[int]) -> InputPadder:
        padder = InputPadder(shape, mode=self.config.pad_mode)
        ph, pw = padder.padded_shape
        if ph < MIN_PADDED_SIZE or pw < MIN_PADDED_SIZE:
            raise ShapeError(f"frames of {shape[-2]}x{shape[-1]} are too small for SplatFlow: padded to a multiple "
                             f"of 8 they must be at least {MIN_PADDED_SIZE}x{MIN_PADDED_SIZE} pixels")
        return padder

    def _check_size(self, h: int, w: int) -> None:
        self._padder((h, w))

    def validate_frames(self, frames: torch.Tensor) -> tuple[int, int, int, int]:
        b, t, h, w = super().validate_frames(frames)
        self._check_size(h, w)
        return b, t, h, w


def splatflow_loss(
    iterations: Sequence[torch.Tensor], target: torch.Tensor, valid: torch.Tensor | None = None,
    gamma: float = 0.8, max_flow: float = MAX_FLOW,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SplatFlow's sequence loss: ``Σ_i γ^(N-1-i) · mean over valid pixels of Σ_c |pred_i - gt|``.

    Unlike RAFT's loss, the L1 error is summed over the two flow channels and averaged over the
    valid pixels of all pairs together (not over all pixels).

    Args:
        iterations: N predictions ``[B, P, 2, H, W]`` (P pairs), last = final.
        target: ``[B, P, 2, H, W]``; non-finite or ``|gt| >= max_flow`` pixels are ignored.
        valid: ``[B, P, H, W]`` bool or float (>= 0.5 is valid), or None.

    Returns:
        ``(loss, metrics)``; metrics ``epe``, ``1px``, ``3px``, ``5px`` of the final prediction of the
        last pair (what the official code logs).
    """
    if not iterations:
        raise InvalidArgumentError("splatflow_loss needs at least one prediction")
    if target.shape != iterations[-1].shape:
        raise ShapeError(f"target has shape {list(target.shape)}, predictions {list(iterations[-1].shape)}")
    finite = torch.isfinite(target).all(dim=-3)
    target = torch.where(finite.unsqueeze(-3), target, torch.zeros_like(target))
    mask = finite & (target.norm(dim=-3) < max_flow)
    if valid is not None:
        if valid.shape != mask.shape:
            raise ShapeError(f"valid has shape {list(valid.shape)}, expected {list(mask.shape)}")
        mask = mask & (valid >= 0.5 if valid.is_floating_point() else valid.bool())
    count = mask.sum().clamp(min=1)
    n = len(iterations)
    loss = target.new_zeros(())
    for i, pred in enumerate(iterations):
        error = (pred - target).abs().sum(dim=-3)
        loss = loss + gamma ** (n - 1 - i) * (error * mask).sum() / count
    with torch.no_grad():
        epe = (iterations[-1][:, -1] - target[:, -1]).norm(dim=-3)[mask[:, -1]]
        if epe.numel() == 0:
            metrics = {k: float("nan") for k in ("epe", "1px", "3px", "5px")}
        else:
            metrics = {"epe": epe.mean().item(), **{f"{t}px": (epe < t).float().mean().item() for t in (1, 3, 5)}}
    return loss, metrics


# ---------------------------------------------------------------------------------------- weights


def _splatflow_key(key: str) -> str | None:
    for old, new in _LEGACY_NAMES:
        key = key.replace(old, new)
    if key.startswith("att.pos_emb."):  # GMA's relative position tables: unused by SplatFlow
        return None
    return key


def _twin(key: str) -> str | None:
    """The other name of a key of the ``norm3`` / ``downsample.1`` module registered twice."""
    if ".norm3." in key:
        return key.replace(".norm3.", ".downsample.1.")
    if ".downsample.1." in key:
        return key.replace(".downsample.1.", ".norm3.")
    return None


def load_splatflow_weights(model: SplatFlow, weights: Any) -> str:
    """Load official, training, GMA or ptlflow checkpoints into ``model``; return the kind loaded.

    * the released file (no prefix) and DDP training checkpoints (``module.``) load strictly;
      a file that lists only one name of the duplicated ``norm3`` / ``downsample.1`` module is
      accepted (the same tensors are loaded under both names);
    * ptlflow's ``.ckpt`` (``state_dict``) loads strictly;
    * a GMA checkpoint (``update_block.*``, no temporal branch) initialises the backbone; the
      ``_sp`` branch keeps its initialisation. Returns ``"backbone"`` in that case, else ``"full"``.

    Anything else missing, unexpected or mis-shaped raises :class:`CheckpointError`.
    """
    from .checkpoints import load_weights

    report = load_weights(model, weights, model_name="splatflow", strict=False, key_map=_splatflow_key)
    found = set(model.state_dict()) - set(report.missing)
    has_sp = any(k.startswith(SP_BRANCH) for k in found)
    missing = [k for k in report.missing
               if _twin(k) not in found and not (not has_sp and k.startswith(SP_BRANCH))]
    if missing or report.unexpected or report.mismatched:
        report.missing = missing
        raise CheckpointError("weights do not match SplatFlow:\n" + report.describe())
    return "full" if has_sp else "backbone"


#: The official evaluation: Sintel streamed (motion feature carried); KITTI's multi-view _09.._11
#: and Things triplets, the last flow.
PROTOCOLS = {
    "sintel": SequenceProtocol("SplatFlow: streamed, motion feature carried"),
    "kitti": ClipProtocol(3, 1, 1, description="SplatFlow: multi-view _09.._11, last flow"),
    "things": ClipProtocol(3, 1, 1, description="SplatFlow: triplets, last flow"),
}


#: SplatFlow's training recipe where it differs from the common stages (research note 3.6).
RECIPE = TrainingRecipe(stages={
    "things": {"steps": 100_000, "lr": 1.25e-4, "crop": (400, 720), "weight_decay": 1e-5},
    "sintel": {"lr": 1.25e-4, "batch_size": 6, "crop": (368, 768), "gamma": 0.8, "weight_decay": 1e-5},
    "kitti": {"mixture": "20*sintel_clean+420*kitti+10*hd1k+things", "steps": 50_000, "batch_size": 6,
              "crop": (368, 768), "gamma": 0.8, "weight_decay": 1e-5},
})

@register("splatflow", "SplatFlow (IJCV 2024): GMA + splatted motion feature of the previous pair", trainable=True,
          card=SPLATFLOW_CARD, protocols=PROTOCOLS, recipe=RECIPE, hyper_parameters=HYPER_PARAMETERS)
def build_splatflow(weights: Any = None, **options: Any) -> SplatFlow:
    """SplatFlow. ``weights``: a checkpoint path (official, GMA, ptlflow, ours), ``"kitti"``, or None."""
    known = set(SplatFlowConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidArgumentError(f"unknown option(s) {unknown} for splatflow; accepted: {sorted(known)}")
    model = SplatFlow(SplatFlowConfig(**options))
    if weights is not None:
        load_splatflow_weights(model, weights)
    return model
