"""OpenCV DIS and Farneback on grey uint8 images: the engines of the classical models, without torch.

The classical :class:`~motion.models.base.FlowModel` wrappers (:mod:`motion.models.classical`) and the
video pipeline (:func:`motion.estimate_flow`) share these engines, so a video runs on the decoder's
uint8 frames (RGB -> grey with :func:`grey_image`, then OpenCV) without a round trip through float
tensors, and a model called on float frames gives the same flow bit for bit.

* :func:`grey_image`: ``uint8 [H, W, 3]`` RGB -> ``uint8 [H, W]``, OpenCV's Rec. 601 conversion
  (``0.299 R + 0.587 G + 0.114 B`` in fixed point, rounded).
* :class:`DISEngine`, :class:`FarnebackEngine`: ``engine.flow(source, target)`` -> ``float32 [H, W, 2]``
  (OpenCV's layout, channels last). An engine object keeps OpenCV state: give each thread its own
  (:meth:`OpenCVEngine.copy`).
* :func:`opencv_threads`: OpenCV's own thread count for a block (one per worker when pairs run in
  parallel).
* :func:`opencv_engine`: the engine a registered classical name (``"dis"``, ``"dis-fast"``, ...,
  ``"farneback"``) with its model options stands for, or None for every other model.

This module imports neither torch nor the model registry (a video run with a classical method
stays at the memory of OpenCV and PyAV).
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from motion4d.checks import check_choice, check_int, check_positive
from motion4d.errors import InvalidArgumentError, ShapeError

DIS_PRESETS = ("ultrafast", "fast", "medium")
_DIS_CODES = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
DIS_MIN_SIDE = 32
"""Frames are padded to at least this many pixels per side for DIS (see :meth:`DISEngine.flow`)."""


def grey_image(rgb: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` RGB -> ``uint8 [H, W]`` grey (OpenCV's ``COLOR_RGB2GRAY``, Rec. 601 weights)."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        what = f"{rgb.dtype} {list(rgb.shape)}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ShapeError(f"image must be uint8 [H, W, 3] RGB, got {what}")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """Run the block with OpenCV's thread pool at ``count`` threads (``cv2.setNumThreads`` is global), then
    restore the previous setting.

    Pairs spread over our own worker threads must each run single-threaded inside OpenCV: its pool
    serves one parallel region at a time, so two workers calling DIS with the default pool wait on
    each other and a second worker adds nothing (2 workers on 2 cores: 1.06x one worker with the
    default pool, 1.98x with one thread each; bench/pipeline.py).
    """
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


class OpenCVEngine:
    """One OpenCV flow method with fixed parameters; subclasses implement :meth:`flow`."""

    name = "opencv"

    def flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Flow ``float32 [H, W, 2]`` (u right, v down) from grey ``source [H, W]`` to ``target [H, W]`` (uint8)."""
        raise NotImplementedError  # implemented by every subclass

    def copy(self) -> "OpenCVEngine":
        """A fresh engine with the same parameters (OpenCV objects are not shared between threads)."""
        raise NotImplementedError  # implemented by every subclass

    def describe(self) -> dict[str, Any]:
        """The parameters, for configurations and messages."""
        raise NotImplementedError  # implemented by every subclass


