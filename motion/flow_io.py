"""Optical-flow files: read and write the formats the flow data sets and benchmarks use.

``flow, valid = read_flow(path)`` and ``write_flow(path, flow, valid=None)`` dispatch on the file
extension (case-insensitive):

=========  ===================================================  =====================================
extension  format                                               invalid pixels
=========  ===================================================  =====================================
``.flo``   Middlebury / Sintel / FlyingChairs: ``PIEH`` magic,  either component with magnitude
           int32 width, height, float32 u, v interleaved         > 1e9 ("unknown"); written as 1e10
``.png``   KITTI 16-bit RGB PNG: R, G = u, v as                  B channel 0; written as 0, 0, 0
           ``value * 64 + 2**15``, B = valid
``.pfm``   FlyingThings3D portable float map, 3 channels        non-finite values; written as NaN
           (third unused), rows stored bottom to top
``.flo5``  Spring: HDF5 dataset ``"flow"`` ``[H, W, 2]``        non-finite values; written as NaN
           (needs h5py)
``.npy``   numpy ``[H, W, 2]`` float32                          non-finite values; written as NaN
``.npz``   numpy archive with ``flow [H, W, 2]`` and optional   ``valid == False`` (or non-finite
           ``valid [H, W]`` bool                                 flow when ``valid`` is absent)
=========  ===================================================  =====================================

Conventions: numpy, channels last. ``flow`` is ``float32 [H, W, 2]`` in pixels (channel 0 = u to the
right, channel 1 = v down) and ``valid`` is ``bool [H, W]``. :func:`read_flow` sets the flow of
invalid pixels to 0 so that an accidental use of it stays finite. :func:`write_flow` also takes a
torch tensor ``[2, H, W]`` (the channels-first layout of the rest of motion4d) and treats any pixel
with a non-finite component as invalid. Every write is atomic.

KITTI PNG quantisation: values are rounded to the nearest 1/64 px (the devkit truncates; rounding
halves the worst-case error and agrees exactly on values that lie on the 1/64 grid) and, as in the
devkit, clipped to the representable range ``[-512, 511.984375]``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.atomic import atomic_path, atomic_write_bytes
from motion4d.checks import check_shape, require
from motion4d.errors import InputFileError, InvalidArgumentError, MissingFileError, ShapeError
from motion4d.lazy_torch import is_tensor
from motion4d.limits import check_declared_size
from motion4d.numpy_io import load_npy, load_npz, npz_keys

from .image_io import check_image_size

FLO_MAGIC = 202021.25
FLO_UNKNOWN_THRESHOLD = 1e9
FLO_UNKNOWN_VALUE = 1e10
KITTI_SCALE = 64.0
KITTI_OFFSET = 2.0**15
KITTI_MIN = -KITTI_OFFSET / KITTI_SCALE
KITTI_MAX = (65535.0 - KITTI_OFFSET) / KITTI_SCALE
FLOW_EXTENSIONS = (".flo", ".png", ".pfm", ".flo5", ".npy", ".npz")

# Largest side accepted from a header: protects against allocating gigabytes for a corrupt file.
_MAX_SIDE = 1 << 16

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------------
# Public dispatchers
# --------------------------------------------------------------------------------------------------


def read_flow(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an optical-flow file.

    Args:
        path: a ``.flo``, KITTI ``.png``, ``.pfm``, ``.flo5``, ``.npy`` or ``.npz`` file.

    Returns:
        ``flow`` float32 ``[H, W, 2]`` (u, v in pixels; 0 where invalid) and ``valid`` bool ``[H, W]``.

    Raises:
        MissingFileError: the file does not exist.
        InvalidArgumentError: the extension is not one of :data:`FLOW_EXTENSIONS`.
        InputFileError: the file is not a valid file of its format (bad magic/header, truncated).
        MissingDependencyError: ``.flo5`` without h5py.
    """
    path = _existing_file(path)
    ext = _flow_extension(path)
    if ext == ".flo":
        flow, valid = read_flo(path)
    elif ext == ".png":
        flow, valid = read_kitti_png(path)
    elif ext == ".pfm":
        data = read_pfm(path)
        if data.ndim != 3:
            raise InputFileError(
                f"{path}: is a 1-channel PFM (a disparity map?); optical flow needs a 3-channel PFM"
            )
        flow = np.ascontiguousarray(data[..., :2])
        valid = np.isfinite(flow).all(axis=-1)
    elif ext == ".flo5":
        flow = read_flo5(path)
        valid = np.isfinite(flow).all(axis=-1)
    elif ext == ".npy":
        flow = _load_npy(path)
        valid = np.isfinite(flow).all(axis=-1)
    else:
        flow, valid = _read_npz(path)
    flow = np.where(valid[..., None], flow, np.float32(0)).astype(np.float32, copy=False)
    return flow, valid


