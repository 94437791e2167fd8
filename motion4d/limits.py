"""What a reader may allocate from a file's header, checked before it allocates.

A file's header states how much data follows (a ``.flo`` width and height, a ``.npy`` shape, a
PLY vertex count, a PNG's size). Readers compare that with two bounds before building arrays:

* the bytes the file really holds, for formats stored uncompressed: more declared than present
  means the file is truncated or corrupt;
* a limit on the decoded size of one array (:data:`DEFAULT_MAX_ARRAY_BYTES`, 1 GiB), for every
  format, compressed ones included: a few kilobytes of compressed zeros can declare gigabytes.

The limit is raised per call (``max_bytes=`` where a reader offers it) or for the process with the
environment variable ``MOTION4D_MAX_ARRAY_BYTES`` (bytes; suffixes K, M, G accepted).
"""
from __future__ import annotations

import os
import re
from typing import Sequence

from .errors import InputFileError, InputTooLargeError, InvalidArgumentError

MAX_ARRAY_BYTES_ENV = "MOTION4D_MAX_ARRAY_BYTES"
DEFAULT_MAX_ARRAY_BYTES = 1 << 30

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TiB"  # pragma: no cover


def _parse_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise InvalidArgumentError(f"{MAX_ARRAY_BYTES_ENV} must be a byte count such as 4G or 500M, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def max_array_bytes(override: int | None = None) -> int:
    """The decoded-size limit in force: ``override`` if given, else the environment's, else 1 GiB."""
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, int) or override <= 0:
            raise InvalidArgumentError(f"max_bytes must be a positive int, got {override!r}")
        return override
    text = os.environ.get(MAX_ARRAY_BYTES_ENV)
    return _parse_bytes(text) if text else DEFAULT_MAX_ARRAY_BYTES


def check_declared_size(
    source: object,
    what: str,
    shape: Sequence[int],
    itemsize: int,
    available: int | None = None,
    max_bytes: int | None = None,
) -> int:
    """Refuse an array of ``shape`` x ``itemsize`` bytes that a file declares, before allocating it.

    Args:
        source: the file (path or name) for the message.
        what: what the header declares, e.g. ``"the .flo header"``.
        shape: the declared array shape.
        itemsize: bytes per element of the array that will be built.
        available: bytes the file holds for this array when stored uncompressed (None: compressed).
        max_bytes: the decoded-size limit (default :func:`max_array_bytes`).

    Returns:
        The declared size in bytes.

    Raises:
        InputFileError: negative sizes, or more declared than ``available`` (truncated file).
        InputTooLargeError: more than the limit.
    """
    dims = [int(d) for d in shape]
    described = "x".join(str(d) for d in dims) or "a scalar"
    if any(d < 0 for d in dims):
        raise InputFileError(f"{source}: {what} declares a negative size ({described}); the file is corrupt")
    total = itemsize
    for d in dims:
        total *= d
    if available is not None and total > available:
        raise InputFileError(
            f"{source}: truncated or corrupt: {what} declares {described} ({human_bytes(total)}) "
            f"but the file holds {human_bytes(available)}"
        )
    limit = max_array_bytes(max_bytes)
    if total > limit:
        raise InputTooLargeError(
            f"{source}: {what} declares {described} ({human_bytes(total)} once decoded), over the limit of "
            f"{human_bytes(limit)}; raise it with max_bytes= or the environment variable {MAX_ARRAY_BYTES_ENV}"
        )
    return total
