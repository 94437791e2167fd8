"""Priors for GFlow: frames, depth, optical flow and intrinsics from arrays, files, models or callables.

* frames: ``uint8 [T, H, W, 3]`` (or float in [0, 1]), or anything :func:`motion.read_frames` opens.
* depth: None (the training-free two-view prior of :mod:`splats.depth_prior`, made from the flow);
  a :class:`splats.depth_providers.DepthProvider` or its name (``"two-view"``, ``"constant"``,
  ``"depth-anything[:MODEL]"``); ``[T, H, W]`` array / tensor; a folder of ``.npy`` (float) or 16-bit
  ``.png`` files (one per frame, natural order); or a callable
  ``depth_fn(frame uint8 [H, W, 3]) -> [H, W]``. Any scale: GFlow
  learns a scale and shift against its rendered depth. Zeros mark pixels without depth (the usual
  16-bit PNG convention); NaN / inf / negative values are refused. Maps of another size with the same
  aspect ratio are resized to the frames.
* flow: None or a model name / :class:`motion.FlowModel` (run with :func:`motion.estimate_flow`,
  forward and backward); a pair ``(forward, backward)`` of ``[T-1, 2, H, W]`` (or channels-last
  ``[T-1, H, W, 2]``) arrays, ``backward`` may be None; an object with ``.forward`` / ``.backward``
  (a :class:`motion.estimate.FlowResult`); or a folder with ``forward/`` and optionally ``backward/``
  flow files (the layout :func:`motion.estimate_flow` writes).
* intrinsics: ``K [3, 3]``, ``(fx, fy, cx, cy)`` or None for a pinhole camera with a given horizontal
  field of view (GFlow's released code uses 90 degrees) and the principal point at the centre.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion4d.checks import check_finite, check_shape
from motion4d.errors import InputFileError, InvalidArgumentError, ShapeError
from motion4d.imaging import frames_to_tensor

from .depth_files import natural_key, resize_map
from .depth_prior import DepthEstimate

FLOW_EXTENSIONS = (".flo", ".png", ".npz", ".npy", ".pfm", ".flo5")


@dataclass
class Priors:
    """Checked inputs of one GFlow run (all CPU tensors).

    Attributes:
        images: ``float32 [T, 3, H, W]`` in [0, 1].
        depth: ``float32 [T, H, W]`` prior depth in scene units (median of frame 0 = 1), 0 = unknown.
        depth_unit: the prior's units per scene unit (the median of frame 0's valid depth).
        forward: ``float32 [T-1, 2, H, W]``; backward: the same (anchored at ``t + 1``) or None.
        K: ``float32 [3, 3]``.
        depth_method, depth_notice, depth_info: where the depth came from (:class:`DepthEstimate`).
    """

    images: torch.Tensor
    depth: torch.Tensor
    depth_unit: float
    forward: torch.Tensor
    backward: torch.Tensor | None
    K: torch.Tensor
    depth_method: str = "array"
    depth_notice: str | None = None
    depth_info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])


def load_frames(frames: Any) -> np.ndarray:
    """``uint8 [T, H, W, 3]`` from an array / tensor or a video / image-folder path (T >= 2)."""
    if isinstance(frames, (str, os.PathLike)):
        from motion.frames import read_frames

        frames = read_frames(frames)
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise ShapeError(f"frames must be a uint8 [T, H, W, 3] array or a video path, got {type(frames).__name__}")
    dims = check_shape(frames, "frames", ("T", "H", "W", 3))
    if np.issubdtype(frames.dtype, np.floating):
        check_finite(frames, "frames")
        if frames.min() < 0 or frames.max() > 1:
            raise InvalidArgumentError("float frames must hold values in [0, 1]")
        frames = (frames * 255 + 0.5).astype(np.uint8)
    elif frames.dtype != np.uint8:
        raise ShapeError(f"frames must be uint8 or float in [0, 1], got {frames.dtype}")
    if dims["T"] < 2:
        raise InvalidArgumentError(f"GFlow needs a video of at least 2 frames, got {dims['T']}")
    if min(dims["H"], dims["W"]) < 8:
        raise ShapeError(f"frames of {dims['W']}x{dims['H']} are too small (need at least 8x8)")
    return np.ascontiguousarray(frames)


def load_depth(depth: Any, frames: np.ndarray, forward: torch.Tensor | None = None,
               backward: torch.Tensor | None = None, K: torch.Tensor | None = None, device: str = "cpu") -> np.ndarray:
    """``float32 [T, H, W]`` depth prior for ``frames [T, H, W, 3]`` (see :func:`load_depth_estimate`)."""
    return load_depth_estimate(depth, frames, forward, backward, K, device)[0]


def load_depth_estimate(depth: Any, frames: np.ndarray, forward: torch.Tensor | None = None,
                        backward: torch.Tensor | None = None, K: torch.Tensor | None = None, device: str = "cpu"
                        ) -> tuple[np.ndarray, DepthEstimate]:
    """``float32 [T, H, W]`` depth prior for ``frames [T, H, W, 3]`` and the estimate it came from.

    ``depth`` is None (the two-view prior), a :class:`~splats.depth_providers.DepthProvider` or its
    name, a :class:`~splats.depth_prior.DepthEstimate` (what a provider returned), a folder, a callable
    or an array (see the module docstring); providers get the flows and K.
    """
    from .depth_providers import DepthProvider, depth_provider

    t, h, w = frames.shape[:3]
    estimate = None
    if depth is None or isinstance(depth, (str, os.PathLike, DepthProvider)):
        provider = depth_provider(depth, device=device)
        estimate = provider.estimate(frames, forward=forward, backward=backward, K=K)
        data = np.asarray(estimate.depth, np.float32)
        if data.shape != (t, h, w):
            raise ShapeError(f"depth provider {provider.name!r} returned shape {list(data.shape)}; expected "
                             f"{[t, h, w]}")
    elif isinstance(depth, DepthEstimate):
        estimate = depth
        data = np.asarray(depth.depth, np.float32)
        if data.shape != (t, h, w):
            raise ShapeError(f"depth estimate ({depth.method}) has shape {list(data.shape)}; expected {[t, h, w]}")
    elif callable(depth) and not isinstance(depth, (np.ndarray, torch.Tensor)):
        maps = []
        for i in range(t):
            d = depth(frames[i])
            d = d.detach().cpu().numpy() if isinstance(d, torch.Tensor) else np.asarray(d)
            d = np.squeeze(d)
            if d.ndim != 2:
                raise ShapeError(f"depth callable returned shape {list(d.shape)} for frame {i}; expected [H, W]")
            maps.append(resize_map(d.astype(np.float32), h, w, f"depth of frame {i}"))
        data = np.stack(maps)
    else:
        data = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
        if data.ndim == 4 and data.shape[1] == 1:
            data = data[:, 0]
        if data.ndim != 3:
            raise ShapeError(f"depth must have shape [T, H, W], got {list(data.shape)}")
        if data.shape[0] != t:
            raise ShapeError(f"depth holds {data.shape[0]} maps but the video has {t} frames")
        data = np.stack([resize_map(d.astype(np.float32), h, w, f"depth map {i}") for i, d in enumerate(data)])
    if estimate is None:
        estimate = DepthEstimate(data, "array" if not callable(depth) else "callable")
    check_finite(data, "depth")
    if (data < 0).any():
        raise InvalidArgumentError(f"depth holds {int((data < 0).sum())} negative values; expected depth >= 0 "
                                   "(0 = unknown)")
    for i in range(t):
        if (data[i] > 0).mean() < 0.05:
            raise InvalidArgumentError(f"depth map {i} has valid (> 0) depth at fewer than 5% of its pixels")
    return data.astype(np.float32), estimate


def _flow_array(x: Any, name: str, t: int, h: int, w: int) -> torch.Tensor:
    x = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if x.dim() == 5 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 4 and x.shape[-1] == 2 and x.shape[1] != 2:
        x = x.permute(0, 3, 1, 2)
    if x.dim() != 4 or x.shape[1] != 2:
        raise ShapeError(f"{name} must have shape [T-1, 2, H, W] (or [T-1, H, W, 2]), got {list(x.shape)}")
    if x.shape[0] != t - 1:
        raise ShapeError(f"{name} holds {x.shape[0]} flows but a {t}-frame video has {t - 1} frame pairs")
    if tuple(x.shape[-2:]) != (h, w):
        raise ShapeError(f"{name} is {x.shape[-1]}x{x.shape[-2]} but the frames are {w}x{h}")
    x = x.float()
    check_finite(x, name)
    return x.contiguous()


def _read_flow_folder(folder: Path, t: int) -> torch.Tensor:
    from motion.flow_io import read_flow

    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in FLOW_EXTENSIONS), key=natural_key)
    if len(files) != t - 1:
        raise ShapeError(f"flow folder {folder} holds {len(files)} flow files but a {t}-frame video has {t - 1} pairs")
    flows = []
    for f in files:
        flow, _ = read_flow(f)
        flows.append(torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1))
    return torch.stack(flows)


def load_flow(flow: Any, frames: np.ndarray, model: str = "dis", device: str = "auto"
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(forward, backward | None)`` flows ``[T-1, 2, H, W]`` for ``frames`` (see the module docstring)."""
    t, h, w = frames.shape[:3]
    if flow is None or isinstance(flow, str) or _is_flow_model(flow):
        if isinstance(flow, (str, os.PathLike)) and Path(flow).exists():
            return load_flow(Path(flow), frames)
        from motion.estimate import estimate_flow

        result = estimate_flow(frames, model=model if flow is None else flow, device=device, backward=True,
                               progress=False)
        return _flow_array(result.forward, "forward flow", t, h, w), _flow_array(result.backward, "backward flow", t, h, w)
    if isinstance(flow, os.PathLike):
        folder = Path(flow)
        if not folder.is_dir():
            raise InputFileError(f"flow: {folder} is not a folder with forward/ (and backward/) flow files")
        fwd_dir = folder / "forward" if (folder / "forward").is_dir() else folder
        forward = _flow_array(_read_flow_folder(fwd_dir, t), f"forward flow in {fwd_dir}", t, h, w)
        backward = None
        if (folder / "backward").is_dir():
            backward = _flow_array(_read_flow_folder(folder / "backward", t), "backward flow", t, h, w)
        return forward, backward
    if hasattr(flow, "forward") and not isinstance(flow, (tuple, list, np.ndarray, torch.Tensor)):
        if flow.forward is None:
            raise InvalidArgumentError("the flow result holds no forward flow in memory (it was written to disk: "
                                       "pass its out_dir instead)")
        backward = getattr(flow, "backward", None)
        return (_flow_array(flow.forward, "forward flow", t, h, w),
                None if backward is None else _flow_array(backward, "backward flow", t, h, w))
    if isinstance(flow, (tuple, list)):
        if len(flow) != 2:
            raise InvalidArgumentError(f"flow as a sequence must be (forward, backward), got {len(flow)} items")
        forward, backward = flow
        return (_flow_array(forward, "forward flow", t, h, w),
                None if backward is None else _flow_array(backward, "backward flow", t, h, w))
    return _flow_array(flow, "forward flow", t, h, w), None


