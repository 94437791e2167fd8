"""The ``gflow`` runner of ``motion4d reconstruct`` (:func:`splats.video_reconstruction.reconstruct_video`).

Example::

    motion4d reconstruct --method gflow clip.mp4 --out runs/clip                 # depth from the video itself
    motion4d reconstruct --method gflow clip.mp4 --depth runs/clip/depth --out runs/clip_d
    motion4d reconstruct --method gflow clip.mp4 --depth depth-anything:/models/da-v2-small --out runs/clip_da
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from motion4d.cli.arguments import parse_json_object
from motion4d.errors import InvalidArgumentError


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--depth", default=None,
                       help="depth prior: two-view (default: made from the video's own flow, no download), constant, "
                            "depth-anything[:MODEL] (pip install 'motion4d[depth]'; MODEL a local folder or hub id), "
                            "or a folder of per-frame maps (.npy / 16-bit .png, any scale, one per video frame)")
    group.add_argument("--flow", default=None,
                       help="flow folder (forward/ and backward/) or a motion flow model name (default: dis)")
    group.add_argument("--intrinsics", default=None,
                       help="fx,fy,cx,cy in pixels of the resized frames (pixel centres at integers); default: --fov")
    group.add_argument("--fov", type=float, default=None, help="horizontal field of view without intrinsics (deg)")
    group.add_argument("--camera-iterations", type=int, default=None,
                       help="camera-stage steps per frame (default: scaled to the image size on a CPU, 150 on CUDA)")
    group.add_argument("--n-init", type=int, default=None, help="Gaussians drawn for the first frame")
    group.add_argument("--motion-split", default=None, choices=("epipolar", "kmeans"),
                       help="still/moving split: epipolar (AAAI, default) or kmeans (arXiv v1)")
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
    from motion4d.cli.reconstruct import frame_selection
    from splats.video_reconstruction import reconstruct_video

    return reconstruct_video(
        args.data, out_dir, depth=args.depth, flow=args.flow, intrinsics=parse_intrinsics(args.intrinsics),
        config=parse_json_object(args.config, "--config"), iterations=args.iterations,
        camera_iterations=args.camera_iterations, n_init=args.n_init, motion_split=args.motion_split, fov=args.fov,
        track_grid=args.track_grid, seed=args.seed, device=args.device, resume=not args.no_resume,
        progress=not args.no_progress, videos=not args.no_video, **frame_selection(args),
    )
