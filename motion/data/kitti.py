"""KITTI 2015 optical-flow reader, with the multi-view extension for multi-frame clips."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from motion4d.checks import check_choice
from motion4d.errors import MissingFileError

from .base import FlowDataset, PairFiles, SequenceRecord, require_dir

KITTI_LAYOUT = """\
  {root}/training/image_2/000000_10.png, 000000_11.png     (data_scene_flow)
  {root}/training/flow_occ/000000_10.png                   KITTI 16-bit PNG, flow _10 -> _11, all pixels
  {root}/training/flow_noc/000000_10.png                   optional: non-occluded pixels only
  {root}/testing/image_2/000000_10.png, 000000_11.png
  multi-view extension (data_scene_flow_multiview), unpacked into {root} or into multiview_root:
  {multiview_root}/{training,testing}/image_2/000000_00.png ... 000000_20.png"""

KITTI_FIRST_FRAME = 0
KITTI_LAST_FRAME = 20
KITTI_SOURCE_FRAME = 10


class Kitti2015(FlowDataset):
    """KITTI 2015 flow (Menze & Geiger 2015): 200 training scenes with ground truth for ``_10 -> _11``,
    200 testing scenes.

    One sample per scene, anchored on the pair ``_10 -> _11``. Clips longer than 2 frames take the
    neighbouring frames ``_00 .. _20`` of the multi-view extension, e.g. ``clip_length=5, target=2``
    gives ``_08 .. _12`` (VideoFlow-MOF), ``clip_length=3, target=1`` gives ``_09 .. _11``
    (VideoFlow-BOF) and ``clip_length=4, target=2`` gives ``_08 .. _11`` (StreamFlow). Only that pair
    has ground truth (``has_flow``). ``flow``/``valid`` come from ``flow_occ``; when ``flow_noc`` is
    present, ``occlusion`` = valid in ``flow_occ`` and not in ``flow_noc`` (so the "noc" pixels are
    ``valid & ~occlusion``). Scenes differ in size (about 375 x 1242).

    Args:
        root: folder holding ``training/`` and ``testing/`` of ``data_scene_flow``.
        split: ``"training"`` or ``"testing"``.
        multiview_root: folder holding the multi-view extension's ``training/``/``testing/`` when it
            is not unpacked into ``root``.
        **options: ``clip_length``, ``target``, ``boundary``, ``sequences`` (scene names ``"000000"``
            ...), see :class:`~motion.data.base.FlowDataset`. Frames the clip needs within
            ``_00 .. _20`` must exist; only beyond them does ``boundary`` apply.
    """

    name = "kitti"
    layout = KITTI_LAYOUT

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "training",
        *,
        multiview_root: str | os.PathLike | None = None,
        clip_length: int = 2,
        target: int | None = None,
        boundary: str = "replicate",
        sequences: Iterable[str] | None = None,
    ) -> None:
        check_choice(split, "split", ("training", "testing"))
        self.split = split
        self.multiview_root = Path(multiview_root) if multiview_root is not None else None
        if self.multiview_root is not None and not self.multiview_root.is_dir():
            raise MissingFileError(f"kitti: multiview_root {self.multiview_root} does not exist; expected layout:\n{KITTI_LAYOUT}")
        super().__init__(root, clip_length=clip_length, target=target, boundary=boundary, sequences=sequences)

    def _title(self) -> str:
        return f"kitti {self.split}"

    @property
    def expected_layout(self) -> str:
        text = super().expected_layout
        return text if self.multiview_root is None else text.replace("{multiview_root}", str(self.multiview_root))

    def _scan(self) -> list[SequenceRecord]:
        image_root = require_dir(self.root / self.split / "image_2", self.name, self.expected_layout)
        image_dirs = [image_root]
        if self.multiview_root is not None:
            image_dirs.append(require_dir(self.multiview_root / self.split / "image_2", self.name, self.expected_layout))
        frames: dict[str, dict[int, Path]] = {}
        for folder in reversed(image_dirs):  # files in root win over the multi-view copy
            for scene_frame, path in _scene_frames(folder):
                scene, frame = scene_frame
                frames.setdefault(scene, {})[frame] = path
        with_gt = self.split == "training"
        if with_gt:
            occ_root = require_dir(self.root / self.split / "flow_occ", self.name, self.expected_layout)
            noc_dir = self.root / self.split / "flow_noc"
            noc_root = noc_dir if noc_dir.is_dir() else None
        needed = self._needed_frames()
        records = []
        for scene in sorted(frames):
            available = frames[scene]
            if KITTI_SOURCE_FRAME not in available:
                continue
            missing = [f for f in needed if f not in available]
            if missing:
                raise MissingFileError(
                    f"kitti: scene {scene} lacks frame(s) {missing} needed by clip_length={self.clip_length}, "
                    f"target={self.target} (e.g. {image_root / f'{scene}_{missing[0]:02d}.png'}); longer clips "
                    f"need the multi-view extension (data_scene_flow_multiview) in root or multiview_root"
                )
            ids = _run_around(sorted(available), KITTI_SOURCE_FRAME)
            pairs = [PairFiles() for _ in ids[:-1]]
            anchor = ids.index(KITTI_SOURCE_FRAME)
            if with_gt:
                flow = occ_root / f"{scene}_{KITTI_SOURCE_FRAME}.png"
                if not flow.is_file():
                    raise MissingFileError(f"kitti: ground-truth flow {flow} is missing; expected layout:\n{self.expected_layout}")
                noc = noc_root / flow.name if noc_root is not None else None
                if noc is not None and not noc.is_file():
                    raise MissingFileError(f"kitti: non-occluded ground truth {noc} is missing (flow_noc exists)")
                pairs[anchor] = PairFiles(flow=flow, flow_noc=noc)
            records.append(
                SequenceRecord(
                    name=scene,
                    frame_ids=tuple(ids),
                    images=tuple(available[i] for i in ids),
                    pairs=tuple(pairs),
                    anchors=(anchor,),
                )
            )
        return records

    def _needed_frames(self) -> list[int]:
        """Frame numbers in ``_00 .. _20`` that the configured clip reads (always including _10, _11)."""
        length, target = self.clip_length, self.target
        first = KITTI_SOURCE_FRAME - target
        wanted = set(range(first, first + length)) | {KITTI_SOURCE_FRAME, KITTI_SOURCE_FRAME + 1}
        return sorted(f for f in wanted if KITTI_FIRST_FRAME <= f <= KITTI_LAST_FRAME)


def _scene_frames(folder: Path) -> list[tuple[tuple[str, int], Path]]:
    """``000000_10.png`` -> (("000000", 10), path) for the files of one ``image_2`` folder."""
    out = []
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            parts = stem.split("_")
            if ext == ".png" and len(parts) == 2 and all(p.isdigit() for p in parts) and len(parts[1]) == 2:
                out.append(((parts[0], int(parts[1])), Path(entry.path)))
    return out


def _run_around(ids: list[int], centre: int) -> list[int]:
    """The longest run of consecutive frame numbers in sorted ``ids`` that contains ``centre``."""
    i = ids.index(centre)
    lo, hi = i, i
    while lo > 0 and ids[lo - 1] == ids[lo] - 1:
        lo -= 1
    while hi + 1 < len(ids) and ids[hi + 1] == ids[hi] + 1:
        hi += 1
    return ids[lo : hi + 1]
