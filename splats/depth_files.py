"""Per-frame depth map files (``.npy`` / 16-bit ``.png``): listing, reading, resizing.

Shared by :mod:`splats.gflow_inputs` and :mod:`splats.depth_providers` (its own module so that
neither imports the other).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from motion4d.errors import InputFileError, MissingFileError, ShapeError

DEPTH_EXTENSIONS = (".npy", ".png")


def natural_key(path: Path) -> list[Any]:
    """Sort key that orders ``frame_2`` before ``frame_10``."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", path.name)]


def read_depth_file(path: Path) -> np.ndarray:
    """``float32 [H, W]`` from a ``.npy`` array or a single-channel 16-bit PNG."""
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputFileError(f"depth file {path}: not a readable .npy array ({exc})") from exc
        data = np.squeeze(data)
    else:
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise InputFileError(f"depth file {path}: OpenCV could not decode it")
        if data.ndim != 2 or data.dtype != np.uint16:
            raise InputFileError(f"depth file {path}: expected a single-channel 16-bit PNG, got {data.dtype} "
                                 f"with shape {list(data.shape)}")
    if data.ndim != 2:
        raise InputFileError(f"depth file {path}: expected a [H, W] map, got shape {list(data.shape)}")
    return data.astype(np.float32)


def list_depth_files(folder: str | os.PathLike) -> list[Path]:
    """Depth maps (``.npy`` / ``.png``) in ``folder``, naturally sorted."""
    folder = Path(folder)
    if not folder.exists():
        raise MissingFileError(f"depth: {folder} does not exist")
    if not folder.is_dir():
        raise InputFileError(f"depth: {folder} is not a folder of .npy / 16-bit .png depth maps")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in DEPTH_EXTENSIONS), key=natural_key)
    if not files:
        raise InputFileError(f"depth: {folder} holds no .npy or .png depth maps")
    return files


def resize_map(data: np.ndarray, height: int, width: int, name: str) -> np.ndarray:
    """``data [h, w]`` resized (nearest) to ``[height, width]``; the aspect ratio must match."""
    h, w = data.shape
    if (h, w) == (height, width):
        return data
    if abs(w / h - width / height) > 0.01 * width / height:
        raise ShapeError(f"{name} is {w}x{h}, which does not have the aspect ratio of the {width}x{height} frames")
    # nearest keeps 0 = "no depth" from bleeding into valid pixels
    return cv2.resize(data, (width, height), interpolation=cv2.INTER_NEAREST)
