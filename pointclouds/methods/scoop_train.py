"""Self-supervised SCOOP training on a scene-flow data set or on synthetic pairs (resumable).

The ground-truth flow is never used for the gradient (SCOOP is self-supervised); it only feeds the
validation EPE logged every ``eval_every`` steps. Checkpoints (``last.pt``: model, optimiser, step,
RNG-free data order) are written atomically every ``checkpoint_every`` steps; a new call with the
same ``out_dir`` resumes from ``last.pt``. The data order is a pure function of ``(seed, step)``,
so an interrupted and resumed run sees the same batches as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from motion4d.atomic import atomic_write_text
from motion4d.checks import check_float, check_int
from motion4d.device import resolve_device
from motion4d.errors import CheckpointError, InvalidArgumentError
from pointclouds.data.sample import SceneFlowSample
from pointclouds.metrics import scene_flow_metrics

from .scoop import (
    SCOOP,
    LossConfig,
    load_scoop,
    save_scoop,
    training_loss,
    untrained_scoop,
)


@dataclass
class TrainConfig:
    """SCOOP training settings.

    The defaults are the released ``train_on_ft3d_o`` recipe (Adam at lr 1e-3, loss weights of
    :class:`~pointclouds.methods.scoop.LossConfig`) with one change for short CPU runs: the two
    optimal-transport scalars ``epsilon`` and ``gamma`` get their own learning rate ``ot_lr``.
    Both start at 0, i.e. an entropic temperature ``eps = exp(epsilon) + 0.03 = 1.03`` for cosine
    costs in ``[0, 2]``, which makes every soft correspondence a near-uniform average of its 64
    candidates. At lr 1e-3 Adam moves ``epsilon`` by about 1e-3 per step at most, so the temperature
    needs thousands of steps to sharpen (the released runs take 45,000); at ``ot_lr = 0.2`` it
    settles near its floor (0.03) within about 30 steps. ``ot_lr=None`` (or :meth:`released`) restores
    the single learning rate of the released code.

    Attributes:
        steps: optimiser steps (``train_on_ft3d_o``: 100 epochs x 1,800 pairs / 4 = 45,000).
        batch_size: pairs per step (4).
        lr: Adam learning rate of the feature network (1e-3).
        ot_lr: Adam learning rate of ``epsilon`` and ``gamma`` (``None``: ``lr``).
        seed: initialisation and data-order seed (42).
        checkpoint_every, eval_every: steps between ``last.pt`` writes / validation passes.
        max_seconds: stop (and checkpoint) after this long.
        loss: :class:`~pointclouds.methods.scoop.LossConfig`.
    """

    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-3
    ot_lr: float | None = 0.2
    seed: int = 42
    checkpoint_every: int = 50
    eval_every: int = 50
    max_seconds: float | None = None
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)

    @classmethod
    def released(cls, **overrides: Any) -> "TrainConfig":
        """The released ``train_on_ft3d_o`` schedule (45,000 steps of 4 pairs, one lr of 1e-3)."""
        return dataclasses.replace(cls(steps=45_000, batch_size=4, lr=1e-3, ot_lr=None), **overrides)

    def validate(self) -> "TrainConfig":
        check_int(self.steps, "steps", 1)
        check_int(self.batch_size, "batch_size", 1)
        check_float(self.lr, "lr")
        if self.ot_lr is not None:
            check_float(self.ot_lr, "ot_lr")
        check_int(self.checkpoint_every, "checkpoint_every", 1)
        check_int(self.eval_every, "eval_every", 1)
        if self.max_seconds is not None:
            check_float(self.max_seconds, "max_seconds")
        return self


def make_optimizer(model: SCOOP, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with two parameter groups: the feature network (``lr``) and ``epsilon``, ``gamma`` (``ot_lr``).

    The group layout does not depend on ``ot_lr``, so a run can resume with another setting.
    """
    ot = [model.epsilon, model.gamma]
    ot_ids = {id(p) for p in ot}
    network = [p for p in model.parameters() if id(p) not in ot_ids]
    ot_lr = cfg.lr if cfg.ot_lr is None else cfg.ot_lr
    return torch.optim.Adam([{"params": network, "lr": cfg.lr}, {"params": ot, "lr": ot_lr}], lr=cfg.lr)


