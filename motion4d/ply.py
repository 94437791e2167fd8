"""PLY vertex tables (point clouds, 3D Gaussian splats) through plyfile, checked before reading.

plyfile, the format's reference implementation in Python, parses the body. Before it runs, the
header is read here and what it declares is compared with the file: a vertex count whose rows
cannot fit in the bytes that follow is a truncated or corrupt file, and a table larger than the
decoded-size limit (:mod:`motion4d.limits`) is refused. A body that ends early, holds text where
numbers belong, or numbers that do not parse becomes an :class:`~motion4d.errors.InputFileError`
naming the file (open3d, the previous reader, only logged such errors and returned zeros).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from .atomic import atomic_path
from .checks import check_file, require
from .errors import InputFileError, InvalidArgumentError, ShapeError
from .limits import check_declared_size

HEADER_LIMIT = 1 << 16  # bytes: a PLY header is a few hundred; anything longer is not a PLY header

_SIZES = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
    "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}
_FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")


@dataclass
class _Element:
    name: str
    count: int
    sizes: list[int]
    has_list: bool = False

    @property
    def row_bytes(self) -> int:
        return sum(self.sizes)


def _parse_header(file: Path) -> tuple[str, list[_Element], int]:
    """``(format, elements, body offset)`` of a PLY file, from its text header."""
    with open(file, "rb") as f:
        head = f.read(HEADER_LIMIT)
    if not head.startswith(b"ply"):
        raise InputFileError(f"{file}: not a PLY file (it does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise InputFileError(f"{file}: no 'end_header' in the first {HEADER_LIMIT} bytes; not a PLY header")
    offset = end + len(b"end_header")
    offset += 2 if head[offset : offset + 2] == b"\r\n" else 1
    fmt = ""
    elements: list[_Element] = []
    for number, line in enumerate(head[:end].decode("ascii", errors="replace").splitlines()[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append(_Element(words[1], int(words[2]), []))
            elif words[0] == "property" and words[1] == "list":
                elements[-1].has_list = True
            elif words[0] == "property":
                elements[-1].sizes.append(_SIZES[words[1]])
            else:
                raise ValueError(f"unknown keyword {words[0]!r}")
        except (IndexError, KeyError, ValueError) as exc:
            raise InputFileError(f"{file}: malformed PLY header at line {number} ({line.strip()!r}): {exc}") from None
    if fmt not in _FORMATS:
        raise InputFileError(f"{file}: PLY format must be one of {list(_FORMATS)}, got {fmt or 'none'!r}")
    return fmt, elements, offset


def _check_declared(file: Path, fmt: str, elements: list[_Element], offset: int, max_bytes: int | None) -> None:
    """Refuse counts the body cannot hold, or a vertex table over the decoded-size limit."""
    available = file.stat().st_size - offset
    needed = 0  # a lower bound on the body bytes up to the end of the vertex element
    for element in elements:
        if element.count < 0:
            raise InputFileError(f"{file}: PLY element {element.name!r} declares {element.count} rows")
        values = len(element.sizes) + element.has_list
        needed += element.count * (element.row_bytes if fmt != "ascii" else 2 * values - 1)
        if element.name == "vertex":
            break
    if needed > available:
        raise InputFileError(
            f"{file}: truncated or corrupt: the PLY header declares rows needing at least {needed} bytes, "
            f"the file holds {available} after its header"
        )
    check_declared_size(file, "the PLY header (vertex element)", (element.count, max(len(element.sizes), 1)), 8,
                        max_bytes=max_bytes)


def read_ply_vertices(path: str | os.PathLike, max_bytes: int | None = None) -> np.ndarray:
    """The ``vertex`` element of a PLY file as a structured array ``[N]`` (one field per property).

    Raises:
        MissingFileError: no such file.
        InputFileError: not a PLY file, a malformed header, no vertex element, a body shorter than
            the header declares, or rows that do not parse.
        InputTooLargeError: the vertex table exceeds the decoded-size limit.
    """
    plyfile = require("plyfile", "reading PLY files")
    file = check_file(path, "PLY file")
    fmt, elements, offset = _parse_header(file)
    if "vertex" not in [e.name for e in elements]:
        raise InputFileError(f"{file}: PLY has no 'vertex' element (elements: {[e.name for e in elements]})")
    _check_declared(file, fmt, elements, offset, max_bytes)
    try:
        with open(file, "rb") as f:
            data = plyfile.PlyData.read(f, mmap=False)
        vertices = np.asarray(data["vertex"].data)
    except plyfile.PlyParseError as exc:
        raise InputFileError(f"{file}: PLY body does not match its header: {exc}") from exc
    except (ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise InputFileError(f"{file}: unreadable PLY body: {exc}") from exc
    return vertices


def write_ply_vertices(path: str | os.PathLike, columns: Mapping[str, np.ndarray], text: bool = False) -> Path:
    """Write ``{property: [N] array}`` as the vertex element of a PLY file (binary unless ``text``), atomically.

    Each column keeps its dtype (float32, float64, uint8, ...).
    """
    plyfile = require("plyfile", "writing PLY files")
    if not columns:
        raise InvalidArgumentError("a PLY vertex table needs at least one column")
    lengths = {name: np.asarray(col).shape for name, col in columns.items()}
    n = next(iter(lengths.values()))
    if any(shape != n or len(shape) != 1 for shape in lengths.values()):
        raise ShapeError(f"PLY columns must all be 1-D of one length, got shapes {lengths}")
    table = np.empty(n[0], dtype=[(name, np.asarray(col).dtype.newbyteorder("<")) for name, col in columns.items()])
    for name, col in columns.items():
        table[name] = col
    element = plyfile.PlyElement.describe(table, "vertex")
    target = Path(path)
    with atomic_path(target) as tmp:
        plyfile.PlyData([element], text=text).write(str(tmp))
    return target
