"""``motion4d flow VIDEO --model NAME --out DIR``: optical flow for every frame pair of a video.

Outputs go to ``DIR/forward/<frame>.flo`` (and .png / .npz / colour images / an MP4 by ``--format``);
an interrupted run resumes: finished pairs are skipped. The resolved configuration is written to
``DIR/flow_config.json``. Decoding, flow and writing overlap; the classical methods spread the
frame pairs over ``--workers`` threads (default: one per core).
"""
from __future__ import annotations

import argparse

from motion4d.cli.arguments import (
    add_frame_selection,
    add_workers,
    frame_selection,
    parse_list,
    parse_options,
    parse_workers,
    stage_rates,
)


def build_parser(parser: argparse.ArgumentParser) -> None:
    from motion.estimate import FORMATS

    parser.add_argument("video", metavar="VIDEO", help="video file, image folder or single image list file")
    parser.add_argument("--model", default="dis", help="flow model (see `motion4d info` / motion.list_models()); default dis")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", default="flo", help=f"comma-separated outputs among {','.join(FORMATS)} (default "
                        "flo; occ = occlusion masks (PNG), conf = confidence maps (.npy), from the forward-backward check)")
    parser.add_argument("--backward", action="store_true", help="also write backward flow (t+1 -> t)")
    parser.add_argument("--batch", type=int, default=8, help="flows (or clips) per model call (default 8)")
    add_workers(parser)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--weights", default=None, help="checkpoint for network models")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option, repeatable (e.g. preset=fast)")
    parser.add_argument("--color-max-radius", type=float, default=None, help="flow length at full colour saturation")
    parser.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    add_frame_selection(parser)


def run(args: argparse.Namespace, model=None) -> int:
    """``model``: a FlowModel already built from these arguments (``motion4d corpus`` builds one per
    worker and reuses it for every video); by default it is built here."""
    from pathlib import Path

    import motion
    from motion.estimate import FORMATS, estimate_flow
    from motion4d.errors import MissingFileError

    if not Path(args.video).exists():  # before a model is built and its weights downloaded
        raise MissingFileError(f"VIDEO {args.video} does not exist (a video file, image folder or image list file)")

    formats = parse_list(args.format, "--format", FORMATS)
    options = parse_options(args.option)
    if model is not None:
        options = {}
    elif args.weights is not None:
        model = motion.create(args.model, weights=args.weights, device=args.device, **options)
        options = {}
    else:
        model = args.model
    result = estimate_flow(
        args.video,
        model,
        device=args.device,
        batch=args.batch,
        workers=parse_workers(args.workers),
        out_dir=args.out,
        formats=formats,
        backward=args.backward,
        model_options=options or None,
        color_max_radius=args.color_max_radius,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **frame_selection(args),
    )
    print(
        f"flow ({args.model}): {result.computed} pairs computed, {result.skipped} already done, "
        f"{result.image_size[1]}x{result.image_size[0]} -> {result.out_dir}"
    )
    if result.computed:
        print(f"  stages (items per busy second): {stage_rates(result.stages)}")
    return 0
