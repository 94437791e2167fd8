"""Where GFlow's depth prior comes from: a small ``DepthProvider`` interface and its implementations.

A provider turns a video into one depth map per frame (:class:`splats.depth_prior.DepthEstimate`)::

    class DepthProvider(Protocol):
        name: str
        def estimate(self, frames, *, forward=None, backward=None, K=None) -> DepthEstimate: ...

``frames`` is ``uint8 [T, H, W, 3]``; ``forward`` / ``backward`` the video's flows ``[T-1, 2, H, W]``
and ``K [3, 3]`` the intrinsics GFlow uses (a provider may ignore them).

* :class:`TwoViewDepth` (``"two-view"``, the default): training-free, from the video's own parallax
  (:mod:`splats.depth_prior` on a full-resolution DIS flow of the frames); falls back to a constant
  plane, with a notice, when the camera does not translate.
* :class:`ConstantDepth` (``"constant"``): depth 1 everywhere (a baseline, and what GFlow gets
  when nothing better exists).
* :class:`FolderDepth`: precomputed maps, one ``.npy`` / 16-bit ``.png`` per frame.
* :class:`DepthAnything` (``"depth-anything[:MODEL]"``): a monocular depth network, Depth Anything
  V2 through Hugging Face ``transformers`` (optional extra ``motion4d[depth]``), loaded from a local
  folder or a hub id on the user's machine (``MODEL`` defaults to
  ``depth-anything/Depth-Anything-V2-Small-hf``). Relative models predict an affine-invariant
  inverse depth: where the two-view prior has triangulated pixels, each frame's prediction is fitted
  to their inverse depth (least squares for scale and shift); otherwise the video's 2nd-98th
  percentile range of the prediction is mapped to inverse depths 0.1-1 (a 10:1 depth range).
  Metric models (``depth_estimation_type == "metric"``) are used as they are.

:func:`depth_provider` turns a name or a path into a provider.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from motion4d.checks import check_int, check_shape
from motion4d.errors import InputFileError, InvalidArgumentError, MissingDependencyError, MissingFileError, ShapeError

from .depth_files import list_depth_files, read_depth_file, resize_map
from .depth_prior import DepthEstimate, TwoViewDepthConfig, two_view_depth

DEFAULT_DEPTH_ANYTHING = "depth-anything/Depth-Anything-V2-Small-hf"
PRIOR_FLOW_OPTIONS = {"finest_scale": 0}
"""DIS options of the two-view prior's own flow (:class:`TwoViewDepth`)."""
PROVIDER_NAMES = ("two-view", "constant", "depth-anything")


@runtime_checkable
class DepthProvider(Protocol):
    """Anything with a ``name`` and ``estimate(frames, *, forward, backward, K) -> DepthEstimate``."""

    name: str

    def estimate(self, frames: np.ndarray, *, forward: Any = None, backward: Any = None, K: Any = None
                 ) -> DepthEstimate: ...


class TwoViewDepth:
    """The training-free prior of :func:`splats.depth_prior.two_view_depth` (needs ``K``).

    Depth comes from sub-pixel parallax, so the prior estimates its own flow by default: ``flow_model``
    with ``flow_options`` — DIS computed down to full resolution (``finest_scale=0``). OpenCV's DIS
    presets, the video's default flow, stop at half resolution and upsample; their smoother flow gave
    the prior 1.6x the median flow error on still pixels and AbsRel 0.207 against 0.170 (the tune
    scene of ``bench/gflow_quality.py``). ``flow_model=None`` uses the ``forward`` / ``backward`` flows
    passed to :meth:`estimate` instead (e.g. a learned model's).
    """

    name = "two-view"

    def __init__(self, config: TwoViewDepthConfig | dict[str, Any] | None = None, *, flow_model: str | None = "dis",
                 flow_options: dict[str, Any] | None = None) -> None:
        if isinstance(config, dict):
            config = TwoViewDepthConfig(**config)
        self.config = (config or TwoViewDepthConfig()).validate()
        self.flow_model = flow_model
        self.flow_options = dict(PRIOR_FLOW_OPTIONS if flow_options is None and flow_model == "dis" else
                                 flow_options or {})

    def flows(self, frames: np.ndarray, forward: Any = None, backward: Any = None) -> tuple[Any, Any]:
        """The flows the prior triangulates: its own (``flow_model``) or the ones given."""
        if self.flow_model is None:
            if forward is None:
                raise InvalidArgumentError("the two-view depth prior with flow_model=None needs the video's forward "
                                           "flow")
            return forward, backward
        from motion.estimate import estimate_flow

        result = estimate_flow(np.asarray(frames), model=self.flow_model, model_options=self.flow_options, device="cpu",
                               backward=True, keep_in_memory=True, progress=False)
        return np.asarray(result.forward), np.asarray(result.backward)

    def estimate(self, frames: np.ndarray, *, forward: Any = None, backward: Any = None, K: Any = None
                 ) -> DepthEstimate:
        if K is None:
            raise InvalidArgumentError("the two-view depth prior needs the intrinsics K")
        check_shape(frames, "frames", ("T", "H", "W", 3))
        forward, backward = self.flows(frames, forward, backward)
        estimate = two_view_depth(frames, forward, backward, K, self.config)
        estimate.info["flow"] = {"model": self.flow_model or "given", **self.flow_options}
        return estimate


