"""FlyingChairs reader (pairs of ``.ppm`` frames with ``.flo`` flow, official train/val split)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from motion4d.checks import check_choice
from motion4d.errors import InputFileError, MissingFileError

from .base import FlowDataset, PairFiles, SequenceRecord, numbered_files, require_files

CHAIRS_LAYOUT = """\
  {root}/data/00001_img1.ppm, 00001_img2.ppm, 00001_flow.flo ... 22872_*
  {root}/FlyingChairs_train_val.txt     one line per pair in number order: 1 = training, 2 = validation
  ({root} is FlyingChairs_release; a root that directly holds the *_img1.ppm files also works)"""

SPLIT_FILE_NAME = "FlyingChairs_train_val.txt"
_SPLIT_CODES = {"training": 1, "validation": 2}


class FlyingChairs(FlowDataset):
    """FlyingChairs (Dosovitskiy et al. 2015): 22,872 two-frame pairs, 22,232 training / 640 validation.

    Each pair is a sequence named ``"{n:05d}"`` with frame ids (1, 2). Longer clips are made by the
    ``boundary`` policy (``"replicate"`` repeats a frame; ``"drop"`` leaves nothing).

    Args:
        root: the ``FlyingChairs_release`` folder (or its ``data`` folder).
        split: ``"training"``, ``"validation"`` or ``"all"`` (no split file needed).
        split_file: the train/val file; default ``{root}/FlyingChairs_train_val.txt`` (or beside
            ``data/``).
        **options: ``clip_length``, ``target``, ``boundary``, ``sequences``, see
            :class:`~motion.data.base.FlowDataset`.
    """

    name = "chairs"
    layout = CHAIRS_LAYOUT

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "training",
        *,
        split_file: str | os.PathLike | None = None,
        clip_length: int = 2,
        target: int | None = None,
        boundary: str = "replicate",
        sequences: Iterable[str] | None = None,
    ) -> None:
        check_choice(split, "split", ("training", "validation", "all"))
        self.split = split
        self.split_file = Path(split_file) if split_file is not None else None
        super().__init__(root, clip_length=clip_length, target=target, boundary=boundary, sequences=sequences)

    def _title(self) -> str:
        return f"chairs {self.split}"

    def _scan(self) -> list[SequenceRecord]:
        data_dir = self.root / "data" if (self.root / "data").is_dir() else self.root
        firsts = numbered_files(data_dir, r"(\d+)_img1\.ppm")
        if not firsts:
            raise MissingFileError(f"chairs: no *_img1.ppm files in {data_dir}; expected layout:\n{self.expected_layout}")
        numbers = [n for n, _ in firsts]
        seconds = [data_dir / f"{n:05d}_img2.ppm" for n in numbers]
        flows = [data_dir / f"{n:05d}_flow.flo" for n in numbers]
        require_files(seconds, self.name, "second frame", self.expected_layout)
        require_files(flows, self.name, "ground-truth flow", self.expected_layout)
        keep = [True] * len(numbers)
        if self.split != "all":
            codes = self._read_split_file(data_dir)
            too_high = [n for n in numbers if n > len(codes)]
            if too_high:
                raise InputFileError(
                    f"chairs: split file has {len(codes)} lines but pair {too_high[0]:05d} exists in {data_dir}"
                )
            keep = [codes[n - 1] == _SPLIT_CODES[self.split] for n in numbers]
        records = []
        for (n, first), second, flow, wanted in zip(firsts, seconds, flows, keep):
            if wanted:
                records.append(
                    SequenceRecord(
                        name=f"{n:05d}",
                        frame_ids=(1, 2),
                        images=(first, second),
                        pairs=(PairFiles(flow=flow),),
                        anchors=(0,),
                    )
                )
        return records

    def _read_split_file(self, data_dir: Path) -> list[int]:
        if self.split_file is not None:
            candidates = [self.split_file]
        else:
            candidates = [self.root / SPLIT_FILE_NAME, data_dir.parent / SPLIT_FILE_NAME]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise MissingFileError(
                f"chairs: split file {candidates[0]} does not exist (needed for split={self.split!r}; "
                f"use split='all' or split_file=...); expected layout:\n{self.expected_layout}"
            )
        codes = []
        for line_no, line in enumerate(path.read_text().split(), start=1):
            if line not in ("1", "2"):
                raise InputFileError(f"{path}: entry {line_no} is {line!r}, expected 1 (training) or 2 (validation)")
            codes.append(int(line))
        return codes
