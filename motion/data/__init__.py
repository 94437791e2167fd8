"""Optical-flow data sets returning multi-frame clips: MPI-Sintel, KITTI 2015 (+ multi-view),
FlyingThings3D, FlyingChairs, HD1K.

>>> from motion.data import MpiSintel, collate_flow_samples
>>> ds = MpiSintel("datasets/Sintel", "training", "final", clip_length=3)
>>> sample = ds[0]            # FlowSample: frames uint8 [3, H, W, 3], flow float32 [2, H, W, 2], ...
>>> batch = collate_flow_samples([ds[0], ds[1]])   # frames float [2, 3, 3, H, W], flow [2, 2, 2, H, W]

:func:`open_dataset` builds a reader from a short name (``sintel``, ``kitti``, ``things``,
``chairs``, ``hd1k``), as the command-line tools do.
"""
from __future__ import annotations

import os
from typing import Any

from motion4d.errors import InvalidArgumentError

from .base import (
    BOUNDARY_MODES,
    FlowDataset,
    FlowSample,
    PairFiles,
    SampleIndexError,
    SequenceRecord,
    collate_flow_samples,
)
from .chairs import FlyingChairs
from .hd1k import HD1K
from .kitti import Kitti2015
from .sintel import MpiSintel
from .things import FlyingThings3D

DATASETS: dict[str, type[FlowDataset]] = {
    "sintel": MpiSintel,
    "kitti": Kitti2015,
    "things": FlyingThings3D,
    "chairs": FlyingChairs,
    "hd1k": HD1K,
}


def open_dataset(name: str, root: str | os.PathLike, **options: Any) -> FlowDataset:
    """Build the reader registered as ``name`` (see :data:`DATASETS`) with ``root`` and its options."""
    if name not in DATASETS:
        raise InvalidArgumentError(f"dataset must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name](root, **options)


__all__ = [
    "BOUNDARY_MODES",
    "DATASETS",
    "FlowDataset",
    "FlowSample",
    "FlyingChairs",
    "FlyingThings3D",
    "HD1K",
    "Kitti2015",
    "MpiSintel",
    "PairFiles",
    "SampleIndexError",
    "SequenceRecord",
    "collate_flow_samples",
    "open_dataset",
]
