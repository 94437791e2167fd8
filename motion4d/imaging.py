"""Image conventions shared by every package: uint8 ``[..., H, W, 3]`` frames <-> float [0, 1] tensors, PSNR.

The input contract of every model (:func:`as_model_frames`, :func:`as_stream_frame`): frames are
uint8 (0-255, any array or tensor, channels last or first) or floating point in [0, 1]. Floats
outside [0, 1] are refused unless ``value_range=255`` says they are 0-255 values: a model fed
0-255 floats as if they were [0, 1] gives wrong flow without any error (OpenCV's DIS differs by
pixels, networks saturate).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import InvalidArgumentError, ShapeError

RANGE_TOLERANCE = 1e-3


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


def _to_tensor(frames: Any, name: str) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise ShapeError(f"{name} must be a numpy array or torch tensor of frames, got {type(frames).__name__}")
    if not (frames.dtype == torch.uint8 or frames.is_floating_point()):
        raise ShapeError(f"{name} must be uint8 (0-255) or floating point (0-1), got {frames.dtype}")
    return frames


def _scaled(frames: torch.Tensor, name: str, value_range: float | None) -> torch.Tensor:
    """uint8 -> float / 255; floats checked against (or divided by) ``value_range``."""
    if frames.dtype == torch.uint8:
        return frames.float().div_(255.0)
    if value_range not in (None, 1, 1.0, 255, 255.0):
        raise InvalidArgumentError(f"value_range must be 1 (floats in [0, 1]) or 255 (0-255 floats), got {value_range!r}")
    if value_range in (255, 255.0):
        return frames / 255.0
    if frames.numel():
        low, high = (float(v) for v in torch.aminmax(frames.detach()))
        if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
            hint = " (0-255 values: pass value_range=255, or uint8 frames)" if high > 1.5 else ""
            raise InvalidArgumentError(f"{name} must be floating point in [0, 1] or uint8, got values in "
                                       f"[{low:.4g}, {high:.4g}]{hint}")
    return frames


def as_model_frames(frames: Any, name: str = "frames", value_range: float | None = None) -> torch.Tensor:
    """The model input ``float [B, T, 3, H, W]`` in [0, 1] from frames in any of the package's layouts.

    Accepted: ``[B, T, 3, H, W]`` (the model layout), ``[T, H, W, 3]`` (what the readers return)
    or ``[B, T, H, W, 3]``; numpy or torch; uint8, or floats in [0, 1] (or 0-255 with
    ``value_range=255``). A tensor already in the model layout and range is returned as is.
    """
    tensor = _to_tensor(frames, name)
    if tensor.dim() == 4 and tensor.shape[-1] == 3:
        tensor = tensor.permute(0, 3, 1, 2)[None]
    elif tensor.dim() == 5 and tensor.shape[-1] == 3 and tensor.shape[2] != 3:
        tensor = tensor.permute(0, 1, 4, 2, 3)
    if tensor.dim() != 5 or tensor.shape[2] != 3:
        raise ShapeError(f"{name} must have shape [B, T, 3, H, W] or [T, H, W, 3], got {list(tensor.shape)}")
    return _scaled(tensor, name, value_range)


def as_stream_frame(frame: Any, name: str = "frame", value_range: float | None = None) -> torch.Tensor:
    """One element of a frame stream as ``float [B, 3, H, W]`` in [0, 1].

    Accepted: ``[3, H, W]``, ``[B, 3, H, W]`` or ``[H, W, 3]`` (a reader's frame); numpy or torch;
    uint8, or floats in [0, 1] (0-255 with ``value_range=255``).
    """
    tensor = _to_tensor(frame, name)
    if tensor.dim() == 3 and tensor.shape[-1] == 3 and tensor.shape[0] != 3:
        tensor = tensor.permute(2, 0, 1)
    if tensor.dim() == 3:
        tensor = tensor[None]
    if tensor.dim() != 4 or tensor.shape[1] != 3:
        raise ShapeError(f"{name} must have shape [3, H, W], [B, 3, H, W] or [H, W, 3], got {list(tensor.shape)}")
    return _scaled(tensor, name, value_range)
