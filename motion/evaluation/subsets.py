"""What an evaluation scores: benchmark subsets (split and pass) and their data-set readers."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from motion.protocols import BENCHMARKS, ClipProtocol, Protocol
from motion4d.checks import check_choice


@dataclass(frozen=True)
class Subset:
    """One scored set: a benchmark split and pass (``sintel-final``, ``kitti``, ``things-clean``)."""

    benchmark: str
    split: str
    pass_name: str | None

    @property
    def name(self) -> str:
        return self.benchmark if self.pass_name is None else f"{self.benchmark}-{self.pass_name}"


def subsets_for(benchmark: str, passes: Sequence[str]) -> list[Subset]:
    """The subsets of ``benchmark`` scored by an evaluation: Sintel training and Things test per pass, KITTI training."""
    check_choice(benchmark, "dataset", BENCHMARKS)
    if benchmark == "kitti":
        return [Subset("kitti", "training", None)]
    for p in passes:
        check_choice(p, "passes", ("clean", "final"))
    split = "training" if benchmark == "sintel" else "test"
    return [Subset(benchmark, split, p) for p in passes]


def open_benchmark(subset: Subset, root: str | os.PathLike, protocol: Protocol, *, multiview_root: str | None = None,
                   directions: Sequence[str] = ("forward", "backward"), camera: str = "left"):
    """The data-set reader of ``subset`` set up for ``protocol`` (clip length, target, boundary)."""
    from motion.data import FlyingThings3D, Kitti2015, MpiSintel

    if isinstance(protocol, ClipProtocol):
        clip = {"clip_length": protocol.clip_length, "target": protocol.target, "boundary": protocol.boundary}
    else:
        clip = {"clip_length": 2, "target": 0}
    if subset.benchmark == "sintel":
        return MpiSintel(root, subset.split, subset.pass_name, **clip)
    if subset.benchmark == "kitti":
        return Kitti2015(root, subset.split, multiview_root=multiview_root, **clip)
    return FlyingThings3D(root, subset.split, subset.pass_name, cameras=(camera,), directions=tuple(directions), **clip)
