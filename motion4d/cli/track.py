"""``motion4d track VIDEO --out DIR --format csv,tapvid,...``: point tracks from chained optical flow.

Queries: a grid (``--grid 16``, optionally inside ``--mask mask.png``), every pixel of a mask, or a
file of ``(t, x, y)`` rows (``--queries points.csv`` / ``.npy``). Outputs ``DIR/tracks.<ext>`` per
format, ``DIR/tracks_overlay.mp4`` with ``--overlay``, and ``DIR/track_config.json``. Visibility and
confidence come from the forward-backward check of every step, the check that gives ``motion4d flow
--format occ,conf`` its masks and maps. The flow runs through the video pipeline (``--workers``). ``--export`` is
the old name of ``--format``, accepted with a warning until the next release.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from motion4d.cli.arguments import (
    add_frame_selection,
    add_workers,
    check_video,
    frame_selection,
    owned_output_folder,
    parse_list,
    parse_options,
    parse_workers,
    warn,
)

FORMATS = ("csv", "parquet", "cotracker", "tapvid", "mot", "json")  # motion.track_formats.TRACK_FORMATS


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="video file or image folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", default=None, help=f"comma-separated outputs among {','.join(FORMATS)} (default csv)")
    parser.add_argument("--export", default=None, help=argparse.SUPPRESS)  # deprecated name of --format
    parser.add_argument("--model", default="dis", help="flow model used for chaining (default dis)")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="flow model option, repeatable")
    parser.add_argument("--grid", type=int, default=None, help="grid spacing in pixels (default 16 without --queries/--mask)")
    parser.add_argument("--queries", default=None, help="file of (t, x, y) rows: .csv/.txt (comma or space separated) or .npy")
    parser.add_argument("--mask", default=None, help="image whose non-zero pixels select query points")
    parser.add_argument("--max-mask-points", type=int, default=2000, help="random subset size of mask queries")
    parser.add_argument("--query-frame", type=int, default=0, help="frame of grid / mask queries")
    parser.add_argument("--fb-alpha", type=float, default=0.01, help="forward-backward check: relative tolerance")
    parser.add_argument("--fb-beta", type=float, default=0.5, help="forward-backward check: absolute tolerance (px^2)")
    parser.add_argument("--max-occluded", type=int, default=3, help="inconsistent steps in a row before a track is lost")
    parser.add_argument("--overlay", action="store_true", help="also write an overlay video of the tracks")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    parser.add_argument("--batch", type=int, default=8, help="flows per model call")
    add_workers(parser)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_frame_selection(parser)


def _format_argument(args: argparse.Namespace) -> str:
    """``--format``, or the deprecated ``--export`` (with a warning)."""
    from motion4d.errors import InvalidArgumentError

    if args.export is None:
        return args.format or "csv"
    if args.format is not None:
        raise InvalidArgumentError("give --format only (--export is its deprecated old name)")
    warn("track", "--export is deprecated and will be removed in the next release; use --format")
    return args.export


def run(args: argparse.Namespace, model=None) -> int:
    """``model``: a FlowModel already built from ``--model``/``--option`` (``motion4d corpus`` builds one
    per worker and reuses it for every video); by default it is built from the name."""
    from motion.image_io import read_image
    from motion.track_io import export_tracks
    from motion.track_queries import read_queries
    from motion.track_video import write_tracks_video
    from motion.tracking import ChainOptions, mask_queries, track_points

    formats = parse_list(_format_argument(args), "--format", FORMATS)
    out = Path(args.out)
    selection = frame_selection(args)
    queries = read_queries(args.queries, "--queries") if args.queries else None
    mask = None
    if args.mask:
        image = read_image(args.mask)
        mask = (image.max(axis=-1) if image.ndim == 3 else image) > 0
        if args.grid is None and queries is None:
            queries = mask_queries(mask, frame=args.query_frame, max_points=args.max_mask_points)
            mask = None
    check_video(args)
    with owned_output_folder(args, "track_config.json", args.video, format=",".join(formats),
                             resize=selection["resize"]) as folder:
        tracks = track_points(
            args.video,
            args.model if model is None else model,
            queries=queries,
            grid=args.grid,
            mask=mask,
            query_frame=args.query_frame,
            options=ChainOptions(alpha=args.fb_alpha, beta=args.fb_beta, max_occluded=args.max_occluded),
            device=args.device,
            batch=args.batch,
            workers=parse_workers(args.workers),
            model_options=(parse_options(args.option) or None) if model is None else None,
            progress=not args.no_progress,
            **selection,
        )
        # MOT: one box per object grouped from the tracks; TAP-Vid: the released layout, frames included
        options = {"video": args.video} if "tapvid" in formats else {}
        written = export_tracks(tracks, out, formats, **options)
        if args.overlay:
            written.append(write_tracks_video(tracks, args.video, out / "tracks_overlay.mp4", **selection))
        folder.record(num_tracks=tracks.num_tracks, num_frames=tracks.num_frames, image_size=list(tracks.image_size),
                      outputs=[str(p) for p in written])
    visible = tracks.visible.mean() if tracks.num_tracks else 0.0
    print(f"track: {tracks.num_tracks} tracks over {tracks.num_frames} frames ({visible:.0%} visible) -> {out}")
    return 0
