"""Resumable per-pair results (``results.jsonl``) and the scores of one subset."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from motion.metrics import FlowMetricsAccumulator
from motion.protocols import Protocol
from motion4d.atomic import atomic_write_text

from .subsets import Subset
from .units import Unit

RESULTS_NAME = "results.jsonl"


class ResultStore:
    """``results.jsonl``: one JSON line per scored pair, appended and synced as pairs finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            torn = False
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    torn = True  # a line torn by an interrupted write: that pair is recomputed
                    continue
                self.records[record["key"]] = record
            if torn:  # rewrite without it, so that appended lines start on a line of their own
                atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in self.records.values()))

    def done(self, unit: Unit) -> bool:
        return all(k in self.records and self.records[k].get("context") == unit.context for k in unit.keys)

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for record in records:
            self.records[record["key"]] = record


def score_pair(key: str, pred: torch.Tensor, sample, t: int, exclude_invalid: bool) -> tuple[dict[str, Any], FlowMetricsAccumulator]:
    """Metrics of pair ``t`` of ``sample`` for ``pred [2, H, W]``: the JSON record and its accumulator."""
    gt = torch.from_numpy(np.ascontiguousarray(sample.flow[t])).permute(2, 0, 1)
    valid = torch.from_numpy(sample.valid[t].copy())
    if exclude_invalid and "invalid" in sample.extras:
        valid &= ~torch.from_numpy(sample.extras["invalid"][t])
    occlusion = None if sample.occlusion is None else torch.from_numpy(sample.occlusion[t].copy())
    acc = FlowMetricsAccumulator()
    acc.update(pred.detach().float().cpu(), gt, valid=valid, occlusion=occlusion)
    single = acc.compute("pooled")
    record = {
        "key": key,
        "sequence": sample.sequence,
        "epe": single["epe"],
        "fl_all": single["fl_all"],
        "num_pixels": int(single["num_pixels"]),
        "state": acc.state_tensor().tolist(),
    }
    return record, acc


@dataclass
class SubsetResult:
    """The metrics of one subset (both reductions and the papers' headline numbers) and its run."""

    subset: Subset
    protocol: Protocol
    pooled: dict[str, float]
    per_image: dict[str, float]
    headline: dict[str, float]
    num_pairs: int
    computed: int
    skipped: int
    seconds: float
