"""The interface every flow method implements (networks, training-free and classical alike)."""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from motion4d.checks import check_floating, check_int, check_shape
from motion4d.errors import InvalidArgumentError, ShapeError
from motion4d.imaging import as_model_frames, as_stream_frame

from ..windowing import plan_windows
from .blocks import MAX_FLOW, sequence_loss


@dataclass
class FlowOutput:
    """Result of a flow model on one batch of clips, or one chunk of :meth:`FlowModel.stream`.

    Attributes:
        forward: ``[B, P, 2, H, W]`` flow from frame t to t+1, in pixels (u right, v down); ``P = T - 1``
            for a clip of ``T`` frames, the chunk's pair count for a stream chunk (possibly 0).
        backward: ``[B, P, 2, H, W]`` flow from frame t+1 to t, or None when the model does not give it.
        extras: method-specific values (e.g. Reynolds' ``v_o`` / ``v_r`` / ``intensity`` terms).
        forward_low: ``[B, P, 2, h, w]`` the forward flow at 1/8 of the padded input size, in 1/8
            pixels (RAFT-family networks), or None.
        backward_low: the same for ``backward``, or None.
        forward_iterations: per refinement iteration, ``[B, P, 2, H, W]`` forward predictions (the
            last equals ``forward``); networks fill it in training mode, for their sequence loss.
        backward_iterations: the same for ``backward``, or None.
        first_pair: for a stream chunk, the position in the stream of its first pair (pair k is
            frames k, k+1); None for a whole-clip call, or a stream that does not number its chunks
            (its chunks are then taken as consecutive).
        occlusion: ``bool [B, P, H, W]`` pixels of frame t occluded in (or leaving) frame t+1, from the
            forward-backward check (:func:`motion.flow_geometry.forward_backward_occlusion`); filled by
            ``model(frames, occlusion=True)``, else None.
        confidence: ``float32 [B, P, H, W]`` in [0, 1], the forward-backward confidence of ``forward``, or None.
        backward_occlusion, backward_confidence: the same for ``backward`` (anchored at frame t+1), or None.
    """

    forward: torch.Tensor
    backward: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    _: KW_ONLY
    forward_low: torch.Tensor | None = None
    backward_low: torch.Tensor | None = None
    forward_iterations: list[torch.Tensor] | None = None
    backward_iterations: list[torch.Tensor] | None = None
    first_pair: int | None = None
    occlusion: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    backward_occlusion: torch.Tensor | None = None
    backward_confidence: torch.Tensor | None = None

    @property
    def num_pairs(self) -> int:
        """``P``, the number of flows per clip."""
        return int(self.forward.shape[1])


