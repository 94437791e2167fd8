"""``motion4d objects VIDEO --out DIR``: moving objects from motion, boxed and tracked with stable ids.

Writes ``DIR/objects.txt`` (MOTChallenge boxes: one per object per frame, 1-based), ``DIR/masks/``
(a 16-bit PNG per frame holding the object id of each pixel), ``DIR/objects_overlay.mp4`` (boxes, ids
and tinted masks on the frames) and ``DIR/objects.json`` (per-object summary and the configuration).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from motion4d.cli.arguments import add_frame_selection, check_video, frame_selection, owned_output_folder, parse_options


def build_parser(parser: argparse.ArgumentParser) -> None:
    from motion.objects.camera import CAMERA_MODELS
    from motion.objects.detect import ObjectOptions

    defaults = ObjectOptions()
    parser.add_argument("video", metavar="VIDEO", help="video file or image folder")
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
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    add_frame_selection(parser)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from motion.objects.detect import ObjectOptions, detect_objects
    from motion.track_video import write_objects_video

    selection = frame_selection(args)
    options = replace(ObjectOptions(), camera=args.camera, min_motion=args.min_motion, min_area=args.min_area,
                      min_frames=args.min_frames)
    out = Path(args.out)
    check_video(args)
    with owned_output_folder(args, "objects_config.json", args.video, resize=selection["resize"]) as folder:
        objects = detect_objects(args.video, args.model, options=options, device=args.device, batch=args.batch,
                                 model_options=parse_options(args.option) or None, progress=not args.no_progress,
                                 **selection)
        written = [objects.save_mot(out / "objects.txt")]
        if not args.no_masks:
            objects.save_masks(out / "masks")
            written.append(out / "masks")
        if not args.no_overlay:
            written.append(write_objects_video(objects, args.video, out / "objects_overlay.mp4",
                                               progress=not args.no_progress, **selection))
        written.append(objects.save_summary(out / "objects.json", config=folder.config, outputs=[str(p) for p in written]))
        folder.record(outputs=[str(p) for p in written])
    print(f"objects: {objects.num_objects} moving objects, {len(objects)} boxes over {objects.num_frames} frames -> {out}")
    return 0
