"""``tiny-flow``: a few-layer convolutional flow regressor for smoke tests of the training tools.

It is a real (if weak) network: for each consecutive pair it sees both frames and their
difference and regresses the flow in one shot at full resolution, plus one residual refinement
whose two predictions feed the sequence loss like the RAFT family's iterations. ~6k parameters;
a CPU step on a 32 x 48 crop takes milliseconds, which is what ``motion4d train`` tests, DDP checks
and quick recipe dry runs need::

    model = motion.create("tiny-flow", device="cpu")
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from motion.models.base import FlowModel, FlowOutput
from motion.models.cards import TINY_FLOW_CARD
from motion.registry import register
from motion4d.checks import check_finite


class TinyFlow(FlowModel):
    """``frames [B, T, 3, H, W] -> forward [B, T-1, 2, H, W]`` by two small conv stacks."""

    frames_per_window: ClassVar[int] = 2
    min_frames: ClassVar[int] = 2
    trainable: ClassVar[bool] = True

    def __init__(self, width: int = 16, max_displacement: float = 32.0) -> None:
        super().__init__()
        self.max_displacement = float(max_displacement)
        self.encoder = nn.Sequential(
            nn.Conv2d(9, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(width, 2, 3, padding=1)
        self.refine = nn.Sequential(
            nn.Conv2d(width + 2, width, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(width, 2, 3, padding=1),
        )

    def forward(self, frames: torch.Tensor) -> FlowOutput:
        b, t, h, w = self.validate_frames(frames)
        check_finite(frames, "frames")
        first, second = frames[:, :-1].reshape(-1, 3, h, w), frames[:, 1:].reshape(-1, 3, h, w)
        features = self.encoder(torch.cat([first, second, second - first], dim=1))
        coarse = torch.tanh(self.head(features)) * self.max_displacement
        fine = coarse + self.refine(torch.cat([features, coarse], dim=1))
        shape = (b, t - 1, 2, h, w)
        iterations = [coarse.reshape(shape), fine.reshape(shape)]
        return FlowOutput(iterations[-1], forward_iterations=iterations)


@register("tiny-flow", "tiny conv flow regressor for smoke tests of training (not accurate)", trainable=True,
          card=TINY_FLOW_CARD)
def build_tiny_flow(weights: Any = None, width: int = 16, max_displacement: float = 32.0) -> TinyFlow:
    """``weights``: ``model_final.pth`` of ``motion4d train`` (or any state dict of this network) or None."""
    model = TinyFlow(width=width, max_displacement=max_displacement)
    if weights is not None:
        from motion.models.checkpoints import load_weights

        load_weights(model, weights, model_name="tiny-flow")
    return model
