"""HD1K reader (Kondermann et al. 2016): real driving sequences with KITTI-format flow."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from .base import FlowDataset, PairFiles, SequenceRecord, consecutive, require_dir

HD1K_LAYOUT = """\
  {root}/hd1k_input/image_2/000000_0000.png ...          {sequence:06d}_{frame:04d}.png
  {root}/hd1k_flow_gt/flow_occ/000000_0000.png ...       KITTI 16-bit PNG, flow frame -> frame + 1"""

_NAME = re.compile(r"(\d{6})_(\d{4})\.png")


class HD1K(FlowDataset):
    """HD1K benchmark training set: 36 sequences of consecutive frames with sparse flow.

    Sequences are named ``"{seq:06d}"``; pair ``f -> f+1`` has ground truth when
    ``hd1k_flow_gt/flow_occ/{seq}_{f}.png`` exists (samples are anchored on those pairs).

    Args:
        root: folder holding ``hd1k_input/`` and ``hd1k_flow_gt/``.
        **options: ``clip_length``, ``target``, ``boundary``, ``sequences``, see
            :class:`~motion.data.base.FlowDataset`.
    """

    name = "hd1k"
    layout = HD1K_LAYOUT

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        clip_length: int = 2,
        target: int | None = None,
        boundary: str = "replicate",
        sequences: Iterable[str] | None = None,
    ) -> None:
        super().__init__(root, clip_length=clip_length, target=target, boundary=boundary, sequences=sequences)

    def _scan(self) -> list[SequenceRecord]:
        image_root = require_dir(self.root / "hd1k_input" / "image_2", self.name, self.expected_layout)
        flow_root = require_dir(self.root / "hd1k_flow_gt" / "flow_occ", self.name, self.expected_layout)
        images = _group(image_root)
        flows = _group(flow_root)
        records = []
        for seq in sorted(images):
            frames = images[seq]
            ids = sorted(frames)
            if len(ids) < 2:
                continue
            consecutive(ids, f"hd1k sequence {seq} in {image_root}")
            gt = flows.get(seq, {})
            pairs = tuple(PairFiles(flow=gt.get(i)) for i in ids[:-1])
            anchors = tuple(i for i, p in enumerate(pairs) if p.flow is not None)
            if anchors:
                records.append(
                    SequenceRecord(
                        name=seq,
                        frame_ids=tuple(ids),
                        images=tuple(frames[i] for i in ids),
                        pairs=pairs,
                        anchors=anchors,
                    )
                )
        return records


def _group(folder: Path) -> dict[str, dict[int, Path]]:
    out: dict[str, dict[int, Path]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _NAME.fullmatch(entry.name)
            if match:
                out.setdefault(match.group(1), {})[int(match.group(2))] = Path(entry.path)
    return out
