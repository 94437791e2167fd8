"""Scene-flow data-set readers (HPLFlowNet FT3D_s / KITTI_s, FlowNet3D KITTI_o, generic ``.npz``).

``open_dataset(name, root, **options)`` opens one by name (``ft3d_s``, ``kitti_s``, ``kitti_o``, ``npz``).
Every reader is indexable and returns :class:`SceneFlowSample` objects (``source [N, 3]``,
``target [M, 3]``, ``flow [N, 3]``, ``mask bool [N]``), subsampled to ``num_points`` (8,192 by
default) with ``sampling="deterministic"`` (seeded per index), ``"random"`` or ``"none"``.
"""
from __future__ import annotations

from .catalog import DATASETS, dataset_splits, open_dataset
from .flownet3d import KITTI_T_INDICES, KITTIFlowNet3D
from .generic import NpzSceneFlow
from .hplflownet import FT3DSubset, KITTISubset, flot_validation_indices
from .sample import STANDARD_NUM_POINTS, SceneFlowDataset, SceneFlowSample, collate

__all__ = [
    "SceneFlowSample",
    "SceneFlowDataset",
    "FT3DSubset",
    "KITTISubset",
    "KITTIFlowNet3D",
    "NpzSceneFlow",
    "KITTI_T_INDICES",
    "STANDARD_NUM_POINTS",
    "flot_validation_indices",
    "collate",
    "DATASETS",
    "dataset_splits",
    "open_dataset",
]