class DISEngine(OpenCVEngine):
    """OpenCV Dense Inverse Search with a preset (``ultrafast`` | ``fast`` | ``medium``).

    ``finest_scale`` overrides the preset's finest pyramid level (0 = full resolution; the presets
    stop at level 1 or 2 and upsample, so their flow is smooth below 2-4 px).
    """

    name = "dis"

    def __init__(self, preset: str = "medium", finest_scale: int | None = None) -> None:
        check_choice(preset, "preset", DIS_PRESETS)
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(_DIS_CODES[preset])
        if finest_scale is not None:
            self._dis.setFinestScale(check_int(finest_scale, "finest_scale", minimum=0))
        self.finest_scale = finest_scale
        self._finest_scale = self._dis.getFinestScale()

    def flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        # On images too small for the preset's pyramid, OpenCV lowers the object's finest scale during
        # calc() and keeps it, so a second call on the same pair differs from the first. Restoring the
        # preset's scale makes every call compute what a fresh object would: the flow of a pair does not
        # depend on which pairs the object saw before (worker threads, resumed runs).
        self._dis.setFinestScale(self._finest_scale)
        h, w = source.shape
        pad_h, pad_w = max(0, DIS_MIN_SIDE - h), max(0, DIS_MIN_SIDE - w)
        if pad_h or pad_w:
            # OpenCV's DIS crashes the process (a segmentation fault, not an exception) on thin frames,
            # e.g. 24x100 with the fast presets or 12x64 with medium: replicate the borders out to
            # DIS_MIN_SIDE and crop the flow back.
            pad = (0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
            source, target = cv2.copyMakeBorder(source, *pad), cv2.copyMakeBorder(target, *pad)
            return np.ascontiguousarray(self._dis.calc(source, target, None)[:h, :w])
        return self._dis.calc(source, target, None)

    def copy(self) -> "DISEngine":
        return DISEngine(self.preset, self.finest_scale)

    def describe(self) -> dict[str, Any]:
        return {"preset": self.preset, **({} if self.finest_scale is None else {"finest_scale": self.finest_scale})}


class FarnebackEngine(OpenCVEngine):
    """OpenCV Farneback polynomial-expansion flow (defaults: the OpenCV tutorial arguments)."""

    name = "farneback"

    def __init__(
        self,
        pyr_scale: float = 0.5,
        levels: int = 3,
        winsize: int = 15,
        iterations: int = 3,
        poly_n: int = 5,
        poly_sigma: float = 1.2,
        gaussian_window: bool = False,
    ) -> None:
        if not 0 < pyr_scale < 1:
            raise InvalidArgumentError(f"pyr_scale must be in (0, 1), got {pyr_scale}")
        for name, value in (("levels", levels), ("winsize", winsize), ("iterations", iterations), ("poly_sigma", poly_sigma)):
            check_positive(value, name)
        check_choice(poly_n, "poly_n", (5, 7))
        self.params = dict(
            pyr_scale=pyr_scale, levels=levels, winsize=winsize, iterations=iterations, poly_n=poly_n, poly_sigma=poly_sigma
        )
        self.gaussian_window = gaussian_window

    def flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if self.gaussian_window else 0
        return cv2.calcOpticalFlowFarneback(source, target, None, flags=flags, **self.params)

    def copy(self) -> "FarnebackEngine":
        return FarnebackEngine(gaussian_window=self.gaussian_window, **self.params)

    def describe(self) -> dict[str, Any]:
        return {**self.params, "gaussian_window": self.gaussian_window}


def _dis_builder(preset: str | None) -> Callable[..., OpenCVEngine]:
    def build(**options: Any) -> OpenCVEngine:
        if preset is not None and "preset" in options:
            raise InvalidArgumentError(f"dis-{preset} has its preset; use model 'dis' with preset=... instead")
        return DISEngine(**({"preset": preset} if preset else {}), **options)

    return build


#: registered classical names -> engine builders (their options as in :mod:`motion.models.classical`)
ENGINE_BUILDERS: dict[str, Callable[..., OpenCVEngine]] = {
    "dis": _dis_builder(None),
    **{f"dis-{preset}": _dis_builder(preset) for preset in DIS_PRESETS},
    "farneback": FarnebackEngine,
}


def opencv_engine(name: Any, options: dict[str, Any] | None = None) -> OpenCVEngine | None:
    """The engine of a classical model given by name, or None when ``name`` is not one of :data:`ENGINE_BUILDERS`
    (or its options are only understood by the model wrapper, e.g. ``backward``).

    Raises:
        InvalidArgumentError: weights for a classical method, or an invalid option value.
    """
    if not isinstance(name, str) or name not in ENGINE_BUILDERS:
        return None
    options = dict(options or {})
    if options.pop("weights", None) is not None:
        raise InvalidArgumentError(f"{name} is a classical method and takes no weights")
    engine_class = FarnebackEngine if name == "farneback" else DISEngine
    if not set(options) <= set(inspect.signature(engine_class).parameters):
        return None  # an option only the model wrapper knows (e.g. backward): it reports or uses it
    return ENGINE_BUILDERS[name](**options)


__all__ = [
    "DIS_PRESETS",
    "DISEngine",
    "ENGINE_BUILDERS",
    "FarnebackEngine",
    "OpenCVEngine",
    "grey_image",
    "opencv_engine",
]
