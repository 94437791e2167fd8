"""Per-pair result files read back on demand: ``result.forward`` of :func:`motion.estimate_flow` with ``out_dir``.

A run that writes its flows to disk returns them as :class:`StoredStack` objects instead of holding
them in memory: ``result.forward[k]`` reads pair ``k`` (a ``.flo`` or ``.npy`` file is memory-mapped,
so only the pages used are read), ``result.forward[a:b]`` stacks a range, ``len()`` and ``.shape`` tell
the size without reading anything, and ``np.asarray(result.forward)`` / :meth:`StoredStack.numpy`
loads the whole stack (within the in-memory limit of :mod:`motion4d.limits`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from motion4d.checks import check_choice
from motion4d.errors import InputFileError, ShapeError
from motion4d.limits import check_declared_size

KINDS = ("flow", "mask", "map")
_FLO_HEADER = 12  # magic float32, width int32, height int32


def _read_flow_file(path: Path, size: tuple[int, int]) -> np.ndarray:
    """``float32 [2, H, W]`` (a view of a memory map for ``.flo``)."""
    h, w = size
    if path.suffix.lower() == ".flo":
        header = np.fromfile(path, dtype="<f4", count=1), np.fromfile(path, dtype="<i4", count=3)
        magic, dims = header[0], header[1]
        if len(magic) != 1 or magic[0] != 202021.25 or len(dims) != 3 or tuple(dims[1:]) != (w, h):
            raise InputFileError(f"{path}: not a {w}x{h} .flo file written by this run")
        if path.stat().st_size != _FLO_HEADER + h * w * 8:
            raise InputFileError(f"{path}: truncated .flo file ({path.stat().st_size} bytes for {w}x{h})")
        data = np.memmap(path, dtype="<f4", mode="c", offset=_FLO_HEADER, shape=(h, w, 2))
        return data.transpose(2, 0, 1)
    from .flow_io import read_flow

    flow, _ = read_flow(path)
    if flow.shape[:2] != (h, w):
        raise InputFileError(f"{path}: holds a {flow.shape[1]}x{flow.shape[0]} flow, expected {w}x{h}")
    return flow.transpose(2, 0, 1)


def _read_mask_file(path: Path, size: tuple[int, int]) -> np.ndarray:
    from .image_io import read_image

    image = read_image(path)
    image = image if image.ndim == 2 else image[..., 0]
    if image.shape != size:
        raise InputFileError(f"{path}: a {image.shape[1]}x{image.shape[0]} mask, expected {size[1]}x{size[0]}")
    return image > 0


def _read_map_file(path: Path, size: tuple[int, int]) -> np.ndarray:
    from motion4d.numpy_io import load_npy

    if not path.is_file():
        raise InputFileError(f"{path}: missing")
    data = load_npy(path, mmap=True)  # checks the header against the file's size, then maps it
    if data.shape != size or data.dtype != np.float32:
        raise InputFileError(f"{path}: a {data.dtype} {list(data.shape)} map, expected float32 {list(size)}")
    return data


_READERS = {"flow": _read_flow_file, "mask": _read_mask_file, "map": _read_map_file}


class StoredStack:
    """A read-only stack ``[P, ...]`` of per-pair files, each read when it is indexed.

    Args:
        paths: one file per pair, in order.
        size: ``(H, W)`` of every item.
        kind: ``"flow"`` (``.flo`` / ``.npz`` / KITTI ``.png`` -> ``float32 [2, H, W]``), ``"mask"``
            (PNG -> ``bool [H, W]``) or ``"map"`` (``.npy`` -> ``float32 [H, W]``).

    Indexing gives torch tensors on the CPU, like the in-memory results: ``stack[k]`` one item,
    ``stack[a:b]`` / ``stack[[i, j]]`` stacked ``[k, ...]``. ``.flo`` values are returned as stored
    (an "unknown" flow is 1e10 there; :func:`motion.read_flow` gives validity masks).
    """

    def __init__(self, paths: Sequence[Path], size: tuple[int, int], kind: str = "flow"):
        check_choice(kind, "kind", KINDS)
        self.paths = [Path(p) for p in paths]
        self.size = (int(size[0]), int(size[1]))
        self.kind = kind

    @property
    def item_shape(self) -> tuple[int, ...]:
        return (2, *self.size) if self.kind == "flow" else self.size

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.paths), *self.item_shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(bool) if self.kind == "mask" else np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        folder = self.paths[0].parent if self.paths else "nothing"
        return f"StoredStack({self.kind} {list(self.shape)} {self.dtype}, files in {folder})"

    def read(self, index: int) -> np.ndarray:
        """Item ``index`` as a numpy array (a memory-mapped view for ``.flo`` and ``.npy``)."""
        return _READERS[self.kind](self.paths[index], self.size)

    def __getitem__(self, index: Any) -> Any:
        import torch

        if isinstance(index, (int, np.integer)):
            n = len(self.paths)
            if not -n <= index < n:
                raise IndexError(f"index {index} is out of range for {n} stored items")
            return torch.from_numpy(np.ascontiguousarray(self.read(int(index) % n)))
        picked = np.arange(len(self.paths))[index]
        if np.ndim(picked) != 1:
            raise ShapeError(f"a stored stack is indexed by an int, a slice or a list of ints, got {index!r}")
        return torch.from_numpy(self._stack(picked))

    def __iter__(self) -> Iterator[Any]:
        for k in range(len(self.paths)):
            yield self[k]

    def _stack(self, picked: np.ndarray) -> np.ndarray:
        check_declared_size("the stored results", f"{len(picked)} stored {self.kind}s",
                            (len(picked), *self.item_shape), self.dtype.itemsize)
        out = np.empty((len(picked), *self.item_shape), self.dtype)
        for i, k in enumerate(picked):
            out[i] = self.read(int(k))
        return out

    def numpy(self) -> np.ndarray:
        """The whole stack in memory; refused (InputTooLargeError) above the in-memory limit."""
        return self._stack(np.arange(len(self.paths)))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)


def in_memory_bytes(pairs: int, size: tuple[int, int], channels: int = 2) -> int:
    """Bytes of a ``float32 [pairs, channels, H, W]`` result."""
    return int(pairs) * channels * int(size[0]) * int(size[1]) * 4


__all__ = ["StoredStack", "in_memory_bytes"]
