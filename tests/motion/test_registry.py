"""Model registry (entries with weights, protocols, recipe) and the FlowModel interface."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import motion
from motion import registry
from motion.models.base import FlowModel, FlowOutput
from motion.models.checkpoints import WeightSet
from motion.protocols import PAIRS, ClipProtocol, SequenceProtocol, default_protocol
from motion.registry import (
    create,
    list_models,
    model_entry,
    named_weights_url,
    register,
)
from motion4d.errors import InvalidArgumentError, ShapeError
from motion4d.registry import Registry


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


def test_unknown_options_are_refused_by_name() -> None:
    for name in ("dis", "farneback", "tiny-flow"):  # closed signature, **options to a constructor, closed
        with pytest.raises(InvalidArgumentError, match=f"model '{name}' takes no option 'colour'"):
            create(name, device="cpu", colour=1)
    # a closed signature is checked before the weights are resolved (here: an unknown named set)
    with pytest.raises(InvalidArgumentError, match="takes no option 'colour'"):
        create("tiny-flow", weights="no-such-set", device="cpu", colour=1)
    assert create("dis", device="cpu", preset="fast").preset == "fast"


def test_unknown_model_lists_available() -> None:
    with pytest.raises(InvalidArgumentError, match="test-shift"):
        create("no-such-model")


def test_validate_frames_rejects_bad_input() -> None:
    model = _ShiftModel()
    with pytest.raises(ShapeError, match="at least 2 frames"):
        model(torch.rand(1, 1, 3, 8, 8))
    with pytest.raises(ShapeError, match="frames must have shape"):
        model(torch.rand(1, 2, 8, 8))
    with pytest.raises(ShapeError, match="uint8 .* or floating point"):
        model(torch.zeros(1, 2, 3, 8, 8, dtype=torch.int64))


def test_one_input_contract_for_every_model() -> None:
    """uint8 frames in the readers' layout, [0, 1] floats in the model layout and 0-255 floats with
    value_range=255 give the same flow; 0-255 floats without it are refused (issue #17: DIS differed
    by up to 1.86 px on them, silently)."""
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    unit = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255
    for name in ("dis", "farneback", "reynolds", "tiny-flow"):
        model = create(name, device="cpu")
        reference = model(unit).forward
        assert torch.equal(model(frames).forward, reference), name
        assert torch.equal(model(unit * 255, value_range=255).forward, reference), name
        with pytest.raises(InvalidArgumentError, match="value_range=255"):
            model(unit * 255)
        streamed = torch.cat([out.forward for out in model.stream(iter(frames))], dim=1)
        assert torch.allclose(streamed, reference, atol=1e-5), name


def test_lazy_top_level_names() -> None:
    assert motion.create is create
    assert motion.FlowOutput is FlowOutput
    with pytest.raises(AttributeError):
        motion.does_not_exist  # noqa: B018


# ----------------------------------------------------------------------------- ModelEntry


@pytest.fixture
def fresh_models(monkeypatch):
    """An empty model registry in place of the shipped one (so test entries do not leak)."""
    models = Registry("model")
    monkeypatch.setattr(registry, "MODELS", models)
    return models


def test_duplicate_registration_warns_and_keeps_the_newer(fresh_models) -> None:
    register("dup", "first")(_build_shift)
    with pytest.warns(RuntimeWarning, match="'dup' registered again"):
        register("dup", "second")(_build_shift)
    assert model_entry("dup").description == "second" and list_models() == ["dup"]


def test_entry_carries_weights_protocols_and_recipe(fresh_models) -> None:
    sintel = SequenceProtocol("test: streamed")
    weights = {"sintel": WeightSet("shift-sintel-0123abcd.ckpt", "shift.pth")}
    register("shift-declared", "with declarations", weights=weights, protocols={"sintel": sintel})(_build_shift)
    register("shift-plain", "without")(_build_shift)
    entry = model_entry("shift-declared")
    assert entry.weights == weights and entry.recipe is None
    assert named_weights_url("shift-declared", "sintel").endswith("/weights1/shift-sintel-0123abcd.ckpt")
    model = _ShiftModel()
    assert default_protocol("shift-declared", model, "sintel") is sintel
    assert default_protocol("shift-declared", model, "kitti") == PAIRS  # not declared: from frames_per_window
    assert default_protocol("shift-plain", model, "sintel") == PAIRS
    assert default_protocol("unregistered", model, "things") == PAIRS


def test_shipped_entries_declare_the_official_protocols_and_weights() -> None:
    mof, bof = model_entry("videoflow-mof"), model_entry("videoflow-bof")
    assert isinstance(mof.protocols["sintel"], SequenceProtocol)
    assert mof.protocols["kitti"] == ClipProtocol(5, 2, 1, call="interior", description=mof.protocols["kitti"].description)
    assert all(p.call == "interior" and p.clip_length == 3 for p in bof.protocols.values())
    assert set(model_entry("streamflow").weights) == {"things", "sintel", "kitti", "spring"}
    assert model_entry("dis").weights == {} and model_entry("dis").protocols == {}
    for name in list_models():
        entry = model_entry(name)
        assert entry.name == name and set(entry.protocols) <= {"sintel", "kitti", "things"}
