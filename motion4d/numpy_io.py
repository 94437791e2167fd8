"""Reading ``.npy`` / ``.npz`` / numpy pickles handed in by users: no code run, sizes checked.

``np.load`` trusts the array header: a 200-byte ``.npy`` can declare tens of GiB and a small
``.npz`` member can inflate to gigabytes. These readers parse each header first and refuse what
:mod:`motion4d.limits` does not allow (or what the file cannot hold), then load. Object arrays
(pickles) are refused by ``allow_pickle=False``.

Some data sets are only published as pickles of numpy arrays (TAP-Vid's ``.pkl`` files).
:func:`load_numpy_pickle` reads those with an unpickler that can build containers, numbers,
strings and numpy arrays only: any other object a file names (the way a pickle runs code) is
refused before it is built.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import numpy as np

from .errors import InputFileError
from .limits import check_declared_size


def _read_header(stream: BinaryIO, source: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(stream)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise InputFileError(f"{source}: not a readable .npy array ({exc})") from exc
    if dtype.hasobject:
        raise InputFileError(f"{source}: holds Python objects (a pickle); only plain numeric arrays are read")
    return tuple(shape), dtype


def load_npy(path: str | os.PathLike, max_bytes: int | None = None, mmap: bool = False) -> np.ndarray:
    """A ``.npy`` file's array, after checking its declared size against the file and the limit.

    ``mmap=True`` maps the file copy-on-write instead of reading it: only the pages used are read, and
    changes to the array stay in memory.
    """
    file = Path(path)
    try:
        with open(file, "rb") as f:
            shape, dtype = _read_header(f, str(file))
            available = file.stat().st_size - f.tell()
    except OSError as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(f"{file}: cannot read it ({exc})") from exc
    check_declared_size(file, "the .npy header", shape, dtype.itemsize, available=available, max_bytes=max_bytes)
    try:
        return np.load(file, allow_pickle=False, mmap_mode="c" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(f"{file}: not a readable .npy file ({exc})") from exc


def load_npz(path: str | os.PathLike, keys: Iterable[str] | None = None, max_bytes: int | None = None) -> dict[str, Any]:
    """Arrays of a ``.npz`` archive (``keys``, or all), each checked before it is inflated.

    Returns:
        ``{key: array}`` for the requested keys present in the archive (missing keys are left out).
    """
    file = Path(path)
    wanted = None if keys is None else set(keys)
    arrays: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[: -len(".npy")]
                if wanted is not None and key not in wanted:
                    continue
                source = f"{file} (array {key!r})"
                with archive.open(info) as member:
                    shape, dtype = _read_header(member, source)
                    check_declared_size(source, "the archive's header", shape, dtype.itemsize, max_bytes=max_bytes)
                with archive.open(info) as member:
                    arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
    except InputFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise InputFileError(f"{file}: not a readable .npz archive ({exc})") from exc
    return arrays


def npz_keys(path: str | os.PathLike) -> list[str]:
    """Names of the arrays in a ``.npz`` archive (nothing is loaded)."""
    file = Path(path)
    try:
        with zipfile.ZipFile(file) as archive:
            return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputFileError(f"{file}: not a readable .npz archive ({exc})") from exc


# (module, name) pairs a numpy-array pickle needs, across numpy 1.x / 2.x and pickle protocols 2-5
_NUMPY_PICKLE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"), ("builtins", "bytearray"), ("collections", "OrderedDict"),
})


class _NumpyUnpickler(pickle.Unpickler):
    def __init__(self, stream: BinaryIO, source: str):
        super().__init__(stream)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _NUMPY_PICKLE_GLOBALS:
            raise InputFileError(
                f"{self._source}: the pickle asks for {module}.{name}; only containers, numbers, strings and "
                "numpy arrays are read from pickles (anything else could run code)")
        return super().find_class(module, name)


def load_numpy_pickle(path: str | os.PathLike) -> Any:
    """A pickle holding only dicts, lists, tuples, numbers, strings and numpy arrays (e.g. TAP-Vid's
    ``.pkl`` files), read without running code.

    Raises:
        InputFileError: the file is not such a pickle (truncated, corrupt, or naming other objects).
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{file}: cannot read it ({exc})") from exc
    try:
        return _NumpyUnpickler(io.BytesIO(data), str(file)).load()
    except InputFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeDecodeError, MemoryError) as exc:
        raise InputFileError(f"{file}: not a readable pickle of numpy arrays ({type(exc).__name__}: {exc})") from exc
