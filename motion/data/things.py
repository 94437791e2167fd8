"""FlyingThings3D reader (full data set: ``frames_{clean,final}pass`` + ``optical_flow`` PFM files)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from motion4d.checks import check_choice
from motion4d.errors import InvalidArgumentError

from .base import (
    FlowDataset,
    PairFiles,
    SequenceRecord,
    consecutive,
    numbered_files,
    require_dir,
    require_files,
)

THINGS_LAYOUT = """\
  {root}/frames_cleanpass/{TRAIN,TEST}/{A,B,C}/0000/{left,right}/0006.png ... 0015.png   (and frames_finalpass)
  {root}/optical_flow/{TRAIN,TEST}/{A,B,C}/0000/into_future/{left,right}/OpticalFlowIntoFuture_0006_L.pfm
  {root}/optical_flow/{TRAIN,TEST}/{A,B,C}/0000/into_past/{left,right}/OpticalFlowIntoPast_0006_L.pfm
  (into_future at frame i: i -> i+1; into_past at frame i: i -> i-1; _L / _R = left / right camera)"""

_SPLIT_DIRS = {"training": "TRAIN", "test": "TEST"}
_CAMERA_TAGS = {"left": "L", "right": "R"}


class FlyingThings3D(FlowDataset):
    """FlyingThings3D (Mayer et al. 2016), full release: 10-frame sequences with forward and backward flow.

    Sequences are named ``"{TRAIN|TEST}/{A|B|C}/{seq:04d}/{left|right}"``. Every pair has forward
    (``into_future``) and backward (``into_past``) ground truth; samples carry both
    (``flow`` and ``flow_backward``). ``directions=("forward", "backward")`` doubles the samples with
    reversed clips (the backward flow becomes ``flow``), which is how RAFT-family papers train and
    test on Things; the usual test set is ``split="test"``, left camera, both directions.

    Args:
        root: folder holding ``frames_cleanpass/``, ``frames_finalpass/`` and ``optical_flow/``.
        split: ``"training"`` (TRAIN) or ``"test"`` (TEST).
        pass_name: ``"clean"`` or ``"final"``.
        cameras: any of ``"left"``, ``"right"``.
        directions: ``"forward"`` and/or ``"backward"`` samples.
        backward_flow: read ``into_past`` for every sample (needed for ``"backward"``).
        **options: ``clip_length``, ``target``, ``boundary``, ``sequences``, see
            :class:`~motion.data.base.FlowDataset`.
    """

    name = "things"
    layout = THINGS_LAYOUT

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "training",
        pass_name: str = "clean",
        *,
        cameras: Sequence[str] = ("left",),
        directions: Sequence[str] = ("forward",),
        backward_flow: bool = True,
        clip_length: int = 2,
        target: int | None = None,
        boundary: str = "replicate",
        sequences: Iterable[str] | None = None,
    ) -> None:
        check_choice(split, "split", tuple(_SPLIT_DIRS))
        check_choice(pass_name, "pass_name", ("clean", "final"))
        cameras = (cameras,) if isinstance(cameras, str) else tuple(cameras)
        directions = (directions,) if isinstance(directions, str) else tuple(directions)
        if not cameras or not directions:
            raise InvalidArgumentError("cameras and directions must not be empty")
        for camera in cameras:
            check_choice(camera, "cameras", tuple(_CAMERA_TAGS))
        for direction in directions:
            check_choice(direction, "directions", ("forward", "backward"))
        if "backward" in directions and not backward_flow:
            raise InvalidArgumentError('directions with "backward" need backward_flow=True')
        self.split = split
        self.pass_name = pass_name
        self.cameras = tuple(dict.fromkeys(cameras))
        self.directions = tuple(dict.fromkeys(directions))
        self.backward_flow = backward_flow
        super().__init__(root, clip_length=clip_length, target=target, boundary=boundary, sequences=sequences)

    def _title(self) -> str:
        return f"things {self.split}/{self.pass_name} {'+'.join(self.cameras)} {'+'.join(self.directions)}"

    def _directions(self) -> tuple[bool, ...]:
        return tuple(d == "backward" for d in self.directions)

    def _scan(self) -> list[SequenceRecord]:
        split_dir = _SPLIT_DIRS[self.split]
        image_root = require_dir(self.root / f"frames_{self.pass_name}pass" / split_dir, self.name, self.expected_layout)
        flow_root = require_dir(self.root / "optical_flow" / split_dir, self.name, self.expected_layout)
        records = []
        for letter_dir in sorted(p for p in image_root.iterdir() if p.is_dir()):
            for seq_dir in sorted(p for p in letter_dir.iterdir() if p.is_dir()):
                for camera in self.cameras:
                    record = self._scan_sequence(seq_dir / camera, flow_root / letter_dir.name / seq_dir.name, camera)
                    if record is not None:
                        records.append(record)
        return records

    def _scan_sequence(self, image_dir: Path, flow_dir: Path, camera: str) -> SequenceRecord | None:
        if not image_dir.is_dir():
            return None
        frames = numbered_files(image_dir, r"(\d+)\.png")
        if len(frames) < 2:
            return None
        ids = [i for i, _ in frames]
        name = "/".join(image_dir.parts[-4:])
        consecutive(ids, f"things sequence {image_dir}")
        tag = _CAMERA_TAGS[camera]
        future = [flow_dir / "into_future" / camera / f"OpticalFlowIntoFuture_{i:04d}_{tag}.pfm" for i in ids[:-1]]
        require_files(future, self.name, f"into_future flow ({name})", self.expected_layout)
        past: list[Path | None] = [None] * len(future)
        if self.backward_flow:
            past = [flow_dir / "into_past" / camera / f"OpticalFlowIntoPast_{i:04d}_{tag}.pfm" for i in ids[1:]]
            require_files(past, self.name, f"into_past flow ({name})", self.expected_layout)
        pairs = tuple(PairFiles(flow=f, flow_backward=b) for f, b in zip(future, past))
        return SequenceRecord(
            name=name,
            frame_ids=tuple(ids),
            images=tuple(p for _, p in frames),
            pairs=pairs,
            anchors=tuple(range(len(pairs))),
        )
