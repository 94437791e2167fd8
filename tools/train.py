"""``motion4d train --model NAME --stage things|sintel|kitti --data-root DIR --out DIR``.

Trains any trainable registered flow model with the papers' staged recipe (FlyingThings3D, then the
Sintel mixture ``100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things``, then KITTI). The recipe
itself is :mod:`motion.train`'s: its ``SupervisedStep`` / ``clip_loss`` (VideoFlow supervised on the
interior frames in both directions, other models on their ``extras["forward_iterations"]``), its
AdamW + OneCycle (``make_optimizer``), gradient clipping, RAFT augmentation (``ClipAugmentor``, the
same draw for every frame of a clip) and temporal reversal. This tool adds what a real run needs
around it: weighted data-set mixtures (:mod:`motion.data.mixing`) with the papers' per-data-set zoom
ranges and sparse-aware zoom for KITTI / HD1K, automatic mixed precision on CUDA, checkpoints that
resume bit-exactly, CSV / TensorBoard logs, and distributed data parallel.

Scale-out: run it under ``torchrun --nproc_per_node=N -m tools.cli train ...`` (or ``srun``):
every process reads RANK / WORLD_SIZE / LOCAL_RANK, joins an NCCL (GPU) or gloo (CPU) group and
trains a DistributedDataParallel replica on ``batch_size / N`` samples of each global batch; only
rank 0 writes. Every random draw of a sample (reversal, zoom, flips, colour, crop) is seeded by
``(seed, epoch, index)``, so an N-process run sees exactly the samples a single process with the
same global batch sees, and a resumed run the samples the interrupted one would have seen.

Outputs in ``--out``: ``train_config.json``, ``train_log.csv`` (and TensorBoard events when
``tensorboard`` is installed), ``checkpoints/step_NNNNNNN.pt`` + ``checkpoints/last.pt`` (model,
optimizer, scheduler, AMP scaler, data position and every rank's RNG state: ``--resume auto``
continues bit-exactly), ``model_final.pth`` (motion4d checkpoint format for ``motion.create(name,
weights=...)``; the next stage's ``--init``) and ``preview.png`` (a training clip, its ground truth
and the prediction).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import numpy as np

from motion.atomic import atomic_path, atomic_write_text
from motion.errors import CheckpointError, InvalidArgumentError

CHECKPOINT_FORMAT = "motion4d-train-v1"

#: The stages of the RAFT-family recipe (VideoFlow-BOF's numbers; per-model changes below).
#: ``amp``: False where the official recipe trains in fp32, "auto" (on CUDA) where it uses AMP.
STAGES: dict[str, dict[str, Any]] = {
    "things": {"mixture": "things_clean+things_final", "steps": 120_000, "lr": 2.5e-4, "batch_size": 8,
               "crop": (432, 960), "gamma": 0.8, "weight_decay": 1e-4, "amp": False},
    "sintel": {"mixture": "100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things", "steps": 120_000,
               "lr": 1.25e-4, "batch_size": 8, "crop": (432, 960), "gamma": 0.85, "weight_decay": 1e-4, "amp": False},
    "kitti": {"mixture": "kitti", "steps": 80_000, "lr": 1.25e-4, "batch_size": 8, "crop": (432, 960),
              "gamma": 0.85, "weight_decay": 1e-4, "amp": False, "augment_ranges": {"kitti": (-0.2, 0.4, False)}},
}

#: registered-name prefix -> stage -> settings that differ from :data:`STAGES` (research notes 2.7, 3.6, 4.6).
MODEL_STAGES: dict[str, dict[str, dict[str, Any]]] = {
    "videoflow-mof": {
        "things": {"steps": 125_000, "amp": "auto", "iters": 6},
        "sintel": {"mixture": "100*sintel_clean+100*sintel_final+50*kitti+5*hd1k+things", "steps": 40_000, "amp": "auto"},
        "kitti": {"steps": 25_000},
    },
    "splatflow": {
        "things": {"steps": 100_000, "lr": 1.25e-4, "crop": (400, 720), "weight_decay": 1e-5},
        "sintel": {"lr": 1.25e-4, "batch_size": 6, "crop": (368, 768), "gamma": 0.8, "weight_decay": 1e-5},
        "kitti": {"mixture": "20*sintel_clean+420*kitti+10*hd1k+things", "steps": 50_000, "batch_size": 6,
                  "crop": (368, 768), "gamma": 0.8, "weight_decay": 1e-5},
    },
    "streamflow": {
        "things": {"steps": 300_000, "lr": 6e-4, "batch_size": 16, "crop": (400, 720), "weight_decay": 1e-5, "amp": "auto"},
        "sintel": {"mixture": "100*sintel_clean+100*sintel_final+50*kitti+5*hd1k+things", "steps": 180_000,
                   "lr": 1.75e-4, "weight_decay": 1e-5},
    },
}

#: conventional folder names under ``--data-root`` per reader
DATA_FOLDERS: dict[str, tuple[str, ...]] = {
    "sintel": ("Sintel", "MPI-Sintel-complete", "sintel"),
    "kitti": ("KITTI", "kitti15", "KITTI2015", "kitti"),
    "things": ("FlyingThings3D", "things"),
    "hd1k": ("HD1K", "hd1k"),
    "chairs": ("FlyingChairs_release", "FlyingChairs", "chairs"),
}

#: mixture component -> (min, max log2 zoom, flips) of the papers' augmentation (research notes 2.7)
AUGMENT_RANGES: dict[str, tuple[float, float, bool]] = {
    "things": (-0.4, 0.8, True), "things_clean": (-0.4, 0.8, True), "things_final": (-0.4, 0.8, True),
    "sintel_clean": (-0.2, 0.6, True), "sintel_final": (-0.2, 0.6, True),
    "kitti": (-0.3, 0.5, True), "hd1k": (-0.5, 0.2, True), "chairs": (-0.1, 1.0, True),
}

# settings that must agree between a checkpoint and the run resuming it
_RESUME_KEYS = ("model", "model_options", "mixture", "steps", "batch_size", "lr", "weight_decay", "gamma", "crop",
                "clip_length", "seed", "max_flow", "clip_grad", "iters", "reverse_prob", "augment", "augment_ranges")


@dataclass
class TrainConfig:
    """Everything a run depends on (written to ``train_config.json``)."""

    model: str
    out_dir: str
    mixture: str
    roots: dict[str, str] = field(default_factory=dict)
    stage: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    init_weights: str | None = None
    steps: int = 1000
    batch_size: int = 8  # global: divided over the processes
    lr: float = 1.25e-4
    weight_decay: float = 1e-4
    epsilon: float = 1e-8
    gamma: float = 0.85
    clip_grad: float = 1.0
    max_flow: float = 400.0
    iters: int = 12  # refinement iterations in training (VideoFlow-MOF on Things: 6)
    crop: tuple[int, int] = (432, 960)
    augment: bool = True  # RAFT augmentation; False: random crops only
    reverse_prob: float = 0.3  # temporal reversal of a clip
    augment_ranges: dict[str, tuple[float, float, bool]] = field(default_factory=dict)  # overrides AUGMENT_RANGES
    clip_length: int | None = None  # default: the model's frames_per_window
    reader_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    amp: bool | str = "auto"  # "auto": on CUDA only
    seed: int = 1234
    num_workers: int = 0
    log_every: int = 100
    checkpoint_every: int = 5000
    device: str = "auto"
    resume: str | None = None  # None, "auto" (out_dir/checkpoints/last.pt if present) or a path
    progress: bool = True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "gamma", "clip_grad", "max_flow"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
        if len(self.crop) != 2 or min(self.crop) < 1:
            raise InvalidArgumentError(f"crop must be (H, W), got {self.crop!r}")
        if self.num_workers < 0:
            raise InvalidArgumentError(f"num_workers must be >= 0, got {self.num_workers}")
        if not 0 <= self.reverse_prob <= 1:
            raise InvalidArgumentError(f"reverse_prob must be in [0, 1], got {self.reverse_prob}")

    def recipe(self):
        """The :class:`motion.train.TrainConfig` of this run (loss, optimizer and schedule settings)."""
        from motion.train import TrainConfig as Recipe

        return Recipe(steps=self.steps, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                      epsilon=self.epsilon, gamma=self.gamma, max_flow=self.max_flow, iters=self.iters,
                      clip=self.clip_grad, reverse_prob=self.reverse_prob, crop=tuple(self.crop),
                      augment=self.augment, seed=self.seed)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["crop"] = list(self.crop)
        data["augment_ranges"] = {k: list(v) for k, v in self.augment_ranges.items()}
        return data


def stage_config(model: str, stage: str, **overrides: Any) -> TrainConfig:
    """The recipe of ``stage`` for ``model``, with ``overrides`` (None values ignored)."""
    if stage not in STAGES:
        raise InvalidArgumentError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
    settings = dict(STAGES[stage])
    for prefix in sorted(MODEL_STAGES, key=len, reverse=True):
        if model.startswith(prefix):
            settings.update(MODEL_STAGES[prefix].get(stage, {}))
            break
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(model=model, stage=stage, **settings)


# --------------------------------------------------------------------------------------------------
# Training clips


def sample_to_item(sample) -> dict[str, Any]:
    """A :class:`~motion.data.FlowSample` as a :mod:`motion.train` item (pairs without ground truth
    and missing backward flow get all-invalid masks, so every item of a mixture has the same keys)."""
    frames = sample.frames.transpose(0, 3, 1, 2)
    has = sample.has_flow[:, None, None]
    item = {"frames": frames, "flow_forward": sample.flow.transpose(0, 3, 1, 2),
            "valid_forward": (sample.valid & has).astype(np.float32)}
    if sample.flow_backward is not None:
        has_bw = sample.has_flow_backward[:, None, None]
        item["flow_backward"] = sample.flow_backward.transpose(0, 3, 1, 2)
        item["valid_backward"] = (sample.valid_backward & has_bw).astype(np.float32)
    else:
        item["flow_backward"] = np.zeros_like(item["flow_forward"])
        item["valid_backward"] = np.zeros_like(item["valid_forward"])
    return item


def _is_dense(sample) -> bool:
    masks = [sample.valid[sample.has_flow]]
    if sample.flow_backward is not None:
        masks.append(sample.valid_backward[sample.has_flow_backward])
    return all(bool(m.all()) for m in masks)


class TrainClips(torch.utils.data.Dataset):
    """Mixture samples as :mod:`motion.train` clips, every random draw seeded by ``(seed, epoch, index)``.

    Dense ground truth goes through :class:`motion.train.ClipAugmentor` with the component's zoom
    range; sparse ground truth (KITTI, HD1K) is zoomed by moving valid pixels to the nearest pixel of
    the new grid (:func:`motion.data.mixing.resize_sample`, as RAFT's sparse augmentor) and flipped
    here, then gets the augmentor's colour jitter and crop only. ``augment=False``: random crops.
    """

    def __init__(self, mixture, config: TrainConfig) -> None:
        super().__init__()
        self.mixture = mixture
        self.crop = tuple(config.crop)
        self.augment = config.augment
        self.reverse_prob = config.reverse_prob
        self.ranges = {**AUGMENT_RANGES, **{k: tuple(v) for k, v in config.augment_ranges.items()}}
        self.seed = config.seed
        self.epoch = 0
        self._augmentors: dict[tuple, Any] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.mixture.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.mixture)

    def _augmentor(self, min_scale: float, max_scale: float, flips: bool, spatial: bool):
        from motion.train import AugmentConfig, ClipAugmentor

        key = (min_scale, max_scale, flips, spatial)
        if key not in self._augmentors:
            config = AugmentConfig(crop=self.crop, min_scale=min_scale, max_scale=max_scale,
                                   spatial_prob=0.8 if spatial else 0.0, stretch_prob=0.8 if spatial else 0.0,
                                   h_flip_prob=0.5 if flips and spatial else 0.0, v_flip_prob=0.1 if flips and spatial else 0.0)
            self._augmentors[key] = ClipAugmentor(config)
        return self._augmentors[key]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from motion.data.mixing import RandomCrop, resize_sample
        from motion.train import clip_from_item, reverse_clip

        part, _ = self.mixture.locate(int(index))
        sample = self.mixture[index]
        rng = np.random.default_rng([self.seed, self.epoch, int(index), 1])
        if not self.augment:
            clip = clip_from_item(sample_to_item(RandomCrop(self.crop)(sample, rng)))
            return reverse_clip(clip) if rng.random() < self.reverse_prob else clip
        min_scale, max_scale, flips = self.ranges.get(self.mixture.names[part], (-0.2, 0.6, True))
        dense = _is_dense(sample)
        if not dense:
            sample = self._sparse_spatial(sample, rng, min_scale, max_scale, flips)
        clip = clip_from_item(sample_to_item(sample))
        if rng.random() < self.reverse_prob:
            clip = reverse_clip(clip)
        augmentor = self._augmentor(min_scale, max_scale, flips, spatial=dense)
        augmentor.rng = rng
        with torch.random.fork_rng(devices=[]):  # kornia's colour jitter draws from torch's generator
            torch.manual_seed(int(rng.integers(2**62)))
            return augmentor(clip)

    def _sparse_spatial(self, sample, rng: np.random.Generator, min_scale: float, max_scale: float, flips: bool):
        """Zoom (prob. 0.8) to at least crop + 8 pixels and flip horizontally (prob. 0.5), sparse-aware."""
        from dataclasses import replace

        from motion.data.mixing import resize_sample

        height, width = sample.size
        scale = 2.0 ** rng.uniform(min_scale, max_scale) if rng.random() < 0.8 else 1.0
        scale = max(scale, (self.crop[0] + 8) / height, (self.crop[1] + 8) / width)
        sample = resize_sample(sample, (int(round(height * scale)), int(round(width * scale))))
        if flips and rng.random() < 0.5:
            def flip(x, negate_u=False):
                if x is None:
                    return None
                out = np.ascontiguousarray(x[:, :, ::-1])
                if negate_u:
                    out[..., 0] *= -1
                return out
            sample = replace(sample, frames=flip(sample.frames), flow=flip(sample.flow, True), valid=flip(sample.valid),
                             occlusion=flip(sample.occlusion), flow_backward=flip(sample.flow_backward, True),
                             valid_backward=flip(sample.valid_backward), extras={k: flip(v) for k, v in sample.extras.items()})
        return sample


# --------------------------------------------------------------------------------------------------
# Logs and checkpoints (rank 0 writes)


class TrainLog:
    """``train_log.csv`` (+ TensorBoard when installed); rows after a resumed step are dropped."""

    COLUMNS = ("step", "epoch", "loss", "epe", "1px", "3px", "5px", "lr", "grad_norm", "samples_per_s", "seconds")

    def __init__(self, out_dir: Path, resume_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.path = out_dir / "train_log.csv"
        self.writer = None
        if not enabled:
            return
        rows: list[dict[str, str]] = []
        if self.path.is_file() and resume_step > 0:
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:  # tensorboard is optional: the CSV log is always written
            self.writer = None

    def write(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.COLUMNS).writerow({k: row.get(k, "") for k in self.COLUMNS})
        if self.writer is not None:
            for key in ("loss", "epe", "1px", "lr", "grad_norm", "samples_per_s"):
                if key in row:
                    self.writer.add_scalar(f"train/{key}", row[key], int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def find_resume_checkpoint(config: TrainConfig) -> Path | None:
    if config.resume is None:
        return None
    if config.resume == "auto":
        last = Path(config.out_dir) / "checkpoints" / "last.pt"
        return last if last.is_file() else None
    path = Path(config.resume)
    if not path.is_file():
        raise CheckpointError(f"--resume {path}: no such checkpoint")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated / foreign file: say which one
        raise CheckpointError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a motion4d training checkpoint (format {CHECKPOINT_FORMAT!r})")
    return state


# --------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainResult:
    model: torch.nn.Module
    step: int
    losses: list[float]
    out_dir: Path
    checkpoint: Path | None


def _batch_to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def build_dataset(config: TrainConfig, clip_length: int) -> TrainClips:
    from motion.data.mixing import build_mixture

    mixture = build_mixture(config.mixture, config.roots, clip_length=clip_length, seed=config.seed,
                            reader_options=config.reader_options)
    return TrainClips(mixture, config)


def train(config: TrainConfig, ctx=None) -> TrainResult:
    """Run (or resume) the training described by ``config`` in this process of the job ``ctx``.

    ``ctx`` defaults to :func:`motion.distributed.setup_distributed` from the environment (torchrun).
    """
    from tqdm.auto import tqdm

    import motion
    from motion.distributed import (
        ResumableDistributedSampler,
        all_gather_objects,
        all_reduce_mean,
        barrier,
        rng_state,
        seed_everything,
        set_rng_state,
        setup_distributed,
        wrap_ddp,
    )
    from motion.train import SupervisedStep, clip_loss, make_optimizer

    config.validate()
    ctx = ctx or setup_distributed(device=config.device)
    device = ctx.device
    if config.batch_size % ctx.world_size:
        raise InvalidArgumentError(f"batch_size {config.batch_size} must be divisible by the {ctx.world_size} processes")
    per_rank = config.batch_size // ctx.world_size
    out = Path(config.out_dir)
    seed_everything(config.seed)  # identical initial weights on every rank
    model = motion.create(config.model, weights=config.init_weights, device=device, **config.model_options)
    if not getattr(model, "trainable", False) or not any(p.requires_grad for p in model.parameters()):
        raise InvalidArgumentError(f"model {config.model!r} has no learnable parameters (training-free); nothing to train")
    clip_length = config.clip_length or int(getattr(model, "frames_per_window", 2))
    dataset = build_dataset(config, clip_length)
    sampler = ResumableDistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed, drop_last=True)
    batches_per_epoch = sampler.num_samples // per_rank
    if batches_per_epoch < 1:
        raise InvalidArgumentError(
            f"{dataset.mixture.summary()} is too small for a global batch of {config.batch_size}: lower --batch-size"
        )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=per_rank, sampler=sampler, drop_last=True,
        num_workers=config.num_workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG untouched: exact resume
    )
    amp = (device.type == "cuda") if config.amp == "auto" else bool(config.amp)
    if amp and device.type != "cuda":
        raise InvalidArgumentError("amp needs a CUDA device")
    model.train()
    recipe = config.recipe()
    optimizer, scheduler = make_optimizer(model, recipe)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    step = epoch = batches_done = 0
    checkpoint_path = find_resume_checkpoint(config)
    if checkpoint_path is not None:
        state = load_checkpoint(checkpoint_path)
        old = state["config"]
        mine = config.to_json()
        diff = [k for k in _RESUME_KEYS if old.get(k) != mine.get(k)]
        if diff:
            raise CheckpointError(f"{checkpoint_path} was written with other settings {diff}: "
                                  f"{ {k: old.get(k) for k in diff} } vs { {k: mine.get(k) for k in diff} }")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
        if len(state["rng"]) != ctx.world_size:
            raise CheckpointError(f"{checkpoint_path} was written by {len(state['rng'])} processes, this run has "
                                  f"{ctx.world_size}: an exact resume needs the same number")
        set_rng_state(state["rng"][ctx.rank])
    step_module = wrap_ddp(SupervisedStep(model, config.iters), ctx)

    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        resolved = {**config.to_json(), "world_size": ctx.world_size, "per_rank_batch": per_rank, "amp_enabled": amp,
                    "clip_length_resolved": clip_length, "device": str(device), "dataset": dataset.mixture.summary()}
        atomic_write_text(out / "train_config.json", json.dumps(resolved, indent=2, default=str))
    log = TrainLog(out, step, ctx.is_main)

    def save(tag_step: int) -> Path:
        rngs = all_gather_objects(rng_state())  # every rank's generators, for an exact resume
        path = out / "checkpoints" / f"step_{tag_step:07d}.pt"
        if ctx.is_main:
            state = {
                "format": CHECKPOINT_FORMAT, "config": config.to_json(), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "step": tag_step, "epoch": epoch, "batches_done": batches_done, "rng": rngs,
            }
            for target in (path, out / "checkpoints" / "last.pt"):
                with atomic_path(target) as tmp:
                    torch.save(state, tmp)
        barrier()
        return path

    losses: list[float] = []
    last_checkpoint = checkpoint_path
    bar = tqdm(total=config.steps, initial=step, unit="step", desc=f"train {config.model}",
               disable=not (config.progress and ctx.is_main))
    window_start, window_samples = time.perf_counter(), 0
    batch = None
    while step < config.steps:
        sampler.set_position(epoch, batches_done * per_rank)
        dataset.set_epoch(epoch)
        for batch in loader:
            batch = _batch_to(batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                loss, metrics = clip_loss(step_module, batch, recipe)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step + 1}; lower --lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            batches_done += 1
            losses.append(float(loss.detach()))
            window_samples += config.batch_size
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                row = {"step": step, "epoch": epoch, "loss": all_reduce_mean(losses[-1], ctx),
                       **{k: all_reduce_mean(v, ctx) for k, v in metrics.items()},
                       "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                       "samples_per_s": window_samples / max(elapsed, 1e-9), "seconds": elapsed}
                log.write(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", epe=f"{row.get('epe', math.nan):.3f}")
                window_start, window_samples = time.perf_counter(), 0
            if step % config.checkpoint_every == 0 or step == config.steps:
                last_checkpoint = save(step)
            if step >= config.steps:
                break
        else:
            epoch += 1
            batches_done = 0
    bar.close()
    log.close()
    if ctx.is_main:
        from motion.models.checkpoints import save_checkpoint

        save_checkpoint(model, out / "model_final.pth", config.model, getattr(model, "config", None), step=step)
        if batch is not None:
            _save_preview(out / "preview.png", batch, model)
    barrier()
    return TrainResult(model, step, losses, out, last_checkpoint)


def _save_preview(path: Path, batch: dict[str, Any], model: torch.nn.Module) -> None:
    """First clip of the last batch: a source frame, its ground truth, the prediction (same colour scale)."""
    from motion.image_io import write_image
    from motion.visualize import flow_to_color, side_by_side

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


# --------------------------------------------------------------------------------------------------
# Command line


def resolve_roots(data_root: str | None, overrides: list[str] | None) -> dict[str, str]:
    """Reader name -> root: conventional folders under ``data_root``, then ``NAME=PATH`` overrides."""
    roots: dict[str, str] = {}
    if data_root is not None:
        base = Path(data_root)
        if not base.is_dir():
            raise InvalidArgumentError(f"--data-root {base} is not a folder")
        for reader, names in DATA_FOLDERS.items():
            found = next((base / n for n in names if (base / n).is_dir()), None)
            if found is not None:
                roots[reader] = str(found)
    for item in overrides or []:
        if "=" not in item:
            raise InvalidArgumentError(f"--root expects NAME=PATH, got {item!r}")
        name, path = item.split("=", 1)
        if name not in DATA_FOLDERS:
            raise InvalidArgumentError(f"--root name must be one of {sorted(DATA_FOLDERS)}, got {name!r}")
        roots[name] = path
    return roots


def _parse_crop(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise InvalidArgumentError(f"--crop must be HxW, e.g. 432x960; got {text!r}") from exc
    return h, w


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="trainable registered model (e.g. videoflow-bof, tiny-flow)")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option, repeatable")
    parser.add_argument("--stage", choices=sorted(STAGES), default=None, help="recipe preset: things | sintel | kitti")
    parser.add_argument("--mixture", default=None, help="data mixture, e.g. 100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things")
    parser.add_argument("--data-root", default=None, help="folder holding Sintel/, KITTI/, FlyingThings3D/, HD1K/, ...")
    parser.add_argument("--root", action="append", metavar="NAME=PATH", help="root of one data set (sintel, kitti, things, hd1k, chairs)")
    parser.add_argument("--kitti-multiview-root", default=None, help="KITTI multi-view extension for clips longer than 2")
    parser.add_argument("--init", default=None, help="initial weights (the previous stage's model_final.pth or a release)")
    parser.add_argument("--out", required=True, help="output folder (logs, checkpoints, final model)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch size (split over processes)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of the OneCycle schedule")
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--gamma", type=float, default=None, help="sequence-loss decay over iterations")
    parser.add_argument("--crop", default=None, help="HxW training crop, e.g. 432x960")
    parser.add_argument("--clip-length", type=int, default=None, help="frames per training clip (default: the model's window)")
    parser.add_argument("--iters", type=int, default=None, help="refinement iterations in training (default 12)")
    parser.add_argument("--no-augment", action="store_true", help="random crops only (no zoom, flips, colour jitter)")
    parser.add_argument("--reverse-prob", type=float, default=None, help="probability of playing a clip backwards (0.3)")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default=None, help="mixed precision (default auto: CUDA only)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="data-loader workers per process")
    parser.add_argument("--log-every", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--resume", default="auto", help="auto (continue from OUT/checkpoints/last.pt) | none | PATH")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (each process takes cuda:LOCAL_RANK)")
    parser.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from tools._common import parse_options

    if args.stage is None and args.mixture is None:
        raise InvalidArgumentError("give --stage (things | sintel | kitti) or --mixture")
    amp = {None: None, "auto": "auto", "on": True, "off": False}[args.amp]
    overrides = {
        "mixture": args.mixture, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "gamma": args.gamma, "crop": _parse_crop(args.crop), "amp": amp,
        "seed": args.seed, "num_workers": args.workers, "log_every": args.log_every,
        "checkpoint_every": args.checkpoint_every, "iters": args.iters, "reverse_prob": args.reverse_prob,
        "augment": False if args.no_augment else None,
    }
    common = {
        "out_dir": args.out, "roots": resolve_roots(args.data_root, args.root), "model_options": parse_options(args.option),
        "init_weights": args.init, "clip_length": args.clip_length, "device": args.device,
        "resume": None if args.resume == "none" else args.resume, "progress": not args.no_progress,
        "reader_options": {"kitti": {"multiview_root": args.kitti_multiview_root}} if args.kitti_multiview_root else {},
    }
    if args.stage is not None:
        return stage_config(args.model, args.stage, **overrides, **common)
    settings = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(model=args.model, **settings, **common)


def run(args: argparse.Namespace) -> int:
    from motion.distributed import setup_distributed, teardown_distributed

    config = config_from_args(args)
    ctx = setup_distributed(device=config.device)
    try:
        result = train(config, ctx)
    finally:
        teardown_distributed(ctx)
    if ctx.is_main:
        tail = result.losses[-min(len(result.losses), 10):]
        mean = sum(tail) / len(tail) if tail else math.nan
        print(f"train {config.model}: step {result.step}/{config.steps}, recent loss {mean:.4f}, "
              f"final model {result.out_dir / 'model_final.pth'}")
    return 0
