"""Training recipe for the RAFT-family multi-frame networks (VideoFlow; reused by SplatFlow/StreamFlow).

The official VideoFlow recipe: sequence loss with gamma (0.8 pre-training, 0.85 fine-tuning), AdamW
(weight decay 1e-4, eps 1e-8), OneCycle (``total = steps + 100``, 5 % warm-up, linear anneal, no
momentum cycling), gradient-norm clipping at 1.0, RAFT augmentation applied identically to every
frame of a clip, and temporal reversal (p = 0.3). Every interior frame of an N-frame clip is
supervised in both directions where ground truth exists.

Data: any map-style dataset whose items are dicts with

* ``frames``: ``float [T, 3, H, W]`` in [0, 1] (or ``uint8 [T, H, W, 3]``);
* ``flow_forward``: ``[T-1, 2, H, W]`` (t -> t+1); ``flow_backward``: ``[T-1, 2, H, W]`` (t+1 -> t),
  optional (then only forward flows are supervised);
* ``valid_forward`` / ``valid_backward``: optional ``[T-1, H, W]`` masks (non-finite flow is invalid).

Example::

    model = motion.create("videoflow-mof", device="cpu", encoder="basic")
    data = SyntheticClips(num_clips=64, num_frames=5, height=96, width=128)
    result = train(model, data, TrainConfig(steps=200, batch_size=2, crop=(64, 96), lr=4e-4),
                   out_dir="runs/toy")
"""
from __future__ import annotations

import json
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .atomic import atomic_write_text
from .checks import check_positive, require
from .errors import InvalidArgumentError, ShapeError
from .models.base import FlowOutput
from .models.blocks import sequence_loss
from .models.checkpoints import read_checkpoint, save_checkpoint


@dataclass
class AugmentConfig:
    """RAFT's dense-flow augmentation, one draw per clip (all frames share it).

    Attributes:
        crop: output ``(height, width)``.
        min_scale, max_scale: log2 range of the random zoom (FlyingThings: -0.4, 0.8).
        spatial_prob: probability of zooming; stretch_prob / max_stretch: extra per-axis log2 stretch.
        h_flip_prob, v_flip_prob: flips (flow signs follow).
        color: ColorJitter strengths (brightness, contrast, saturation, hue).
        asymmetric_color_prob: probability of jittering each frame independently.
    """

    crop: tuple[int, int] = (432, 960)
    min_scale: float = -0.4
    max_scale: float = 0.8
    spatial_prob: float = 0.8
    stretch_prob: float = 0.8
    max_stretch: float = 0.2
    h_flip_prob: float = 0.5
    v_flip_prob: float = 0.1
    color: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.5 / math.pi)
    asymmetric_color_prob: float = 0.2


@dataclass
class TrainConfig:
    """Optimisation settings (defaults: VideoFlow's FlyingThings stage)."""

    steps: int = 120_000
    batch_size: int = 8
    lr: float = 2.5e-4
    weight_decay: float = 1e-4
    epsilon: float = 1e-8
    pct_start: float = 0.05
    gamma: float = 0.8
    max_flow: float = 400.0
    iters: int = 12
    clip: float = 1.0
    reverse_prob: float = 0.3
    crop: tuple[int, int] = (432, 960)
    augment: bool = True
    seed: int = 1234
    num_workers: int = 0
    log_every: int = 100
    checkpoint_every: int = 5000
    progress: bool = True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "iters", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "epsilon", "clip"):
            check_positive(getattr(self, name), name)
        if not 0 < self.gamma <= 1:
            raise InvalidArgumentError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0 <= self.reverse_prob <= 1:
            raise InvalidArgumentError(f"reverse_prob must be in [0, 1], got {self.reverse_prob}")


@dataclass
class TrainResult:
    """``history``: one dict per logged step (``step``, ``loss``, ``epe``, ``1px``, ``lr``)."""

    model: nn.Module
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)


# ----------------------------------------------------------------------------------- clips


