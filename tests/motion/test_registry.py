"""Model registry and the FlowModel interface."""
from __future__ import annotations

import pytest
import torch

import motion
from motion.models.base import FlowModel, FlowOutput
from motion.registry import create, list_models, register
from motion4d.errors import InvalidArgumentError, ShapeError


class _ShiftModel(FlowModel):
    """Predicts a constant flow; enough to exercise the registry plumbing."""

    def __init__(self, u: float = 1.0) -> None:
        super().__init__()
        self.u = u

    def forward(self, frames: torch.Tensor) -> FlowOutput:
        b, t, h, w = self.validate_frames(frames)
        flow = torch.zeros(b, t - 1, 2, h, w)
        flow[:, :, 0] = self.u
        return FlowOutput(forward=flow)


@register("test-shift", description="constant flow for registry tests")
def _build_shift(weights=None, u: float = 1.0) -> FlowModel:
    return _ShiftModel(u)


def test_create_passes_options_and_sets_eval() -> None:
    model = create("test-shift", device="cpu", u=2.5)
    assert not model.training
    out = model(torch.rand(2, 3, 3, 8, 10))
    assert out.forward.shape == (2, 2, 2, 8, 10)
    assert torch.all(out.forward[:, :, 0] == 2.5)
    assert "test-shift" in list_models()


def test_unknown_model_lists_available() -> None:
    with pytest.raises(InvalidArgumentError, match="test-shift"):
        create("no-such-model")


def test_validate_frames_rejects_bad_input() -> None:
    model = _ShiftModel()
    with pytest.raises(ShapeError, match="at least 2 frames"):
        model(torch.rand(1, 1, 3, 8, 8))
    with pytest.raises(ShapeError, match="frames must have shape"):
        model(torch.rand(1, 2, 8, 8))
    with pytest.raises(ShapeError, match="floating point"):
        model(torch.zeros(1, 2, 3, 8, 8, dtype=torch.uint8))


def test_lazy_top_level_names() -> None:
    assert motion.create is create
    assert motion.FlowOutput is FlowOutput
    with pytest.raises(AttributeError):
        motion.does_not_exist  # noqa: B018
