"""Work units of an evaluation: one clip (one pair) or one sequence in one direction (many pairs)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from motion.protocols import ClipProtocol, Protocol


@dataclass
class Unit:
    """One piece of work: a clip (one pair) or a whole sequence in one direction (many pairs)."""

    keys: list[str]
    index: int | None = None  # clip: data-set sample index
    sequence: str | None = None  # sequence protocol
    positions: list[int] = field(default_factory=list)
    reverse: bool = False

    @property
    def context(self) -> str | None:
        """The frames a sequence unit's predictions saw: a multi-frame model's flow of a pair
        depends on them, so results computed on a shorter cut (``--max-samples``) are not reused
        for the full sequence."""
        return None if self.sequence is None else f"{self.positions[0]}-{self.positions[-1]}"


def pair_key(sequence: str, source: int, target: int) -> str:
    return f"{sequence}:{source}->{target}"


def plan_units(dataset, protocol: Protocol, max_samples: int | None) -> list[Unit]:
    """Work units in data-set order, at most ``max_samples`` pairs in total."""
    limit = math.inf if max_samples is None else max_samples
    units: list[Unit] = []
    count = 0
    if isinstance(protocol, ClipProtocol):
        for index in range(len(dataset)):
            if count >= limit:
                break
            units.append(Unit([_clip_key(dataset, index)], index=index))
            count += 1
        return units
    directions = getattr(dataset, "directions", ("forward",))
    for direction in directions:
        for name in dataset.sequences:
            if count >= limit:
                return units
            record = dataset.sequence_record(name)
            reverse = direction == "backward"
            has = [(p.flow_backward if reverse else p.flow) is not None for p in record.pairs]
            budget = int(min(limit - count, len(has)))
            if not any(has):
                continue
            ids = record.frame_ids
            if reverse:  # reversed clips start at the sequence end: pairs n-2, n-3, ... backward
                order = [i for i in range(len(has) - 1, -1, -1) if has[i]][:budget]
                keys = [pair_key(name, ids[i + 1], ids[i]) for i in order]
                positions = list(range(min(order), len(ids)))
            else:
                order = [i for i in range(len(has)) if has[i]][:budget]
                keys = [pair_key(name, ids[i], ids[i + 1]) for i in order]
                positions = list(range(0, max(order) + 2))
            units.append(Unit(keys, sequence=name, positions=positions, reverse=reverse))
            count += len(keys)
    return units


def _clip_key(dataset, index: int) -> str:
    """Key of the evaluated pair of sample ``index`` (from the reader's index, without reading images)."""
    if hasattr(dataset, "evaluated_pair"):
        return pair_key(*dataset.evaluated_pair(index))
    sample = dataset[index]  # a reader without the base-class index
    return pair_key(sample.sequence, sample.frame_ids[sample.target], sample.frame_ids[sample.target + 1])