def clip_from_item(item: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Normalise a dataset item to float tensors: frames ``[T, 3, H, W]`` in [0, 1], flows, valid masks."""
    if "frames" not in item or "flow_forward" not in item:
        raise InvalidArgumentError(f"training items need 'frames' and 'flow_forward', got keys {sorted(item)}")
    frames = torch.as_tensor(np.asarray(item["frames"]) if not isinstance(item["frames"], torch.Tensor) else item["frames"])
    if frames.dim() == 4 and frames.shape[-1] == 3 and frames.shape[1] != 3:
        frames = frames.permute(0, 3, 1, 2)
    frames = frames.float() / 255.0 if not frames.is_floating_point() else frames.float()
    t, _, h, w = frames.shape
    clip = {"frames": frames}
    for direction in ("forward", "backward"):
        flow = item.get(f"flow_{direction}")
        if flow is None:
            continue
        flow = torch.as_tensor(flow).float()
        if tuple(flow.shape) != (t - 1, 2, h, w):
            raise ShapeError(f"flow_{direction} must have shape [{t - 1}, 2, {h}, {w}], got {list(flow.shape)}")
        valid = item.get(f"valid_{direction}")
        valid = torch.ones(t - 1, h, w) if valid is None else torch.as_tensor(valid).float()
        valid = valid * torch.isfinite(flow).all(dim=1)
        clip[f"flow_{direction}"] = torch.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
        clip[f"valid_{direction}"] = valid
    return clip


def reverse_clip(clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Play the clip backwards: forward flows become the reversed backward flows and vice versa.

    Without backward ground truth the reversed clip has no forward supervision (masked out).
    """
    out = {"frames": clip["frames"].flip(0)}
    fwd, bwd = clip.get("flow_forward"), clip.get("flow_backward")
    if bwd is not None:
        out["flow_forward"], out["valid_forward"] = bwd.flip(0), clip["valid_backward"].flip(0)
    else:
        out["flow_forward"], out["valid_forward"] = torch.zeros_like(fwd), torch.zeros_like(clip["valid_forward"])
    out["flow_backward"], out["valid_backward"] = fwd.flip(0), clip["valid_forward"].flip(0)
    return out


class ClipAugmentor:
    """RAFT's augmentation for dense flow, drawn once per clip and applied to every frame.

    Photometric: kornia ColorJitter, shared by all frames or (``asymmetric_color_prob``) per frame.
    Spatial: zoom ``2^U(min_scale, max_scale)`` with optional per-axis stretch (at least crop + 8
    pixels), horizontal / vertical flips, random crop; flows are resized, rescaled and sign-flipped
    consistently.
    """

    def __init__(self, config: AugmentConfig, seed: int | None = None) -> None:
        kornia_aug = require("kornia.augmentation", "training augmentation", extra="train")
        self.config = config
        self.rng = np.random.default_rng(seed)
        b, c, s, h = config.color
        self.shared = kornia_aug.ColorJitter(b, c, s, h, same_on_batch=True, p=1.0)
        self.independent = kornia_aug.ColorJitter(b, c, s, h, same_on_batch=False, p=1.0)

    def __call__(self, clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        frames = clip["frames"]
        _, _, h, w = frames.shape
        ch, cw = cfg.crop
        jitter = self.independent if self.rng.random() < cfg.asymmetric_color_prob else self.shared
        frames = jitter(frames).clamp(0, 1)

        scale_x = scale_y = 2.0 ** self.rng.uniform(cfg.min_scale, cfg.max_scale)
        if self.rng.random() < cfg.stretch_prob:
            scale_x *= 2.0 ** self.rng.uniform(-cfg.max_stretch, cfg.max_stretch)
            scale_y *= 2.0 ** self.rng.uniform(-cfg.max_stretch, cfg.max_stretch)
        min_scale = max((ch + 8) / h, (cw + 8) / w)
        if self.rng.random() < cfg.spatial_prob or min_scale > 1:
            scale_x, scale_y = max(scale_x, min_scale), max(scale_y, min_scale)
            size = (int(round(h * scale_y)), int(round(w * scale_x)))
            sx, sy = size[1] / w, size[0] / h
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
            for d in ("forward", "backward"):
                if f"flow_{d}" in clip:
                    flow = F.interpolate(clip[f"flow_{d}"], size=size, mode="bilinear", align_corners=False)
                    clip[f"flow_{d}"] = flow * torch.tensor([sx, sy]).view(1, 2, 1, 1)
                    clip[f"valid_{d}"] = (F.interpolate(clip[f"valid_{d}"][:, None], size=size, mode="bilinear",
                                                        align_corners=False)[:, 0] > 0.99).float()
        flips = [(self.rng.random() < cfg.h_flip_prob, -1, 0), (self.rng.random() < cfg.v_flip_prob, -2, 1)]
        for do, axis, channel in flips:
            if do:
                frames = frames.flip(axis)
                for d in ("forward", "backward"):
                    if f"flow_{d}" in clip:
                        sign = torch.ones(2).view(1, 2, 1, 1)
                        sign[0, channel] = -1
                        clip[f"flow_{d}"] = clip[f"flow_{d}"].flip(axis) * sign
                        clip[f"valid_{d}"] = clip[f"valid_{d}"].flip(axis)
        h, w = frames.shape[-2:]
        if h < ch or w < cw:
            raise ShapeError(f"clip of {h}x{w} pixels is smaller than the crop {ch}x{cw}")
        y0 = int(self.rng.integers(0, h - ch + 1))
        x0 = int(self.rng.integers(0, w - cw + 1))
        out = {"frames": frames[..., y0:y0 + ch, x0:x0 + cw]}
        for key, value in clip.items():
            if key != "frames":
                out[key] = value[..., y0:y0 + ch, x0:x0 + cw].contiguous()
        return out


class ClipDataset(Dataset):
    """Wraps a dataset of clip dicts with normalisation, augmentation and temporal reversal."""

    def __init__(self, base: Dataset, config: TrainConfig, augment: AugmentConfig | None = None) -> None:
        self.base = base
        self.config = config
        self.augment_config = augment or AugmentConfig(crop=config.crop)
        self.augmentor: ClipAugmentor | None = None
        self.rng = np.random.default_rng(config.seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = clip_from_item(self.base[index])
        if self.rng.random() < self.config.reverse_prob:
            clip = reverse_clip(clip)
        if self.config.augment:
            if self.augmentor is None:  # created lazily so each DataLoader worker draws its own stream
                info = torch.utils.data.get_worker_info()
                self.augmentor = ClipAugmentor(self.augment_config, self.config.seed + (info.id if info else 0))
            clip = self.augmentor(clip)
        if "flow_backward" not in clip:
            clip["flow_backward"] = torch.zeros_like(clip["flow_forward"])
            clip["valid_backward"] = torch.zeros_like(clip["valid_forward"])
        return clip


class SyntheticClips(Dataset):
    """Clips from :func:`motion.synthetic.make_sequence` with exact forward and backward flow."""

    def __init__(self, num_clips: int = 64, num_frames: int = 5, height: int = 96, width: int = 128,
                 seed: int = 0, **scene: Any) -> None:
        self.num_clips, self.num_frames, self.height, self.width = num_clips, num_frames, height, width
        self.seed, self.scene = seed, scene

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .synthetic import make_sequence

        if not 0 <= index < self.num_clips:
            raise IndexError(index)
        seq = make_sequence(T=self.num_frames, height=self.height, width=self.width, seed=self.seed + index, **self.scene)
        return {"frames": seq.frames, "flow_forward": seq.flow_forward, "flow_backward": seq.flow_backward}


# ----------------------------------------------------------------------------------- loop


class SupervisedStep(nn.Module):
    """One training forward: ``frames -> (predictions per iteration, "interior" | "clip")``.

    Models with ``interior_flows`` (VideoFlow) are trained as officially, on the N-2 interior frames of
    each clip in both directions; others are called as ``model(frames)`` in training mode and must put
    per-iteration predictions in ``extras["forward_iterations"]`` (and optionally
    ``"backward_iterations"``). Being a module, it can be wrapped by DistributedDataParallel.
    """

    def __init__(self, model: nn.Module, iters: int) -> None:
        super().__init__()
        self.model = model
        self.iters = iters
        self.interior = hasattr(model, "interior_flows")

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        if self.interior:
            out = self.model.interior_flows(frames, iters=self.iters, all_iterations=True)
            return [torch.cat([f, b], dim=1) for f, b in out.iterations]
        out = self.model(frames)
        preds = out.extras.get("forward_iterations")
        if not preds:
            raise InvalidArgumentError(f"{type(self.model).__name__} gives no per-iteration predictions in training mode")
        if out.extras.get("backward_iterations"):
            preds = [torch.cat([f, b], dim=1) for f, b in zip(preds, out.extras["backward_iterations"])]
        return list(preds)


def clip_loss(step: nn.Module, batch: dict[str, torch.Tensor], config: TrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Sequence loss of one batch for a :class:`SupervisedStep` (possibly DDP-wrapped)."""
    inner = step.module if hasattr(step, "module") else step
    preds = step(batch["frames"])
    fwd, bwd = batch["flow_forward"], batch["flow_backward"]
    vf, vb = batch["valid_forward"], batch["valid_backward"]
    model_loss = getattr(inner.model, "loss", None)
    if model_loss is not None and not inner.interior:
        # the model's own loss (SplatFlow's normalisation, StreamFlow's sum over the T-1 flows)
        output = FlowOutput(forward=preds[-1], extras={"forward_iterations": preds})
        return model_loss(output, fwd, vf, gamma=config.gamma, max_flow=config.max_flow)
    if inner.interior:
        target, valid = torch.cat([fwd[:, 1:], bwd[:, :-1]], dim=1), torch.cat([vf[:, 1:], vb[:, :-1]], dim=1)
    elif preds[0].shape[1] == 2 * fwd.shape[1]:
        target, valid = torch.cat([fwd, bwd], dim=1), torch.cat([vf, vb], dim=1)
    else:
        target, valid = fwd, vf
    return sequence_loss(preds, target, valid, gamma=config.gamma, max_flow=config.max_flow)


def make_optimizer(model: nn.Module, config: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW + OneCycle exactly as RAFT / VideoFlow (``total_steps = steps + 100``, linear anneal)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, eps=config.epsilon)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.steps + 100, pct_start=config.pct_start,
        cycle_momentum=False, anneal_strategy="linear",
    )
    return optimizer, scheduler


def train(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    model_name: str | None = None,
    augment: AugmentConfig | None = None,
    resume: bool = True,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train ``model`` on clips from ``dataset`` (see the module docstring for the item format).

    With ``out_dir``, ``last.pt`` (our checkpoint format plus optimizer/scheduler state) and
    ``history.json`` are written atomically every ``checkpoint_every`` steps and at the end, and a
    later call with ``resume=True`` continues from ``last.pt``. Under ``torchrun`` (an initialised
    ``torch.distributed`` process group) the model is wrapped in DistributedDataParallel, each rank
    reads its own shard, and only rank 0 writes files.
    """
    config = config or TrainConfig()
    config.validate()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    name = model_name or getattr(model, "registry_name", None) or type(model).__name__
    _seed_everything(config.seed + rank)

    model.to(device).train()
    optimizer, scheduler = make_optimizer(model, config)
    step, history = 0, []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and resume and (out / "last.pt").is_file():
        step, history = _resume(model, optimizer, scheduler, out / "last.pt")
    wrapped: nn.Module = SupervisedStep(model, config.iters)
    if distributed:
        wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "cuda" else None)

    data = ClipDataset(dataset, config, augment)
    sampler = torch.utils.data.DistributedSampler(data, seed=config.seed) if distributed else None
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=config.num_workers, drop_last=len(data) >= config.batch_size,
                        generator=torch.Generator().manual_seed(config.seed), persistent_workers=False)
    use_amp = device.type == "cuda" and getattr(getattr(model, "config", None), "mixed_precision", False) in (True, "auto")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    tqdm = require("tqdm", "training progress").tqdm
    bar = tqdm(total=config.steps, initial=step, disable=not config.progress or rank != 0, desc="train", unit="step")
    running: list[dict[str, float]] = []
    epoch = 0
    while step < config.steps:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            optimizer.zero_grad(set_to_none=True)
            loss, metrics = clip_loss(wrapped, batch, config)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at step {step}")
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            running.append({"loss": loss.item(), **metrics})
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                entry = {"step": step, "lr": scheduler.get_last_lr()[0]}
                entry.update({k: float(np.nanmean([r[k] for r in running])) for k in running[0]})
                history.append(entry)
                running.clear()
                bar.set_postfix(loss=f"{entry['loss']:.3f}", epe=f"{entry['epe']:.2f}")
            if out is not None and rank == 0 and (step % config.checkpoint_every == 0 or step == config.steps):
                _save(model, optimizer, scheduler, out, name, config, step, history)
            if step >= config.steps:
                break
        epoch += 1
    bar.close()
    model.eval()
    return TrainResult(model, step, history)


def _save(model, optimizer, scheduler, out: Path, name: str, config: TrainConfig, step: int, history) -> None:
    model_config = getattr(model, "config", None)
    save_checkpoint(model, out / "last.pt", name, model_config, step=step, train_config=asdict(config),
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
    atomic_write_text(out / "history.json", json.dumps(history, indent=1))


def _resume(model, optimizer, scheduler, path: Path) -> tuple[int, list[dict[str, float]]]:
    state, _, _ = read_checkpoint(path)
    model.load_state_dict(state)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    history_file = path.parent / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    return int(payload["step"]), history


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def evaluate_epe(model: nn.Module, clips: Sequence[dict[str, Any]], iters: int | None = None) -> float:
    """Mean end-point error of the interior forward flows over ``clips`` (no augmentation)."""
    was_training = model.training
    model.eval()
    errors = []
    with torch.no_grad():
        for item in clips:
            clip = clip_from_item(item)
            frames = clip["frames"][None].to(next(model.parameters()).device)
            out = model.interior_flows(frames, iters=iters)
            target = clip["flow_forward"][1:].to(out.forward.device)
            errors.append((out.forward[0] - target).norm(dim=1).mean().item())
    model.train(was_training)
    return float(np.mean(errors))
