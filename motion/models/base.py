"""The interface every flow method implements (networks, training-free and classical alike)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from motion4d.checks import check_floating, check_shape
from motion4d.errors import InvalidArgumentError, ShapeError

from .blocks import MAX_FLOW, sequence_loss


@dataclass
class FlowOutput:
    """Result of a flow model on one batch of clips.

    Attributes:
        forward: ``[B, T-1, 2, H, W]`` flow from frame t to t+1, in pixels (u right, v down).
        backward: ``[B, T-1, 2, H, W]`` flow from frame t+1 to t, or None when the model does not give it.
        extras: method-specific tensors (e.g. low-resolution flow, motion features, Reynolds terms).
    """

    forward: torch.Tensor
    backward: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class FlowModel(nn.Module):
    """Base class: ``model(frames [B, T, 3, H, W] float in [0, 1]) -> FlowOutput``.

    Class attributes a subclass declares so that :func:`motion.estimate_flow` can window a video:

    * ``frames_per_window``: how many frames one call should see (2 for pairwise methods; 3 for
      VideoFlow-BOF; the clip length for VideoFlow-MOF and StreamFlow).
    * ``min_frames``: the fewest frames a call accepts.
    * ``trainable``: whether the method has learnable parameters (networks) or not (classical).
    """

    frames_per_window: ClassVar[int] = 2
    min_frames: ClassVar[int] = 2
    trainable: ClassVar[bool] = False

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

    # ------------------------------------------------------------------ training (trainable models)

    def training_predictions(self, frames: torch.Tensor, iters: int | None = None) -> list[torch.Tensor]:
        """Per-iteration predictions of one training forward on ``frames [B, T, 3, H, W]``: what
        :meth:`loss` consumes (last = final).

        Default: ``self(frames)`` in training mode, whose ``extras["forward_iterations"]`` hold N
        predictions ``[B, T-1, 2, H, W]``; with ``extras["backward_iterations"]`` too, each prediction
        is ``[B, 2(T-1), 2, H, W]``, the forward pairs then the backward ones. ``iters`` is used by
        models that take the number of refinement iterations per call (VideoFlow); the others run
        their configured training iterations.
        """
        out = self(frames)
        predictions = out.extras.get("forward_iterations")
        if not predictions:
            raise InvalidArgumentError(f"{type(self).__name__} gives no per-iteration predictions in training mode")
        backward = out.extras.get("backward_iterations")
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
