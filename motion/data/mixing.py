"""Training mixtures of flow data sets and crops applied consistently to every frame of a clip.

A mixture is written as the papers' training scripts write it::

    100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things

each component repeated ``weight`` times (``things`` alone means weight 1), so that one pass over
the mixture sees Sintel 100 times per Things pass, as VideoFlow / RAFT do with ``100 * sintel``.

>>> mix = build_mixture("100*sintel_clean+things", {"sintel": "data/Sintel", "things": "data/Things"},
...                     clip_length=3, transform=RandomCrop((432, 960)), seed=1234)
>>> mix[0]   # a cropped FlowSample, identical whichever process or worker reads it

Every random choice of a transform comes from a generator seeded by ``(seed, epoch, index)``
(:meth:`MixedDataset.set_epoch`), so a sample is the same on every rank and data-loader worker and
after a resume: distributed training and exact restarts need no extra bookkeeping.
"""
from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
import torch

from motion4d.errors import InvalidArgumentError, ShapeError

from .base import FlowDataset, FlowSample

# component name -> (reader name in motion.data.DATASETS, reader options)
COMPONENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sintel_clean": ("sintel", {"split": "training", "pass_name": "clean"}),
    "sintel_final": ("sintel", {"split": "training", "pass_name": "final"}),
    "kitti": ("kitti", {"split": "training"}),
    "hd1k": ("hd1k", {}),
    "things": ("things", {"split": "training", "pass_name": "clean", "cameras": ("left", "right"),
                          "directions": ("forward", "backward")}),
    "things_clean": ("things", {"split": "training", "pass_name": "clean", "cameras": ("left", "right"),
                                "directions": ("forward", "backward")}),
    "things_final": ("things", {"split": "training", "pass_name": "final", "cameras": ("left", "right"),
                                "directions": ("forward", "backward")}),
    "chairs": ("chairs", {"split": "training"}),
}

_TERM = re.compile(r"\s*(?:(\d+)\s*\*\s*)?([a-z0-9_]+)\s*")

Transform = Callable[[FlowSample, np.random.Generator], FlowSample]


@dataclass(frozen=True)
class MixComponent:
    name: str
    weight: int


def parse_mixture(spec: str) -> list[MixComponent]:
    """``"100*sintel_clean+things"`` -> [MixComponent("sintel_clean", 100), MixComponent("things", 1)]."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidArgumentError(f"mixture must be a string like '100*sintel_clean+things', got {spec!r}")
    parts = []
    for term in spec.split("+"):
        match = _TERM.fullmatch(term)
        if match is None:
            raise InvalidArgumentError(f"bad mixture term {term!r} in {spec!r}: expected [WEIGHT*]NAME, e.g. 100*sintel_clean")
        weight = int(match.group(1) or 1)
        name = match.group(2)
        if name not in COMPONENTS:
            raise InvalidArgumentError(f"unknown data set {name!r} in mixture {spec!r}; known: {sorted(COMPONENTS)}")
        if weight < 1:
            raise InvalidArgumentError(f"mixture weight of {name} must be >= 1, got {weight}")
        parts.append(MixComponent(name, weight))
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"mixture {spec!r} names a data set twice")
    return parts


class MixedDataset(torch.utils.data.Dataset):
    """Concatenation of data sets, each repeated ``weight`` times, with a seeded per-sample transform.

    Args:
        parts: ``(name, dataset, weight)`` triples; every dataset must give clips of the same length.
        transform: ``transform(sample, rng) -> sample`` (crops, augmentation) or None.
        seed: base seed of the per-sample generators.
    """

    def __init__(self, parts: Sequence[tuple[str, FlowDataset, int]], transform: Transform | None = None, seed: int = 0) -> None:
        super().__init__()
        if not parts:
            raise InvalidArgumentError("a mixture needs at least one data set")
        lengths = {getattr(ds, "clip_length", None) for _, ds, _ in parts}
        if len(lengths) > 1:
            raise InvalidArgumentError(f"all data sets of a mixture must give clips of one length, got {sorted(lengths)}")
        self.names = [name for name, _, _ in parts]
        self.datasets = [ds for _, ds, _ in parts]
        self.weights = [int(w) for _, _, w in parts]
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.offsets = []
        total = 0
        for ds, weight in zip(self.datasets, self.weights):
            self.offsets.append(total)
            total += len(ds) * weight
        self._length = total

    def set_epoch(self, epoch: int) -> None:
        """Select the random transforms of ``epoch`` (call before each pass, as on a sampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._length

    def locate(self, index: int) -> tuple[int, int]:
        """``index`` -> (component number, index inside that component's data set)."""
        if not 0 <= index < self._length:
            raise InvalidArgumentError(f"mixture index {index} out of range for {self._length} samples")
        part = bisect.bisect_right(self.offsets, index) - 1
        return part, (index - self.offsets[part]) % len(self.datasets[part])

    def __getitem__(self, index: int) -> FlowSample:
        part, local = self.locate(int(index))
        sample = self.datasets[part][local]
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(index)])
            sample = self.transform(sample, rng)
        return sample

    def summary(self) -> str:
        terms = [f"{w}*{n} ({len(ds)} samples)" for n, ds, w in zip(self.names, self.datasets, self.weights)]
        return f"mixture of {len(self)} samples: " + " + ".join(terms)


