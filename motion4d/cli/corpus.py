"""``motion4d corpus INPUT --task flow|encode|track --out DIR [--task-options ...]``: every video of a corpus
(:mod:`motion.corpus`).

INPUT is a folder (its video files and its folders of images, found recursively) or a text file
listing videos / image folders, one per line. Each video goes through ``motion4d flow`` / ``encode``
/ ``track`` with the options after ``--task-options`` (always the last argument), writing to
``DIR/<video id>/``. ``--shard-index`` / ``--num-shards`` default to torchrun's ``RANK`` /
``WORLD_SIZE`` or Slurm's array / task ids, so ``torchrun --nproc_per_node=8 -m motion4d corpus ...``
or an ``sbatch --array=0-63`` job splits the corpus without overlap. Finished videos are skipped on
a rerun; failures are recorded in ``DIR/manifest/`` and retried on the next run. ``--engine ray``
hands the pending videos to a Ray Data pool (needs ``pip install "ray[data]"``).
"""
from __future__ import annotations

import argparse


def build_parser(parser: argparse.ArgumentParser) -> None:
    from motion.corpus import ENGINES, TASKS

    parser.add_argument("input", metavar="CORPUS_DIR|LIST_FILE",
                        help="folder of videos / image folders (searched recursively), or a text file listing them")
    parser.add_argument("--task", choices=sorted(TASKS), default="flow", help="flow | encode | track (default flow)")
    parser.add_argument("--out", required=True, help="output folder: one sub-folder per video plus manifest/")
    parser.add_argument("--shard-index", type=int, default=None, help="this shard (default: torchrun RANK / Slurm ids)")
    parser.add_argument("--num-shards", type=int, default=None, help="number of shards (default: WORLD_SIZE / Slurm)")
    parser.add_argument("--engine", choices=ENGINES, default="local", help="local (this process) | ray (Ray Data pool)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (default: start or join a local one)")
    parser.add_argument("--ray-workers", type=int, default=None, help="Ray: concurrent workers")
    parser.add_argument("--ray-gpus", type=float, default=0.0, help="Ray: GPUs per worker (e.g. 1 or 0.5)")
    parser.add_argument("--task-options", nargs=argparse.REMAINDER, default=[],
                        help="LAST argument: everything after it goes to the task, e.g. --task-options --model dis --format flo")


def run(args: argparse.Namespace) -> int:
    from motion.corpus import run_corpus

    options = list(args.task_options)
    if options and options[0] == "--":
        options = options[1:]
    report = run_corpus(
        args.input, args.task, args.out, options, shard_index=args.shard_index, num_shards=args.num_shards,
        engine=args.engine, progress=not args.no_progress,
        ray_options={"address": args.ray_address, "workers": args.ray_workers, "num_gpus": args.ray_gpus},
    )
    print(f"corpus {args.task} shard {report.shard[0]}/{report.shard[1]}: {report.assigned} videos, {report.done} done, "
          f"{report.skipped} already finished, {len(report.failed)} failed")
    for video in report.failed:
        print(f"  failed: {video} (see {args.out}/manifest)")
    return 1 if report.failed else 0
