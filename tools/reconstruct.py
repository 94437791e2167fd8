"""``motion4d reconstruct``: 4D Gaussians from posed video (Gaussian-Flow) or monocular video (GFlow).

Usage::

    motion4d reconstruct --method gaussian-flow path/to/dnerf/bouncingballs --out runs/balls \\
        --iterations 3000 --downscale 2

The methods offered are the registered Gaussian methods (:mod:`splats.methods`) that have a
runner in :data:`METHODS` (name -> "module:function"); a runner module provides
``add_arguments(parser)`` (optional) and the function ``run(args, out_dir) -> dict`` returning a
summary. Only methods whose runner module is importable are offered. Every run writes
``config.json`` (the resolved arguments) beside its outputs.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.errors import InvalidArgumentError

# registered Gaussian method -> "module:function" of its runner, run(args, out_dir) -> summary dict
METHODS: dict[str, str] = {
    "gaussian-flow": "tools.reconstruct:run_gaussian_flow",
    "gflow": "tools.reconstruct_gflow:run",
}


def available_methods() -> dict[str, str]:
    from splats.methods import list_gaussian_methods

    return {name: METHODS[name] for name in list_gaussian_methods()
            if name in METHODS and importlib.util.find_spec(METHODS[name].split(":")[0]) is not None}


def _method_module(target: str) -> Any:
    return importlib.import_module(target.split(":")[0])


def build_parser(parser: argparse.ArgumentParser) -> None:
    methods = available_methods()
    parser.add_argument("data", metavar="DATA_DIR", help="input: gaussian-flow takes a D-NeRF layout folder "
                        "(transforms_{train,val,test}.json with per-frame 'time'); gflow a video file or frame folder")
    parser.add_argument("--method", default="gaussian-flow", choices=sorted(methods), help="reconstruction method")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, exports, renders, config.json)")
    parser.add_argument("--iterations", type=int, default=None, help="optimisation steps (method default if unset)")
    parser.add_argument("--config", default=None,
                        help="method config overrides: a JSON file or an inline JSON object")
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-video", action="store_true", help="skip the rendered videos")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    group = parser.add_argument_group("gaussian-flow")
    group.add_argument("--split", default="train", help="training split (D-NeRF)")
    group.add_argument("--eval-split", default="test", help="split rendered and scored after training, if present")
    group.add_argument("--downscale", type=int, default=1, help="integer image downscale factor (D-NeRF: 2)")
    group.add_argument("--background", default="white", help="white | black | r,g,b in [0, 1]")
    for name, target in methods.items():
        module = _method_module(target)
        if module is not sys.modules[__name__] and hasattr(module, "add_arguments"):
            module.add_arguments(parser.add_argument_group(name))


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


# -------------------------------------------------------------------- gaussian-flow
def _parse_background(text: str) -> tuple[float, float, float]:
    named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}
    if text in named:
        return named[text]
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError as exc:
        raise InvalidArgumentError(f"--background must be white, black or r,g,b; got {text!r}") from exc
    if len(values) != 3 or not all(0 <= v <= 1 for v in values):
        raise InvalidArgumentError(f"--background needs three values in [0, 1], got {text!r}")
    return values  # type: ignore[return-value]


def _config_overrides(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    path = Path(text)
    try:
        values = json.loads(path.read_text() if path.exists() else text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"--config is neither a JSON file nor inline JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise InvalidArgumentError("--config must hold a JSON object")
    return values


def write_video(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Write ``uint8 [T, H, W, 3]`` as an H.264 MP4 (odd sizes padded to even)."""
    import av

    t, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def run_gaussian_flow(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    import cv2

    from motion4d.imaging import frames_to_tensor, psnr
    from splats.dnerf import read_dnerf
    from splats.gaussian_flow import GaussianFlow, GaussianFlowConfig

    background = _parse_background(args.background)
    train = read_dnerf(args.data, args.split, background=background, downscale=args.downscale)
    overrides = _config_overrides(args.config)
    overrides.setdefault("background", background)
    overrides.setdefault("seed", args.seed)
    overrides.setdefault("device", args.device)
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    config = GaussianFlowConfig.from_dict(overrides)
    model = GaussianFlow(config)
    atomic_write_text(out_dir / "gaussian_flow_config.json", json.dumps(_jsonable(config), indent=1))
    model.fit(train.frames, train.cameras, train.times, out_dir=out_dir, resume=not args.no_resume,
              progress=not args.quiet)
    export_dir = model.export(out_dir / "export", times=np.unique(train.times), cameras=train.cameras)
    summary: dict[str, Any] = {"method": "gaussian-flow", "n_gaussians": len(model.params["means"]),
                               "iterations": model.step, "export": str(export_dir)}
    renders = out_dir / "renders"
    renders.mkdir(exist_ok=True)
    eval_json = Path(args.data) / f"transforms_{args.eval_split}.json"
    scored = read_dnerf(args.data, args.eval_split, background=background, downscale=args.downscale) \
        if eval_json.exists() and args.eval_split != args.split else train
    preds = np.stack([(model.render(float(t), scored.cameras[i]).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
                      for i, t in enumerate(scored.times)])
    scores = [psnr(frames_to_tensor(p), frames_to_tensor(g))
              for p, g in zip(preds, scored.frames)]
    summary[f"psnr_{'eval' if scored is not train else 'train'}"] = float(np.mean(scores))
    side = np.concatenate([scored.frames, preds], axis=2)  # ground truth | render
    n_show = min(6, len(side))
    sheet = np.concatenate(list(side[np.linspace(0, len(side) - 1, n_show).astype(int)]), axis=0)
    with atomic_path(renders / "compare.png") as tmp:
        cv2.imwrite(str(tmp), sheet[..., ::-1])
    summary["compare_image"] = str(renders / "compare.png")
    if not args.no_video:
        times = np.linspace(float(train.times.min()), float(train.times.max()), 40)
        cam = scored.cameras[0]
        frames = np.stack([(model.render(float(t), cam).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
                           for t in times])
        summary["video"] = str(write_video(renders / "time_sweep.mp4", frames))
        summary["video_side_by_side"] = str(write_video(renders / f"{'eval' if scored is not train else 'train'}"
                                                        f"_compare.mp4", side))
    return summary


def _jsonable(config: Any) -> Any:
    from dataclasses import asdict

    return asdict(config)