def build_mixture(
    spec: str,
    roots: Mapping[str, str | os.PathLike],
    *,
    clip_length: int = 2,
    target: int | None = None,
    boundary: str = "replicate",
    transform: Transform | None = None,
    seed: int = 0,
    reader_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> MixedDataset:
    """Open every data set of ``spec`` (see :func:`parse_mixture`) under ``roots[reader name]``.

    Args:
        roots: reader name (``sintel``, ``kitti``, ``things``, ``hd1k``, ``chairs``) -> root folder.
        reader_options: per component name, options overriding :data:`COMPONENTS`' (e.g.
            ``{"kitti": {"multiview_root": ...}}``).
    """
    from . import open_dataset

    parts = []
    for component in parse_mixture(spec):
        reader, options = COMPONENTS[component.name]
        if reader not in roots or roots[reader] is None:
            raise InvalidArgumentError(
                f"mixture component {component.name} needs the {reader} root (known roots: {sorted(k for k, v in roots.items() if v)})"
            )
        options = {**options, **dict((reader_options or {}).get(component.name, {}))}
        dataset = open_dataset(reader, roots[reader], clip_length=clip_length, target=target, boundary=boundary, **options)
        parts.append((component.name, dataset, component.weight))
    return MixedDataset(parts, transform=transform, seed=seed)


# --------------------------------------------------------------------------------------------------
# Transforms


def resize_sample(sample: FlowSample, size: tuple[int, int]) -> FlowSample:
    """Resize every frame and flow of a clip to ``size = (H, W)``; flow vectors are scaled with it.

    Dense ground truth is resized bilinearly; sparse ground truth (KITTI, HD1K) is moved to the
    nearest pixel of the new grid, as RAFT's ``resize_sparse_flow_map``, so no invalid pixel leaks in.
    """
    height, width = sample.size
    new_h, new_w = size
    if (new_h, new_w) == (height, width):
        return sample
    sy, sx = new_h / height, new_w / width
    scale = np.array([sx, sy], np.float32)
    frames = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for f in sample.frames])

    def flows(flow: np.ndarray | None, valid: np.ndarray | None, has: np.ndarray | None):
        if flow is None or valid is None or has is None:
            return flow, valid
        out_f = np.zeros((flow.shape[0], new_h, new_w, 2), np.float32)
        out_v = np.zeros((flow.shape[0], new_h, new_w), bool)
        for t in range(flow.shape[0]):
            if not has[t]:
                continue
            if valid[t].all():
                out_f[t] = cv2.resize(flow[t], (new_w, new_h), interpolation=cv2.INTER_LINEAR) * scale
                out_v[t] = True
            else:
                ys, xs = np.nonzero(valid[t])
                nx = np.round(xs * sx).astype(int)
                ny = np.round(ys * sy).astype(int)
                keep = (nx >= 0) & (nx < new_w) & (ny >= 0) & (ny < new_h)
                out_f[t, ny[keep], nx[keep]] = flow[t, ys[keep], xs[keep]] * scale
                out_v[t, ny[keep], nx[keep]] = True
        return out_f, out_v

    def masks(mask: np.ndarray | None) -> np.ndarray | None:
        if mask is None:
            return None
        return np.stack([cv2.resize(m.astype(np.uint8), (new_w, new_h), interpolation=cv2.INTER_NEAREST) > 0 for m in mask])

    flow, valid = flows(sample.flow, sample.valid, sample.has_flow)
    flow_bw, valid_bw = flows(sample.flow_backward, sample.valid_backward, sample.has_flow_backward)
    return replace(sample, frames=frames, flow=flow, valid=valid, occlusion=masks(sample.occlusion),
                   flow_backward=flow_bw, valid_backward=valid_bw,
                   extras={k: masks(v) for k, v in sample.extras.items()})


def crop_sample(sample: FlowSample, top: int, left: int, size: tuple[int, int]) -> FlowSample:
    """The window ``[top:top+H, left:left+W]`` of every frame, flow and mask of the clip."""
    h, w = size
    height, width = sample.size
    if top < 0 or left < 0 or top + h > height or left + w > width:
        raise ShapeError(f"crop {h}x{w} at ({top}, {left}) does not fit in {height}x{width}")

    def cut(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.ascontiguousarray(x[:, top : top + h, left : left + w])

    return replace(sample, frames=cut(sample.frames), flow=cut(sample.flow), valid=cut(sample.valid),
                   occlusion=cut(sample.occlusion), flow_backward=cut(sample.flow_backward),
                   valid_backward=cut(sample.valid_backward), extras={k: cut(v) for k, v in sample.extras.items()})


@dataclass(frozen=True)
class RandomCrop:
    """Random ``size = (H, W)`` window, the same for every frame and flow of a clip.

    Clips smaller than the crop are first enlarged (aspect ratio kept) to just cover it, as the
    papers' augmentors guarantee with their minimum scale.
    """

    size: tuple[int, int]

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise InvalidArgumentError(f"crop size must be (H, W) with positive entries, got {self.size!r}")

    def __call__(self, sample: FlowSample, rng: np.random.Generator) -> FlowSample:
        h, w = self.size
        height, width = sample.size
        if height < h or width < w:
            factor = max(h / height, w / width)
            sample = resize_sample(sample, (max(h, int(np.ceil(height * factor))), max(w, int(np.ceil(width * factor)))))
            height, width = sample.size
        top = int(rng.integers(0, height - h + 1))
        left = int(rng.integers(0, width - w + 1))
        return crop_sample(sample, top, left, (h, w))


@dataclass(frozen=True)
class Compose:
    """Apply transforms in order, all drawing from the sample's generator."""

    transforms: tuple[Transform, ...]

    def __call__(self, sample: FlowSample, rng: np.random.Generator) -> FlowSample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


__all__ = ["COMPONENTS", "MixComponent", "MixedDataset", "RandomCrop", "Compose", "build_mixture",
           "crop_sample", "parse_mixture", "resize_sample"]
