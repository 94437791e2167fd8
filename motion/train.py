"""Training of the RAFT-family multi-frame networks (VideoFlow; reused by SplatFlow / StreamFlow).

The official VideoFlow recipe: sequence loss with gamma (0.8 pre-training, 0.85 fine-tuning), AdamW
(weight decay 1e-4, eps 1e-8), OneCycle (``total = steps + 100``, 5 % warm-up, linear anneal, no
momentum cycling), gradient-norm clipping at 1.0, RAFT augmentation applied identically to every
frame of a clip (sparse ground truth scattered, never interpolated), and temporal reversal
(p = 0.3). Every interior frame of an N-frame clip is supervised in both directions where ground
truth exists.

:func:`train` is the one training loop: this module's Python API and ``motion4d train``
(:mod:`tools.train`, which adds the data-set mixtures and stage presets) both run it. It writes
checkpoints that resume bit-exactly, a CSV log (and TensorBoard events when installed), shows a
tqdm bar and, under ``torchrun``, trains a DistributedDataParallel replica per process
(:mod:`motion.distributed`). Every random draw of a training sample comes from a generator seeded
by ``(seed, epoch, index)``, so N processes see exactly the samples one process with the same
global batch sees, and a resumed run the samples the interrupted one would have seen.

Data: any map-style dataset whose items are dicts with

* ``frames``: ``float [T, 3, H, W]`` in [0, 1] (or ``uint8 [T, H, W, 3]``);
* ``flow_forward``: ``[T-1, 2, H, W]`` (t -> t+1); ``flow_backward``: ``[T-1, 2, H, W]`` (t+1 -> t),
  optional (then only forward flows are supervised);
* ``valid_forward`` / ``valid_backward``: optional ``[T-1, H, W]`` masks (non-finite flow is invalid).
  A frame whose mask is neither all valid nor all invalid is *sparse* (KITTI, HD1K) and is
  augmented as RAFT's sparse augmentor does.

Example::

    model = motion.create("videoflow-mof", device="cpu", encoder="basic")
    data = SyntheticClips(num_clips=64, num_frames=5, height=96, width=128)
    result = train(model, data, TrainConfig(steps=200, batch_size=2, crop=(64, 96), lr=4e-4),
                   out_dir="runs/toy")       # rerun: continues from runs/toy/checkpoints/last.pt
    result.history[-1]["epe"]
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.checks import check_positive
from motion4d.errors import CheckpointError, InvalidArgumentError, ShapeError

from .models.base import FlowOutput
from .models.blocks import sequence_loss

#: ``format`` entry of a training checkpoint (model, optimizer, scheduler, scaler, data position, RNGs)
CHECKPOINT_FORMAT = "motion4d-train-v1"

# TrainConfig fields that only change how a run is watched, not what it computes (free to differ on resume)
_NOT_COMPARED_ON_RESUME = ("num_workers", "log_every", "checkpoint_every", "progress", "preview", "amp")


@dataclass
class AugmentConfig:
    """RAFT's augmentation, one draw per clip (all frames share the geometry).

    Attributes:
        crop: output ``(height, width)``.
        min_scale, max_scale: log2 range of the random zoom (FlyingThings: -0.4, 0.8).
        spatial_prob: probability of zooming; stretch_prob / max_stretch: extra per-axis log2 stretch.
        h_flip_prob, v_flip_prob: flips (flow signs follow).
        color: ColorJitter strengths (brightness, contrast, saturation, hue in turns).
        asymmetric_color_prob: probability of jittering each frame independently.
        crop_margin: ``(y, x)``: RAFT's sparse augmentor draws the crop origin from a range widened by
            these margins and clamps it, which favours crops touching the bottom / side borders
            (where KITTI's LiDAR ground truth is). ``(0, 0)``: uniform crops.
        eraser_prob: RAFT's occlusion augmentation: with this probability a target frame gets 1-2
            rectangles (sides drawn from ``eraser_bounds`` pixels, before zooming) filled with its
            mean colour; the flows are unchanged. Target frames: the second of a pair, the first
            and last of a longer clip (VideoFlow-BOF erases the previous and next frame of its
            triplet with p = 0.5; the MOF, SplatFlow and StreamFlow recipes do not erase: 0).
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
    crop_margin: tuple[int, int] = (0, 0)
    eraser_prob: float = 0.0
    eraser_bounds: tuple[int, int] = (50, 100)

    @classmethod
    def sparse(cls, crop: tuple[int, int], min_scale: float = -0.2, max_scale: float = 0.5,
               flips: bool = False, eraser_prob: float = 0.0) -> "AugmentConfig":
        """RAFT's ``SparseFlowAugmentor`` (KITTI, HD1K): isotropic zoom, horizontal flips only,
        weaker colour jitter, crop margins (20, 50)."""
        return cls(crop=tuple(crop), min_scale=min_scale, max_scale=max_scale, stretch_prob=0.0,
                   h_flip_prob=0.5 if flips else 0.0, v_flip_prob=0.0, color=(0.3, 0.3, 0.3, 0.3 / math.pi),
                   asymmetric_color_prob=0.0, crop_margin=(20, 50), eraser_prob=eraser_prob)

    @classmethod
    def crop_only(cls, crop: tuple[int, int]) -> "AugmentConfig":
        """Random crops and nothing else (clips smaller than the crop are still zoomed to fit)."""
        return cls(crop=tuple(crop), spatial_prob=0.0, stretch_prob=0.0, min_scale=0.0, max_scale=0.0,
                   h_flip_prob=0.0, v_flip_prob=0.0, color=(0.0, 0.0, 0.0, 0.0), asymmetric_color_prob=0.0)

    def validate(self) -> None:
        if len(self.crop) != 2 or min(self.crop) < 1:
            raise InvalidArgumentError(f"crop must be (height, width) >= 1, got {self.crop!r}")
        if self.min_scale > self.max_scale:
            raise InvalidArgumentError(f"min_scale {self.min_scale} must not exceed max_scale {self.max_scale}")
        for name in ("spatial_prob", "stretch_prob", "h_flip_prob", "v_flip_prob", "asymmetric_color_prob", "eraser_prob"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise InvalidArgumentError(f"{name} must be a probability in [0, 1], got {value!r}")
        if len(self.color) != 4 or min(self.color) < 0 or self.color[3] > 0.5:
            raise InvalidArgumentError(f"color must be 4 strengths >= 0 (hue <= 0.5), got {self.color!r}")
        if len(self.crop_margin) != 2 or min(self.crop_margin) < 0:
            raise InvalidArgumentError(f"crop_margin must be (y, x) >= 0, got {self.crop_margin!r}")
        if len(self.eraser_bounds) != 2 or not 1 <= self.eraser_bounds[0] < self.eraser_bounds[1]:
            raise InvalidArgumentError(f"eraser_bounds must be (min, max) sides with 1 <= min < max, got {self.eraser_bounds!r}")


@dataclass
class TrainConfig:
    """Recipe and loop settings (defaults: VideoFlow's FlyingThings stage).

    ``batch_size`` is the global batch: under ``torchrun`` each of the N processes takes
    ``batch_size / N`` clips of every step. ``amp``: float16 autocast, ``"auto"`` = on CUDA only.
    ``preview``: write ``preview.png`` (a clip, its ground truth and the prediction) at the end.
    ``sync_batchnorm``: in multi-GPU runs, BatchNorm layers (VideoFlow's context encoder) become
    ``SyncBatchNorm`` as in the official recipes, so that their statistics cover the global batch
    (CPU / gloo runs keep per-process statistics: PyTorch synchronises BatchNorm on accelerators only).
    """

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
    amp: bool | str = "auto"
    seed: int = 1234
    num_workers: int = 0
    log_every: int = 100
    checkpoint_every: int = 5000
    progress: bool = True
    preview: bool = True
    sync_batchnorm: bool = True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "iters", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "epsilon", "clip", "max_flow"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise InvalidArgumentError(f"{name} must be a finite number, got {value!r}")
            check_positive(value, name)
        check_positive(self.weight_decay, "weight_decay", allow_zero=True)
        if not 0 < self.gamma <= 1:
            raise InvalidArgumentError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0 < self.pct_start < 1:
            raise InvalidArgumentError(f"pct_start must be in (0, 1), got {self.pct_start}")
        if not 0 <= self.reverse_prob <= 1:
            raise InvalidArgumentError(f"reverse_prob must be in [0, 1], got {self.reverse_prob}")
        if len(self.crop) != 2 or min(self.crop) < 1:
            raise InvalidArgumentError(f"crop must be (height, width) >= 1, got {self.crop!r}")
        if self.amp not in (True, False, "auto"):
            raise InvalidArgumentError(f"amp must be True, False or 'auto', got {self.amp!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise InvalidArgumentError(f"num_workers must be an integer >= 0, got {self.num_workers!r}")

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


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


# ----------------------------------------------------------------------------------- clips


def clip_from_item(item: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Normalise a dataset item to float tensors: frames ``[T, 3, H, W]`` in [0, 1], flows, valid masks."""
    if "frames" not in item or "flow_forward" not in item:
        raise InvalidArgumentError(f"training items need 'frames' and 'flow_forward', got keys {sorted(item)}")
    frames = torch.as_tensor(np.asarray(item["frames"]) if not isinstance(item["frames"], torch.Tensor) else item["frames"])
    if frames.dim() == 4 and frames.shape[-1] == 3 and frames.shape[1] != 3:
        frames = frames.permute(0, 3, 1, 2)
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ShapeError(f"frames must be [T, 3, H, W] or [T, H, W, 3], got {list(frames.shape)}")
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
        if tuple(valid.shape) != (t - 1, h, w):
            raise ShapeError(f"valid_{direction} must have shape [{t - 1}, {h}, {w}], got {list(valid.shape)}")
        valid = (valid >= 0.5).float() * torch.isfinite(flow).all(dim=1)
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


def is_sparse(clip: dict[str, torch.Tensor]) -> bool:
    """True when some frame's valid mask is partial (KITTI / HD1K ground truth), not all or nothing."""
    for direction in ("forward", "backward"):
        valid = clip.get(f"valid_{direction}")
        if valid is None:
            continue
        per_frame = (valid >= 0.5).flatten(1)
        if bool((per_frame.any(1) & ~per_frame.all(1)).any()):
            return True
    return False


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of every random draw for sample ``index`` of ``epoch``."""
    state = np.random.SeedSequence([int(seed) % 2**63, int(epoch), int(index)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def _grayscale(img: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of ``[..., 3, H, W]`` as ``[..., 1, H, W]`` (torchvision's weights)."""
    r, g, b = img.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def adjust_hue(img: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue of RGB ``[..., 3, H, W]`` in [0, 1] by ``shift`` turns (torchvision's ``adjust_hue``)."""
    r, g, b = img.unbind(-3)
    maxc, minc = img.max(dim=-3).values, img.min(dim=-3).values
    delta = maxc - minc
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    hue = (hue + shift) % 1.0
    i = torch.floor(hue * 6.0)
    f = hue * 6.0 - i
    i = i.long() % 6
    v = maxc
    p, q, t = v * (1 - sat), v * (1 - sat * f), v * (1 - sat * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, rgb in enumerate(table):
        pick = i == k
        for c in range(3):
            out[c] = torch.where(pick, rgb[c], out[c])
    return torch.stack(out, dim=-3)


def color_jitter(img: torch.Tensor, strengths: Sequence[float], g: torch.Generator) -> torch.Tensor:
    """torchvision's ``ColorJitter`` with factors and order drawn from ``g``: brightness, contrast and
    saturation factors ``U(1 - s, 1 + s)``, hue shift ``U(-h, h)`` turns, applied in random order.
    ``img [..., 3, H, W]`` in [0, 1]; one draw for the whole tensor."""
    b, c, s, h = strengths
    factors = [max(0.0, _uniform(g, 1 - b, 1 + b)), max(0.0, _uniform(g, 1 - c, 1 + c)),
               max(0.0, _uniform(g, 1 - s, 1 + s)), _uniform(g, -h, h)]
    order = torch.randperm(4, generator=g).tolist()
    for k in order:
        if k == 0 and b > 0:
            img = (img * factors[0]).clamp(0, 1)
        elif k == 1 and c > 0:
            mean = _grayscale(img).mean(dim=(-3, -2, -1), keepdim=True)
            img = (factors[1] * img + (1 - factors[1]) * mean).clamp(0, 1)
        elif k == 2 and s > 0:
            img = (factors[2] * img + (1 - factors[2]) * _grayscale(img)).clamp(0, 1)
        elif k == 3 and h > 0:
            img = adjust_hue(img, factors[3])
    return img


def resize_flow(flow: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``flow [N, 2, H, W]`` and ``valid [N, H, W]`` to ``size``; vectors scale with the image.

    Fully valid frames are resized bilinearly. Sparse frames (partial masks) are never interpolated:
    each valid pixel is moved to the nearest pixel of the new grid, as RAFT's
    ``resize_sparse_flow_map`` does (here with the half-pixel mapping ``x' = (x + 0.5) s - 0.5`` of the
    bilinear frame resize, so the scattered vectors stay on the image content they belong to);
    pixels that receive nothing are invalid. All-invalid frames stay zero.
    """
    n, _, h, w = flow.shape
    new_h, new_w = size
    sx, sy = new_w / w, new_h / h
    scale = torch.tensor([sx, sy], dtype=flow.dtype).view(2, 1)
    out_flow = flow.new_zeros(n, 2, new_h, new_w)
    out_valid = valid.new_zeros(n, new_h, new_w)
    for t in range(n):
        mask = valid[t] >= 0.5
        if bool(mask.all()):
            out_flow[t] = F.interpolate(flow[t:t + 1], size=size, mode="bilinear", align_corners=False)[0] * scale.view(2, 1, 1)
            out_valid[t] = 1
        elif bool(mask.any()):
            ys, xs = mask.nonzero(as_tuple=True)
            nx = torch.round((xs.to(torch.float64) + 0.5) * sx - 0.5).long()
            ny = torch.round((ys.to(torch.float64) + 0.5) * sy - 0.5).long()
            keep = (nx >= 0) & (nx < new_w) & (ny >= 0) & (ny < new_h)
            ys, xs, nx, ny = ys[keep], xs[keep], nx[keep], ny[keep]
            out_flow[t][:, ny, nx] = flow[t][:, ys, xs] * scale
            out_valid[t][ny, nx] = 1
    return out_flow, out_valid


def eraser_targets(num_frames: int) -> tuple[int, ...]:
    """Frames the eraser may hit: the second of a pair, else the first and last of the clip (the
    frames the flows of the middle frame point to)."""
    return (1,) if num_frames == 2 else (0, num_frames - 1)


def erase_rectangles(frames: torch.Tensor, targets: Sequence[int], prob: float, bounds: tuple[int, int],
                     g: torch.Generator) -> torch.Tensor:
    """RAFT's eraser on ``frames [T, 3, H, W]``: each frame of ``targets``, with probability ``prob``,
    gets 1-2 rectangles of sides in ``[bounds[0], bounds[1])`` pixels (clipped at the border) filled
    with its mean colour. Returns a new tensor."""
    frames = frames.clone()
    _, _, h, w = frames.shape
    for t in targets:
        if _uniform(g) >= prob:
            continue
        mean_colour = frames[t].mean(dim=(1, 2), keepdim=True)
        for _ in range(int(torch.randint(1, 3, (), generator=g))):
            x0, y0 = int(torch.randint(0, w, (), generator=g)), int(torch.randint(0, h, (), generator=g))
            dx, dy = (int(torch.randint(bounds[0], bounds[1], (), generator=g)) for _ in range(2))
            frames[t, :, y0:y0 + dy, x0:x0 + dx] = mean_colour
    return frames


class ClipAugmentor:
    """RAFT's augmentation drawn once per clip and applied to every frame (``clip`` as from
    :func:`clip_from_item`).

    Photometric: colour jitter shared by all frames or (``asymmetric_color_prob``) per frame; then the
    optional eraser (:func:`erase_rectangles` on :func:`eraser_targets`).
    Spatial: zoom ``2^U(min_scale, max_scale)`` with optional per-axis stretch (at least crop + 8
    pixels), horizontal / vertical flips, random crop; flows are rescaled and sign-flipped with the
    frames. Dense flow is resized bilinearly, sparse flow scattered (:func:`resize_flow`).

    Every draw comes from one ``torch.Generator``: the one passed to the call, else the augmentor's own
    (``generator``, or a new one seeded with ``seed``; with neither, seeded from torch's global
    generator). The same generator state gives the same augmentation.
    """

    def __init__(self, config: AugmentConfig, seed: int | None = None, generator: torch.Generator | None = None) -> None:
        config.validate()
        if seed is not None and generator is not None:
            raise InvalidArgumentError("give ClipAugmentor a seed or a generator, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidArgumentError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seed is None and generator is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        self.config = config
        self.generator = generator if generator is not None else torch.Generator().manual_seed(int(seed))

    def __call__(self, clip: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        g = generator if generator is not None else self.generator
        cfg = self.config
        clip = dict(clip)
        directions = [d for d in ("forward", "backward") if f"flow_{d}" in clip]
        frames = clip["frames"]
        _, _, h, w = frames.shape
        ch, cw = cfg.crop

        if any(cfg.color):
            if _uniform(g) < cfg.asymmetric_color_prob:
                frames = torch.stack([color_jitter(f, cfg.color, g) for f in frames])
            else:
                frames = color_jitter(frames, cfg.color, g)
        if cfg.eraser_prob > 0:
            frames = erase_rectangles(frames, eraser_targets(len(frames)), cfg.eraser_prob, cfg.eraser_bounds, g)

        scale_x = scale_y = 2.0 ** _uniform(g, cfg.min_scale, cfg.max_scale)
        if _uniform(g) < cfg.stretch_prob:
            scale_x *= 2.0 ** _uniform(g, -cfg.max_stretch, cfg.max_stretch)
            scale_y *= 2.0 ** _uniform(g, -cfg.max_stretch, cfg.max_stretch)
        min_scale = max((ch + 8) / h, (cw + 8) / w)
        if _uniform(g) < cfg.spatial_prob or min_scale > 1:
            scale_x, scale_y = max(scale_x, min_scale), max(scale_y, min_scale)
            size = (int(round(h * scale_y)), int(round(w * scale_x)))
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
            for d in directions:
                clip[f"flow_{d}"], clip[f"valid_{d}"] = resize_flow(clip[f"flow_{d}"], clip[f"valid_{d}"], size)
        for prob, axis, channel in ((cfg.h_flip_prob, -1, 0), (cfg.v_flip_prob, -2, 1)):
            if _uniform(g) < prob:
                frames = frames.flip(axis)
                sign = torch.ones(1, 2, 1, 1)
                sign[0, channel] = -1
                for d in directions:
                    clip[f"flow_{d}"] = clip[f"flow_{d}"].flip(axis) * sign
                    clip[f"valid_{d}"] = clip[f"valid_{d}"].flip(axis)
        h, w = frames.shape[-2:]
        if h < ch or w < cw:
            raise ShapeError(f"clip of {h}x{w} pixels is smaller than the crop {ch}x{cw}")
        my, mx = cfg.crop_margin
        y0 = min(max(int(torch.randint(0, h - ch + my + 1, (), generator=g)), 0), h - ch)
        x0 = min(max(int(torch.randint(-mx, w - cw + mx + 1, (), generator=g)), 0), w - cw)
        out = {"frames": frames[..., y0:y0 + ch, x0:x0 + cw].contiguous()}
        for key, value in clip.items():
            if key != "frames":
                out[key] = value[..., y0:y0 + ch, x0:x0 + cw].contiguous()
        return out


class ClipDataset(Dataset):
    """Training clips from a dataset of items: normalisation, temporal reversal and augmentation.

    Every random draw of sample ``index`` comes from :func:`sample_generator` ``(seed, epoch, index)``
    (the loop calls :meth:`set_epoch`), so a sample is the same in any process, data-loader worker
    or resumed run. Dense clips get ``augment``, sparse ones (:func:`is_sparse`) ``sparse_augment``;
    with ``config.augment`` False only random crops are taken. Subclasses change :meth:`item` (where
    items come from) and :meth:`augment_config` (per-sample settings, e.g. per data set).
    """

    def __init__(self, base: Dataset, config: TrainConfig, augment: AugmentConfig | None = None,
                 sparse_augment: AugmentConfig | None = None) -> None:
        self.base = base
        self.config = config
        self.dense_config = augment or AugmentConfig(crop=tuple(config.crop))
        self.sparse_config = sparse_augment or AugmentConfig.sparse(tuple(config.crop))
        for cfg in (self.dense_config, self.sparse_config):
            if tuple(cfg.crop) != tuple(config.crop):
                raise InvalidArgumentError(f"augmentation crop {tuple(cfg.crop)} differs from the training crop {tuple(config.crop)}")
            cfg.validate()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def item(self, index: int) -> dict[str, Any]:
        return self.base[index]

    def augment_config(self, index: int, sparse: bool) -> AugmentConfig:
        return self.sparse_config if sparse else self.dense_config

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = sample_generator(self.config.seed, self.epoch, index)
        clip = clip_from_item(self.item(index))
        if _uniform(g) < self.config.reverse_prob:
            clip = reverse_clip(clip)
        if self.config.augment:
            settings = self.augment_config(index, is_sparse(clip))
        else:
            settings = AugmentConfig.crop_only(tuple(self.config.crop))
        clip = ClipAugmentor(settings, generator=g)(clip)
        if "flow_backward" not in clip:
            clip["flow_backward"] = torch.zeros_like(clip["flow_forward"])
            clip["valid_backward"] = torch.zeros_like(clip["valid_forward"])
        return clip


class SyntheticClips(Dataset):
    """Clips from :func:`motion.synthetic.make_sequence` (seed ``seed + index``) with exact forward
    and backward flow."""

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


# ----------------------------------------------------------------------------------- recipe


class SupervisedStep(nn.Module):
    """One training forward: ``frames -> predictions per iteration``.

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


def sync_batchnorm(model: nn.Module, world_size: int, device: torch.device, enabled: bool = True) -> nn.Module:
    """``model`` with its BatchNorm layers turned into ``SyncBatchNorm`` (same parameters and
    buffers) when ``enabled`` and several processes train on CUDA; else ``model`` unchanged."""
    if not enabled or world_size < 2 or torch.device(device).type != "cuda":
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def make_optimizer(model: nn.Module, config: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW + OneCycle exactly as RAFT / VideoFlow (``total_steps = steps + 100``, linear anneal)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InvalidArgumentError(f"{type(model).__name__} has no learnable parameters; nothing to train")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, eps=config.epsilon)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.steps + 100, pct_start=config.pct_start,
        cycle_momentum=False, anneal_strategy="linear",
    )
    return optimizer, scheduler


# ----------------------------------------------------------------------------------- logs, checkpoints


class TrainLog:
    """``train_log.csv`` (+ TensorBoard events when ``tensorboard`` is installed), rank 0 only.

    Starts from ``history`` (the rows up to a resumed step), so the log has one row per logged step.
    """

    COLUMNS = ("step", "epoch", "loss", "epe", "1px", "3px", "5px", "lr", "grad_norm", "samples_per_s", "seconds")

    def __init__(self, out_dir: Path | None, history: list[dict[str, float]], resume_step: int) -> None:
        self.path = out_dir / "train_log.csv" if out_dir is not None else None
        self.writer = None
        if self.path is None:
            return
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:  # tensorboard is optional: the CSV log is always written
            self.writer = None

    def write(self, row: dict[str, float]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.COLUMNS, extrasaction="ignore").writerow({k: row.get(k, "") for k in self.COLUMNS})
        if self.writer is not None:
            for key in ("loss", "epe", "1px", "lr", "grad_norm", "samples_per_s"):
                if key in row:
                    self.writer.add_scalar(f"train/{key}", row[key], int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by :func:`train` (raises :class:`CheckpointError` for anything else)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"resume checkpoint {path}: no such file")
    try:
        # the stored Python / NumPy RNG states are plain objects, hence weights_only=False (our own files)
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated / foreign file: say which one
        raise CheckpointError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a motion4d training checkpoint (format {CHECKPOINT_FORMAT!r})")
    return state


def _resume_path(resume: bool | str | os.PathLike | None, out: Path | None) -> Path | None:
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


def _atomic_alias(source: Path, target: Path) -> None:
    """Make ``target`` a copy of ``source`` atomically: a hard link (no second serialisation of a
    checkpoint that may be hundreds of MB), or a byte copy where links are not supported."""
    import shutil

    with atomic_path(target) as tmp:
        try:
            tmp.unlink()  # atomic_path made an empty file; a link needs the name free
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def _settings(config: TrainConfig, run_info: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint and the run resuming it must agree on."""
    recipe = {k: v for k, v in config.to_json().items() if k not in _NOT_COMPARED_ON_RESUME}
    return {**recipe, **json.loads(json.dumps(run_info, default=str))}


def _context(ctx, device):
    from .distributed import DistributedContext, env_rank

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


# ----------------------------------------------------------------------------------- the loop


def train(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    model_name: str | None = None,
    augment: AugmentConfig | None = None,
    sparse_augment: AugmentConfig | None = None,
    resume: bool | str | os.PathLike | None = "auto",
    device: str | torch.device | None = None,
    ctx: Any = None,
    run_info: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on clips from ``dataset`` (items as in the module docstring, or a :class:`ClipDataset`).

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
            start over. The checkpoint must come from the same settings (else :class:`CheckpointError`).
        device: where to train (default: ``ctx.device``, else the model's device).
        ctx: :class:`motion.distributed.DistributedContext`; default: the initialised process group
            (``torchrun``), else a single process. Each rank trains a DDP replica on its share of
            every global batch; only rank 0 writes files.
        run_info: extra settings stored in the checkpoint and compared on resume (data, model options).

    Returns:
        :class:`TrainResult`; the model is left in eval mode.
    """
    from tqdm.auto import tqdm

    from .distributed import (
        ResumableDistributedSampler,
        all_gather_objects,
        all_reduce_mean,
        barrier,
        rng_state,
        seed_everything,
        set_rng_state,
        wrap_ddp,
    )
    from .models.checkpoints import save_checkpoint

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
    sampler = ResumableDistributedSampler(data, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed, drop_last=True)
    batches_per_epoch = sampler.num_samples // per_rank
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
    settings = _settings(config, run_info)

    step = epoch = batches_done = 0
    history: list[dict[str, float]] = []
    checkpoint_path = _resume_path(resume, out)
    if checkpoint_path is not None:
        state = load_training_checkpoint(checkpoint_path)
        old = state.get("settings", {})
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff:
            raise CheckpointError(f"{checkpoint_path} was written with other settings {diff}: "
                                  f"{ {k: old.get(k) for k in diff} } vs { {k: settings.get(k) for k in diff} }")
        if len(state["rng"]) != ctx.world_size:
            raise CheckpointError(f"{checkpoint_path} was written by {len(state['rng'])} processes, this run has "
                                  f"{ctx.world_size}: an exact resume needs the same number")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
        history = list(state.get("history", []))
        set_rng_state(state["rng"][ctx.rank])
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
            state = {
                "format": CHECKPOINT_FORMAT, "settings": settings, "config": config.to_json(), "model_name": name,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "step": tag_step,
                "epoch": epoch, "batches_done": batches_done, "rng": rngs, "history": history,
            }
            with atomic_path(path) as tmp:
                torch.save(state, tmp)
            _atomic_alias(path, out / "checkpoints" / "last.pt")
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
        sampler.set_position(epoch, batches_done * per_rank)
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
    from .image_io import write_image
    from .visualize import flow_to_color, side_by_side

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