class SyntheticPairs:
    """An endless, indexable stream of synthetic pairs (``pointclouds.synthetic``) of one size.

    Index ``i`` is always the same pair; the scene mix alternates rigid / non-rigid movers with
    noise and partial overlap so that the network sees the cases it is evaluated on.
    """

    def __init__(self, num_points: int = 1024, seed: int = 0, extent: float = 12.0, rotate: bool = False) -> None:
        self.num_points = check_int(num_points, "num_points", 16)
        self.seed, self.extent, self.rotate = int(seed), float(extent), bool(rotate)

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, index: int) -> SceneFlowSample:
        from pointclouds.synthetic import make_scene_flow_pair

        rng = np.random.default_rng([self.seed, index])
        sample = make_scene_flow_pair(
            self.num_points,
            seed=int(rng.integers(1 << 31)),
            num_objects=int(rng.integers(2, 6)),
            nonrigid=bool(index % 2),
            overlap=float(rng.uniform(0.85, 1.0)),
            noise=float(rng.uniform(0.0, 0.02)),
            extent=self.extent,
        )
        if self.rotate:  # the whole pair in a random frame: no axis is special
            from pointclouds.benchmark.meshes import random_rotation

            R = random_rotation(rng).astype(np.float32)
            sample.source, sample.target, sample.flow = sample.source @ R.T, sample.target @ R.T, sample.flow @ R.T
        return sample


#: the data sets SCOOP trains on: seeded synthetic pairs or a reader of :mod:`pointclouds.data`
TRAINING_SETS = ("synthetic", "ft3d_s", "kitti_s", "kitti_o", "npz")


def open_training_set(name: str, root: str | os.PathLike | None = None, *, num_points: int = 2048, seed: int = 42,
                      split: str | None = None, keys: dict[str, str] | None = None, pattern: str = "*.npz",
                      rotate: bool = False) -> Any:
    """The training pairs of data set ``name`` (:data:`TRAINING_SETS`), ``num_points`` random points per cloud.

    Readers with splits default to ``split="train"`` (``kitti_o``: SCOOP's KITTI_v); ``keys`` and
    ``pattern`` select the arrays and files of an ``npz`` folder (e.g. FT3D_o with
    ``keys={"source": "points1", "target": "points2", "flow": "flow", "mask": "valid_mask1"}``);
    ``rotate`` (synthetic only) turns every pair by a random rotation.
    """
    from pointclouds import data

    if name == "synthetic":
        return SyntheticPairs(num_points, seed=seed, rotate=rotate)
    if root is None:
        raise InvalidArgumentError(f"dataset {name!r} needs a root folder")
    options: dict[str, Any] = {"num_points": num_points, "sampling": "random", "fewer": "pad", "seed": seed}
    if data.dataset_splits(name):
        options["split"] = split or "train"
    if name == "npz":
        options.update(keys=keys, pattern=pattern)
    return data.open_dataset(name, root, **options)


def _batch(samples: Sequence[SceneFlowSample], device: torch.device) -> dict[str, torch.Tensor]:
    sizes = {(len(s.source), len(s.target)) for s in samples}
    if len(sizes) != 1:
        raise InvalidArgumentError(
            f"a training batch needs clouds of one size, got {sorted(sizes)}: build the data set with "
            f"num_points=... and fewer='pad'"
        )
    return {
        "source": torch.stack([torch.from_numpy(s.source) for s in samples]).to(device),
        "target": torch.stack([torch.from_numpy(s.target) for s in samples]).to(device),
    }


def _batch_indices(step: int, batch_size: int, size: int, seed: int) -> list[int]:
    """Indices of batch ``step``: epochs are seeded permutations of ``range(size)``."""
    if size >= 1 << 30:  # endless synthetic stream: consecutive fresh pairs
        return list(range(step * batch_size, (step + 1) * batch_size))
    out = []
    for j in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(j, size)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(size)[pos]))
    return out


