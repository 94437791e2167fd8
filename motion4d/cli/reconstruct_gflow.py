"""The ``gflow`` runner of ``motion4d reconstruct`` (:func:`splats.video_reconstruction.reconstruct_video`).

Example::

    motion4d flow clip.mp4 --backward --out runs/clip/flow
    motion4d reconstruct --method gflow clip.mp4 --depth runs/clip/depth --flow runs/clip/flow --out runs/clip
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from motion4d.cli.arguments import parse_json_object
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


def parse_intrinsics(text: str | None) -> list[float] | None:
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
    from splats.video_reconstruction import reconstruct_video

    if getattr(args, "depth", None) is None:
        raise InvalidArgumentError("--method gflow needs --depth DEPTH_DIR (per-frame depth maps)")
    return reconstruct_video(
        args.data, out_dir, depth=args.depth, flow=args.flow, intrinsics=parse_intrinsics(args.intrinsics),
        config=parse_json_object(args.config, "--config"), iterations=args.iterations,
        camera_iterations=args.camera_iterations, n_init=args.n_init, motion_split=args.motion_split, fov=args.fov,
        max_frames=args.max_frames, track_grid=args.track_grid, seed=args.seed, device=args.device,
        resume=not args.no_resume, progress=not args.no_progress, videos=not args.no_video,
    )