def _is_flow_model(x: Any) -> bool:
    from motion.models.base import FlowModel

    return isinstance(x, FlowModel)


def load_intrinsics(intrinsics: Any, height: int, width: int, default_fov_degrees: float) -> torch.Tensor:
    """``float32 [3, 3]`` from ``K``, ``(fx, fy, cx, cy)`` or None (field-of-view default)."""
    if intrinsics is None:
        if not 0 < default_fov_degrees < 180:
            raise InvalidArgumentError(f"default_fov_degrees must be in (0, 180), got {default_fov_degrees}")
        f = 0.5 * width / math.tan(math.radians(default_fov_degrees) / 2)
        return torch.tensor([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=torch.float32)
    k = intrinsics.detach().cpu() if isinstance(intrinsics, torch.Tensor) else torch.as_tensor(np.asarray(intrinsics))
    k = k.double()
    if k.shape == (4,):
        fx, fy, cx, cy = k.tolist()
        k = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float64)
    if k.shape != (3, 3):
        raise ShapeError(f"intrinsics must be K [3, 3] or (fx, fy, cx, cy), got shape {list(k.shape)}")
    check_finite(k, "intrinsics")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise InvalidArgumentError(f"intrinsics need positive focal lengths, got fx={k[0, 0]:.4g}, fy={k[1, 1]:.4g}")
    return k.float()


def load_priors(frames: Any, depth: Any, flow: Any, intrinsics: Any, *, flow_model: str = "dis",
                default_fov_degrees: float = 90.0, device: str = "auto") -> tuple[np.ndarray, Priors]:
    """Check and load every input of :meth:`splats.gflow.GFlow.fit` -> ``(uint8 frames, Priors)``."""
    frames = load_frames(frames)
    t, h, w = frames.shape[:3]
    forward, backward = load_flow(flow, frames, model=flow_model, device=device)
    k = load_intrinsics(intrinsics, h, w, default_fov_degrees)
    depth_device = "cpu" if device in ("auto", "cpu") else device
    depth_np, estimate = load_depth_estimate(depth, frames, forward, backward, k, device=depth_device)
    valid0 = depth_np[0][depth_np[0] > 0]
    unit = float(np.median(valid0))
    images = frames_to_tensor(frames)
    return frames, Priors(images, torch.from_numpy(depth_np / unit), unit, forward, backward, k, estimate.method,
                          estimate.notice, estimate.info)

