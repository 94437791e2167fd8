"""GFlow on a monocular video: 4D Gaussians, camera poses, tracks and masks from a plain video file.

Nothing but the video is needed: frames are shrunk to a CPU-sized resolution (``resize="auto"``:
long side :data:`CPU_LONG_SIDE` on a CPU, :data:`GPU_LONG_SIDE` on CUDA), the flow is estimated
(DIS by default), the depth prior is made from the video itself (:mod:`splats.depth_prior`, a
constant plane with a notice when the camera does not translate) unless ``depth`` names a folder of
maps or another provider (:mod:`splats.depth_providers`), and iteration budgets follow the image
size (:mod:`splats.gflow_schedule`).

Layout of ``out_dir`` (owned by one run configuration, :class:`motion4d.outputs.OutputFolder`):

* ``gflow_run.json`` — the run's settings and source identity (a rerun with other settings is refused);
* ``priors/flow.npz``, ``priors/depth/frame_00000.npy``, ``priors/depth.json`` — the flow and depth
  used (computed once; a rerun reuses them, so a resumed fit sees identical inputs);
* ``checkpoints/frame_00000.pt`` — one per finished frame; a rerun continues after the last one;
* ``export/gaussians/frame_00000.ply`` and ``export/poses_tum.txt`` — written as soon as each frame
  is finished (what an interrupted run keeps), then the full export (:meth:`Scene4D.export`: tracks,
  masks, renders, COLMAP, ``overview.png``, ``render.mp4``);
* ``scene.pt`` — the whole :class:`splats.scene4d.Scene4D`; ``progress.json`` — frames finished.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.errors import InvalidArgumentError

CPU_LONG_SIDE = 160
GPU_LONG_SIDE = 854
RUN_CONFIG = "gflow_run.json"
_RESULT_KEYS = ("source", "frames", "resize", "depth", "flow", "intrinsics", "gflow_config")


def default_resize(device_type: str) -> int:
    """Long side of the frames GFlow fits by default: small enough for a CPU (8 frames in ~5 minutes)."""
    return GPU_LONG_SIDE if device_type == "cuda" else CPU_LONG_SIDE


def _save_flow(path: Path, forward: np.ndarray, backward: np.ndarray | None) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, forward=forward, **({} if backward is None else {"backward": backward}))


def _load_or_estimate_flow(folder: Path, frames: np.ndarray, flow: Any, device: str, progress: bool
                           ) -> tuple[np.ndarray, np.ndarray | None]:
    from .gflow_inputs import load_flow

    path = folder / "flow.npz"
    if path.exists():
        with np.load(path) as data:
            return data["forward"], data["backward"] if "backward" in data else None
    if flow is None or (isinstance(flow, str) and not Path(flow).exists()):
        from motion.estimate import estimate_flow

        result = estimate_flow(frames, model=flow or "dis", device=device, backward=True, progress=progress)
        forward, backward = np.asarray(result.forward, np.float32), np.asarray(result.backward, np.float32)
    else:
        fwd, bwd = load_flow(Path(flow), frames)
        forward, backward = fwd.numpy(), None if bwd is None else bwd.numpy()
    _save_flow(path, forward, backward)
    return forward, backward


def _load_or_estimate_depth(folder: Path, frames: np.ndarray, depth: Any, select: tuple[int, int],
                            forward: np.ndarray, backward: np.ndarray | None, K: np.ndarray, device: str
                            ) -> tuple[np.ndarray, dict[str, Any]]:
    from .depth_providers import FolderDepth, depth_provider

    meta_path = folder / "depth.json"
    maps = folder / "depth"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        data = np.stack([np.load(maps / f"frame_{t:05d}.npy") for t in range(len(frames))])
        return data, meta
    if isinstance(depth, (str, os.PathLike)) and Path(depth).is_dir():
        provider = FolderDepth(depth, select=select)
    else:
        provider = depth_provider(depth, device=device)
    estimate = provider.estimate(frames, forward=forward, backward=backward, K=K)
    for t, d in enumerate(estimate.depth):
        with atomic_path(maps / f"frame_{t:05d}.npy", suffix=".npy") as tmp:
            np.save(tmp, np.asarray(d, np.float32))
    meta = {"method": estimate.method, "notice": estimate.notice, "info": estimate.info}
    atomic_write_text(meta_path, json.dumps(meta, indent=1, default=str))
    return np.asarray(estimate.depth, np.float32), meta


def reconstruct_video(
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    depth: str | os.PathLike | Any = None,
    flow: str | os.PathLike | None = None,
    intrinsics: Sequence[float] | None = None,
    config: dict[str, Any] | None = None,
    iterations: int | None = None,
    camera_iterations: int | None = None,
    n_init: int | None = None,
    motion_split: str | None = None,
    fov: float | None = None,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    resize: Any = "auto",
    track_grid: int = 8,
    seed: int = 0,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    videos: bool = True,
) -> dict[str, Any]:
    """Fit GFlow to ``video`` and export the scene; returns the summary (frames, Gaussians, PSNR, paths).

    Args:
        depth: None (training-free two-view prior), a folder of per-frame maps (``.npy`` / 16-bit
            ``.png``, one per frame of the whole video: the frame selection picks from it), or a
            provider name (``two-view``, ``constant``, ``depth-anything[:MODEL]``).
        flow: a flow folder (``forward/`` and ``backward/``) or a flow model name (default: DIS).
        intrinsics: ``fx, fy, cx, cy`` in pixels of the *resized* frames; default: a horizontal field of
            view ``fov`` (GFlow's 90 degrees).
        config: :class:`~splats.gflow.GFlowConfig` overrides; ``iterations`` (Gaussian stage),
            ``camera_iterations``, ``n_init``, ``motion_split`` (``epipolar`` | ``kmeans``) and
            ``fov`` override single fields. Budgets left unset follow the image size.
        start, stop, stride, max_frames: which frames (as :func:`motion.open_video`).
        resize: ``"auto"`` (:func:`default_resize`), None (full size), an int long side, a float scale
            or ``(W, H)``.
        track_grid: spacing in pixels of the exported frame-0 track grid.
        resume: continue from the checkpoints in ``out_dir`` (False: start over, replacing them).

    A ``KeyboardInterrupt`` keeps every finished frame (checkpoint, PLY, poses; ``progress.json``
    says how many) and propagates; rerunning the same call resumes.
    """
    from motion.frames import read_frames
    from motion4d.device import resolve_device
    from motion4d.outputs import OutputFolder, source_identity

    from .gflow import GFlow, GFlowConfig
    from .gflow_inputs import load_intrinsics

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
    flow_spec: Any = None
    if flow is not None:
        if Path(flow).exists():
            flow_spec = str(Path(flow).resolve())
        else:
            overrides["flow_model"] = flow
            flow_spec = flow
    gflow_config = GFlowConfig.from_dict(overrides)
    torch_device = resolve_device(gflow_config.device, "device")
    if resize == "auto":
        resize = default_resize(torch_device.type)
    frames = read_frames(video, start=start, stop=stop, stride=stride, max_frames=max_frames, resize=resize)
    if len(frames) < 2:
        raise InvalidArgumentError(f"GFlow needs at least 2 frames; the selection of {video} holds {len(frames)}")
    t_count, height, width = frames.shape[:3]
    K = load_intrinsics(intrinsics, height, width, gflow_config.default_fov_degrees)
    resolved = gflow_config.resolved(height, width, torch_device.type)
    depth_spec = str(Path(depth).resolve()) if isinstance(depth, (str, os.PathLike)) and Path(depth).exists() \
        else (depth if depth is None or isinstance(depth, str) else getattr(depth, "name", type(depth).__name__))
    run_config = {
        "source": source_identity(video),
        "frames": {"start": start, "stop": stop, "stride": stride, "max_frames": max_frames, "count": t_count},
        "resize": [width, height], "depth": depth_spec or "two-view", "flow": flow_spec or gflow_config.flow_model,
        "intrinsics": K.tolist(), "gflow_config": json.loads(json.dumps(asdict(resolved), default=str)),
    }
    with OutputFolder(out, RUN_CONFIG, run_config, _RESULT_KEYS, overwrite=not resume):
        if not resume:  # start over: earlier priors and checkpoints belong to the replaced configuration
            for folder in ("priors", "checkpoints"):
                shutil.rmtree(out / folder, ignore_errors=True)
        priors_dir = out / "priors"
        forward, backward = _load_or_estimate_flow(priors_dir, frames, flow, str(torch_device), progress)
        depth_maps, depth_meta = _load_or_estimate_depth(priors_dir, frames, depth, (start, stride), forward, backward,
                                                         K.numpy(), "cuda" if torch_device.type == "cuda" else "cpu")
        if depth_meta.get("notice"):
            print(f"gflow: depth prior: {depth_meta['notice']}", file=sys.stderr)
        export_dir = out / "export"
        progress_path = out / "progress.json"

        def frame_done(t: int, scene: Any) -> None:
            from .gaussians import write_ply

            n_t = len(scene.states[t]["means"])
            write_ply(export_dir / "gaussians" / f"frame_{t:05d}.ply", scene.gaussians_at(t),
                      extra={"moving": scene.moving[:n_t].float().numpy(), "birth": scene.birth[:n_t].float().numpy()})
            scene.write_tum(export_dir / "poses_tum.txt")
            atomic_write_text(progress_path, json.dumps({"frames_done": t + 1, "frames": t_count,
                                                         "finished": t + 1 == t_count}))

        try:
            scene = GFlow(gflow_config).fit(frames, depth=depth_maps, flow=(forward, backward), intrinsics=K,
                                            checkpoint_dir=out / "checkpoints", resume=resume, progress=progress,
                                            on_frame=frame_done)
        except KeyboardInterrupt:
            if progress_path.exists():
                done = json.loads(progress_path.read_text())["frames_done"]
                print(f"gflow: {done}/{t_count} frames finished and saved in {out}", file=sys.stderr)
            raise
        scene.info.update({"depth_method": depth_meta.get("method"), "depth_notice": depth_meta.get("notice"),
                           "depth_info": depth_meta.get("info")})
        scene.save(out / "scene.pt")
        export = scene.export(export_dir, grid=track_grid, video=videos)
        atomic_write_text(progress_path, json.dumps({"frames_done": t_count, "frames": t_count, "finished": True}))
    psnrs = scene.psnr()
    return {
        "method": "gflow", "frames": scene.num_frames, "size": [width, height], "gaussians": scene.num_gaussians,
        "moving_gaussians": int(scene.moving.sum()), "psnr_mean": float(np.mean(psnrs)), "psnr_per_frame": psnrs,
        "depth_prior": depth_meta.get("method"), "depth_notice": depth_meta.get("notice"),
        "iterations": {"init": resolved.init_iterations, "camera": resolved.camera_iterations,
                       "gaussians": resolved.gaussian_iterations},
        "resumed_from_frame": scene.info.get("resumed_from_frame", 0), "seconds": scene.info.get("seconds"),
        "scene": str(out / "scene.pt"), "export": str(export), "overview": str(export / "overview.png"),
    }
