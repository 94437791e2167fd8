"""Padding to a multiple of the network stride: official conventions, round trips, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import motion
from motion.padding import PAD_MODES, InputPadder, compute_pads, pad_to_multiple, unpad
from motion4d.errors import InvalidArgumentError, ShapeError


def test_lazy_export_from_package():
    assert motion.InputPadder is InputPadder


def test_models_check_pad_modes_against_the_one_list():
    from motion.models import splatflow, streamflow

    assert PAD_MODES == ("sintel", "kitti")
    assert splatflow.PAD_MODES is PAD_MODES and streamflow.PAD_MODES is PAD_MODES


def test_compute_pads_follow_the_official_conventions():
    # KITTI 375 x 1242: 1 row and 6 columns to add.
    assert compute_pads(375, 1242, 8, "sintel") == (3, 3, 0, 1)
    assert compute_pads(375, 1242, 8, "kitti") == (3, 3, 0, 1)
    # Sintel 436 x 1024: 4 rows, split top / bottom in "sintel", all at the bottom in "kitti".
    assert compute_pads(436, 1024, 8, "sintel") == (0, 0, 2, 2)
    assert compute_pads(436, 1024, 8, "kitti") == (0, 0, 0, 4)
    assert compute_pads(61, 45, 8, "sintel") == (1, 2, 1, 2)
    assert compute_pads(61, 45, 8, "kitti") == (1, 2, 0, 3)
    assert compute_pads(64, 64, 8, "sintel") == (0, 0, 0, 0)
    assert compute_pads(33, 33, 32, "kitti") == (15, 16, 0, 31)
    with pytest.raises(InvalidArgumentError):
        compute_pads(10, 10, 8, "chairs")
    with pytest.raises(InvalidArgumentError):
        compute_pads(10, 10, 0, "sintel")


@pytest.mark.parametrize("mode", ["sintel", "kitti"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8, torch.bool])
def test_padder_replicates_and_round_trips(mode, dtype):
    x = torch.from_numpy(np.random.default_rng(3).integers(0, 255, (2, 3, 3, 61, 45))).to(dtype)  # [B, T, 3, H, W]
    flow = torch.randn(2, 2, 2, 61, 45)
    padder = InputPadder(x.shape, mode=mode)
    padded_x, padded_flow = padder.pad(x, flow)
    assert padded_x.shape == (2, 3, 3, 64, 48) and padded_x.dtype == dtype
    assert padder.padded_shape == (64, 48)
    left, right, top, bottom = padder.pads
    reference = np.pad(x.numpy(), [(0, 0)] * 3 + [(top, bottom), (left, right)], mode="edge")
    np.testing.assert_array_equal(padded_x.numpy(), reference)
    assert torch.equal(padder.unpad(padded_x), x)
    assert torch.equal(padder.unpad(padded_flow), flow)
    single = padder.pad(x[0, 0, 0])  # [H, W]
    assert isinstance(single, torch.Tensor) and single.shape == (64, 48)


def test_padder_shape_errors():
    padder = InputPadder((1, 3, 61, 45))
    with pytest.raises(ShapeError, match=r"\[\.\.\., 61, 45\]"):
        padder.pad(torch.zeros(1, 3, 64, 48))
    with pytest.raises(ShapeError, match=r"\[\.\.\., 64, 48\]"):
        padder.unpad(torch.zeros(1, 3, 61, 45))
    with pytest.raises(ShapeError):
        InputPadder((5,))
    with pytest.raises(InvalidArgumentError):
        padder.pad()


def test_padder_keeps_gradients():
    x = torch.randn(1, 3, 13, 21, dtype=torch.float64, requires_grad=True)
    padder = InputPadder(x.shape, mode="kitti")
    padder.unpad(padder.pad(x) * 2).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2.0))


@pytest.mark.parametrize("mode", ["sintel", "kitti"])
def test_function_forms_for_arrays_and_tensors(mode):
    array = np.random.default_rng(4).random((5, 37, 29)).astype(np.float32)
    padded, pads = pad_to_multiple(array, 16, mode)
    assert padded.shape == (5, 48, 32) and isinstance(padded, np.ndarray)
    assert pads == compute_pads(37, 29, 16, mode)
    np.testing.assert_array_equal(unpad(padded, pads), array)
    tensor = torch.from_numpy(array)
    padded_t, pads_t = pad_to_multiple(tensor, 16, mode)
    assert pads_t == pads
    np.testing.assert_array_equal(padded_t.numpy(), padded)
    assert torch.equal(unpad(padded_t, pads_t), tensor)
    with pytest.raises(ShapeError):
        unpad(np.zeros((3, 4)), (2, 2, 0, 0))
    with pytest.raises(InvalidArgumentError):
        unpad(padded, (1, 2, 3))
    with pytest.raises(ShapeError):
        pad_to_multiple(np.zeros(5), 8)
