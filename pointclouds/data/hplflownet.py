"""HPLFlowNet's processed scene-flow sets: FT3D_s and KITTI_s.

Layout (one folder per scene, the target is a one-to-one copy of the source moved by the flow)::

    FlyingThings3D_subset_processed_35m/           KITTI_processed_occ_final/
        train/0000000/pc1.npy, pc2.npy                 000000/pc1.npy, pc2.npy
        ...  (19,640 scenes)                           ...  (200 scenes; 142 with KITTI_mapping.txt)
        val/0000000/pc1.npy, pc2.npy
        ...  (3,824 scenes: the test set)

Loading follows HPLFlowNet / FLOT / SCOOP exactly:

* ``flow = pc2 - pc1`` (before any subsampling); mask = all ones (non-occluded data).
* FT3D_s: x and z are negated on load, which turns the stored axes into OpenCV axes (x right,
  y down, z forward); points with depth ``z >= 35`` m in either frame are dropped.
* KITTI_s: native axes are x left, y up, z forward (camera height ~1.65 m). Ground removal drops
  points with ``y < -1.4`` in *both* frames, then points with ``z >= 35`` m in either frame.
  ``opencv_axes=True`` negates x and y afterwards (flow too).
* Source and target are subsampled independently (otherwise the task is trivial).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from motion4d.checks import check_choice
from motion4d.errors import InputFileError

from .sample import (
    STANDARD_NUM_POINTS,
    SceneFlowDataset,
    SceneFlowSample,
    check_root,
    load_npy,
    points_array,
)

FT3D_S_TRAIN_SCENES = 19640
FT3D_S_TEST_SCENES = 3824
FT3D_S_VAL_SCENES = 2000  # FLOT/SCOOP carve these out of train with linspace(0, 19639, 2000)
KITTI_S_RAW_SCENES = 200
KITTI_S_SCENES = 142
KITTI_GROUND_Y = -1.4
MAX_DEPTH = 35.0


def _scene_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p / "pc1.npy").exists())


def _load_pair(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    pc1 = points_array(load_npy(folder / "pc1.npy"), "pc1", folder / "pc1.npy")
    pc2 = points_array(load_npy(folder / "pc2.npy"), "pc2", folder / "pc2.npy")
    if pc1.shape != pc2.shape:
        raise InputFileError(
            f"{folder}: pc1 {list(pc1.shape)} and pc2 {list(pc2.shape)} must correspond one-to-one"
        )
    return pc1, pc2


def _depth_filter(pc1: np.ndarray, pc2: np.ndarray, max_depth: float | None) -> tuple[np.ndarray, np.ndarray]:
    if max_depth is None:
        return pc1, pc2
    near = (pc1[:, 2] < max_depth) & (pc2[:, 2] < max_depth)
    return pc1[near], pc2[near]


def flot_validation_indices(num_train: int) -> np.ndarray:
    """FLOT/SCOOP's validation scenes out of the sorted FT3D_s train folders.

    ``linspace(0, 19639, 2000)`` for the full set; for a partial copy the same spacing is scaled
    to ``round(num_train * 2000 / 19640)`` scenes (at least one).
    """
    count = FT3D_S_VAL_SCENES if num_train >= FT3D_S_TRAIN_SCENES else max(
        1, round(num_train * FT3D_S_VAL_SCENES / FT3D_S_TRAIN_SCENES)
    )
    return np.unique(np.linspace(0, num_train - 1, count).astype(int))


class FT3DSubset(SceneFlowDataset):
    """FT3D_s (HPLFlowNet's FlyingThings3D subset, depth < 35 m), OpenCV axes after loading.

    Args:
        root: the ``FlyingThings3D_subset_processed_35m`` folder (holding ``train/`` and ``val/``).
        split: ``"train"`` (train minus FLOT's validation scenes), ``"val"`` (those 2,000),
            ``"train_all"`` (all of ``train/``) or ``"test"`` (the ``val/`` folder, 3,824 scenes).
        max_depth: depth cut in metres (None disables).
        strict: raise unless the folder holds the full published scene counts.
        num_points, sampling, fewer, seed: see :class:`SceneFlowDataset`.
    """

    SPLITS = ("train", "val", "train_all", "test")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        *,
        max_depth: float | None = MAX_DEPTH,
        strict: bool = False,
        num_points: int | None = STANDARD_NUM_POINTS,
        sampling: str = "deterministic",
        fewer: str = "keep",
        seed: int = 0,
    ) -> None:
        super().__init__(num_points, sampling, fewer, seed)
        check_choice(split, "split", self.SPLITS)
        self.root = check_root(root, "FT3D_s")
        self.split, self.max_depth = split, max_depth
        folder = self.root / ("val" if split == "test" else "train")
        if not folder.is_dir():
            raise InputFileError(f"FT3D_s: {folder} is missing (expected {self.root}/train and {self.root}/val)")
        scenes = _scene_folders(folder)
        expected = FT3D_S_TEST_SCENES if split == "test" else FT3D_S_TRAIN_SCENES
        if not scenes:
            raise InputFileError(f"FT3D_s: no scene folders with pc1.npy under {folder}")
        if strict and len(scenes) != expected:
            raise InputFileError(f"FT3D_s: {folder} holds {len(scenes)} scenes, expected {expected}")
        if split in ("train", "val"):
            val = set(flot_validation_indices(len(scenes)).tolist())
            keep = [i in val for i in range(len(scenes))]
            scenes = [s for s, k in zip(scenes, keep) if k == (split == "val")]
        self.scenes = scenes

    def __len__(self) -> int:
        return len(self.scenes)

    def load(self, index: int) -> SceneFlowSample:
        folder = self.scenes[index]
        pc1, pc2 = _load_pair(folder)
        axes = np.array([-1.0, 1.0, -1.0], dtype=np.float32)  # stored axes -> OpenCV axes
        pc1, pc2 = _depth_filter(pc1 * axes, pc2 * axes, self.max_depth)
        return SceneFlowSample(pc1, pc2, pc2 - pc1, name=f"{folder.parent.name}/{folder.name}")


class KITTISubset(SceneFlowDataset):
    """KITTI_s (HPLFlowNet's KITTI scene flow 2015 training scenes, 142 with the mapping file).

    Args:
        root: the ``KITTI_processed_occ_final`` folder (scene folders ``000000`` ... ``000199``).
        mapping_file: HPLFlowNet's ``KITTI_mapping.txt`` (line i empty = scene i has no raw-data
            mapping and is dropped). Defaults to ``root/KITTI_mapping.txt`` when present; without
            it all folders are used (a warning says so when that is the raw 200).
        remove_ground: drop points with ``y < -1.4`` in both frames.
        max_depth: depth cut in metres (None disables).
        opencv_axes: return OpenCV axes (x right, y down) instead of the native x left, y up.
        num_points, sampling, fewer, seed: see :class:`SceneFlowDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        mapping_file: str | os.PathLike | None = None,
        remove_ground: bool = True,
        max_depth: float | None = MAX_DEPTH,
        opencv_axes: bool = False,
        num_points: int | None = STANDARD_NUM_POINTS,
        sampling: str = "deterministic",
        fewer: str = "keep",
        seed: int = 0,
    ) -> None:
        super().__init__(num_points, sampling, fewer, seed)
        self.root = check_root(root, "KITTI_s")
        self.remove_ground, self.max_depth, self.opencv_axes = remove_ground, max_depth, opencv_axes
        scenes = _scene_folders(self.root)
        if not scenes:
            raise InputFileError(f"KITTI_s: no scene folders with pc1.npy under {self.root}")
        mapping = Path(mapping_file) if mapping_file is not None else self.root / "KITTI_mapping.txt"
        if mapping_file is not None and not mapping.is_file():
            raise InputFileError(f"KITTI_s: mapping_file {mapping} does not exist")
        if mapping.is_file():
            lines = [line.strip() for line in mapping.read_text().splitlines()]
            try:
                scenes = [s for s in scenes if lines[int(s.name)] != ""]
            except (ValueError, IndexError) as exc:
                raise InputFileError(
                    f"KITTI_s: scene folder names must be indices into {mapping} ({len(lines)} lines): {exc}"
                ) from exc
        elif len(scenes) == KITTI_S_RAW_SCENES:
            warnings.warn(
                f"KITTI_s: using all {len(scenes)} scenes; the standard protocol keeps the "
                f"{KITTI_S_SCENES} listed in HPLFlowNet's KITTI_mapping.txt (pass mapping_file=...)",
                stacklevel=2,
            )
        self.scenes = scenes

    def __len__(self) -> int:
        return len(self.scenes)

    def load(self, index: int) -> SceneFlowSample:
        folder = self.scenes[index]
        pc1, pc2 = _load_pair(folder)
        if self.remove_ground:
            ground = (pc1[:, 1] < KITTI_GROUND_Y) & (pc2[:, 1] < KITTI_GROUND_Y)
            pc1, pc2 = pc1[~ground], pc2[~ground]
        pc1, pc2 = _depth_filter(pc1, pc2, self.max_depth)
        if self.opencv_axes:
            axes = np.array([-1.0, -1.0, 1.0], dtype=np.float32)
            pc1, pc2 = pc1 * axes, pc2 * axes
        return SceneFlowSample(pc1, pc2, pc2 - pc1, name=folder.name)
