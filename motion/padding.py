"""Padding images to a multiple of a network's stride, and cropping results back.

RAFT-family networks need ``H`` and ``W`` divisible by 8; :class:`InputPadder` replicate-pads
``[..., H, W]`` tensors and crops the outputs back::

    padder = InputPadder(frames.shape, mode="kitti")      # frames [B, T, 3, H, W]
    flow = padder.unpad(model(padder.pad(frames)).forward)

:data:`PAD_MODES` names the two conventions of the official evaluation code (see :func:`compute_pads`).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from motion4d.checks import check_choice, check_int
from motion4d.errors import InvalidArgumentError, ShapeError

PAD_MODES = ("sintel", "kitti")


def compute_pads(height: int, width: int, multiple: int = 8, mode: str = "sintel") -> tuple[int, int, int, int]:
    """Pads ``(left, right, top, bottom)`` that make ``height x width`` divisible by ``multiple``.

    ``"sintel"`` splits the padding over both sides of each axis (the extra pixel on the right /
    bottom); ``"kitti"`` splits it over left / right and puts all vertical padding at the bottom,
    as in the official RAFT-family evaluation code.
    """
    check_choice(mode, "mode", PAD_MODES)
    check_int(multiple, "multiple", minimum=1)
    if height < 1 or width < 1:
        raise ShapeError(f"cannot pad an empty image of size {height}x{width} (HxW)")
    pad_h = -height % multiple
    pad_w = -width % multiple
    if mode == "sintel":
        return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2
    return pad_w // 2, pad_w - pad_w // 2, 0, pad_h


def _replicate_pad(x: torch.Tensor | np.ndarray, pads: tuple[int, int, int, int]) -> torch.Tensor | np.ndarray:
    left, right, top, bottom = pads
    if isinstance(x, np.ndarray):
        return np.pad(x, [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)], mode="edge")
    if not any(pads):
        return x
    height, width = x.shape[-2:]
    if x.is_floating_point():
        flat = x.reshape(-1, height, width)
        return F.pad(flat, pads, mode="replicate").reshape(*x.shape[:-2], height + top + bottom, width + left + right)
    # Integer and bool tensors: replicate by gathering clamped row / column indices.
    rows = torch.arange(-top, height + bottom, device=x.device).clamp_(0, height - 1)
    cols = torch.arange(-left, width + right, device=x.device).clamp_(0, width - 1)
    return x.index_select(-2, rows).index_select(-1, cols)


def _check_hw(x: Any, name: str, height: int, width: int) -> None:
    if not isinstance(x, (torch.Tensor, np.ndarray)) or x.ndim < 2:
        shape = list(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ShapeError(f"{name} must be a tensor [..., H, W], got {shape}")
    if tuple(x.shape[-2:]) != (height, width):
        raise ShapeError(f"{name} must have shape [..., {height}, {width}], got {list(x.shape)}")


class InputPadder:
    """Replicate-pads tensors ``[..., H, W]`` to a multiple of ``multiple`` and crops results back.

    Example::

        padder = InputPadder(frames.shape, mode="kitti")      # frames [B, T, 3, H, W]
        frames = padder.pad(frames)
        flow = padder.unpad(model(frames).forward)             # [B, T-1, 2, H, W]

    ``mode`` follows :func:`compute_pads`. ``pads`` is ``(left, right, top, bottom)``, the order
    ``torch.nn.functional.pad`` uses.
    """

    def __init__(self, shape: Sequence[int], mode: str = "sintel", multiple: int = 8):
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2:
            raise ShapeError(f"shape must end with (H, W), got {list(shape)}")
        self.mode = mode
        self.multiple = multiple
        self.height, self.width = shape[-2:]
        self.pads = compute_pads(self.height, self.width, multiple, mode)

    @property
    def padded_shape(self) -> tuple[int, int]:
        """``(H, W)`` after padding."""
        left, right, top, bottom = self.pads
        return self.height + top + bottom, self.width + left + right

    def pad(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Pad each ``[..., H, W]`` tensor; returns one tensor for one input, else a tuple."""
        if not tensors:
            raise InvalidArgumentError("pad needs at least one tensor")
        out = []
        for i, x in enumerate(tensors):
            _check_hw(x, f"tensors[{i}]", self.height, self.width)
            out.append(_replicate_pad(x, self.pads))
        return out[0] if len(out) == 1 else tuple(out)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """Crop a padded ``[..., H', W']`` tensor back to ``[..., H, W]``."""
        _check_hw(x, "x", *self.padded_shape)
        return _crop(x, self.pads)

    def __repr__(self) -> str:
        height, width = self.padded_shape
        return f"InputPadder({self.height}x{self.width} -> {height}x{width}, mode={self.mode!r}, pads={self.pads})"


def _crop(x: torch.Tensor | np.ndarray, pads: tuple[int, int, int, int]) -> torch.Tensor | np.ndarray:
    left, right, top, bottom = pads
    height, width = x.shape[-2:]
    return x[..., top:height - bottom, left:width - right]


def pad_to_multiple(
    x: torch.Tensor | np.ndarray, multiple: int = 8, mode: str = "sintel"
) -> tuple[torch.Tensor | np.ndarray, tuple[int, int, int, int]]:
    """Replicate-pad ``x [..., H, W]`` (tensor or array) so H and W are multiples of ``multiple``.

    Returns:
        ``(padded [..., H', W'], pads)`` with ``pads = (left, right, top, bottom)`` for :func:`unpad`.
    """
    if not isinstance(x, (torch.Tensor, np.ndarray)) or x.ndim < 2:
        raise ShapeError(f"x must be a tensor or array [..., H, W], got {getattr(x, 'shape', type(x).__name__)}")
    pads = compute_pads(x.shape[-2], x.shape[-1], multiple, mode)
    return _replicate_pad(x, pads), pads


def unpad(x: torch.Tensor | np.ndarray, pads: Sequence[int]) -> torch.Tensor | np.ndarray:
    """Undo :func:`pad_to_multiple`: crop ``pads = (left, right, top, bottom)`` off ``x [..., H', W']``."""
    pads = tuple(int(p) for p in pads)
    if len(pads) != 4 or min(pads) < 0:
        raise InvalidArgumentError(f"pads must be four non-negative ints (left, right, top, bottom), got {pads}")
    if not isinstance(x, (torch.Tensor, np.ndarray)) or x.ndim < 2:
        raise ShapeError(f"x must be a tensor or array [..., H, W], got {getattr(x, 'shape', type(x).__name__)}")
    left, right, top, bottom = pads
    if x.shape[-2] <= top + bottom or x.shape[-1] <= left + right:
        raise ShapeError(f"x of shape {list(x.shape)} is too small to remove pads {pads}")
    return _crop(x, pads)


__all__ = [
    "PAD_MODES",
    "InputPadder",
    "compute_pads",
    "pad_to_multiple",
    "unpad",
]
