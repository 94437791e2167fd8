"""The scene-flow data sets by name: ``open_dataset("kitti_o", root, split="test", num_points=2048)``."""
from __future__ import annotations

import inspect
import os
from typing import Any

from motion4d.checks import check_choice
from motion4d.errors import InvalidArgumentError

from .flownet3d import KITTIFlowNet3D
from .generic import NpzSceneFlow
from .hplflownet import FT3DSubset, KITTISubset
from .sample import SceneFlowDataset

DATASETS: dict[str, type[SceneFlowDataset]] = {
    "ft3d_s": FT3DSubset,  # HPLFlowNet's FlyingThings3D subset
    "kitti_s": KITTISubset,  # HPLFlowNet's KITTI scene flow 2015
    "kitti_o": KITTIFlowNet3D,  # FlowNet3D's KITTI
    "npz": NpzSceneFlow,  # a folder of generic .npz pairs
}


def dataset_splits(name: str) -> tuple[str, ...]:
    """The splits data set ``name`` offers (``()`` when it has none)."""
    check_choice(name, "dataset", tuple(DATASETS))
    return tuple(getattr(DATASETS[name], "SPLITS", ()))


def open_dataset(name: str, root: str | os.PathLike, **options: Any) -> SceneFlowDataset:
    """The reader of data set ``name`` on the folder ``root``.

    Args:
        name: one of :data:`DATASETS` (``ft3d_s``, ``kitti_s``, ``kitti_o``, ``npz``).
        root: the data set's folder.
        options: keyword arguments of that reader, e.g. ``split`` (see :func:`dataset_splits`),
            ``num_points``, ``sampling``, ``fewer``, ``seed``; ``keys`` and ``pattern`` for ``npz``.

    Raises:
        InvalidArgumentError: an unknown name, or an option the reader does not take.
        MissingFileError: ``root`` is not a folder.
    """
    check_choice(name, "dataset", tuple(DATASETS))
    reader = DATASETS[name]
    accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidArgumentError(f"dataset {name!r} takes no option {', '.join(unknown)}; it takes {', '.join(accepted)}")
    return reader(root, **options)


__all__ = ["DATASETS", "dataset_splits", "open_dataset"]
