"""``motion4d corpus INPUT --task flow|encode|track --out DIR [--task-options ...]``: every video of a corpus
(:mod:`motion.corpus`).

INPUT is a folder (its video files and its folders of images, found recursively) or a text file
listing videos / image folders, one per line; the first process freezes it into ``DIR/corpus.jsonl``
(resolved paths, sizes), which every shard and rerun reads (``--refresh-list`` lists INPUT again).
Each video goes through ``motion4d flow`` / ``encode`` / ``track`` with the options after
``--task-options`` (always the last argument), writing to ``DIR/<video id>/``.

``--shard-index`` / ``--num-shards`` default to what torchrun, ``srun`` and Slurm arrays say,
composed (``torchrun --nproc_per_node=8 -m motion4d corpus ...``, ``srun -n 8 motion4d corpus ...``,
``sbatch --array=0-63``, or an array whose elements run either): the table is in
:mod:`motion.launch`. Finished videos are skipped on a rerun; damaged ones (truncated / corrupt) are
recorded as ``damaged`` and skipped until they change; other failures are recorded and retried.
Failures never make the command fail (torchrun / Slurm would kill the other ranks): the summary lists
them and ``DIR/manifest/`` records them; ``--strict`` exits 1 when any video of this shard failed or
is damaged. ``--engine ray`` maps the pending videos over a Ray Data actor pool (``pip install
"ray[data]"`` on every node; videos and DIR on a shared file system).
"""
from __future__ import annotations

import argparse

SHOWN = 20  # failed / damaged videos listed on stdout (all of them are in DIR/manifest/)


def build_parser(parser: argparse.ArgumentParser) -> None:
    from motion.corpus import ENGINES, TASKS

    parser.add_argument("input", metavar="CORPUS_DIR|LIST_FILE",
                        help="folder of videos / image folders (searched recursively), or a text file listing them")
    parser.add_argument("--task", choices=sorted(TASKS), default="flow", help="flow | encode | track (default flow)")
    parser.add_argument("--out", required=True, help="output folder: corpus.jsonl, one sub-folder per video, manifest/, logs/")
    parser.add_argument("--shard-index", type=int, default=None, help="this shard (default: torchrun / srun / Slurm array)")
    parser.add_argument("--num-shards", type=int, default=None, help="number of shards (default: torchrun / srun / Slurm array)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a video of this shard failed or is damaged (default: 0, failures are in the summary)")
    parser.add_argument("--refresh-list", action="store_true",
                        help="list INPUT again into OUT/corpus.jsonl (new videos; only while no shard of the job runs)")
    parser.add_argument("--retry-damaged", action="store_true", help="process videos recorded as damaged again")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch / OpenCV threads per process (Ray: per actor; default there: --ray-cpus)")
    parser.add_argument("--engine", choices=ENGINES, default="local", help="local (this process) | ray (Ray Data actor pool)")
    ray = parser.add_argument_group("Ray engine")
    ray.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a new local cluster)")
    ray.add_argument("--ray-actors", "--ray-workers", dest="ray_actors", type=int, default=None,
                     help="actors in the pool (default: as many as the cluster holds, at most one per video)")
    ray.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per actor (default 1)")
    ray.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per actor (e.g. 1 or 0.5; default 0: CPU actors)")
    ray.add_argument("--ray-runtime-env", default=None, metavar="JSON",
                     help='Ray runtime_env of the job, e.g. \'{"env_vars": {"HF_HOME": "/shared/hf"}}\'')
    parser.add_argument("--task-options", nargs=argparse.REMAINDER, default=[],
                        help="LAST argument: everything after it goes to the task, e.g. --task-options --model dis --format flo")


def run(args: argparse.Namespace) -> int:
    from motion.corpus import run_corpus
    from motion4d.cli.arguments import parse_json_object

    options = list(args.task_options)
    if options and options[0] == "--":
        options = options[1:]
    ray_options = {"address": args.ray_address, "actors": args.ray_actors, "num_cpus": args.ray_cpus,
                   "num_gpus": args.ray_gpus}
    if args.ray_runtime_env is not None:
        ray_options["runtime_env"] = parse_json_object(args.ray_runtime_env, "--ray-runtime-env")
    report = run_corpus(
        args.input, args.task, args.out, options, shard_index=args.shard_index, num_shards=args.num_shards,
        engine=args.engine, threads=args.threads, ray_options=ray_options, refresh_list=args.refresh_list,
        retry_damaged=args.retry_damaged, progress=not args.no_progress,
    )
    print(f"corpus {args.task} shard {report.shard[0]}/{report.shard[1]} ({report.launch}): {report.assigned} videos, "
          f"{report.done} done, {report.skipped} already settled, {len(report.failed)} failed, "
          f"{len(report.damaged)} damaged")
    for status in ("failed", "damaged"):
        videos = getattr(report, status)
        for video in videos[:SHOWN]:
            print(f"  {status}: {video}")
        if len(videos) > SHOWN:
            print(f"  ... {len(videos) - SHOWN} more {status}")
    if report.failed or report.damaged:
        print(f"  details: {args.out}/manifest/ (errors per video) and {args.out}/<video id>/log.txt")
    return 1 if args.strict and (report.failed or report.damaged) else 0

