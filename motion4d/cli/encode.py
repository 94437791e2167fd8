"""``motion4d encode VIDEO --rgb --out FILE.mp4``: ReynoldsFlow+ (or HSV) encoding of a video for detectors.

``--rgb`` (default) writes R = |v_o|, G = |v_r|, B = grey intensity of the source frame, uint8, with a
temporally stable normaliser (``--normalize percentile``); ``--hsv v_o|v_r|sum`` writes the OpenCV HSV
visualisation instead. ``--out`` ending in .mp4/.mkv/.mov/.webm/.avi writes a video, otherwise a folder
of PNGs named by source frame index. The configuration is written beside the output.
"""
from __future__ import annotations

import argparse

from motion4d.cli.arguments import add_frame_selection, frame_selection, parse_options, stage_rates


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="video file or image folder")
    parser.add_argument("--out", required=True, help="output video (.mp4 ...) or PNG folder")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rgb", action="store_true", help="ReynoldsFlow+ RGB encoding (default)")
    mode.add_argument("--hsv", choices=("v_o", "v_r", "sum"), help="HSV visualisation of this term instead")
    parser.add_argument("--normalize", choices=("percentile", "minmax", "fixed"), default="percentile",
                        help="magnitude normalisation of the RGB encoding (default percentile: stable on video)")
    parser.add_argument("--bounds", default="8,2", help="fixed bounds for |v_o|,|v_r| in pixels (--normalize fixed)")
    parser.add_argument("--percentile", type=float, default=99.0, help="percentile of the running normaliser")
    parser.add_argument("--momentum", type=float, default=0.9, help="smoothing of the running normaliser over frames")
    parser.add_argument("--order", choices=("RGB", "BGR"), default="RGB", help="channel order of the images")
    parser.add_argument("--hsv-max", type=float, default=None, help="HSV full-brightness magnitude (default: fixed from the first frames)")
    parser.add_argument("--vo", choices=("normal", "dis", "farneback"), default="normal", help="conventional flow v_o")
    parser.add_argument("--solver", choices=("dct", "pcg"), default="dct", help="Poisson solver for v_r")
    parser.add_argument("--sigma", type=float, default=1.0, help="Gaussian pre-blur in pixels")
    parser.add_argument("--lighting", choices=("local", "affine", "offset", "none"), default="local", help="lighting compensation")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="other reynolds_flow option, repeatable")
    parser.add_argument("--batch", type=int, default=8, help="frame pairs per call (default 8)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_frame_selection(parser)


def run(args: argparse.Namespace) -> int:
    from motion.models.reynolds_encoding import ReynoldsEncoder, encode_video
    from motion4d.errors import InvalidArgumentError

    try:
        bounds = tuple(float(b) for b in args.bounds.split(","))
    except ValueError as exc:
        raise InvalidArgumentError(f"--bounds must be two numbers like 8,2; got {args.bounds!r}") from exc
    if len(bounds) != 2:
        raise InvalidArgumentError(f"--bounds must be two numbers like 8,2; got {args.bounds!r}")
    encoder = ReynoldsEncoder(
        normalize=args.normalize, bounds=bounds, percentile=args.percentile, momentum=args.momentum, order=args.order
    )
    options = {"vo": args.vo, "solver": args.solver, "sigma": args.sigma, "lighting": args.lighting}
    options.update(parse_options(args.option))
    summary = encode_video(
        args.video,
        args.out,
        encoding="hsv" if args.hsv else "rgb",
        hsv_term=args.hsv or "sum",
        hsv_max_magnitude=args.hsv_max,
        encoder=encoder,
        device=args.device,
        batch=args.batch,
        reynolds_options=options,
        progress=not args.no_progress,
        **frame_selection(args),
    )
    print(f"encode: {summary['frames']} images -> {summary['out']}")
    print(f"  stages (items per busy second): {stage_rates(summary['stages'])}")
    return 0
