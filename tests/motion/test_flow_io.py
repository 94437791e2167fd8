"""Flow file formats: round trips, independent encoders/decoders, invalid values, bad files."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from motion.flow_io import (
    FLOW_EXTENSIONS,
    read_flo,
    read_flow,
    read_kitti_png,
    read_pfm,
    write_flow,
    write_pfm,
)
from motion4d.errors import (
    InputFileError,
    InvalidArgumentError,
    MissingDependencyError,
    MissingFileError,
    ShapeError,
)
from tests.motion.fake_datasets import encode_flo, encode_kitti_png, encode_pfm

ODD = (7, 13)  # H != W, both odd: catches transposes and row-order mistakes


def _flow_and_mask(rng: np.random.Generator, size=ODD, scale: float = 30.0):
    flow = (rng.standard_normal((*size, 2)) * scale).astype(np.float32)
    valid = rng.random(size) < 0.75
    return flow, valid


def _check_read(path: Path, flow: np.ndarray, valid: np.ndarray) -> None:
    got, got_valid = read_flow(path)
    assert got.dtype == np.float32 and got.shape == flow.shape
    assert got_valid.dtype == np.bool_ and got_valid.shape == valid.shape
    np.testing.assert_array_equal(got_valid, valid)
    np.testing.assert_array_equal(got[valid], flow[valid])
    assert np.all(got[~valid] == 0)


# ---- round trips through every format -------------------------------------------------------------


@pytest.mark.parametrize("ext", [".flo", ".pfm", ".flo5", ".npy", ".npz"])
@pytest.mark.parametrize("size", [ODD, (1, 1), (32, 5)])
def test_float_formats_round_trip_exactly_with_invalid_pixels(tmp_path, rng, ext, size):
    flow, valid = _flow_and_mask(rng, size)
    path = write_flow(tmp_path / f"f{ext}", flow, valid)
    assert path == tmp_path / f"f{ext}"
    _check_read(path, flow, valid)
    assert [p.name for p in tmp_path.iterdir()] == [f"f{ext}"]  # no temporary left behind


@pytest.mark.parametrize("ext", FLOW_EXTENSIONS)
def test_all_valid_when_no_mask_given(tmp_path, rng, ext):
    flow = (rng.integers(-400 * 64, 400 * 64, size=(*ODD, 2)) / 64).astype(np.float32)
    path = write_flow(tmp_path / f"f{ext}", flow)
    _check_read(path, flow, np.ones(ODD, bool))


def test_non_finite_values_are_written_as_invalid(tmp_path, rng):
    flow, _ = _flow_and_mask(rng)
    flow[0, 0, 0] = np.nan
    flow[3, 4, 1] = np.inf
    expected = np.ones(ODD, bool)
    expected[0, 0] = expected[3, 4] = False
    for ext in FLOW_EXTENSIONS:
        _check_read(write_flow(tmp_path / f"f{ext}", np.round(flow * 64) / 64), np.round(flow * 64) / 64, expected)


def test_uppercase_extension_dispatches(tmp_path, rng):
    flow, valid = _flow_and_mask(rng)
    _check_read(write_flow(tmp_path / "F.FLO", flow, valid), flow, valid)


def test_torch_channels_first_tensor_is_accepted(tmp_path, rng):
    flow, valid = _flow_and_mask(rng)
    tensor = torch.from_numpy(flow).permute(2, 0, 1).to(torch.float64)
    path = write_flow(tmp_path / "t.flo", tensor, torch.from_numpy(valid))
    _check_read(path, flow, valid)


def test_numpy_channels_first_is_rejected(tmp_path):
    with pytest.raises(ShapeError, match=r"\[H, W, 2\]"):
        write_flow(tmp_path / "x.flo", np.zeros((2, 5, 7), np.float32))
    with pytest.raises(ShapeError, match=r"\[2, H, W\]"):
        write_flow(tmp_path / "x.flo", torch.zeros(5, 7, 2))
    with pytest.raises(ShapeError, match="valid"):
        write_flow(tmp_path / "x.flo", np.zeros((5, 7, 2), np.float32), np.ones((7, 5), bool))
    with pytest.raises(ShapeError, match="numpy array"):
        write_flow(tmp_path / "x.flo", [[0.0, 0.0]])
    with pytest.raises(ShapeError, match="dtype"):
        write_flow(tmp_path / "x.flo", np.zeros((5, 7, 2), bool))
    assert not any(tmp_path.iterdir())


# ---- Middlebury .flo against an independent byte-level encoder/decoder ----------------------------


def test_flo_bytes_match_the_middlebury_spec(tmp_path, rng):
    flow, valid = _flow_and_mask(rng)
    raw = write_flow(tmp_path / "a.flo", flow, valid).read_bytes()
    assert raw[:4] == b"PIEH"
    assert np.frombuffer(raw[4:12], "<i4").tolist() == [ODD[1], ODD[0]]  # width, height
    values = np.frombuffer(raw[12:], "<f4").reshape(*ODD, 2)
    np.testing.assert_array_equal(values[valid], flow[valid])
    assert np.all(values[~valid] == np.float32(1e10))


def test_flo_unknown_values_are_invalid(tmp_path, rng):
    flow, _ = _flow_and_mask(rng)
    flow[1, 2] = [1e10, 0.0]  # Middlebury "unknown"
    flow[2, 3] = [0.0, -2e9]  # either component above 1e9 in magnitude
    flow[4, 5] = [np.nan, 1.0]
    flow[5, 6] = [1e9, -1e9]  # exactly at the threshold: still known
    encode_flo(tmp_path / "u.flo", flow)
    valid = np.ones(ODD, bool)
    valid[1, 2] = valid[2, 3] = valid[4, 5] = False
    _check_read(tmp_path / "u.flo", flow, valid)
    raw, raw_valid = read_flo(tmp_path / "u.flo")  # the per-format reader keeps raw values
    assert raw[1, 2, 0] == np.float32(1e10) and not raw_valid[1, 2]


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"PIE", "too short"),
        (b"ABCD" + np.array([2, 2], "<i4").tobytes() + bytes(32), "magic"),
        (b"PIEH" + np.array([2, 2], "<i4").tobytes() + bytes(31), "truncated"),
        (b"PIEH" + np.array([2, 2], "<i4").tobytes() + bytes(40), "longer"),
        (b"PIEH" + np.array([0, 2], "<i4").tobytes(), "implausible"),
        (b"PIEH" + np.array([-3, 2], "<i4").tobytes() + bytes(48), "implausible"),
    ],
)
def test_flo_bad_files_raise_naming_the_path(tmp_path, payload, message):
    path = tmp_path / "bad.flo"
    path.write_bytes(payload)
    with pytest.raises(InputFileError, match=message) as info:
        read_flow(path)
    assert str(path) in str(info.value)


# ---- KITTI 16-bit PNG ---------------------------------------------------------------------------


def test_kitti_png_channels_and_encoding_follow_the_devkit(tmp_path):
    flow = np.array([[[1.5, -2.25], [0.0, 0.0]], [[511.984375, -512.0], [3.0, 4.0]]], np.float32)
    valid = np.array([[True, False], [True, True]])
    path = write_flow(tmp_path / "k.png", flow, valid)
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # independent decode: OpenCV gives B, G, R
    assert bgr.dtype == np.uint16 and bgr.shape == (2, 2, 3)
    r, g, b = bgr[..., 2], bgr[..., 1], bgr[..., 0]
    assert r[0, 0] == 1.5 * 64 + 32768 and g[0, 0] == -2.25 * 64 + 32768 and b[0, 0] == 1
    assert r[1, 0] == 65535 and g[1, 0] == 0
    assert (r[0, 1], g[0, 1], b[0, 1]) == (0, 0, 0)  # invalid pixels are all zero, like the devkit
    _check_read(path, flow, valid)


def test_kitti_png_is_exact_on_the_1_64_grid(tmp_path, rng):
    flow = (rng.integers(-512 * 64, 512 * 64, size=(*ODD, 2)) / 64).astype(np.float32)
    valid = rng.random(ODD) < 0.6
    _check_read(write_flow(tmp_path / "k.png", flow, valid), flow, valid)


def test_kitti_png_rounds_to_nearest_and_clips(tmp_path):
    flow = np.array([[[0.3, -0.3], [600.0, -600.0], [1 / 128 + 1e-4, -1 / 128 - 1e-4]]], np.float32)
    got, valid = read_flow(write_flow(tmp_path / "k.png", flow))
    assert valid.all()
    np.testing.assert_array_equal(got[0, 0], [19 / 64, -19 / 64])  # 0.3 * 64 = 19.2 -> 19
    np.testing.assert_array_equal(got[0, 1], [511.984375, -512.0])
    np.testing.assert_array_equal(got[0, 2], [1 / 64, -1 / 64])
    assert np.abs(got - np.clip(flow, -512, 511.984375)).max() <= 1 / 128


def test_kitti_png_reads_an_independently_encoded_file(tmp_path, rng):
    flow = (rng.integers(-100 * 64, 100 * 64, size=(*ODD, 2)) / 64).astype(np.float32)
    valid = rng.random(ODD) < 0.5
    encode_kitti_png(tmp_path / "ind.png", flow, valid)
    _check_read(tmp_path / "ind.png", flow, valid)
    raw, raw_valid = read_kitti_png(tmp_path / "ind.png")
    np.testing.assert_array_equal(raw, flow)  # the per-format reader keeps values of invalid pixels
    np.testing.assert_array_equal(raw_valid, valid)


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((4, 5, 3), np.uint8), "16-bit"),
        (np.zeros((4, 5), np.uint16), "1 channel"),
        (np.zeros((4, 5, 4), np.uint16), "4 channel"),
    ],
)
def test_kitti_png_wrong_kind_raises(tmp_path, image, message):
    path = tmp_path / "bad.png"
    cv2.imwrite(str(path), image)
    with pytest.raises(InputFileError, match=message):
        read_flow(path)


def test_kitti_png_garbage_raises(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputFileError, match="not a readable PNG"):
        read_flow(path)


# ---- PFM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_pfm_round_trip_and_independent_decode(tmp_path, rng, little_endian, channels):
    shape = ODD if channels == 1 else (*ODD, 3)
    data = rng.standard_normal(shape).astype(np.float32)
    path = write_pfm(tmp_path / "a.pfm", data, little_endian=little_endian)
    np.testing.assert_array_equal(read_pfm(path), data)
    raw = path.read_bytes()
    header = f"{'PF' if channels == 3 else 'Pf'}\n{ODD[1]} {ODD[0]}\n{-1.0 if little_endian else 1.0}\n".encode()
    assert raw.startswith(header)
    stored = np.frombuffer(raw[len(header):], "<f4" if little_endian else ">f4").reshape(shape)
    np.testing.assert_array_equal(stored, data[::-1])  # rows bottom to top
    encode_pfm(tmp_path / "b.pfm", data, little_endian=little_endian)
    np.testing.assert_array_equal(read_pfm(tmp_path / "b.pfm"), data)


def test_pfm_flow_uses_first_two_channels_and_header_variants(tmp_path, rng):
    data = rng.standard_normal((*ODD, 3)).astype(np.float32)
    body = np.asarray(data[::-1], ">f4").tobytes()
    path = tmp_path / "v.pfm"
    path.write_bytes(f"PF\n{ODD[1]}  {ODD[0]}\n  2.5\n".encode() + body)  # extra spaces, scale > 0
    flow, valid = read_flow(path)
    np.testing.assert_array_equal(flow, data[..., :2])
    assert valid.all()
    path.write_bytes(f"PF\r\n{ODD[1]} {ODD[0]}\r\n1.0\r\n".encode() + body)  # Windows line ends
    np.testing.assert_array_equal(read_pfm(path), data)


def test_pfm_flow_write_has_zero_third_channel_and_nan_invalid(tmp_path, rng):
    flow, valid = _flow_and_mask(rng)
    data = read_pfm(write_flow(tmp_path / "f.pfm", flow, valid))
    assert np.all(data[..., 2] == 0)
    assert np.isnan(data[~valid][:, :2]).all()


def test_single_channel_pfm_is_not_flow(tmp_path):
    write_pfm(tmp_path / "disp.pfm", np.ones(ODD, np.float32))
    with pytest.raises(InputFileError, match="1-channel"):
        read_flow(tmp_path / "disp.pfm")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"P6\n2 2\n255\n" + bytes(12), "not a PFM"),
        (b"PF\n2 2\n-1.0\n" + bytes(47), "truncated"),
        (b"PF\n2 2\n-1.0\n" + bytes(49), "longer"),
        (b"Pf\n2 2\n0\n" + bytes(16), "non-zero"),
        (b"Pf\n2 2\nabc\n" + bytes(16), "not a number"),
        (b"Pf\n0 2\n-1\n", "implausible"),
    ],
)
def test_pfm_bad_files_raise(tmp_path, payload, message):
    path = tmp_path / "bad.pfm"
    path.write_bytes(payload)
    with pytest.raises(InputFileError, match=message) as info:
        read_pfm(path)
    assert str(path) in str(info.value)


def test_write_pfm_rejects_bad_shapes(tmp_path):
    with pytest.raises(ShapeError):
        write_pfm(tmp_path / "x.pfm", np.zeros((3, 4, 2), np.float32))


# ---- .flo5 / numpy ------------------------------------------------------------------------------


def test_flo5_without_h5py_raises_missing_dependency(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingDependencyError, match="hdf5"):
        write_flow(tmp_path / "a.flo5", np.zeros((2, 3, 2), np.float32))
    (tmp_path / "b.flo5").write_bytes(b"x")
    with pytest.raises(MissingDependencyError, match="h5py"):
        read_flow(tmp_path / "b.flo5")


def test_flo5_bad_files_raise(tmp_path):
    import h5py

    (tmp_path / "junk.flo5").write_bytes(b"not hdf5 at all")
    with pytest.raises(InputFileError, match="HDF5"):
        read_flow(tmp_path / "junk.flo5")
    with h5py.File(tmp_path / "nokey.flo5", "w") as f:
        f.create_dataset("disparity", data=np.zeros((2, 2), np.float32))
    with pytest.raises(InputFileError, match="'flow'"):
        read_flow(tmp_path / "nokey.flo5")
    with h5py.File(tmp_path / "shape.flo5", "w") as f:
        f.create_dataset("flow", data=np.zeros((2, 2, 3), np.float32))
    with pytest.raises(InputFileError, match=r"\[H, W, 2\]"):
        read_flow(tmp_path / "shape.flo5")


def test_numpy_files_bad_content_raise(tmp_path):
    np.save(tmp_path / "shape.npy", np.zeros((2, 4, 4), np.float32))
    with pytest.raises(InputFileError, match=r"\[H, W, 2\]"):
        read_flow(tmp_path / "shape.npy")
    (tmp_path / "junk.npy").write_bytes(b"garbage")
    with pytest.raises(InputFileError, match="npy"):
        read_flow(tmp_path / "junk.npy")
    np.savez(tmp_path / "nokey.npz", uv=np.zeros((2, 2, 2)))
    with pytest.raises(InputFileError, match="'flow'"):
        read_flow(tmp_path / "nokey.npz")
    np.savez(tmp_path / "mask.npz", flow=np.zeros((2, 3, 2)), valid=np.ones((3, 2), bool))
    with pytest.raises(InputFileError, match="'valid'"):
        read_flow(tmp_path / "mask.npz")
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(InputFileError, match="npz"):
        read_flow(tmp_path / "junk.npz")


def test_npz_without_valid_uses_finiteness(tmp_path):
    flow = np.ones((3, 4, 2), np.float64)
    flow[1, 1, 1] = np.nan
    np.savez(tmp_path / "a.npz", flow=flow)
    got, valid = read_flow(tmp_path / "a.npz")
    assert got.dtype == np.float32 and valid.sum() == 11 and not valid[1, 1]


# ---- paths --------------------------------------------------------------------------------------


def test_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(InvalidArgumentError, match=r"a\.jpg.*\.flo"):
        read_flow(tmp_path / "a.jpg")
    with pytest.raises(InvalidArgumentError, match="unknown optical-flow file extension"):
        write_flow(tmp_path / "b.tiff", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(MissingFileError, match="nothere.flo"):
        read_flow(tmp_path / "nothere.flo")
    with pytest.raises(InputFileError, match="not a file"):
        read_flow(tmp_path)


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_flow(tmp_path / "keep.npy", np.ones((2, 2, 2), np.float32))

    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(RuntimeError):
        write_flow(path, np.zeros((2, 2, 2), np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npy"]
    np.testing.assert_array_equal(read_flow(path)[0], np.ones((2, 2, 2), np.float32))


def test_write_creates_parent_folders(tmp_path):
    path = write_flow(tmp_path / "a" / "b" / "c.flo", np.zeros((2, 2, 2), np.float32))
    assert path.is_file()


def test_public_names_are_reachable_from_motion():
    import motion

    assert motion.read_flow is read_flow and motion.write_flow is write_flow
