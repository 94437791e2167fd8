"""GFlow on a monocular video: 4D Gaussians, camera poses and tracks from frames, depth and flow priors.

Reads the video (file or image folder), the depth prior (a folder of ``.npy`` / 16-bit ``.png``
maps, one per frame, any scale) and optionally a flow folder (``forward/`` + ``backward/``, as
written by ``motion4d flow --backward``) or a flow model name; fits :class:`splats.gflow.GFlow`
with per-frame checkpoints in ``out_dir/checkpoints`` (an interrupted run resumes after the last
finished frame) and exports the scene to ``out_dir/export`` (per-frame PLY, TUM + COLMAP poses,
tracks, masks, video). ``out_dir/scene.pt`` holds the whole :class:`splats.scene4d.Scene4D`.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from motion4d.atomic import atomic_write_text
from motion4d.errors import InvalidArgumentError


def reconstruct_video(
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    depth: str | os.PathLike | None,
    flow: str | os.PathLike | None = None,
    intrinsics: Sequence[float] | None = None,
    config: dict[str, Any] | None = None,
    iterations: int | None = None,
    camera_iterations: int | None = None,
    n_init: int | None = None,
    motion_split: str | None = None,
    fov: float | None = None,
    max_frames: int | None = None,
    track_grid: int = 8,
    seed: int = 0,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    videos: bool = True,
) -> dict[str, Any]:
    """Fit GFlow to ``video`` with the depth maps in ``depth``; returns the summary (frames, Gaussians, PSNR, paths).

    Args:
        flow: a flow folder (``forward/`` and ``backward/``) or a flow model name (default: GFlow's, DIS).
        intrinsics: ``fx, fy, cx, cy`` in pixels; default: a horizontal field of view ``fov``.
        config: :class:`~splats.gflow.GFlowConfig` overrides; ``iterations`` (Gaussian stage),
            ``camera_iterations``, ``n_init``, ``motion_split`` (``epipolar`` | ``kmeans``) and
            ``fov`` override single fields.
        max_frames: use at most this many frames (and depth maps).
        track_grid: spacing in pixels of the exported frame-0 track grid.
    """
    from motion.frames import read_frames
    from splats.gflow import GFlow, GFlowConfig

    if depth is None:
        raise InvalidArgumentError("GFlow needs depth: a folder of per-frame depth maps (.npy or 16-bit .png)")
    out = Path(out_dir)
    overrides = dict(config or {})
    overrides.setdefault("seed", seed)
    overrides.setdefault("device", device)
    if iterations is not None:
        overrides["gaussian_iterations"] = iterations
    for value, key in ((camera_iterations, "camera_iterations"), (n_init, "n_init"), (motion_split, "split"),
                       (fov, "default_fov_degrees")):
        if value is not None:
            overrides[key] = value
    flow_input: Any = None
    if flow is not None:
        if Path(flow).exists():
            flow_input = Path(flow)
        else:
            overrides["flow_model"] = flow
    gflow_config = GFlowConfig.from_dict(overrides)
    atomic_write_text(out / "gflow_config.json", json.dumps(asdict(gflow_config), indent=1, default=str))
    frames = read_frames(video, max_frames=max_frames)
    depth_input: Any = depth
    if max_frames is not None:
        from splats.gflow_inputs import _read_depth_file, list_depth_files

        files = list_depth_files(depth)[: len(frames)]
        depth_input = np.stack([_read_depth_file(f) for f in files])
    scene = GFlow(gflow_config).fit(frames, depth=depth_input, flow=flow_input, intrinsics=intrinsics,
                                    checkpoint_dir=out / "checkpoints", resume=resume, progress=progress)
    scene.save(out / "scene.pt")
    export = scene.export(out / "export", grid=track_grid, video=videos)
    psnrs = scene.psnr()
    return {
        "method": "gflow", "frames": scene.num_frames, "gaussians": scene.num_gaussians,
        "moving_gaussians": int(scene.moving.sum()), "psnr_mean": float(np.mean(psnrs)),
        "psnr_per_frame": psnrs, "resumed_from_frame": scene.info.get("resumed_from_frame", 0),
        "seconds": scene.info.get("seconds"), "scene": str(out / "scene.pt"), "export": str(export),
    }
