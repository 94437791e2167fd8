"""The ``gaussian-flow`` runner of ``motion4d reconstruct``: a D-NeRF folder
(:func:`splats.dnerf_reconstruction.reconstruct_dnerf`) or a video with ``--poses`` from GFlow or
COLMAP (:func:`splats.posed_video.reconstruct_posed_video`)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from motion4d.cli.arguments import parse_json_object
from motion4d.errors import InvalidArgumentError


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--split", default="train", help="training split (D-NeRF)")
    group.add_argument("--eval-split", default="test", help="split rendered and scored after training, if present")
    group.add_argument("--downscale", type=int, default=1, help="integer image downscale factor (D-NeRF: 2)")
    group.add_argument("--background", default="white", help="white | black | r,g,b in [0, 1]")
    group.add_argument("--poses", default=None,
                       help="video input: camera poses from a GFlow run folder (or its scene.pt) or a COLMAP text "
                            "folder (cameras.txt, images.txt; image i in name order = frame i)")
    group.add_argument("--holdout", type=int, default=0,
                       help="video input: leave every n-th frame out of the fit and score it (0: none)")


def parse_background(text: str) -> tuple[float, float, float]:
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


def run(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    common = dict(config=parse_json_object(args.config, "--config"), iterations=args.iterations, seed=args.seed,
                  device=args.device, resume=not args.no_resume, progress=not args.no_progress,
                  videos=not args.no_video)
    data = Path(args.data)
    if data.is_dir() and any(data.glob("transforms_*.json")):
        if args.poses is not None:
            raise InvalidArgumentError("--poses applies to video input; a D-NeRF folder carries its own cameras")
        from splats.dnerf_reconstruction import reconstruct_dnerf

        return reconstruct_dnerf(args.data, out_dir, split=args.split, eval_split=args.eval_split,
                                 downscale=args.downscale, background=parse_background(args.background), **common)
    if args.poses is None:
        raise InvalidArgumentError(f"{args.data} is not a D-NeRF folder (no transforms_*.json); a video needs --poses "
                                   "(a GFlow run folder, e.g. from 'motion4d reconstruct --method gflow', or a COLMAP "
                                   "text folder)")
    from motion4d.cli.reconstruct import frame_selection
    from splats.posed_video import reconstruct_posed_video

    common["config"] = {"background": parse_background(args.background), **common["config"]}
    return reconstruct_posed_video(args.data, args.poses, out_dir, holdout=args.holdout, **frame_selection(args),
                                   **common)
