"""``motion4d submit --model NAME --dataset sintel|kitti --root DIR --out DIR``: benchmark submission trees
(:mod:`motion.submission`), checked against the official layout at the end."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from motion4d.cli.arguments import parse_list, parse_options


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered flow model (motion.list_models())")
    parser.add_argument("--weights", default=None, help="checkpoint file or named weight set")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option, repeatable")
    parser.add_argument("--dataset", required=True, choices=("sintel", "kitti"))
    parser.add_argument("--root", required=True, help="MPI-Sintel-complete or KITTI 2015 folder (with test/ or testing/)")
    parser.add_argument("--out", required=True, help="output folder of the submission tree")
    parser.add_argument("--passes", default="clean,final", help="Sintel passes (default clean,final)")
    parser.add_argument("--protocol", default="auto", help="auto | pairs | sequence | clip:T:TARGET[:INDEX[:CALL]]")
    parser.add_argument("--multiview-root", default=None, help="KITTI multi-view extension when not in --root")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def run(args: argparse.Namespace) -> int:
    import motion
    from motion.submission import check_test_set, write_submission
    from motion4d.atomic import atomic_write_text

    options = parse_options(args.option)
    passes = parse_list(args.passes, "--passes", ("clean", "final"))
    check_test_set(args.dataset, args.root, passes, args.multiview_root)  # before weights are downloaded
    model = motion.create(args.model, weights=args.weights, device=args.device, **options)
    report = write_submission(model, args.model, args.dataset, args.root, args.out, passes=passes,
                              protocol=args.protocol, device=args.device, multiview_root=args.multiview_root,
                              progress=not args.no_progress)
    config: dict[str, Any] = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    config.update(files=report.files, computed=report.computed, skipped=report.skipped)
    atomic_write_text(Path(args.out) / "submission_config.json", json.dumps(config, indent=2, default=str))
    if report.clipped_pixels:
        print(f"warning: {report.clipped_pixels} KITTI pixels exceeded +-512 px and were clipped to the PNG range")
    print(f"submission {args.dataset}: {report.files} files ({report.computed} written, {report.skipped} kept) "
          f"in {report.out_dir}, layout verified")
    return 0