def write_flow(path: PathLike, flow: Any, valid: Any = None) -> Path:
    """Write an optical-flow file, choosing the format from the extension (atomic).

    Args:
        path: target file, one of :data:`FLOW_EXTENSIONS`; parent folders are created.
        flow: numpy ``[H, W, 2]`` or torch ``[2, H, W]`` (channels first, as motion4d tensors are),
            any real dtype; written as float32. Non-finite pixels are written as invalid.
        valid: optional bool ``[H, W]`` (numpy or torch); ``False`` pixels are written as the
            format's "invalid"/"unknown" value (see the module docstring). Default: all valid.

    Returns:
        The path written.
    """
    path = Path(path)
    ext = _flow_extension(path)
    flow, valid = _normalise_flow(flow, valid, path)
    if ext == ".flo":
        _write_flo(path, flow, valid)
    elif ext == ".png":
        write_kitti_png(path, flow, valid)
    elif ext == ".pfm":
        data = np.zeros(flow.shape[:2] + (3,), np.float32)
        data[..., :2] = np.where(valid[..., None], flow, np.float32(np.nan))
        write_pfm(path, data)
    elif ext == ".flo5":
        write_flo5(path, np.where(valid[..., None], flow, np.float32(np.nan)))
    elif ext == ".npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, np.where(valid[..., None], flow, np.float32(np.nan)))
    else:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, flow=np.where(valid[..., None], flow, np.float32(0)), valid=valid)
    return path


# --------------------------------------------------------------------------------------------------
# Middlebury .flo
# --------------------------------------------------------------------------------------------------