class ConstantDepth:
    """A fronto-parallel plane at depth ``value`` in every frame."""

    name = "constant"

    def __init__(self, value: float = 1.0) -> None:
        if not value > 0:
            raise InvalidArgumentError(f"constant depth must be > 0, got {value}")
        self.value = float(value)

    def estimate(self, frames: np.ndarray, *, forward: Any = None, backward: Any = None, K: Any = None
                 ) -> DepthEstimate:
        dims = check_shape(frames, "frames", ("T", "H", "W", 3))
        return DepthEstimate(np.full((dims["T"], dims["H"], dims["W"]), self.value, np.float32), "constant")


class FolderDepth:
    """Precomputed depth: a folder of ``.npy`` (float) or 16-bit ``.png`` maps, one per frame (natural order).

    By default the folder must hold exactly one map per frame. ``select=(start, stride)`` instead
    takes maps ``start, start + stride, ...`` of a folder covering the whole video (for a clip
    selected with the same ``start`` / ``stride``).
    """

    name = "folder"

    def __init__(self, folder: str | os.PathLike, select: tuple[int, int] | None = None) -> None:
        self.folder = Path(folder)
        self.files = list_depth_files(self.folder)
        self.select = None if select is None else (check_int(select[0], "start", minimum=0),
                                                   check_int(select[1], "stride", minimum=1))

    def estimate(self, frames: np.ndarray, *, forward: Any = None, backward: Any = None, K: Any = None
                 ) -> DepthEstimate:
        dims = check_shape(frames, "frames", ("T", "H", "W", 3))
        if self.select is None:
            files = self.files
            if len(files) != dims["T"]:
                raise ShapeError(f"depth folder {self.folder} holds {len(files)} maps but the video has {dims['T']} "
                                 "frames")
        else:
            start, stride = self.select
            files = self.files[start::stride][: dims["T"]]
            if len(files) != dims["T"]:
                raise ShapeError(f"depth folder {self.folder} holds {len(self.files)} maps: too few for {dims['T']} "
                                 f"frames from frame {start} with stride {stride}")
        maps = [resize_map(read_depth_file(f), dims["H"], dims["W"], f"depth file {f}") for f in files]
        return DepthEstimate(np.stack(maps).astype(np.float32), "folder", info={"folder": str(self.folder)})


