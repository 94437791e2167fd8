"""Image conventions shared by every package: uint8 ``[..., H, W, 3]`` frames <-> float [0, 1] tensors, PSNR."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import ShapeError


def frames_to_tensor(
    frames: Any,
    name: str = "frames",
    channels_first: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` frames (numpy or torch) -> float ``[..., 3, H, W]`` in [0, 1].

    Floating inputs are taken as already in [0, 1] and only cast; integer inputs other than uint8
    are rejected (their range is ambiguous). ``channels_first=False`` keeps ``[..., H, W, 3]``.
    The division happens after the move to ``device``, so a GPU receives the 4x smaller uint8 data.
    """
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise ShapeError(f"{name} must be a uint8 or float array [..., H, W, 3], got {type(frames).__name__}")
    if frames.ndim < 3 or frames.shape[-1] != 3:
        raise ShapeError(f"{name} must have shape [..., H, W, 3], got {list(frames.shape)}")
    if not (frames.dtype == torch.uint8 or frames.is_floating_point()):
        raise ShapeError(f"{name} must be uint8 (0-255) or floating point (0-1), got {frames.dtype}")
    tensor = frames.to(device) if device is not None else frames
    if channels_first:
        tensor = tensor.movedim(-1, -3)
    if tensor.dtype == torch.uint8:
        return tensor.to(dtype).div_(255.0)
    return tensor.to(dtype)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (both clamped to it); 120 dB when equal."""
    mse = float((a.float().clamp(0, 1) - b.float().clamp(0, 1)).pow(2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))
