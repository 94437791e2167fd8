"""The interface every flow method implements (networks, training-free and classical alike)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from motion4d.checks import check_floating, check_shape
from motion4d.errors import ShapeError


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