class DepthAnything:
    """Depth Anything V2 (or any ``transformers`` depth-estimation model) as a depth prior.

    Args:
        model: a local folder holding ``config.json``, the weights and ``preprocessor_config.json``, or
            a hub id (downloaded by ``transformers`` into its cache on first use, unless
            ``local_files_only``).
        device: ``"cpu"``, ``"cuda"``, ...
        batch_size: frames per forward pass.
        align: fit relative predictions to the two-view prior's triangulated pixels when there are any.
    """

    name = "depth-anything"

    def __init__(self, model: str | os.PathLike = DEFAULT_DEPTH_ANYTHING, device: str = "cpu", batch_size: int = 4,
                 local_files_only: bool = False, align: bool = True) -> None:
        try:
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        except ImportError as exc:
            raise MissingDependencyError("the depth-anything provider needs Hugging Face transformers: "
                                         f"pip install 'motion4d[depth]' ({exc})") from exc
        self.model_name = str(model)
        path = Path(self.model_name).expanduser()
        if path.exists():
            self.model_name = str(path)
        elif path.is_absolute() or self.model_name.startswith((".", "~")) or self.model_name.count("/") != 1:
            raise MissingFileError(f"depth-anything model folder {self.model_name} does not exist (a hub id looks "
                                   f"like {DEFAULT_DEPTH_ANYTHING})")
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.model_name, local_files_only=local_files_only)
            self.model = AutoModelForDepthEstimation.from_pretrained(self.model_name, local_files_only=local_files_only)
        except OSError as exc:
            raise InputFileError(f"cannot load the depth model {self.model_name!r} with transformers: {exc}") from exc
        self.model.eval().to(device)
        self.device = device
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.metric = getattr(self.model.config, "depth_estimation_type", "relative") == "metric"
        self.align = align

    @torch.no_grad()
    def predict(self, frames: np.ndarray) -> np.ndarray:
        """The network's raw output resized to the frames: ``float32 [T, H, W]`` (relative models: inverse depth)."""
        dims = check_shape(frames, "frames", ("T", "H", "W", 3))
        out = []
        for i in range(0, dims["T"], self.batch_size):
            batch = [np.ascontiguousarray(f) for f in frames[i: i + self.batch_size]]
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
            predicted = self.model(**inputs).predicted_depth  # [B, h, w]
            resized = torch.nn.functional.interpolate(predicted[:, None].float(), size=(dims["H"], dims["W"]),
                                                      mode="bicubic", align_corners=False)[:, 0]
            out.append(resized.cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def estimate(self, frames: np.ndarray, *, forward: Any = None, backward: Any = None, K: Any = None
                 ) -> DepthEstimate:
        raw = self.predict(frames)
        info: dict[str, Any] = {"model": self.model_name, "metric": self.metric}
        if self.metric:
            return DepthEstimate(np.clip(raw, 0.0, None), self.name, info=info)
        reference = None
        if self.align and forward is not None and K is not None:
            prior = TwoViewDepth().estimate(frames, forward=forward, backward=backward, K=K)
            if prior.method == "two-view":
                reference = prior
        depth, info["alignment"] = disparity_to_depth(raw, reference)
        return DepthEstimate(depth, self.name, info=info)


def disparity_to_depth(disparity: np.ndarray, reference: DepthEstimate | None = None, min_points: int = 200
                       ) -> tuple[np.ndarray, list[Any]]:
    """Depth ``[T, H, W]`` from affine-invariant inverse depth ``[T, H, W]`` (see the module docstring).

    Returns the depth and, per frame, ``(scale, shift)`` of the fit to the reference's inverse depth
    or ``"percentiles"``.
    """
    lo, hi = np.percentile(disparity, [2, 98])
    normalized = 0.1 + 0.9 * (disparity - lo) / max(hi - lo, 1e-12)
    out = np.empty_like(disparity, dtype=np.float32)
    fits: list[Any] = []
    for t in range(len(disparity)):
        inverse = None
        if reference is not None and reference.confidence is not None:
            known = reference.confidence[t] > 0.25
            if known.sum() >= min_points:
                a = np.stack([normalized[t][known], np.ones(int(known.sum()))], 1)
                target = 1.0 / reference.depth[t][known]
                (scale, shift), *_ = np.linalg.lstsq(a, target, rcond=None)
                candidate = scale * normalized[t] + shift
                if scale > 0 and (candidate > 0).mean() > 0.95:
                    inverse = candidate
                    fits.append([float(scale), float(shift)])
        if inverse is None:
            inverse = normalized[t]
            fits.append("percentiles")
        # inverse depths at or near zero (a fit's tail) would mean points at infinity: floor them
        floor = max(0.1 * np.percentile(inverse[inverse > 0], 1) if (inverse > 0).any() else 1e-3, 1e-6)
        out[t] = 1.0 / np.maximum(inverse, floor)
    return out, fits


def depth_provider(spec: Any, device: str = "cpu") -> DepthProvider:
    """A provider from ``spec``: a provider (returned as is), a folder of maps, or a name —
    ``"two-view"``, ``"constant"``, ``"depth-anything"`` or ``"depth-anything:MODEL"`` (folder or hub id)."""
    if isinstance(spec, DepthProvider):
        return spec
    if spec is None:
        return TwoViewDepth()
    if not isinstance(spec, (str, os.PathLike)):
        raise InvalidArgumentError(f"depth provider must be a name, a folder or a DepthProvider, got {type(spec).__name__}")
    text = str(spec)
    if Path(text).exists():
        return FolderDepth(text)
    name, _, model = text.partition(":")
    if name == "two-view" and not model:
        return TwoViewDepth()
    if name == "constant" and not model:
        return ConstantDepth()
    if name == "depth-anything":
        return DepthAnything(model or DEFAULT_DEPTH_ANYTHING, device=device)
    raise MissingFileError(f"depth: {text!r} is neither an existing folder of depth maps nor a depth provider "
                           f"({', '.join(PROVIDER_NAMES)}, depth-anything:MODEL)")
