"""``motion4d reconstruct --method gflow VIDEO --depth DEPTH_DIR --out DIR``: GFlow on a monocular video.

Reads the video (file or image folder), the depth prior (a folder of ``.npy`` / 16-bit ``.png`` maps,
one per frame, any scale) and optionally a flow folder (``forward/`` + ``backward/``, as written by
``motion4d flow --backward``) or a flow model name; fits :class:`splats.gflow.GFlow` with per-frame
checkpoints in ``DIR/checkpoints`` (an interrupted run resumes after the last finished frame) and
exports the scene to ``DIR/export`` (per-frame PLY, TUM + COLMAP poses, tracks, masks, video).
``DIR/scene.pt`` holds the whole :class:`splats.scene4d.Scene4D`.

Example::

    motion4d flow clip.mp4 --backward --out runs/clip/flow
    motion4d reconstruct --method gflow clip.mp4 --depth runs/clip/depth --flow runs/clip/flow --out runs/clip
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from motion4d.atomic import atomic_write_text
from motion4d.errors import InvalidArgumentError


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--depth", default=None, help="folder of per-frame depth maps (.npy or 16-bit .png), any scale")
    group.add_argument("--flow", default=None,
                       help="flow folder (forward/ and backward/) or a motion flow model name (default: dis)")
    group.add_argument("--intrinsics", default=None,
                       help="fx,fy,cx,cy in pixels (pixel centres at integers); default: --fov")
    group.add_argument("--fov", type=float, default=None, help="horizontal field of view without intrinsics (deg)")
    group.add_argument("--camera-iterations", type=int, default=None, help="camera-stage steps per frame")
    group.add_argument("--n-init", type=int, default=None, help="Gaussians drawn for the first frame")
    group.add_argument("--motion-split", default=None, choices=("epipolar", "kmeans"),
                       help="still/moving split: epipolar (AAAI, default) or kmeans (arXiv v1)")
    group.add_argument("--max-frames", type=int, default=None, help="use at most this many frames")
    group.add_argument("--track-grid", type=int, default=8, help="spacing (px) of the exported frame-0 track grid")


def _intrinsics(text: str | None) -> Any:
    if text is None:
        return None
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError as exc:
        raise InvalidArgumentError(f"--intrinsics must be fx,fy,cx,cy; got {text!r}") from exc
    if len(values) != 4:
        raise InvalidArgumentError(f"--intrinsics needs four numbers fx,fy,cx,cy; got {text!r}")
    return values


def run(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    from dataclasses import asdict

    import numpy as np

    from motion.frames import read_frames
    from splats.gflow import GFlow, GFlowConfig
    from tools.reconstruct import _config_overrides

    if getattr(args, "depth", None) is None:
        raise InvalidArgumentError("--method gflow needs --depth DEPTH_DIR (per-frame depth maps)")
    overrides = _config_overrides(args.config)
    overrides.setdefault("seed", args.seed)
    overrides.setdefault("device", args.device)
    if args.iterations is not None:
        overrides["gaussian_iterations"] = args.iterations
    for arg, key in (("camera_iterations", "camera_iterations"), ("n_init", "n_init"),
                     ("motion_split", "split"), ("fov", "default_fov_degrees")):
        if getattr(args, arg, None) is not None:
            overrides[key] = getattr(args, arg)
    flow: Any = None
    if args.flow is not None:
        if Path(args.flow).exists():
            flow = Path(args.flow)
        else:
            overrides["flow_model"] = args.flow
    config = GFlowConfig.from_dict(overrides)
    atomic_write_text(out_dir / "gflow_config.json", json.dumps(asdict(config), indent=1, default=str))
    frames = read_frames(args.data, max_frames=getattr(args, "max_frames", None))
    depth: Any = args.depth
    if getattr(args, "max_frames", None) is not None:
        from splats.gflow_inputs import _read_depth_file, list_depth_files

        files = list_depth_files(args.depth)[: len(frames)]
        depth = np.stack([_read_depth_file(f) for f in files])
    scene = GFlow(config).fit(frames, depth=depth, flow=flow, intrinsics=_intrinsics(args.intrinsics),
                              checkpoint_dir=out_dir / "checkpoints", resume=not args.no_resume,
                              progress=not args.quiet)
    scene.save(out_dir / "scene.pt")
    export = scene.export(out_dir / "export", grid=args.track_grid, video=not args.no_video)
    psnrs = scene.psnr()
    return {
        "method": "gflow", "frames": scene.num_frames, "gaussians": scene.num_gaussians,
        "moving_gaussians": int(scene.moving.sum()), "psnr_mean": float(np.mean(psnrs)),
        "psnr_per_frame": psnrs, "resumed_from_frame": scene.info.get("resumed_from_frame", 0),
        "seconds": scene.info.get("seconds"), "scene": str(out_dir / "scene.pt"), "export": str(export),
    }