def read_flo(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a Middlebury ``.flo`` file -> (flow float32 ``[H, W, 2]`` raw values, valid bool ``[H, W]``).

    Pixels where either component is non-finite or exceeds 1e9 in magnitude are "unknown" (invalid);
    their raw values are returned unchanged (:func:`read_flow` zeroes them).
    """
    path = _existing_file(path)
    raw = path.read_bytes()
    if len(raw) < 12:
        raise InputFileError(f"{path}: too short for a .flo header ({len(raw)} bytes, need 12)")
    magic = np.frombuffer(raw, "<f4", count=1)[0]
    if magic != np.float32(FLO_MAGIC):
        raise InputFileError(
            f"{path}: not a Middlebury .flo file (magic {raw[:4]!r}, expected b'PIEH' = {FLO_MAGIC})"
        )
    width, height = (int(v) for v in np.frombuffer(raw, "<i4", count=2, offset=4))
    _check_header_size(path, width, height)
    check_declared_size(path, "the .flo header", (height, width, 2), 4, available=len(raw) - 12)
    expected = 12 + width * height * 2 * 4
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise InputFileError(
            f"{path}: {what}: header says {width}x{height} ({expected} bytes), file has {len(raw)} bytes"
        )
    flow = np.frombuffer(raw, "<f4", offset=12).reshape(height, width, 2).astype(np.float32)
    valid = (np.abs(flow) <= FLO_UNKNOWN_THRESHOLD).all(axis=-1)  # NaN compares False -> invalid
    return flow, valid


def write_flo(path: PathLike, flow: np.ndarray, valid: np.ndarray | None = None) -> Path:
    """Write float32 ``flow [H, W, 2]`` as a Middlebury ``.flo``; invalid pixels become 1e10 (atomic)."""
    path = Path(path)
    flow, valid = _normalise_flow(flow, valid, path)
    return _write_flo(path, flow, valid)


def _write_flo(path: Path, flow: np.ndarray, valid: np.ndarray) -> Path:
    """:func:`write_flo` of a normalised flow: the array is written as it is when every pixel is valid."""
    height, width = flow.shape[:2]
    if valid.all():
        data = np.ascontiguousarray(flow, "<f4")
    else:
        data = np.where(valid[..., None], flow, np.float32(FLO_UNKNOWN_VALUE)).astype("<f4")
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header)
        f.write(memoryview(data).cast("B"))
    return path


# --------------------------------------------------------------------------------------------------
# KITTI 16-bit PNG
# --------------------------------------------------------------------------------------------------


def read_kitti_png(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI flow PNG -> (flow float32 ``[H, W, 2]`` decoded values, valid bool ``[H, W]``).

    The file's R, G, B channels hold u, v (``value * 64 + 2**15``) and the valid flag.
    """
    import cv2

    path = _existing_file(path)
    header = check_image_size(path)
    if header is not None:  # the decoded flow is float32 [H, W, 2]
        check_declared_size(path, "the PNG header", (header.height, header.width, 2), 4)
    data = np.fromfile(path, dtype=np.uint8)  # imdecode also handles non-ASCII paths
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputFileError(f"{path}: not a readable PNG image")
    if image.dtype != np.uint16 or image.ndim != 3 or image.shape[2] != 3:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise InputFileError(
            f"{path}: a KITTI flow PNG must be 16-bit with 3 channels, got {image.dtype} with "
            f"{channels} channel(s)"
        )
    rgb = image[..., ::-1]  # OpenCV returns B, G, R
    flow = (rgb[..., :2].astype(np.float32) - np.float32(KITTI_OFFSET)) / np.float32(KITTI_SCALE)
    valid = rgb[..., 2] > 0
    return flow, valid


def write_kitti_png(path: PathLike, flow: np.ndarray, valid: np.ndarray | None = None) -> Path:
    """Write ``flow [H, W, 2]`` as a KITTI 16-bit PNG (atomic).

    Values are rounded to 1/64 px and clipped to ``[-512, 511.984375]``; invalid pixels are stored
    as (0, 0, 0) like the KITTI devkit does.
    """
    import cv2

    path = Path(path)
    flow, valid = _normalise_flow(flow, valid, path)
    safe = np.where(valid[..., None], flow, np.float32(0)).astype(np.float64)
    encoded = np.clip(np.rint(safe * KITTI_SCALE + KITTI_OFFSET), 0, 65535).astype(np.uint16)
    rgb = np.zeros(flow.shape[:2] + (3,), np.uint16)
    rgb[..., :2] = encoded
    rgb[..., 2] = 1
    rgb[~valid] = 0
    ok, encoded_png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise InputFileError(f"{path}: OpenCV could not encode the PNG")
    atomic_write_bytes(path, encoded_png.tobytes())
    return path


# --------------------------------------------------------------------------------------------------
# PFM (FlyingThings3D flow and disparity)
# --------------------------------------------------------------------------------------------------

_PFM_HEADER = re.compile(rb"\A(PF|Pf)\s+(-?\d+)\s+(-?\d+)\s+(\S+)\s")


def read_pfm(path: PathLike) -> np.ndarray:
    """Read a portable float map.

    Returns:
        float32 ``[H, W, 3]`` for a colour map (``PF``) or ``[H, W]`` for a grey map (``Pf``), top
        row first (the file stores rows bottom to top). The scale's sign gives the byte order
        (negative = little endian); its magnitude is ignored, as FlyingThings3D readers do.
    """
    path = _existing_file(path)
    raw = path.read_bytes()
    match = _PFM_HEADER.match(raw[:256])
    if match is None:
        raise InputFileError(
            f"{path}: not a PFM file (header must be 'PF' or 'Pf', then width, height and scale)"
        )
    channels = 3 if match.group(1) == b"PF" else 1
    width, height = int(match.group(2)), int(match.group(3))
    _check_header_size(path, width, height)
    try:
        scale = float(match.group(4))
    except ValueError:
        raise InputFileError(f"{path}: PFM scale {match.group(4)!r} is not a number") from None
    if scale == 0 or not np.isfinite(scale):
        raise InputFileError(f"{path}: PFM scale must be a non-zero number, got {scale}")
    dtype = "<f4" if scale < 0 else ">f4"
    offset = match.end()
    if raw[offset - 1 : offset + 1] == b"\r\n":  # header written with Windows line ends
        offset += 1
    check_declared_size(path, "the PFM header", (height, width, channels), 4, available=len(raw) - offset)
    expected = width * height * channels * 4
    if len(raw) - offset != expected:
        what = "truncated" if len(raw) - offset < expected else "longer than its header says"
        raise InputFileError(
            f"{path}: {what}: header says {width}x{height}x{channels} floats ({expected} bytes of "
            f"data), file has {len(raw) - offset}"
        )
    data = np.frombuffer(raw, dtype, offset=offset).astype(np.float32)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.ascontiguousarray(data.reshape(shape)[::-1])


def write_pfm(path: PathLike, data: Any, little_endian: bool = True) -> Path:
    """Write a float map ``[H, W]`` (``Pf``, e.g. disparity) or ``[H, W, 3]`` (``PF``) as PFM (atomic).

    Rows are written bottom to top as the format requires; the scale is -1.0 (little endian) or 1.0.
    """
    path = Path(path)
    if is_tensor(data):
        data = data.detach().cpu().numpy()
    if not isinstance(data, np.ndarray):
        raise ShapeError(f"PFM data for {path} must be a numpy array, got {type(data).__name__}")
    if not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3)):
        raise ShapeError(f"PFM data for {path} must have shape [H, W] or [H, W, 3], got {list(data.shape)}")
    _check_real(data, f"PFM data for {path}")
    height, width = data.shape[:2]
    if height == 0 or width == 0:
        raise ShapeError(f"PFM data for {path} is empty: {list(data.shape)}")
    tag = b"PF" if data.ndim == 3 else b"Pf"
    dtype = "<f4" if little_endian else ">f4"
    header = tag + b"\n" + f"{width} {height}\n{-1.0 if little_endian else 1.0}\n".encode()
    body = np.ascontiguousarray(data[::-1], dtype=dtype).tobytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(header + body)
    return path


