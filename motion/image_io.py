"""Reading and writing single images as ``uint8 [H, W, 3]`` RGB arrays (OpenCV codecs).

OpenCV stores colour images as BGR; these two functions are the only place where the channel
order is swapped, so everything else in motion4d sees RGB.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from motion4d.atomic import atomic_write_bytes
from motion4d.checks import check_dtype, check_file
from motion4d.errors import InputFileError, InvalidArgumentError, ShapeError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB.

    Grayscale images are repeated into three channels, an alpha channel is dropped and 16-bit
    images are reduced to 8 bits (``value // 257``, the exact inverse of ``8-bit * 257``).

    Returns:
        ``uint8 [H, W, 3]`` RGB, C-contiguous.

    Raises:
        MissingFileError: ``path`` does not exist.
        InputFileError: ``path`` is a folder or not a decodable image.
    """
    file = check_file(path, "image")
    if file.is_dir():
        raise InputFileError(f"image: {file} is a folder, expected an image file")
    try:
        data = np.fromfile(file, dtype=np.uint8)  # imdecode also handles non-ASCII paths
    except OSError as exc:
        raise InputFileError(f"image: cannot read {file}: {exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputFileError(f"image: {file} is not a readable image (OpenCV could not decode it)")
    return _to_rgb8(image, file)


def _to_rgb8(image: np.ndarray, file: Path) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputFileError(f"image: {file} has unsupported sample type {image.dtype} (expected 8 or 16 bit)")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise InputFileError(f"image: {file} has {channels} channels, expected 1, 3 or 4")


def write_image(path: str | os.PathLike, image: np.ndarray, *, jpeg_quality: int = 95) -> Path:
    """Write ``uint8 [H, W, 3]`` RGB (or ``[H, W]`` grayscale) to ``path`` atomically.

    The format follows the extension (PNG is lossless; JPEG uses ``jpeg_quality`` in 1..100).

    Returns:
        ``path`` as a Path.
    """
    target = Path(path)
    ext = target.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise InvalidArgumentError(f"path: {target} has extension {ext!r}, expected one of {list(IMAGE_EXTENSIONS)}")
    if not isinstance(image, np.ndarray):
        raise ShapeError(f"image must be a numpy array, got {type(image).__name__}")
    check_dtype(image, "image", (np.dtype(np.uint8),))
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or 0 in image.shape:
        raise ShapeError(f"image must have shape [H, W, 3] or [H, W] with H, W > 0, got {list(image.shape)}")
    if not 1 <= jpeg_quality <= 100:
        raise InvalidArgumentError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    bgr = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(ext, bgr, params)
    if not ok:
        raise InputFileError(f"image: OpenCV could not encode {target} as {ext}")
    atomic_write_bytes(target, encoded.tobytes())
    return target


__all__ = ["IMAGE_EXTENSIONS", "read_image", "write_image"]
