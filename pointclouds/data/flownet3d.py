"""FlowNet3D's KITTI scene-flow release (``kitti_rm_ground``), as FLOT and SCOOP load it (KITTI_o).

Layout: ``kitti_rm_ground/000000.npz ... 000149.npz``, each with ``pos1 [N, 3]``, ``pos2 [M, 3]``
(ground already removed, no one-to-one correspondence) and ``gt [N, 3]`` (flow of ``pos1``).

Loading as FLOT/SCOOP do: the axes are reordered with ``[:, (1, 2, 0)]`` (the stored third
column becomes x, so z is the forward depth) and each cloud keeps its own points with
``z < 35`` m (source and target cut independently). ``reorder_axes=False, max_depth=None``
gives the raw files, as NSFP reads them. Mask = all ones.

Splits (SCOOP): ``"all"`` = 150 scenes (KITTI_o), ``"test"`` = the 50 scenes of KITTI_t (file
indices in :data:`KITTI_T_INDICES`), ``"train"`` = the other 100 (KITTI_v).
"""
from __future__ import annotations

import os
from pathlib import Path

from motion4d.checks import check_choice
from motion4d.errors import InputFileError

from .sample import STANDARD_NUM_POINTS, SceneFlowDataset, SceneFlowSample, check_root, load_npz, points_array

# KITTI_t: the 50 test scene indices used by SCOOP (file name = index).
KITTI_T_INDICES = (
    1, 5, 7, 8, 10, 12, 15, 17, 20, 21, 24, 25, 29, 30, 31, 32, 34, 35, 36, 39, 40, 44, 45, 47, 48,
    49, 50, 51, 53, 55, 56, 58, 59, 60, 70, 71, 72, 74, 76, 77, 78, 79, 81, 82, 88, 91, 93, 94, 95, 98,
)
KITTI_O_SCENES = 150
FLOT_AXES = (1, 2, 0)
MAX_DEPTH = 35.0


class KITTIFlowNet3D(SceneFlowDataset):
    """KITTI_o / KITTI_t / KITTI_v from FlowNet3D's ``kitti_rm_ground`` ``.npz`` files.

    Args:
        root: folder of ``NNNNNN.npz`` files.
        split: ``"all"``, ``"test"`` (KITTI_t) or ``"train"`` (KITTI_v).
        reorder_axes: apply FLOT's ``(1, 2, 0)`` column order (z = depth).
        max_depth: per-cloud depth cut on z after reordering (None disables).
        num_points, sampling, fewer, seed: see :class:`SceneFlowDataset` (SCOOP uses 2,048 here).
    """

    SPLITS = ("all", "test", "train")

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "all",
        *,
        reorder_axes: bool = True,
        max_depth: float | None = MAX_DEPTH,
        num_points: int | None = STANDARD_NUM_POINTS,
        sampling: str = "deterministic",
        fewer: str = "keep",
        seed: int = 0,
    ) -> None:
        super().__init__(num_points, sampling, fewer, seed)
        check_choice(split, "split", self.SPLITS)
        self.root = check_root(root, "KITTI_o")
        self.split, self.reorder_axes, self.max_depth = split, reorder_axes, max_depth
        files = sorted(self.root.glob("*.npz"))
        if not files:
            raise InputFileError(f"KITTI_o: no .npz files in {self.root}")
        if split != "all":
            try:
                indices = [int(f.stem) for f in files]
            except ValueError as exc:
                raise InputFileError(f"KITTI_o: split {split!r} needs numeric file names: {exc}") from exc
            test = set(KITTI_T_INDICES)
            files = [f for f, i in zip(files, indices) if (i in test) == (split == "test")]
        self.files: list[Path] = files

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> SceneFlowSample:
        path = self.files[index]
        data = load_npz(path, ("pos1", "pos2", "gt"))
        pos1 = points_array(data["pos1"], "pos1", path)
        pos2 = points_array(data["pos2"], "pos2", path)
        flow = points_array(data["gt"], "gt", path)
        if len(flow) != len(pos1):
            raise InputFileError(f"{path}: gt has {len(flow)} rows but pos1 has {len(pos1)}")
        if self.reorder_axes:
            pos1, pos2, flow = (a[:, FLOT_AXES] for a in (pos1, pos2, flow))
        if self.max_depth is not None:
            near1 = pos1[:, 2] < self.max_depth
            pos1, flow = pos1[near1], flow[near1]
            pos2 = pos2[pos2[:, 2] < self.max_depth]
        return SceneFlowSample(pos1, pos2, flow, name=path.stem)
