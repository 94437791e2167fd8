"""OpenCV DIS and Farneback optical flow behind the :class:`FlowModel` interface.

Both run on the CPU on grey uint8 images (the frames are converted with Rec. 601 weights and moved
back to the input's device). Registered names:

* ``"dis"`` (option ``preset="ultrafast" | "fast" | "medium"``, default medium) and the shortcuts
  ``"dis-ultrafast"``, ``"dis-fast"``, ``"dis-medium"``. Kroeger et al., "Fast Optical Flow using
  Dense Inverse Search", ECCV 2016. Preset parameters are OpenCV's (``DISOpticalFlow_create``).
* ``"farneback"``: Farneback, "Two-Frame Motion Estimation Based on Polynomial Expansion", SCIA 2003.
  Defaults are the widely used OpenCV-tutorial arguments ``(pyr_scale 0.5, levels 3, winsize 15,
  iterations 3, poly_n 5, poly_sigma 1.2, flags 0)``; note that ``cv2.FarnebackOpticalFlow_create()``
  has different defaults (5 levels, winsize 13, 10 iterations, poly_sigma 1.1).
"""
from __future__ import annotations

import numpy as np
import torch

from motion4d.checks import check_choice, check_positive
from motion4d.errors import InvalidArgumentError

from ..registry import register
from .base import FlowModel, FlowOutput
from .cards import DIS_CARD, DIS_PRESET_CARDS, FARNEBACK_CARD

DIS_PRESETS = ("ultrafast", "fast", "medium")
_GREY = (0.299, 0.587, 0.114)


def frames_to_grey_uint8(frames: torch.Tensor) -> np.ndarray:
    """``[B, T, 3, H, W]`` float in [0, 1] -> ``uint8 [B, T, H, W]`` grey on the CPU."""
    weights = torch.tensor(_GREY, device=frames.device, dtype=frames.dtype)
    grey = torch.einsum("btchw,c->bthw", frames, weights)
    return (grey.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


class OpenCVFlow(FlowModel):
    """Shared driver: subclasses implement :meth:`pair_flow` on two grey uint8 images."""

    frames_per_window = 2
    min_frames = 2
    trainable = False

    def __init__(self, backward: bool = False) -> None:
        super().__init__()
        self.backward = backward

    def pair_flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Flow ``[2, H, W]`` float32 from grey ``source [H, W]`` to ``target [H, W]`` (uint8)."""
        raise NotImplementedError  # implemented by every subclass

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> FlowOutput:
        b, t, h, w = self.validate_frames(frames)
        grey = frames_to_grey_uint8(frames)
        fwd = np.empty((b, t - 1, 2, h, w), np.float32)
        bwd = np.empty_like(fwd) if self.backward else None
        for i in range(b):
            for j in range(t - 1):
                fwd[i, j] = self.pair_flow(grey[i, j], grey[i, j + 1])
                if bwd is not None:
                    bwd[i, j] = self.pair_flow(grey[i, j + 1], grey[i, j])
        to_device = lambda x: torch.from_numpy(x).to(frames.device)  # noqa: E731
        return FlowOutput(forward=to_device(fwd), backward=None if bwd is None else to_device(bwd))


DIS_MIN_SIDE = 32
"""Frames are padded to at least this many pixels per side for DIS (see :meth:`DISFlow.pair_flow`)."""


class DISFlow(OpenCVFlow):
    """OpenCV Dense Inverse Search with a preset (``ultrafast`` | ``fast`` | ``medium``)."""

    def __init__(self, preset: str = "medium", backward: bool = False) -> None:
        super().__init__(backward)
        import cv2

        check_choice(preset, "preset", DIS_PRESETS)
        self.preset = preset
        code = {
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
        }[preset]
        self._dis = cv2.DISOpticalFlow_create(code)

    def pair_flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        import cv2

        h, w = source.shape
        pad_h, pad_w = max(0, DIS_MIN_SIDE - h), max(0, DIS_MIN_SIDE - w)
        if pad_h or pad_w:
            # OpenCV's DIS crashes the process (a segmentation fault, not an exception) on thin frames,
            # e.g. 24x100 with the fast presets or 12x64 with medium: replicate the borders out to
            # DIS_MIN_SIDE and crop the flow back.
            pad = (0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
            source, target = cv2.copyMakeBorder(source, *pad), cv2.copyMakeBorder(target, *pad)
        flow = self._dis.calc(source, target, None)[:h, :w]
        return np.ascontiguousarray(flow.transpose(2, 0, 1))

    def extra_repr(self) -> str:
        return f"preset={self.preset!r}, backward={self.backward}"


class FarnebackFlow(OpenCVFlow):
    """OpenCV Farneback polynomial-expansion flow (defaults: the OpenCV tutorial arguments)."""

    def __init__(
        self,
        pyr_scale: float = 0.5,
        levels: int = 3,
        winsize: int = 15,
        iterations: int = 3,
        poly_n: int = 5,
        poly_sigma: float = 1.2,
        gaussian_window: bool = False,
        backward: bool = False,
    ) -> None:
        super().__init__(backward)
        if not 0 < pyr_scale < 1:
            raise InvalidArgumentError(f"pyr_scale must be in (0, 1), got {pyr_scale}")
        for name, value in (("levels", levels), ("winsize", winsize), ("iterations", iterations), ("poly_sigma", poly_sigma)):
            check_positive(value, name)
        check_choice(poly_n, "poly_n", (5, 7))
        self.params = dict(
            pyr_scale=pyr_scale, levels=levels, winsize=winsize, iterations=iterations, poly_n=poly_n, poly_sigma=poly_sigma
        )
        self.gaussian_window = gaussian_window

    def pair_flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        import cv2

        flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if self.gaussian_window else 0
        flow = cv2.calcOpticalFlowFarneback(source, target, None, flags=flags, **self.params)
        return np.ascontiguousarray(flow.transpose(2, 0, 1))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items())


def _no_weights(name: str, weights) -> None:
    if weights is not None:
        raise InvalidArgumentError(f"{name} is a classical method and takes no weights")


@register("dis", "OpenCV DIS optical flow (preset ultrafast|fast|medium, default medium)", card=DIS_CARD)
def build_dis(weights=None, preset: str = "medium", backward: bool = False) -> DISFlow:
    """OpenCV DIS optical flow (preset ultrafast|fast|medium, default medium)."""
    _no_weights("dis", weights)
    return DISFlow(preset=preset, backward=backward)


def _preset_builder(preset: str):
    def build(weights=None, backward: bool = False) -> DISFlow:
        _no_weights(f"dis-{preset}", weights)
        return DISFlow(preset=preset, backward=backward)

    return build


for _preset in DIS_PRESETS:
    register(f"dis-{_preset}", f"OpenCV DIS optical flow, {_preset} preset",
             card=DIS_PRESET_CARDS[_preset])(_preset_builder(_preset))


@register("farneback", "OpenCV Farneback optical flow (tutorial parameters)", card=FARNEBACK_CARD)
def build_farneback(weights=None, **options) -> FarnebackFlow:
    """OpenCV Farneback optical flow; options are those of :class:`FarnebackFlow`."""
    _no_weights("farneback", weights)
    return FarnebackFlow(**options)
