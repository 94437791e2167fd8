"""A folder (or list) of ``.npz`` scene-flow pairs with configurable array names.

Default keys: ``pc1 [N, 3]``, ``pc2 [M, 3]``, ``flow [N, 3]`` and an optional ``mask [N]``
(NSFP's Argoverse / nuScenes files use exactly these first three). Other layouts are one
``keys=`` away, e.g. FlowNet3D's FlyingThings3D (FT3D_o) files::

    NpzSceneFlow(root, keys={"source": "points1", "target": "points2", "flow": "flow",
                             "mask": "valid_mask1"}, pattern="TEST_*.npz")

Files are used as stored (no axis change, no cropping).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from motion4d.errors import InputFileError, InvalidArgumentError, MissingFileError

from .sample import STANDARD_NUM_POINTS, SceneFlowDataset, SceneFlowSample, check_root, load_npz, points_array

DEFAULT_KEYS = {"source": "pc1", "target": "pc2", "flow": "flow", "mask": "mask"}


class NpzSceneFlow(SceneFlowDataset):
    """Scene-flow pairs stored one per ``.npz`` file.

    Args:
        root: a folder (files matching ``pattern``, sorted) or a sequence of file paths.
        keys: mapping of ``source``/``target``/``flow``/``mask`` to array names; ``mask`` is optional
            in the files (all ones when absent).
        pattern: glob pattern inside a folder.
        num_points, sampling, fewer, seed: see :class:`SceneFlowDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        keys: Mapping[str, str] | None = None,
        pattern: str = "*.npz",
        num_points: int | None = STANDARD_NUM_POINTS,
        sampling: str = "deterministic",
        fewer: str = "keep",
        seed: int = 0,
    ) -> None:
        super().__init__(num_points, sampling, fewer, seed)
        self.keys = dict(DEFAULT_KEYS)
        if keys is not None:
            unknown = set(keys) - set(DEFAULT_KEYS)
            if unknown:
                raise InvalidArgumentError(f"keys may only name {sorted(DEFAULT_KEYS)}, got {sorted(unknown)}")
            self.keys.update(keys)
        if isinstance(root, (str, os.PathLike)):
            folder = check_root(root, "NpzSceneFlow")
            files = sorted(folder.glob(pattern))
            if not files:
                raise InputFileError(f"no files matching {pattern!r} in {folder}")
        else:
            files = [Path(f) for f in root]
            if not files:
                raise InvalidArgumentError("root must name at least one file")
            missing = [str(f) for f in files if not f.is_file()]
            if missing:
                raise MissingFileError(f"scene-flow files do not exist: {missing[:5]}")
        self.files: list[Path] = files

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> SceneFlowSample:
        path = self.files[index]
        k = self.keys
        data = load_npz(path, (k["source"], k["target"], k["flow"]), optional=(k["mask"],))
        source = points_array(data[k["source"]], k["source"], path)
        target = points_array(data[k["target"]], k["target"], path)
        flow = points_array(data[k["flow"]], k["flow"], path)
        if len(flow) != len(source):
            raise InputFileError(f"{path}: {k['flow']} has {len(flow)} rows but {k['source']} has {len(source)}")
        mask = data.get(k["mask"])
        try:
            return SceneFlowSample(source, target, flow, mask, name=path.stem)
        except ValueError as exc:
            raise type(exc)(f"{path}: {exc}") from exc
