"""The training loop of the RAFT-family networks: :func:`train`.

One loop runs the Python API and ``motion4d train`` (:mod:`motion.training.run`, which adds data-set mixtures
and stage presets). Each step asks the model for its training predictions and loss
(:meth:`FlowModel.training_predictions <motion.models.base.FlowModel.training_predictions>`,
:meth:`FlowModel.loss <motion.models.base.FlowModel.loss>`), clips the gradient norm and steps AdamW
+ OneCycle (:mod:`motion.training.optim`). The loop writes checkpoints that resume bit-exactly
(:mod:`motion.training.checkpoints`), a CSV log (and TensorBoard events when installed), shows a tqdm
bar and, under ``torchrun``, trains a DistributedDataParallel replica per process
(:mod:`motion.distributed`).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from motion4d.atomic import atomic_write_text
from motion4d.errors import InvalidArgumentError

from ..distributed import (
    DistributedContext,
    ResumableDistributedSampler,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    env_rank,
    rng_state,
    seed_everything,
    set_rng_state,
    unwrap,
    wrap_ddp,
)
from ..models.base import FlowModel
from ..models.checkpoints import save_checkpoint
from .checkpoints import (
    check_resumable,
    load_training_checkpoint,
    resume_path,
    resumed_seed,
    run_settings,
    write_training_checkpoint,
)
from .clips import ClipDataset
from .config import AugmentConfig, TrainConfig
from .log import TrainLog
from .optim import make_optimizer, sync_batchnorm


@dataclass
class TrainResult:
    """``history``: one row per logged step (``step``, ``epoch``, ``loss``, ``epe``, ``1px``..., ``lr``,
    ``grad_norm``, ``samples_per_s``), window means over the ranks; ``losses``: this call's loss per
    step (rank-local); ``checkpoint``: the last training checkpoint written or resumed from."""

    model: nn.Module
    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    out_dir: Path | None = None
    checkpoint: Path | None = None


class SupervisedStep(nn.Module):
    """One training forward, ``frames -> model.training_predictions(frames, iters)`` (a list of
    per-iteration predictions for :meth:`FlowModel.loss <motion.models.base.FlowModel.loss>`). Being a
    module, it can be wrapped by DistributedDataParallel."""

    def __init__(self, model: FlowModel, iters: int) -> None:
        super().__init__()
        if not isinstance(model, FlowModel):
            raise InvalidArgumentError(f"training needs a motion FlowModel (training_predictions, loss), got {type(model).__name__}")
        self.model = model
        self.iters = iters

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        return self.model.training_predictions(frames, self.iters)


def clip_loss(step: nn.Module, batch: dict[str, torch.Tensor], config: TrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The model's training loss on one batch of clips, through a :class:`SupervisedStep` (possibly DDP-wrapped)."""
    predictions = step(batch["frames"])
    return unwrap(step).model.loss(predictions, batch, gamma=config.gamma, max_flow=config.max_flow)


def _context(ctx: DistributedContext | None, device: str | torch.device | None) -> DistributedContext:
    """``ctx``, else the initialised process group (``torchrun``), else a single process."""
    if ctx is not None:
        return ctx
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        _, _, local = env_rank()
        if device is None:
            device = torch.device("cuda", local % torch.cuda.device_count()) if dist.get_backend() == "nccl" else torch.device("cpu")
        return DistributedContext(rank, world, local, torch.device(device), dist.get_backend())
    return DistributedContext(0, 1, 0, torch.device(device) if device is not None else torch.device("cpu"), None)


