"""MPI-Sintel reader (clean / final pass, forward flow, occlusions, invalid-pixel maps)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from motion4d.checks import check_choice

from .base import (
    FlowDataset,
    PairFiles,
    SequenceRecord,
    consecutive,
    numbered_files,
    require_dir,
    require_files,
)

SINTEL_LAYOUT = """\
  {root}/training/{clean,final}/<scene>/frame_0001.png ...
  {root}/training/flow/<scene>/frame_0001.flo          flow frame_0001 -> frame_0002
  {root}/training/occlusions/<scene>/frame_0001.png    optional; non-zero = occluded in the next frame
  {root}/training/invalid/<scene>/frame_0001.png       optional invalid-pixel maps
  {root}/test/{clean,final}/<scene>/frame_0001.png ...
  ({root} is the unpacked MPI-Sintel-complete folder)"""


class MpiSintel(FlowDataset):
    """MPI-Sintel (Butler et al. 2012): 23 training scenes with forward flow, 12 test scenes.

    Every pair of a training scene has ground truth and is one sample; the test split has no ground
    truth and every pair is a sample (for submissions: ``sample.sequence`` and
    ``sample.frame_ids[sample.target]`` name the output ``.flo``). ``occlusion`` comes from
    ``occlusions/`` (or ``occlusion/``) when present; ``extras["invalid"]`` from ``invalid/``.

    Args:
        root: the ``MPI-Sintel-complete`` folder.
        split: ``"training"`` or ``"test"``.
        pass_name: ``"clean"`` or ``"final"``.
        **options: ``clip_length``, ``target``, ``boundary``, ``sequences`` (scene names), see
            :class:`~motion.data.base.FlowDataset`.
    """

    name = "sintel"
    layout = SINTEL_LAYOUT

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "training",
        pass_name: str = "clean",
        *,
        clip_length: int = 2,
        target: int | None = None,
        boundary: str = "replicate",
        sequences: Iterable[str] | None = None,
    ) -> None:
        check_choice(split, "split", ("training", "test"))
        check_choice(pass_name, "pass_name", ("clean", "final"))
        self.split = split
        self.pass_name = pass_name
        super().__init__(root, clip_length=clip_length, target=target, boundary=boundary, sequences=sequences)

    def _title(self) -> str:
        return f"sintel {self.split}/{self.pass_name}"

    def _scan(self) -> list[SequenceRecord]:
        split_dir = self.root / self.split
        image_root = require_dir(split_dir / self.pass_name, self.name, self.expected_layout)
        with_gt = self.split == "training"
        if with_gt:
            flow_root = require_dir(split_dir / "flow", self.name, self.expected_layout)
            occ_root = next((d for d in (split_dir / "occlusions", split_dir / "occlusion") if d.is_dir()), None)
            invalid_root = split_dir / "invalid" if (split_dir / "invalid").is_dir() else None
        records = []
        for scene_dir in sorted(p for p in image_root.iterdir() if p.is_dir()):
            scene = scene_dir.name
            frames = numbered_files(scene_dir, r"frame_(\d+)\.png")
            if len(frames) < 2:
                continue
            ids = [i for i, _ in frames]
            consecutive(ids, f"sintel scene {scene_dir}")
            pairs = []
            if with_gt:
                names = [f"frame_{i:04d}" for i in ids[:-1]]
                flows = [flow_root / scene / f"{n}.flo" for n in names]
                require_files(flows, self.name, f"ground-truth flow (scene {scene})", self.expected_layout)
                occs = [occ_root / scene / f"{n}.png" for n in names] if occ_root is not None else None
                invalids = [invalid_root / scene / f"{n}.png" for n in names] if invalid_root is not None else None
                if occs is not None:
                    require_files(occs, self.name, f"occlusion mask (scene {scene})", self.expected_layout)
                if invalids is not None:
                    require_files(invalids, self.name, f"invalid-pixel map (scene {scene})", self.expected_layout)
                for i, flow in enumerate(flows):
                    pairs.append(
                        PairFiles(
                            flow=flow,
                            occlusion=occs[i] if occs is not None else None,
                            invalid=invalids[i] if invalids is not None else None,
                        )
                    )
            else:
                pairs = [PairFiles() for _ in ids[:-1]]
            records.append(
                SequenceRecord(
                    name=scene,
                    frame_ids=tuple(ids),
                    images=tuple(Path(p) for _, p in frames),
                    pairs=tuple(pairs),
                    anchors=tuple(range(len(pairs))),
                )
            )
        return records
