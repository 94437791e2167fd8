"""Gaussian-Flow on a plain video with camera poses from GFlow or from COLMAP text files.

``poses`` is one of:

* a GFlow run folder (``motion4d reconstruct --method gflow``: its ``scene.pt``) or a ``scene.pt`` file —
  poses, intrinsics, and GFlow's frame-0 Gaussians as the starting points;
* a COLMAP text model folder (``cameras.txt`` + ``images.txt``, distortion-free cameras; GFlow's
  ``export/colmap`` is one) — image ``i`` in name order is frame ``i`` of the selection.

Frame ``i`` of the selected frames gets time ``i`` and pose ``i``; intrinsics are rescaled to the
frames' size (same aspect ratio required). Every ``holdout``-th frame (if > 0) is left out of the fit
and scored as a held-out view.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.errors import InputFileError, MissingFileError, ShapeError

from .cameras import Cameras, read_colmap_text


def load_poses(poses: str | os.PathLike, width: int, height: int
               ) -> tuple[Cameras, torch.Tensor | None, torch.Tensor | None, str]:
    """Cameras for frames of ``width x height`` from a GFlow run / scene file or a COLMAP folder.

    Returns ``(cameras, init_points [P, 3] | None, init_colors [P, 3] | None, kind)``.
    """
    from .scene4d import Scene4D

    path = Path(poses)
    if not path.exists():
        raise MissingFileError(f"poses: {path} does not exist (a GFlow run folder, scene.pt or a COLMAP text folder)")
    points = colors = None
    if path.is_file() or (path / "scene.pt").is_file():
        scene = Scene4D.load(path if path.is_file() else path / "scene.pt")
        cameras = scene.cameras()
        last = scene.states[-1]
        points = scene.positions(0)
        colors = last["colors"].clamp(0, 1)
        kind = "gflow"
    elif (path / "cameras.txt").is_file():
        cameras, _ = read_colmap_text(path)
        kind = "colmap"
    elif (path / "export" / "colmap" / "cameras.txt").is_file():
        cameras, _ = read_colmap_text(path / "export" / "colmap")
        kind = "colmap"
    else:
        raise InputFileError(f"poses: {path} holds neither scene.pt (a GFlow run) nor cameras.txt / images.txt (COLMAP)")
    if abs(cameras.width / cameras.height - width / height) > 0.02 * width / height:
        raise ShapeError(f"poses are for {cameras.width}x{cameras.height} images; the frames are {width}x{height} "
                         "(another aspect ratio)")
    if (cameras.width, cameras.height) != (width, height):
        cameras = cameras.scaled(width / cameras.width)
        cameras = Cameras(cameras.K, cameras.world_to_cam, width, height)
    return cameras, points, colors, kind


def reconstruct_posed_video(
    video: str | os.PathLike,
    poses: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    resize: Any = "auto",
    holdout: int = 0,
    config: dict[str, Any] | None = None,
    iterations: int | None = None,
    seed: int = 0,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    videos: bool = True,
) -> dict[str, Any]:
    """Fit :class:`~splats.gaussian_flow.GaussianFlow` to a video with known poses; export, render and score.

    Args:
        poses: see the module docstring.
        resize: as in :func:`splats.video_reconstruction.reconstruct_video` (``"auto"``: CPU-sized).
        holdout: leave every ``holdout``-th frame (1, 1 + holdout, ...) out of the fit and score it.
    Returns the summary: Gaussians, iterations, PSNR of the fitted and the held-out frames, paths.
    """
    import cv2

    from motion.frames import read_frames
    from motion4d.device import resolve_device
    from motion4d.imaging import frames_to_tensor, psnr

    from .dnerf_reconstruction import write_mp4
    from .gaussian_flow import GaussianFlow, GaussianFlowConfig
    from .video_reconstruction import default_resize

    out = Path(out_dir)
    overrides = dict(config or {})
    overrides.setdefault("seed", seed)
    overrides.setdefault("device", device)
    if iterations is not None:
        overrides["iterations"] = iterations
    model_config = GaussianFlowConfig.from_dict(overrides)
    if resize == "auto":
        resize = default_resize(resolve_device(model_config.device, "device").type)
    frames = read_frames(video, start=start, stop=stop, stride=stride, max_frames=max_frames, resize=resize)
    t_count, height, width = frames.shape[:3]
    cameras, points, colors, kind = load_poses(poses, width, height)
    if len(cameras) != t_count:
        raise ShapeError(f"poses hold {len(cameras)} cameras but the frame selection of {video} has {t_count} frames; "
                         "select the frames the poses were made for (--start/--stride/--max-frames)")
    times = np.arange(t_count, dtype=np.float64)
    held = np.zeros(t_count, bool)
    if holdout > 0:
        held[1::holdout] = True
    train = ~held
    if points is not None and len(points) > model_config.n_init:
        pick = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[: model_config.n_init]
        points, colors = points[pick], colors[pick]
    model = GaussianFlow(model_config)
    atomic_write_text(out / "gaussian_flow_config.json", json.dumps(asdict(model_config), indent=1))
    train_ids = np.nonzero(train)[0].tolist()
    model.fit(frames[train], cameras[train_ids], times[train], out_dir=out, resume=resume, init_points=points,
              init_colors=colors, progress=progress)
    export_dir = model.export(out / "export", times=times, cameras=cameras)
    preds = np.stack([(model.render(float(t), cameras[i]).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
                      for i, t in enumerate(times)])
    scores = np.array([psnr(frames_to_tensor(p), frames_to_tensor(g)) for p, g in zip(preds, frames)])
    summary: dict[str, Any] = {
        "method": "gaussian-flow", "poses": kind, "frames": t_count, "size": [width, height],
        "n_gaussians": len(model.params["means"]), "iterations": model.step, "export": str(export_dir),
        "psnr_train": float(scores[train].mean()),
        "psnr_heldout": float(scores[held].mean()) if held.any() else None,
        "heldout_frames": np.nonzero(held)[0].tolist(),
    }
    renders = out / "renders"
    renders.mkdir(exist_ok=True)
    side = np.concatenate([frames, preds], axis=2)  # input | render
    shown = side[np.linspace(0, t_count - 1, min(6, t_count)).astype(int)]
    with atomic_path(renders / "compare.png") as tmp:
        cv2.imwrite(str(tmp), np.concatenate(list(shown), axis=0)[..., ::-1])
    summary["compare_image"] = str(renders / "compare.png")
    if videos:
        summary["video_side_by_side"] = str(write_mp4(renders / "compare.mp4", side))
    return summary