@torch.no_grad()
def evaluate_network(model: SCOOP, samples: Sequence[SceneFlowSample], device: Any = "cpu") -> dict[str, float]:
    """Scene-averaged metrics of the network's flow (no refinement) over ``samples``."""
    dev = resolve_device(device)
    model.eval()
    rows = []
    for s in samples:
        out = model(torch.from_numpy(s.source)[None].to(dev), torch.from_numpy(s.target)[None].to(dev))
        rows.append(scene_flow_metrics(out.flow[0].cpu(), s.flow, s.mask))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def train_scoop(
    dataset: Any,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    model_options: dict[str, Any] | None = None,
    init_weights: Any = None,
    validation: Sequence[SceneFlowSample] = (),
    device: Any = "auto",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train SCOOP; resumes from ``out_dir/last.pt`` when it exists.

    Args:
        dataset: indexable samples of equal size (a ``pointclouds.data`` reader with
            ``num_points`` and ``fewer="pad"``, or :class:`SyntheticPairs`).
        out_dir: receives ``last.pt``, ``model.pt`` (final), ``train_config.json``, ``log.jsonl``.
        config: :class:`TrainConfig`.
        model_options: :class:`SCOOP` constructor arguments for a fresh model.
        init_weights: start from this checkpoint instead of a random initialisation.
        validation: samples whose network EPE is logged every ``eval_every`` steps.

    Returns:
        ``{"steps", "last_loss", "validation", "seconds", "checkpoint"}``.
    """
    cfg = (config or TrainConfig()).validate()
    dev = resolve_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    step = 0
    optimizer_state = None
    if last.exists():
        payload = torch.load(last, map_location="cpu", weights_only=True)
        model = load_scoop(payload, device=dev)
        optimizer_state, step = payload.get("optimizer"), int(payload.get("step", 0))
    elif init_weights is not None:
        model = load_scoop(init_weights, device=dev, **(model_options or {}))
    else:
        model = untrained_scoop(cfg.seed, **(model_options or {})).to(dev)
    optimizer = make_optimizer(model, cfg)
    if optimizer_state is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
        except ValueError as exc:  # written by a layout with one parameter group
            raise CheckpointError(f"{last}: optimiser state does not match this trainer ({exc}); "
                                  f"use a new out_dir") from exc
        for group, lr in zip(optimizer.param_groups, (cfg.lr, cfg.lr if cfg.ot_lr is None else cfg.ot_lr)):
            group["lr"] = lr
    atomic_write_text(
        out / "train_config.json",
        json.dumps({"train": dataclasses.asdict(cfg), "model": model.config(), "dataset": type(dataset).__name__,
                    "num_samples": len(dataset)}, indent=2, default=str),
    )
    say = log or (lambda text: None)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train scoop")
    start = time.perf_counter()
    last_loss, validation_metrics = math.nan, {}

    def checkpoint() -> None:
        save_scoop(last, model, optimizer=optimizer.state_dict(), step=step)

    while step < cfg.steps:
        model.train()
        samples = [dataset[i] for i in _batch_indices(step, cfg.batch_size, len(dataset), cfg.seed)]
        batch = _batch(samples, dev)
        optimizer.zero_grad(set_to_none=True)
        loss, parts = training_loss(model(batch["source"], batch["target"]), batch["target"], cfg.loss)
        if not torch.isfinite(loss):
            raise InvalidArgumentError(f"SCOOP training diverged at step {step} (loss {loss.item()}); lower lr")
        loss.backward()
        optimizer.step()
        step += 1
        last_loss = parts["total"]
        record: dict[str, Any] = {"step": step, **parts}
        if validation and (step % cfg.eval_every == 0 or step == cfg.steps):
            validation_metrics = evaluate_network(model, validation, dev)
            record["val"] = validation_metrics
        with open(out / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if step % cfg.checkpoint_every == 0:
            checkpoint()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}")
        if "val" in record:
            say(f"step {step}: loss {last_loss:.4f}, val EPE3D {validation_metrics['epe3d']:.4f}")
        if cfg.max_seconds is not None and time.perf_counter() - start > cfg.max_seconds:
            break
    if bar is not None:
        bar.close()
    checkpoint()
    final = save_scoop(out / "model.pt", model, step=step)
    return {
        "steps": step,
        "last_loss": last_loss,
        "validation": validation_metrics,
        "seconds": time.perf_counter() - start,
        "checkpoint": str(final),
    }


__all__ = ["TrainConfig", "make_optimizer", "SyntheticPairs", "train_scoop", "evaluate_network"]
