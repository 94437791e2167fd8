"""``motion4d objects VIDEO --out DIR``: moving objects from motion, boxed and tracked with stable ids.

Writes ``DIR/objects.txt`` (MOTChallenge boxes: one per object per frame, 1-based), ``DIR/masks/``
(a 16-bit PNG per frame holding the object id of each pixel), ``DIR/objects_overlay.mp4`` (boxes, ids
and tinted masks on the frames) and ``DIR/objects.json`` (per-object summary and the configuration).
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

from motion4d.errors import InvalidArgumentError


def _options(items: list[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InvalidArgumentError(f"--option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            options[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key.strip()] = value
    return options


def _resize(text: str | None) -> Any:
    if text is None:
        return None
    try:
        if "x" in text:
            w, h = text.lower().split("x")
            return (int(w), int(h))
        return float(text) if "." in text else int(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"--resize must be WxH, a scale like 0.5, or a largest side like 512; got {text!r}") from exc


def build_parser(parser: argparse.ArgumentParser) -> None:
    from motion.objects.camera import CAMERA_MODELS
    from motion.objects.detect import ObjectOptions

    defaults = ObjectOptions()
    parser.add_argument("video", help="video file or image folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model", default="dis", help="flow model (default dis; e.g. reynolds)")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="flow model option, repeatable")
    parser.add_argument("--camera", default=defaults.camera, choices=CAMERA_MODELS,
                        help="camera motion model removed before deciding what moves (default homography)")
    parser.add_argument("--min-motion", type=float, default=defaults.min_motion,
                        help="residual speed (px/frame) below which pixels are background")
    parser.add_argument("--min-area", type=int, default=defaults.min_area, help="smallest object (pixels)")
    parser.add_argument("--min-frames", type=int, default=defaults.min_frames, help="objects seen fewer frames are dropped")
    parser.add_argument("--no-masks", action="store_true", help="do not write the mask PNGs")
    parser.add_argument("--no-overlay", action="store_true", help="do not write the overlay video")
    parser.add_argument("--batch", type=int, default=8, help="flows per model call")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    group = parser.add_argument_group("frame selection")
    group.add_argument("--start", type=int, default=0, help="first frame index (default 0)")
    group.add_argument("--stop", type=int, default=None, help="stop before this frame index")
    group.add_argument("--stride", type=int, default=1, help="use every n-th frame (default 1)")
    group.add_argument("--max-frames", type=int, default=None, help="use at most this many frames")
    group.add_argument("--resize", default=None, help="WxH, a scale (0.5) or the largest side (512)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from motion.objects.detect import ObjectOptions, detect_objects
    from motion.track_video import write_objects_video

    selection = {"start": args.start, "stop": args.stop, "stride": args.stride, "max_frames": args.max_frames,
                 "resize": _resize(args.resize)}
    options = replace(ObjectOptions(), camera=args.camera, min_motion=args.min_motion, min_area=args.min_area,
                      min_frames=args.min_frames)
    objects = detect_objects(args.video, args.model, options=options, device=args.device, batch=args.batch,
                             model_options=_options(args.option) or None, progress=not args.no_progress, **selection)
    out = Path(args.out)
    written = [objects.save_mot(out / "objects.txt")]
    if not args.no_masks:
        objects.save_masks(out / "masks")
        written.append(out / "masks")
    if not args.no_overlay:
        written.append(write_objects_video(objects, args.video, out / "objects_overlay.mp4",
                                           progress=not args.no_progress, **selection))
    config = {key: value for key, value in vars(args).items() if not key.startswith("_")}
    config["resize"] = selection["resize"]
    objects.save_summary(out / "objects.json", config=config, outputs=[str(p) for p in written])
    print(f"objects: {objects.num_objects} moving objects, {len(objects)} boxes over {objects.num_frames} frames -> {out}")
    return 0