# --------------------------------------------------------------------------------------------------
# Spring .flo5 (HDF5)
# --------------------------------------------------------------------------------------------------


def read_flo5(path: PathLike) -> np.ndarray:
    """Read a Spring ``.flo5`` (HDF5 dataset ``"flow"`` ``[H, W, 2]``) -> float32, NaN where invalid."""
    h5py = require("h5py", "reading .flo5 flow files", extra="hdf5")
    path = _existing_file(path)
    try:
        with h5py.File(path, "r") as f:
            if "flow" not in f:
                raise InputFileError(f"{path}: HDF5 file has no 'flow' dataset (keys: {list(f.keys())})")
            dataset = f["flow"]
            if not isinstance(dataset, h5py.Dataset):
                raise InputFileError(f"{path}: 'flow' is an HDF5 group, expected a dataset [H, W, 2]")
            check_declared_size(path, "the 'flow' dataset", dataset.shape, max(dataset.dtype.itemsize, 4))
            flow = np.asarray(dataset[()], dtype=np.float32)
    except OSError as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(f"{path}: not a readable HDF5 .flo5 file ({exc})") from exc
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise InputFileError(f"{path}: 'flow' dataset must have shape [H, W, 2], got {list(flow.shape)}")
    return flow


def write_flo5(path: PathLike, flow: np.ndarray) -> Path:
    """Write ``flow [H, W, 2]`` (NaN = invalid) as a Spring ``.flo5`` (gzip level 5, atomic)."""
    h5py = require("h5py", "writing .flo5 flow files", extra="hdf5")
    path = Path(path)
    check_shape(flow, f"flow for {path}", ("H", "W", 2))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("flow", data=np.asarray(flow, np.float32), compression="gzip", compression_opts=5)
    return path


