"""``motion4d reconstruct``: 4D Gaussians from posed video (Gaussian-Flow) or monocular video (GFlow).

Usage::

    motion4d reconstruct --method gflow clip.mp4 --out runs/clip          # nothing else needed
    motion4d reconstruct --method gaussian-flow path/to/dnerf/bouncingballs --out runs/balls \\
        --iterations 3000 --downscale 2
    motion4d reconstruct --method gaussian-flow clip.mp4 --poses runs/clip --out runs/clip_gf

The methods offered are the registered Gaussian methods (:mod:`splats.methods`) that have a
runner in :data:`METHODS` (name -> "module:function"); a runner module provides
``add_arguments(group)`` (optional) and the function ``run(args, out_dir) -> dict`` returning a
summary. Only methods whose runner module is importable are offered. Every run writes
``config.json`` (the resolved arguments) and ``summary.json`` beside its outputs.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from pathlib import Path

from motion4d.atomic import atomic_write_text
from motion4d.errors import InvalidArgumentError

# registered Gaussian method -> "module:function" of its runner, run(args, out_dir) -> summary dict
METHODS: dict[str, str] = {
    "gaussian-flow": "motion4d.cli.reconstruct_gaussian_flow:run",
    "gflow": "motion4d.cli.reconstruct_gflow:run",
}


def available_methods() -> dict[str, str]:
    from splats.methods import list_gaussian_methods

    return {name: METHODS[name] for name in list_gaussian_methods()
            if name in METHODS and importlib.util.find_spec(METHODS[name].split(":")[0]) is not None}


def build_parser(parser: argparse.ArgumentParser) -> None:
    methods = available_methods()
    parser.add_argument("data", metavar="VIDEO|DNERF_DIR", help="a video file or frame folder (gflow; gaussian-flow "
                        "with --poses), or a D-NeRF layout folder (gaussian-flow: transforms_{train,val,test}.json "
                        "with per-frame 'time')")
    parser.add_argument("--method", default="gaussian-flow", choices=sorted(methods), help="reconstruction method")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, exports, renders, config.json)")
    parser.add_argument("--iterations", type=int, default=None, help="optimisation steps (method default if unset)")
    parser.add_argument("--config", default=None,
                        help="method config overrides: a JSON file or an inline JSON object")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-video", action="store_true", help="skip the rendered videos")
    frames = parser.add_argument_group("frame selection (video input)")
    frames.add_argument("--start", type=int, default=0, help="first frame index (default 0)")
    frames.add_argument("--stop", type=int, default=None, help="stop before this frame index")
    frames.add_argument("--stride", type=int, default=1, help="use every n-th frame (default 1)")
    frames.add_argument("--max-frames", type=int, default=None, help="use at most this many frames")
    frames.add_argument("--resize", default="auto",
                        help="auto (default: long side 160 px on a CPU, 854 on CUDA), full, WxH, a scale (0.5) "
                             "or the long side (320)")
    for name, target in methods.items():
        module = importlib.import_module(target.split(":")[0])
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser.add_argument_group(name))


def video_resize(text: str | None) -> object:
    """``--resize``: ``"auto"`` / None -> "auto", ``"full"`` -> None (no resizing), else :func:`parse_resize`."""
    from motion4d.cli.arguments import parse_resize

    if text in (None, "auto"):
        return "auto"
    if text == "full":
        return None
    return parse_resize(text)


def frame_selection(args: argparse.Namespace) -> dict[str, object]:
    """The frame-selection keyword arguments of the video runners."""
    return {"start": args.start, "stop": args.stop, "stride": args.stride, "max_frames": args.max_frames,
            "resize": video_resize(args.resize)}


def run(args: argparse.Namespace) -> int:
    methods = available_methods()
    if args.method not in methods:
        raise InvalidArgumentError(f"--method must be one of {sorted(methods)}, got {args.method!r}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    atomic_write_text(out_dir / "config.json", json.dumps(resolved, indent=1, default=str))
    module_name, func_name = methods[args.method].split(":")
    summary = getattr(importlib.import_module(module_name), func_name)(args, out_dir)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    print(json.dumps(summary, indent=1, default=str))
    return 0