def train(
    model: FlowModel,
    dataset: Dataset,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    model_name: str | None = None,
    augment: AugmentConfig | None = None,
    sparse_augment: AugmentConfig | None = None,
    resume: bool | str | os.PathLike | None = "auto",
    device: str | torch.device | None = None,
    ctx: DistributedContext | None = None,
    run_info: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on clips from ``dataset`` (items :func:`~motion.training.clips.clip_from_item`
    takes, or a :class:`~motion.training.clips.ClipDataset`).

    Args:
        config: recipe and loop settings; ``batch_size`` is global (divided over the processes).
        out_dir: with it, rank 0 writes ``train_config.json``, ``train_log.csv`` (+ TensorBoard),
            ``checkpoints/step_NNNNNNN.pt`` + ``checkpoints/last.pt`` every ``checkpoint_every`` steps
            and at the end (model, optimizer, scheduler, AMP scaler, data position, every rank's RNG
            state, history), ``model_final.pth`` (loadable by ``motion.create(name, weights=...)``)
            and ``preview.png``. Without it nothing is written.
        augment, sparse_augment: augmentation of dense / sparse clips when ``dataset`` is a plain
            dataset (defaults: :class:`AugmentConfig` and :meth:`AugmentConfig.sparse` at ``config.crop``).
        resume: ``"auto"`` / True: continue from ``out_dir/checkpoints/last.pt`` when it exists
            (bit-exactly: same samples, same updates); a path: from that checkpoint; None / False:
            start over. The checkpoint must come from the same settings (else :class:`CheckpointError`);
            it may come from another number of processes (same global batch, same data order; the
            updates then differ only by floating-point summation order).
        device: where to train (default: ``ctx.device``, else the model's device).
        ctx: :class:`motion.distributed.DistributedContext`; default: the initialised process group
            (``torchrun``), else a single process. Each rank trains a DDP replica on its share of
            every global batch; only rank 0 writes files.
        run_info: extra settings stored in the checkpoint and compared on resume (data, model options).

    Returns:
        :class:`TrainResult`; the model is left in eval mode.
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    config.validate()
    ctx = _context(ctx, device)
    if config.batch_size % ctx.world_size:
        raise InvalidArgumentError(f"batch_size {config.batch_size} must be divisible by the {ctx.world_size} processes")
    per_rank = config.batch_size // ctx.world_size
    if device is None:
        device = ctx.device if ctx.distributed or ctx.device.type != "cpu" else next(model.parameters()).device
    device = torch.device(device)
    name = model_name or getattr(model, "registry_name", None) or type(model).__name__
    run_info = {"model": name, **(run_info or {})}
    out = Path(out_dir) if out_dir is not None else None

    data = dataset if isinstance(dataset, ClipDataset) else ClipDataset(dataset, config, augment, sparse_augment)
    # the data order depends on (seed, epoch) only, never on the number of processes: checkpoints resume on any
    sampler = ResumableDistributedSampler(data, ctx.world_size, ctx.rank, batch_size=config.batch_size, shuffle=True,
                                          seed=config.seed, drop_last=True)
    batches_per_epoch = sampler.batches_per_epoch
    if batches_per_epoch < 1:
        described = data.summary() if hasattr(data, "summary") else f"{len(data)} training clips"
        raise InvalidArgumentError(f"{described} are too few for a global batch of {config.batch_size}: lower batch_size")
    loader = DataLoader(
        data, batch_size=per_rank, sampler=sampler, drop_last=True, num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG untouched: exact resume
    )
    amp = device.type == "cuda" if config.amp == "auto" else bool(config.amp)
    if amp and device.type != "cuda":
        raise InvalidArgumentError("amp needs a CUDA device")

    model.to(device).train()
    model = sync_batchnorm(model, ctx.world_size, device, config.sync_batchnorm)
    optimizer, scheduler = make_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    settings = run_settings(config, run_info)

    step = epoch = batches_done = 0
    history: list[dict[str, float]] = []
    checkpoint_path = resume_path(resume, out)
    if checkpoint_path is not None:
        state = load_training_checkpoint(checkpoint_path)
        check_resumable(state, checkpoint_path, settings, ctx.world_size)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
        history = list(state.get("history", []))
        if len(state["rng"]) == ctx.world_size:
            set_rng_state(state["rng"][ctx.rank])
        else:  # elastic resume: the data does not depend on these generators, only randomness inside the model does
            seed_everything(resumed_seed(config.seed, step, ctx.rank))
    else:
        seed_everything(config.seed + ctx.rank)
    # find_unused_parameters: checkpoints keep modules the forward never calls (VideoFlow's GMA position
    # tables, MOF's velocity block); without it DDP stops at the second step waiting for their gradients
    step_module = wrap_ddp(SupervisedStep(model, config.iters), ctx, find_unused_parameters=True)

    writes = out is not None and ctx.is_main
    if writes:
        out.mkdir(parents=True, exist_ok=True)
        resolved = {**settings, **config.to_json(), "world_size": ctx.world_size, "per_rank_batch": per_rank,
                    "amp_enabled": amp, "device": str(device), "clips": len(data)}
        if hasattr(data, "summary"):
            resolved["dataset"] = data.summary()
        atomic_write_text(out / "train_config.json", json.dumps(resolved, indent=2, default=str))
    log = TrainLog(out if writes else None, history, step)

    def save(tag_step: int) -> Path | None:
        rngs = all_gather_objects(rng_state())  # every rank's generators, for an exact resume
        if out is None:
            return None
        path = out / "checkpoints" / f"step_{tag_step:07d}.pt"
        if ctx.is_main:
            write_training_checkpoint({
                "settings": settings, "config": config.to_json(), "model_name": name,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "step": tag_step,
                "epoch": epoch, "batches_done": batches_done, "rng": rngs, "history": history,
            }, path)
        barrier()
        return path

    losses: list[float] = []
    window: list[dict[str, float]] = []
    last_checkpoint = checkpoint_path
    bar = tqdm(total=config.steps, initial=step, unit="step", desc=f"train {name}",
               disable=not (config.progress and ctx.is_main))
    window_start, window_samples = time.perf_counter(), 0
    batch = None
    while step < config.steps:
        sampler.set_position(epoch, batches_done)
        data.set_epoch(epoch)
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                loss, metrics = clip_loss(step_module, batch, config)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step + 1}; lower the learning rate or check the data")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            batches_done += 1
            losses.append(float(loss.detach()))
            window.append({"loss": losses[-1], **metrics})
            window_samples += config.batch_size
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                means = {k: all_reduce_mean(float(np.nanmean([w.get(k, math.nan) for w in window])), ctx) for k in window[0]}
                row = {"step": step, "epoch": epoch, **means, "lr": scheduler.get_last_lr()[0],
                       "grad_norm": float(grad_norm), "samples_per_s": window_samples / max(elapsed, 1e-9),
                       "seconds": elapsed}
                history.append(row)
                log.write(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", epe=f"{row.get('epe', math.nan):.3f}")
                window.clear()
                window_start, window_samples = time.perf_counter(), 0
            if step % config.checkpoint_every == 0 or step == config.steps:
                last_checkpoint = save(step) or last_checkpoint
            if step >= config.steps:
                break
        else:
            epoch += 1
            batches_done = 0
    bar.close()
    log.close()
    if writes:
        save_checkpoint(model, out / "model_final.pth", name, getattr(model, "config", None), step=step)
        if config.preview and batch is not None:
            _save_preview(out / "preview.png", batch, model)
    barrier()
    model.eval()
    return TrainResult(model, step, history, losses, out, last_checkpoint)


def _save_preview(path: Path, batch: dict[str, Any], model: nn.Module) -> None:
    """First clip of the last batch: a source frame, its ground truth, the prediction (same colour scale)."""
    from ..image_io import write_image
    from ..visualize import flow_to_color, side_by_side

    was_training = model.training
    model.eval()
    with torch.no_grad():
        pred_all = model(batch["frames"][:1].float()).forward[0].float().cpu()
    model.train(was_training)
    has = batch["valid_forward"][0].flatten(1).any(1).nonzero()
    t = int(has[0]) if len(has) else 0
    gt = batch["flow_forward"][0, t].float().cpu()
    valid = batch["valid_forward"][0, t].cpu() > 0.5
    radius = float(gt.norm(dim=0)[valid].max()) if valid.any() else None
    frame = (batch["frames"][0, t].permute(1, 2, 0).float().cpu().numpy() * 255).round().astype(np.uint8)
    shown_gt = torch.where(valid[None], gt, torch.tensor(float("nan")))
    write_image(path, side_by_side([frame, flow_to_color(shown_gt, radius), flow_to_color(pred_all[t], radius)],
                                   labels=["frame", "ground truth", "prediction"]))
