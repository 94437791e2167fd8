"""``SceneFlowSample`` and the shared machinery of the scene-flow data-set readers.

A sample is one pair of clouds with the ground-truth flow of the *source* points:
``source [N, 3]``, ``target [M, 3]``, ``flow [N, 3]`` (``source + flow`` is where each source
point is at the target time) and ``mask bool [N]`` (points whose flow is valid / evaluated).
All arrays are numpy float32 (mask bool); ``to_torch`` converts.
"""
from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from motion4d.checks import check_choice, check_finite, check_shape
from motion4d.errors import InputFileError, InvalidArgumentError, ShapeError

SAMPLING_MODES = ("random", "deterministic", "none")
FEWER_POINTS = ("keep", "pad")
STANDARD_NUM_POINTS = 8192


@dataclass(eq=False)
class SceneFlowSample:
    """One scene-flow pair (see the module docstring for shapes).

    ``point_data`` holds extra per-source-point arrays (``[N, ...]``, e.g. synthetic instance
    labels; subsampled with the source) and ``meta`` anything else (e.g. the ego motion).
    """

    source: np.ndarray
    target: np.ndarray
    flow: np.ndarray
    mask: np.ndarray | None = None
    name: str = ""
    point_data: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.source = np.ascontiguousarray(self.source, dtype=np.float32)
        self.target = np.ascontiguousarray(self.target, dtype=np.float32)
        self.flow = np.ascontiguousarray(self.flow, dtype=np.float32)
        where = f" ({self.name})" if self.name else ""
        n = check_shape(self.source, f"source{where}", ("N", 3))["N"]
        check_shape(self.target, f"target{where}", ("M", 3))
        check_shape(self.flow, f"flow{where}", (n, 3))
        if self.mask is None:
            self.mask = np.ones(n, dtype=bool)
        mask = np.asarray(self.mask)
        if mask.ndim == 2 and mask.shape[1] == 1:
            mask = mask[:, 0]
        check_shape(mask, f"mask{where}", (n,))
        self.mask = mask.astype(bool)
        for key in ("source", "target", "flow"):
            check_finite(getattr(self, key), f"{key}{where}")
        for key, value in self.point_data.items():
            if np.asarray(value).shape[:1] != (n,):
                raise ShapeError(f"point_data[{key!r}]{where} must have {n} rows, got shape {np.shape(value)}")

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def to_torch(self, device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
        """``{"source", "target", "flow", "mask"}`` as torch tensors on ``device``."""
        out = {k: torch.from_numpy(getattr(self, k)) for k in ("source", "target", "flow", "mask")}
        return out if device is None else {k: v.to(device) for k, v in out.items()}

    def subsample(
        self,
        num_points: int,
        rng: np.random.Generator,
        *,
        fewer: str = "keep",
        independent: bool = True,
    ) -> "SceneFlowSample":
        """Random subset of ``num_points`` source and target points (without replacement).

        ``independent=True`` draws the target indices separately from the source indices (needed
        for HPLFlowNet data, whose target is a one-to-one copy of the source moved by the flow).
        With fewer points than ``num_points``: ``fewer="keep"`` returns all of them (shuffled),
        ``"pad"`` tops up with repeated random points (NSFP's padding).
        """
        check_choice(fewer, "fewer", FEWER_POINTS)
        if num_points < 1:
            raise InvalidArgumentError(f"num_points must be >= 1, got {num_points}")
        src_idx = _choose(len(self.source), num_points, rng, fewer)
        if independent:
            tgt_idx = _choose(len(self.target), num_points, rng, fewer)
        else:
            if len(self.target) != len(self.source):
                raise InvalidArgumentError("independent=False needs source and target of equal size")
            tgt_idx = src_idx
        point_data = {k: np.asarray(v)[src_idx] for k, v in self.point_data.items()}
        return replace(
            self,
            source=self.source[src_idx],
            target=self.target[tgt_idx],
            flow=self.flow[src_idx],
            mask=self.mask[src_idx],
            point_data=point_data,
        )


def _choose(n: int, k: int, rng: np.random.Generator, fewer: str) -> np.ndarray:
    if n == 0:
        raise InvalidArgumentError("cannot subsample an empty cloud")
    if n >= k:
        return rng.choice(n, size=k, replace=False)
    perm = rng.permutation(n)
    if fewer == "keep":
        return perm
    return np.concatenate([perm, rng.choice(n, size=k - n, replace=True)])


def load_npy(path: Path) -> np.ndarray:
    """``np.load`` with a Motion4DError naming the file on failure."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(f"{path} is not a readable .npy file: {exc}") from exc
    return arr


def load_npz(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read ``keys`` (required) and ``optional`` arrays from an ``.npz`` with clear errors."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise InputFileError(f"{path} lacks arrays {missing} (has {data.files})")
            return {k: data[k] for k in keys + optional if k in data.files}
    except InputFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputFileError(f"{path} is not a readable .npz file: {exc}") from exc


def points_array(arr: np.ndarray, name: str, path: Path) -> np.ndarray:
    """Check an ``[N, 3]`` array read from ``path``."""
    try:
        check_shape(arr, name, ("N", 3))
    except ShapeError as exc:
        raise ShapeError(f"{path}: {exc}") from exc
    return np.asarray(arr, dtype=np.float32)


class SceneFlowDataset(abc.ABC):
    """Base of the readers: index -> :class:`SceneFlowSample`, with optional subsampling.

    Args:
        num_points: points per cloud after subsampling (8,192 is the standard); None keeps all.
        sampling: ``"random"`` (a fresh draw each access from one generator seeded by ``seed``;
            DataLoader workers start from copies of it, so reseed ``dataset._rng`` per worker),
            ``"deterministic"`` (seeded by ``(seed, index)``: the same subset on every access and
            in every worker; the evaluation choice) or ``"none"``.
        fewer: what to do with clouds smaller than ``num_points`` (``"keep"`` or ``"pad"``).
        seed: seed of both modes.
    """

    def __init__(
        self,
        num_points: int | None = STANDARD_NUM_POINTS,
        sampling: str = "deterministic",
        fewer: str = "keep",
        seed: int = 0,
    ) -> None:
        check_choice(sampling, "sampling", SAMPLING_MODES)
        check_choice(fewer, "fewer", FEWER_POINTS)
        if num_points is not None and num_points < 1:
            raise InvalidArgumentError(f"num_points must be >= 1 or None, got {num_points}")
        self.num_points = num_points
        self.sampling = "none" if num_points is None else sampling
        self.fewer = fewer
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of samples."""

    @abc.abstractmethod
    def load(self, index: int) -> SceneFlowSample:
        """The full (not subsampled) sample ``index`` after the data set's own preprocessing."""

    def __getitem__(self, index: int) -> SceneFlowSample:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        index = index % n
        sample = self.load(index)
        if self.sampling == "none" or self.num_points is None:
            return sample
        rng = self._rng if self.sampling == "random" else np.random.default_rng([self.seed, index])
        return sample.subsample(self.num_points, rng, fewer=self.fewer, independent=True)

    def __iter__(self) -> Iterator[SceneFlowSample]:
        for i in range(len(self)):
            yield self[i]


def check_root(root: str | os.PathLike, name: str) -> Path:
    p = Path(root)
    if not p.is_dir():
        from motion4d.errors import MissingFileError

        raise MissingFileError(f"{name} root {p} is not an existing folder")
    return p


def collate(samples: list[SceneFlowSample]) -> dict[str, torch.Tensor]:
    """Batch samples of different sizes as padded tensors (a DataLoader ``collate_fn``).

    Returns ``source [B, N, 3]``, ``source_lengths [B]``, ``target [B, M, 3]``,
    ``target_lengths [B]``, ``flow [B, N, 3]`` and ``mask bool [B, N]`` (False on padding).
    """
    from ..cloud import pad_batch

    if not samples:
        raise InvalidArgumentError("collate needs at least one sample")
    source, source_lengths = pad_batch([torch.from_numpy(s.source) for s in samples])
    target, target_lengths = pad_batch([torch.from_numpy(s.target) for s in samples])
    flow, _ = pad_batch([torch.from_numpy(s.flow) for s in samples])
    mask, _ = pad_batch([torch.from_numpy(s.mask[:, None]) for s in samples], pad_value=False)
    return {
        "source": source,
        "source_lengths": source_lengths,
        "target": target,
        "target_lengths": target_lengths,
        "flow": flow,
        "mask": mask[..., 0],
    }
