"""Training checkpoints: what they hold, where a run resumes from, and whether it may.

A checkpoint (``checkpoints/step_NNNNNNN.pt``, aliased as ``checkpoints/last.pt``) holds the model,
optimizer, scheduler, AMP scaler, data position, every rank's RNG state and the history, plus the
*settings* (recipe and run information) a resuming run must share for the resume to be bit-exact.
A checkpoint resumes on any number of processes that divides its global batch: on the same number
bit-exactly (every rank's generators are restored), on another with the same samples in the same
global batches (see :class:`motion.distributed.ResumableDistributedSampler`).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion4d.atomic import atomic_path
from motion4d.errors import CheckpointError

from .config import TrainConfig

#: ``format`` entry of a training checkpoint (model, optimizer, scheduler, scaler, data position, RNGs)
CHECKPOINT_FORMAT = "motion4d-train-v1"

# TrainConfig fields that only change how a run is watched, not what it computes (free to differ on resume)
_NOT_COMPARED_ON_RESUME = ("num_workers", "log_every", "checkpoint_every", "progress", "preview", "amp")


def run_settings(config: TrainConfig, run_info: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint and the run resuming it must agree on (JSON values)."""
    recipe = {k: v for k, v in config.to_json().items() if k not in _NOT_COMPARED_ON_RESUME}
    return {**recipe, **json.loads(json.dumps(run_info, default=str))}


def resume_path(resume: bool | str | os.PathLike | None, out: Path | None) -> Path | None:
    """The checkpoint to resume from: None / False: none; True / ``"auto"``: ``out/checkpoints/last.pt``
    when it exists; a path: that file (which must exist)."""
    if resume is None or resume is False:
        return None
    if resume is True or resume == "auto":
        if out is None:
            return None
        last = out / "checkpoints" / "last.pt"
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"resume checkpoint {path}: no such file")
    return path


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by :func:`motion.training.train` (raises :class:`CheckpointError` for anything else)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"resume checkpoint {path}: no such file")
    try:
        # tensors and plain values only: a file handed in as a checkpoint cannot run code
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated / foreign file: say which one
        raise CheckpointError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a motion4d training checkpoint (format {CHECKPOINT_FORMAT!r})")
    return state


def check_resumable(state: dict[str, Any], path: Path, settings: dict[str, Any], world_size: int) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint ``state`` (read from ``path``) was written
    with ``settings`` (the global batch among them) and its global batch splits over ``world_size``
    processes. The number of processes that wrote it does not matter: the data order depends on
    (seed, epoch) only and the position is counted in global batches."""
    old = state.get("settings", {})
    diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if diff:
        raise CheckpointError(f"{path} was written with other settings {diff}: "
                              f"{ {k: old.get(k) for k in diff} } vs { {k: settings.get(k) for k in diff} }")
    batch = settings.get("batch_size")
    if isinstance(batch, int) and batch % world_size:
        raise CheckpointError(f"{path}: its global batch {batch} does not split over {world_size} processes; "
                              f"resume on a number of processes that divides {batch}")


def resumed_seed(seed: int, step: int, rank: int) -> int:
    """Seed of rank ``rank``'s generators when a run resumes at ``step`` on another number of processes
    (the saved per-rank states cannot be mapped onto the new ranks)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def write_training_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Save ``state`` (with :data:`CHECKPOINT_FORMAT`) to ``path`` and alias it as ``last.pt`` next
    to it, both atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    _atomic_alias(path, path.parent / "last.pt")


def _atomic_alias(source: Path, target: Path) -> None:
    """Make ``target`` a copy of ``source`` atomically: a hard link (no second serialisation of a
    checkpoint that may be hundreds of MB), or a byte copy where links are not supported."""
    with atomic_path(target) as tmp:
        try:
            tmp.unlink()  # atomic_path made an empty file; a link needs the name free
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
