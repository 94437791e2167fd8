"""OpenCV DIS and Farneback optical flow behind the :class:`FlowModel` interface.

Both run on the CPU on grey uint8 images through the torch-free engines of
:mod:`motion.models.opencv_flow` (frames rounded to uint8 RGB, converted to grey with OpenCV's Rec. 601
weights; flows moved back to the input's device). Registered names:

* ``"dis"`` (option ``preset="ultrafast" | "fast" | "medium"``, default medium) and the shortcuts
  ``"dis-ultrafast"``, ``"dis-fast"``, ``"dis-medium"``. Kroeger et al., "Fast Optical Flow using
  Dense Inverse Search", ECCV 2016. Preset parameters are OpenCV's (``DISOpticalFlow_create``);
  ``finest_scale=0`` computes down to full resolution (the presets stop at level 1-2).
* ``"farneback"``: Farneback, "Two-Frame Motion Estimation Based on Polynomial Expansion", SCIA 2003.
  Defaults are the widely used OpenCV-tutorial arguments ``(pyr_scale 0.5, levels 3, winsize 15,
  iterations 3, poly_n 5, poly_sigma 1.2, flags 0)``; note that ``cv2.FarnebackOpticalFlow_create()``
  has different defaults (5 levels, winsize 13, 10 iterations, poly_sigma 1.1).
"""
from __future__ import annotations

import numpy as np
import torch

from motion4d.errors import InvalidArgumentError

from ..registry import register
from .base import FlowModel, FlowOutput
from .cards import DIS_CARD, DIS_PRESET_CARDS, FARNEBACK_CARD
from .opencv_flow import DIS_PRESETS, DISEngine, FarnebackEngine, OpenCVEngine, grey_image


def frames_to_grey_uint8(frames: torch.Tensor) -> np.ndarray:
    """``[B, T, 3, H, W]`` float in [0, 1] -> ``uint8 [B, T, H, W]`` grey on the CPU.

    The frames are rounded to uint8 RGB first and converted by :func:`~motion.models.opencv_flow.grey_image`,
    so uint8 frames give the same grey image whether they come as they are (the video pipeline) or
    as floats ``k / 255`` (a model call).
    """
    rgb = (frames.detach().clamp(0, 1) * 255).round_().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
    b, t, h, w = rgb.shape[:4]
    grey = np.empty((b, t, h, w), np.uint8)
    for i in range(b):
        for j in range(t):
            grey[i, j] = grey_image(rgb[i, j])
    return grey


class OpenCVFlow(FlowModel):
    """Shared driver of an :class:`~motion.models.opencv_flow.OpenCVEngine` behind the FlowModel interface."""

    frames_per_window = 2
    min_frames = 2
    trainable = False

    def __init__(self, engine: OpenCVEngine, backward: bool = False) -> None:
        super().__init__()
        self.engine = engine
        self.backward = backward

    def pair_flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Flow ``[2, H, W]`` float32 from grey ``source [H, W]`` to ``target [H, W]`` (uint8)."""
        return np.ascontiguousarray(self.engine.flow(source, target).transpose(2, 0, 1))

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


class DISFlow(OpenCVFlow):
    """OpenCV Dense Inverse Search with a preset (``ultrafast`` | ``fast`` | ``medium``)."""

    def __init__(self, preset: str = "medium", backward: bool = False, finest_scale: int | None = None) -> None:
        super().__init__(DISEngine(preset, finest_scale), backward)
        self.preset = preset
        self.finest_scale = finest_scale

    def extra_repr(self) -> str:
        fine = "" if self.finest_scale is None else f", finest_scale={self.finest_scale}"
        return f"preset={self.preset!r}{fine}, backward={self.backward}"


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
        engine = FarnebackEngine(pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, gaussian_window)
        super().__init__(engine, backward)
        self.params = engine.params
        self.gaussian_window = gaussian_window

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items())


def _no_weights(name: str, weights) -> None:
    if weights is not None:
        raise InvalidArgumentError(f"{name} is a classical method and takes no weights")


@register("dis", "OpenCV DIS optical flow (preset ultrafast|fast|medium, default medium)", card=DIS_CARD)
def build_dis(weights=None, preset: str = "medium", backward: bool = False, finest_scale: int | None = None) -> DISFlow:
    """OpenCV DIS optical flow (preset ultrafast|fast|medium, default medium; ``finest_scale=0``: down to
    full resolution)."""
    _no_weights("dis", weights)
    return DISFlow(preset=preset, backward=backward, finest_scale=finest_scale)


def _preset_builder(preset: str):
    def build(weights=None, backward: bool = False, finest_scale: int | None = None) -> DISFlow:
        _no_weights(f"dis-{preset}", weights)
        return DISFlow(preset=preset, backward=backward, finest_scale=finest_scale)

    return build


for _preset in DIS_PRESETS:
    register(f"dis-{_preset}", f"OpenCV DIS optical flow, {_preset} preset",
             card=DIS_PRESET_CARDS[_preset])(_preset_builder(_preset))


@register("farneback", "OpenCV Farneback optical flow (tutorial parameters)", card=FARNEBACK_CARD)
def build_farneback(weights=None, **options) -> FarnebackFlow:
    """OpenCV Farneback optical flow; options are those of :class:`FarnebackFlow`."""
    _no_weights("farneback", weights)
    return FarnebackFlow(**options)
