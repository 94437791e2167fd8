"""Reading and writing single images as ``uint8 [H, W, 3]`` RGB arrays (OpenCV codecs).

OpenCV stores colour images as BGR; these two functions are the only place where the channel
order is swapped, so everything else in motion4d sees RGB.

Before decoding, the size the file declares is checked against :mod:`motion4d.limits` (a few
kilobytes of PNG can declare gigabytes of pixels): PNG and JPEG headers are read here, other
formats through Pillow's lazy ``Image.open``.
"""
from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from motion4d.atomic import atomic_write_bytes
from motion4d.checks import check_dtype, check_file
from motion4d.errors import InputFileError, InputTooLargeError, InvalidArgumentError, ShapeError
from motion4d.limits import check_declared_size

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


class ImageHeader(NamedTuple):
    """What an image file declares: ``width``, ``height``, ``channels`` and ``bytes_per_sample``."""

    width: int
    height: int
    channels: int
    bytes_per_sample: int


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # colour type -> channels after decoding (palette -> RGB)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _png_header(head: bytes) -> ImageHeader | None:
    if len(head) < 26 or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    return ImageHeader(width, height, _PNG_CHANNELS.get(colour, 4), 2 if depth == 16 else 1)


def _jpeg_header(file: Path) -> ImageHeader | None:
    with open(file, "rb") as f:
        f.read(2)
        while True:
            byte = f.read(1)
            while byte and byte != b"\xff":  # skip fill / entropy-coded bytes up to the next marker
                byte = f.read(1)
            marker = f.read(1)
            while marker == b"\xff":
                marker = f.read(1)
            if not marker:
                return None
            code = marker[0]
            if code in (0x01, *range(0xD0, 0xDA)):  # markers without a length
                continue
            length_bytes = f.read(2)
            if len(length_bytes) < 2:
                return None
            length = struct.unpack(">H", length_bytes)[0]
            if code in _JPEG_SOF:
                body = f.read(6)
                if len(body) < 6:
                    return None
                precision, height, width, components = struct.unpack(">BHHB", body)
                return ImageHeader(width, height, components, 2 if precision > 8 else 1)
            f.seek(length - 2, os.SEEK_CUR)


def _pillow_header(file: Path) -> ImageHeader | None:
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:  # reads the header only
                width, height = image.size
                bands = len(image.getbands())
                wide = image.mode in ("I;16", "I;16B", "I;16L", "I", "F")
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"image: {file}: {exc}") from exc
    except Exception:  # noqa: BLE001 - Pillow could not parse it: leave the verdict to OpenCV
        return None
    return ImageHeader(width, height, bands, 4 if wide else 1)


def read_image_header(path: str | os.PathLike) -> ImageHeader | None:
    """The size an image file declares, read without decoding it (None when it cannot be told)."""
    file = Path(path)
    try:
        with open(file, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise InputFileError(f"image: cannot read {file}: {exc}") from exc
    if head.startswith(_PNG_SIGNATURE):
        return _png_header(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_header(file)
    return _pillow_header(file)


def check_image_size(path: str | os.PathLike, max_bytes: int | None = None) -> ImageHeader | None:
    """Refuse an image whose declared decoded size exceeds the limit (:mod:`motion4d.limits`)."""
    header = read_image_header(path)
    if header is not None:
        channels = max(header.channels, 3)  # grey images are expanded to RGB
        check_declared_size(f"image: {path}", "the image header", (header.height, header.width, channels),
                            header.bytes_per_sample, max_bytes=max_bytes)
    return header


def read_image(path: str | os.PathLike, max_bytes: int | None = None) -> np.ndarray:
    """Read an image file as RGB.

    Grayscale images are repeated into three channels, an alpha channel is dropped and 16-bit
    images are reduced to 8 bits (``value // 257``, the exact inverse of ``8-bit * 257``).

    Returns:
        ``uint8 [H, W, 3]`` RGB, C-contiguous.

    Raises:
        MissingFileError: ``path`` does not exist.
        InputFileError: ``path`` is a folder or not a decodable image.
        InputTooLargeError: the header declares more than ``max_bytes`` (default: :mod:`motion4d.limits`).
    """
    file = check_file(path, "image")
    if file.is_dir():
        raise InputFileError(f"image: {file} is a folder, expected an image file")
    check_image_size(file, max_bytes)
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


__all__ = ["IMAGE_EXTENSIONS", "ImageHeader", "check_image_size", "read_image", "read_image_header", "write_image"]