# --------------------------------------------------------------------------------------------------
# numpy
# --------------------------------------------------------------------------------------------------


def _load_npy(path: Path) -> np.ndarray:
    return _checked_array_flow(load_npy(path), path)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arrays = load_npz(path, keys=("flow", "valid"))
    if "flow" not in arrays:
        raise InputFileError(f"{path}: .npz archive has no 'flow' array (keys: {npz_keys(path)})")
    flow = _checked_array_flow(arrays["flow"], path)
    valid = arrays.get("valid")
    finite = np.isfinite(flow).all(axis=-1)
    if valid is None:
        return flow, finite
    if valid.shape != flow.shape[:2]:
        raise InputFileError(
            f"{path}: 'valid' has shape {list(valid.shape)}, expected {list(flow.shape[:2])} to match 'flow'"
        )
    return flow, (valid != 0) & finite


def _checked_array_flow(flow: np.ndarray, path: Path) -> np.ndarray:
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise InputFileError(f"{path}: flow array must have shape [H, W, 2], got {list(flow.shape)}")
    if not (np.issubdtype(flow.dtype, np.floating) or np.issubdtype(flow.dtype, np.integer)):
        raise InputFileError(f"{path}: flow array must be numeric, got dtype {flow.dtype}")
    return flow.astype(np.float32)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _existing_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"flow file {p} does not exist")
    if not p.is_file():
        raise InputFileError(f"{p} is not a file")
    return p


def _flow_extension(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in FLOW_EXTENSIONS:
        raise InvalidArgumentError(
            f"{path}: unknown optical-flow file extension {ext or '(none)'!r}; expected one of "
            f"{list(FLOW_EXTENSIONS)}"
        )
    return ext


def _check_header_size(path: Path, width: int, height: int) -> None:
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise InputFileError(f"{path}: implausible size in header: width {width}, height {height}")


def _check_real(x: np.ndarray, name: str) -> None:
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ShapeError(f"{name} must have a real numeric dtype, got {x.dtype}")


def _normalise_flow(flow: Any, valid: Any, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """numpy ``[H, W, 2]`` / torch ``[2, H, W]`` + optional valid -> (float32 [H, W, 2], bool [H, W]).

    Pixels with a non-finite component are marked invalid.
    """
    name = f"flow for {path}"
    if is_tensor(flow):
        check_shape(flow, name, (2, "H", "W"))
        flow = flow.detach().cpu().permute(1, 2, 0).numpy()
    elif isinstance(flow, np.ndarray):
        check_shape(flow, name, ("H", "W", 2))
    else:
        raise ShapeError(
            f"{name} must be a numpy array [H, W, 2] or a torch tensor [2, H, W], got {type(flow).__name__}"
        )
    _check_real(flow, name)
    if flow.shape[0] == 0 or flow.shape[1] == 0:
        raise ShapeError(f"{name} is empty: {list(flow.shape)}")
    flow = np.ascontiguousarray(flow, dtype=np.float32)
    # one reduction over the whole array first: per-pixel tests only when something is not finite
    finite = np.ones(flow.shape[:2], bool) if np.isfinite(flow).all() else np.isfinite(flow).all(axis=-1)
    if valid is None:
        return flow, finite
    if is_tensor(valid):
        valid = valid.detach().cpu().numpy()
    if not isinstance(valid, np.ndarray):
        raise ShapeError(f"valid for {path} must be a numpy array or torch tensor, got {type(valid).__name__}")
    if valid.shape != flow.shape[:2]:
        raise ShapeError(f"valid for {path} must have shape {list(flow.shape[:2])} (flow's H, W), got {list(valid.shape)}")
    return flow, (valid != 0) & finite


__all__ = [
    "FLOW_EXTENSIONS",
    "read_flow",
    "write_flow",
    "read_flo",
    "write_flo",
    "read_kitti_png",
    "write_kitti_png",
    "read_pfm",
    "write_pfm",
    "read_flo5",
    "write_flo5",
]