class FlowModel(nn.Module):
    """Base class: ``model(frames [B, T, 3, H, W] float in [0, 1]) -> FlowOutput``.

    Class attributes a subclass declares:

    * ``frames_per_window``: how many frames the method looks at together (2 for pairwise
      methods; 3 for VideoFlow-BOF; the clip length of VideoFlow-MOF and StreamFlow). Evaluation
      protocols and training clips follow it. The default :meth:`stream` runs pairwise windows,
      so a method that needs more frames per call overrides it.
    * ``min_frames``: the fewest frames a call accepts.
    * ``trainable``: whether the method has learnable parameters (networks) or not (classical).

    Capabilities every model has (a subclass overrides them where it knows better):

    * :meth:`stream`: flows over a frame sequence of any length, with bounded memory.
    """

    frames_per_window: ClassVar[int] = 2
    min_frames: ClassVar[int] = 2
    trainable: ClassVar[bool] = False
    registry_name: str | None = None  # set by motion.create: the name the model was built under

    def __call__(self, frames: Any, *args: Any, value_range: float | None = None, occlusion: bool = False,
                 **kwargs: Any) -> Any:
        """``model(frames)``: frames as the readers give them (uint8 ``[T, H, W, 3]``) or the model layout
        ``float [B, T, 3, H, W]`` in [0, 1]; 0-255 floats need ``value_range=255`` (see
        :func:`motion4d.imaging.as_model_frames`).

        ``occlusion=True`` also fills :attr:`FlowOutput.occlusion` / ``confidence`` (and the backward
        ones) from the forward-backward check; a model that gives no backward flow is run on the
        time-reversed frames for it, and that backward flow is returned too.
        """
        frames = as_model_frames(frames, value_range=value_range)
        out = super().__call__(frames, *args, **kwargs)
        if occlusion:
            from ..flow_geometry import forward_backward_occlusion

            if out.backward is None:
                out.backward = super().__call__(frames.flip(1), *args, **kwargs).forward.flip(1)
            out.occlusion, out.confidence = forward_backward_occlusion(out.forward, out.backward)
            out.backward_occlusion, out.backward_confidence = forward_backward_occlusion(out.backward, out.forward)
        return out

    def validate_frames(self, frames: torch.Tensor) -> tuple[int, int, int, int]:
        """Check ``frames`` is ``[B, T, 3, H, W]`` floating with T >= min_frames; return (B, T, H, W)."""
        dims = check_shape(frames, "frames", ("B", "T", 3, "H", "W"))
        check_floating(frames, "frames")
        if dims["T"] < self.min_frames:
            raise ShapeError(
                f"frames must hold at least {self.min_frames} frames for {type(self).__name__}, got T={dims['T']}"
            )
        return dims["B"], dims["T"], dims["H"], dims["W"]

    def forward(self, frames: torch.Tensor) -> FlowOutput:  # pragma: no cover - interface
        raise NotImplementedError  # abstract: every method overrides it

    @torch.no_grad()
    def stream(
        self,
        frames: Iterable[torch.Tensor],
        backward: bool = False,
        *,
        batch: int = 8,
        skip: Callable[[int], bool] | None = None,
    ) -> Iterator[FlowOutput]:
        """Flows of every consecutive pair of a frame sequence, in order, with bounded memory.

        The default runs the model on windows of ``batch + 1`` consecutive frames (at least
        ``min_frames``) that overlap by one frame, ``[1, batch + 1, 3, H, W]`` per call: ``batch``
        flows per call, each frame uploaded once. A tail shorter than ``min_frames`` is extended
        backwards and only its new pairs are given. Backward flow that the model does not produce
        is computed by running it on the time-reversed window. Models that carry state across
        windows or need other windows (SplatFlow, StreamFlow, VideoFlow) override this method.

        Args:
            frames: iterable of frames, read lazily: ``[3, H, W]`` floats in [0, 1] or uint8 frames as
                the readers give them (``[H, W, 3]``; see :func:`motion4d.imaging.as_stream_frame`).
            backward: also give backward flows (t+1 -> t); a model that cannot raises InvalidArgumentError.
            batch: flows per model call (a scheduling hint: models with their own windows ignore it).
            skip: ``skip(k) -> bool`` declares pair k (frames k, k+1) already done, for resumable
                pipelines. A window whose new pairs are all done is not run; it yields an empty chunk
                (``forward [1, 0, 2, H, W]``, ``first_pair`` just past the skipped pairs), so a
                consumer can release those frames. A stream may compute pairs declared done (the
                default does when a window is only partly done; stateful models ignore ``skip``).

        Yields:
            :class:`FlowOutput` chunks in order: ``forward [1, k, 2, H, W]`` for pairs
            ``first_pair .. first_pair + k - 1``; ``backward`` likewise when requested, else None.
        """
        check_int(batch, "batch", minimum=1)
        frames = (as_stream_frame(f, f"frames[{i}]")[0] for i, f in enumerate(frames))
        for window in plan_windows(frames, max(batch + 1, self.min_frames), self.min_frames):
            first, count = window.first_pair, window.num_pairs
            if skip is not None and all(skip(first + k) for k in range(count)):
                empty = window.frames[0].new_zeros(1, 0, 2, *window.frames[0].shape[-2:])
                yield FlowOutput(empty, empty if backward else None, first_pair=first + count)
                continue
            clip = torch.stack(window.frames)[None]
            out = self(clip)
            bwd = out.backward
            if backward and bwd is None:
                bwd = self(clip.flip(1)).forward.flip(1)
            keep = slice(window.skip, None)
            yield FlowOutput(
                out.forward[:, keep],
                bwd[:, keep] if backward else None,
                dict(out.extras) if window.skip == 0 else {},
                forward_low=None if out.forward_low is None else out.forward_low[:, keep],
                backward_low=None if out.backward_low is None or not backward else out.backward_low[:, keep],
                first_pair=first,
            )

    # ------------------------------------------------------------------ training (trainable models)

    def training_predictions(self, frames: torch.Tensor, iters: int | None = None) -> list[torch.Tensor]:
        """Per-iteration predictions of one training forward on ``frames [B, T, 3, H, W]``: what
        :meth:`loss` consumes (last = final).

        Default: ``self(frames)`` in training mode, whose ``forward_iterations`` hold N
        predictions ``[B, T-1, 2, H, W]``; with ``backward_iterations`` too, each prediction
        is ``[B, 2(T-1), 2, H, W]``, the forward pairs then the backward ones. ``iters`` is used by
        models that take the number of refinement iterations per call (VideoFlow); the others run
        their configured training iterations.
        """
        out = self(frames)
        predictions = out.forward_iterations
        if not predictions:
            raise InvalidArgumentError(f"{type(self).__name__} gives no per-iteration predictions in training mode")
        backward = out.backward_iterations
        if backward:
            predictions = [torch.cat([f, b], dim=1) for f, b in zip(predictions, backward)]
        return list(predictions)

    def loss(
        self, predictions: Sequence[torch.Tensor], batch: Mapping[str, torch.Tensor], gamma: float = 0.8,
        max_flow: float = MAX_FLOW,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss of :meth:`training_predictions` against a batch of clips.

        Args:
            predictions: N tensors ``[B, P, 2, H, W]`` (last = final).
            batch: ``flow_forward`` / ``flow_backward`` ``[B, T-1, 2, H, W]`` and their ``valid_*``
                masks ``[B, T-1, H, W]`` (the clips of :mod:`motion.training.clips`, batched; a
                missing mask means all valid).
            gamma: iteration weight base of the sequence loss; max_flow: larger targets are ignored.

        Default: RAFT's sequence loss (:func:`~motion.models.blocks.sequence_loss`) against the
        forward flows (P = T-1) or the forward then backward flows (P = 2(T-1)).

        Returns:
            ``(loss, metrics)`` with metrics ``epe``, ``1px``, ``3px``, ``5px`` of the final prediction.
        """
        if not predictions:
            raise InvalidArgumentError(f"{type(self).__name__}.loss needs at least one prediction")
        target, valid = batch["flow_forward"], _valid_mask(batch, "forward")
        if predictions[0].shape[1] == 2 * target.shape[1]:  # forward pairs, then backward pairs
            target = torch.cat([target, batch["flow_backward"]], dim=1)
            valid = torch.cat([valid, _valid_mask(batch, "backward")], dim=1)
        return sequence_loss(predictions, target, valid, gamma=gamma, max_flow=max_flow)


def _valid_mask(batch: Mapping[str, torch.Tensor], direction: str) -> torch.Tensor:
    """``batch["valid_<direction>"]``, or all valid ``[B, P, H, W]`` when the batch has no mask."""
    flow = batch[f"flow_{direction}"]
    valid = batch.get(f"valid_{direction}")
    return valid if valid is not None else flow.new_ones(flow.shape[:-3] + flow.shape[-2:])
