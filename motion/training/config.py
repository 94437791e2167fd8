"""Settings of a training run: :class:`TrainConfig` (recipe and loop) and :class:`AugmentConfig` (RAFT's
augmentation of one clip)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from motion4d.checks import check_float, check_int
from motion4d.errors import InvalidArgumentError


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
               flips: bool = False, eraser_prob: float = 0.0) -> AugmentConfig:
        """RAFT's ``SparseFlowAugmentor`` (KITTI, HD1K): isotropic zoom, horizontal flips only,
        weaker colour jitter, crop margins (20, 50)."""
        return cls(crop=tuple(crop), min_scale=min_scale, max_scale=max_scale, stretch_prob=0.0,
                   h_flip_prob=0.5 if flips else 0.0, v_flip_prob=0.0, color=(0.3, 0.3, 0.3, 0.3 / math.pi),
                   asymmetric_color_prob=0.0, crop_margin=(20, 50), eraser_prob=eraser_prob)

    @classmethod
    def crop_only(cls, crop: tuple[int, int]) -> AugmentConfig:
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
            check_int(getattr(self, name), name, minimum=1)
        for name in ("lr", "epsilon", "clip", "max_flow"):
            check_float(getattr(self, name), name, minimum=0.0)
        check_float(self.weight_decay, "weight_decay", minimum=0.0, strict=False)
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
        check_int(self.num_workers, "num_workers", minimum=0)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

