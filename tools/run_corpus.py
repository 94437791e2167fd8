"""``motion4d corpus INPUT --task flow|encode|track --out DIR [--task-options ...]``: every video of a corpus.

INPUT is a folder (its video files and its folders of images, found recursively) or a text file
listing videos / image folders, one per line (``#`` comments; relative paths are relative to the
list). Each video is one unit of work, handed to the same code as ``motion4d flow`` / ``encode`` /
``track`` with the options after ``--task-options`` (e.g. ``--task-options --model dis --format flo,mp4``,
always the last argument), writing to
``DIR/<video id>/``. The videos are sorted and dealt round-robin to ``--num-shards`` shards;
``--shard-index`` / ``--num-shards`` default to torchrun's ``RANK`` / ``WORLD_SIZE`` or Slurm's
array / task ids, so ``torchrun --nproc_per_node=8 -m tools.cli corpus ...`` or an ``sbatch
--array=0-63`` job splits the corpus without overlap (on GPUs each process uses
``cuda:LOCAL_RANK`` unless ``--device`` is given).

Idempotent: a finished video has ``DIR/<id>/.done.json`` (written last, atomically) and is skipped
on a rerun; a video that fails (corrupt file, ...) is recorded as failed in the manifest and the run
goes on (it is retried on the next run). The manifest is one JSON line per attempt in
``DIR/manifest/shard-IIIII-of-NNNNN.jsonl`` plus a summary per shard; :func:`read_manifest` merges
all shards. ``--engine ray`` hands the pending videos to a Ray Data pool of (GPU) workers instead of
this process (needs ``pip install "ray[data]"``).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import io
import json
import os
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from motion4d.atomic import atomic_write_text
from motion4d.errors import InvalidArgumentError, MissingFileError

TASKS: dict[str, str] = {"flow": "tools.infer_video", "encode": "tools.encode", "track": "tools.export_tracks"}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
DONE_NAME = ".done.json"
ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Video:
    """One unit of work: a video file or a folder of frames, and the name of its output folder."""

    path: str
    id: str


# --------------------------------------------------------------------------------------------------
# Corpus listing


def _is_frame_folder(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS for e in entries)


def _video_id(relative: str) -> str:
    """Output folder name of a video: its relative path with separators flattened, made unique."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", relative.replace(os.sep, "__").replace("/", "__")).strip("._") or "video"
    digest = hashlib.sha1(relative.encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def list_corpus(source: str | os.PathLike) -> list[Video]:
    """Videos of a folder (recursive; folders of images count as videos) or of a list file, sorted."""
    source = Path(source)
    if source.is_file():
        base = source.parent
        paths = []
        for line in source.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            path = Path(line) if Path(line).is_absolute() else base / line
            paths.append((os.path.normpath(line), path))
    elif source.is_dir():
        paths = []
        for folder, dirs, files in os.walk(source):
            dirs.sort()
            folder_path = Path(folder)
            if folder_path != source and _is_frame_folder(folder_path):
                paths.append((str(folder_path.relative_to(source)), folder_path))
                dirs.clear()  # a frame folder is one video
                continue
            for name in files:
                if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                    path = folder_path / name
                    paths.append((str(path.relative_to(source)), path))
    else:
        raise MissingFileError(f"corpus input {source} does not exist (expected a folder of videos or a list file)")
    unique = {}
    for relative, path in paths:
        unique.setdefault(str(path), Video(str(path), _video_id(relative)))
    videos = sorted(unique.values(), key=lambda v: v.path)
    if not videos:
        raise MissingFileError(f"corpus input {source}: no videos ({', '.join(VIDEO_EXTENSIONS)}) or image folders found")
    return videos


# --------------------------------------------------------------------------------------------------
# One video


def task_output(task: str, out_dir: Path, video: Video) -> Path:
    """What the task's ``--out`` is for a video: a folder, or the encoding's MP4 inside it."""
    folder = out_dir / video.id
    return folder / "encoding.mp4" if task == "encode" else folder


def _task_parser(task: str) -> argparse.ArgumentParser:
    if task not in TASKS:
        raise InvalidArgumentError(f"--task must be one of {sorted(TASKS)}, got {task!r}")
    parser = argparse.ArgumentParser(prog=f"motion4d corpus --task {task} --", add_help=False, exit_on_error=False)
    importlib.import_module(TASKS[task]).build_parser(parser)
    return parser


def task_argv(task: str, video: Video, out_dir: Path, options: Sequence[str], device: str | None) -> list[str]:
    argv = [video.path, "--out", str(task_output(task, out_dir, video)), *options]
    if "--no-progress" not in options:
        argv.append("--no-progress")
    if device is not None and "--device" not in options:
        argv += ["--device", device]
    return argv


def parse_task_args(task: str, argv: Sequence[str]) -> argparse.Namespace:
    parser = _task_parser(task)
    try:
        return parser.parse_args(list(argv))
    except (argparse.ArgumentError, SystemExit) as exc:
        raise InvalidArgumentError(f"bad options for task {task}: {' '.join(argv[2:])} ({exc})") from exc


def _signature(task: str, options: Sequence[str]) -> str:
    return json.dumps({"task": task, "options": list(options)})


def is_done(task: str, out_dir: Path, video: Video, options: Sequence[str]) -> bool:
    marker = out_dir / video.id / DONE_NAME
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("signature") == _signature(task, options)
    except (json.JSONDecodeError, OSError):
        return False


def process_video(task: str, video: Video, out_dir: str | os.PathLike, options: Sequence[str],
                  device: str | None = None, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Run ``task`` on one video; never raises for a failure of that video: returns its manifest record."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    record: dict[str, Any] = {"video": video.path, "id": video.id, "task": task, "shard": list(shard),
                              "host": os.uname().nodename, "pid": os.getpid(), "started": time.time()}
    folder = out_dir / video.id
    folder.mkdir(parents=True, exist_ok=True)
    log = io.StringIO()
    try:
        args = parse_task_args(task, task_argv(task, video, out_dir, options, device))
        with contextlib.redirect_stdout(log):
            code = importlib.import_module(TASKS[task]).run(args)
        if code not in (0, None):
            raise RuntimeError(f"task {task} exited with status {code}")
    except Exception as exc:  # one bad video must not stop the corpus: record it and go on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started)
        log.write(traceback.format_exc())
    else:
        record.update(status="done", seconds=time.perf_counter() - started)
        atomic_write_text(folder / DONE_NAME, json.dumps({**record, "signature": _signature(task, options)}, indent=2))
    atomic_write_text(folder / "log.txt", log.getvalue())
    return record


# --------------------------------------------------------------------------------------------------
# Manifest


def manifest_path(out_dir: Path, shard: tuple[int, int]) -> Path:
    return out_dir / "manifest" / f"shard-{shard[0]:05d}-of-{shard[1]:05d}.jsonl"


def append_manifest(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_manifest(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Latest record per video over every shard's manifest (torn lines of a killed run are ignored)."""
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(out_dir) / "manifest").glob("shard-*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            old = latest.get(record["video"])
            if old is None or record.get("started", 0) >= old.get("started", 0):
                latest[record["video"]] = record
    return latest


# --------------------------------------------------------------------------------------------------
# Runner


@dataclass
class CorpusReport:
    shard: tuple[int, int]
    assigned: int
    done: int
    skipped: int
    failed: list[str]


def run_corpus(
    source: str | os.PathLike,
    task: str,
    out_dir: str | os.PathLike,
    options: Sequence[str] = (),
    *,
    shard_index: int | None = None,
    num_shards: int | None = None,
    engine: str = "local",
    device: str | None = None,
    ray_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> CorpusReport:
    """Process this shard's videos of ``source`` (see the module docstring)."""
    from tqdm.auto import tqdm

    from motion.distributed import check_shard, env_rank, shard_from_env, shard_items
    from motion4d.checks import check_choice

    check_choice(engine, "engine", ENGINES)
    if task not in TASKS:
        raise InvalidArgumentError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if (shard_index is None) != (num_shards is None):
        raise InvalidArgumentError("give both --shard-index and --num-shards, or neither (then torchrun / Slurm decide)")
    shard = check_shard(shard_index, num_shards) if shard_index is not None else shard_from_env()
    options = list(options)
    out = Path(out_dir)
    videos = list_corpus(source)
    parse_task_args(task, task_argv(task, videos[0], out, options, device))  # bad options fail before any work
    if device is None and "--device" not in options:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{env_rank()[2] % torch.cuda.device_count()}"
    mine = shard_items(videos, *shard)
    pending = [v for v in mine if not is_done(task, out, v, options)]
    skipped = len(mine) - len(pending)
    manifest = manifest_path(out, shard)
    records: list[dict[str, Any]] = []
    if engine == "ray":
        records = _run_ray(task, pending, out, options, device, shard, ray_options or {})
        for record in records:
            append_manifest(manifest, record)
    else:
        bar = tqdm(pending, desc=f"corpus {task} shard {shard[0]}/{shard[1]}", unit="video", disable=not progress)
        for video in bar:
            record = process_video(task, video, out, options, device, shard)
            append_manifest(manifest, record)
            records.append(record)
            bar.set_postfix(failed=sum(r["status"] == "failed" for r in records))
    failed = [r["video"] for r in records if r["status"] == "failed"]
    report = CorpusReport(shard, len(mine), len(records) - len(failed), skipped, failed)
    summary = {"task": task, "options": options, "shard": list(shard), "assigned": len(mine), "done": report.done,
               "skipped": skipped, "failed": {r["video"]: r["error"] for r in records if r["status"] == "failed"},
               "finished": time.time()}
    atomic_write_text(manifest.with_suffix(".summary.json"), json.dumps(summary, indent=2))
    return report


def _ray_process(row: dict[str, Any]) -> dict[str, Any]:
    record = process_video(row["task"], Video(row["path"], row["id"]), row["out"], row["options"], row["device"],
                           tuple(row["shard"]))
    return {"record": json.dumps(record)}


def _run_ray(task: str, videos: list[Video], out: Path, options: list[str], device: str | None,
             shard: tuple[int, int], ray_options: dict[str, Any]) -> list[dict[str, Any]]:
    """Ray Data adapter: one row per video, mapped over a pool of workers (GPU workers when asked)."""
    from motion4d.checks import require

    ray = require("ray", "motion4d corpus --engine ray", extra=None)
    require("ray.data", "motion4d corpus --engine ray")
    if not videos:
        return []
    if not ray.is_initialized():
        ray.init(address=ray_options.get("address"))
    rows = [{"task": task, "path": v.path, "id": v.id, "out": str(out), "options": options,
             "device": "cuda" if ray_options.get("num_gpus") else device, "shard": list(shard)} for v in videos]
    dataset = ray.data.from_items(rows).map(
        _ray_process, num_gpus=ray_options.get("num_gpus", 0), concurrency=ray_options.get("workers"),
    )
    return [json.loads(r["record"]) for r in dataset.take_all()]


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="folder of videos / image folders, or a text file listing them")
    parser.add_argument("--task", choices=sorted(TASKS), default="flow", help="flow | encode | track (default flow)")
    parser.add_argument("--out", required=True, help="output folder: one sub-folder per video plus manifest/")
    parser.add_argument("--shard-index", type=int, default=None, help="this shard (default: torchrun RANK / Slurm ids)")
    parser.add_argument("--num-shards", type=int, default=None, help="number of shards (default: WORLD_SIZE / Slurm)")
    parser.add_argument("--engine", choices=ENGINES, default="local", help="local (this process) | ray (Ray Data pool)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster address (default: start or join a local one)")
    parser.add_argument("--ray-workers", type=int, default=None, help="Ray: concurrent workers")
    parser.add_argument("--ray-gpus", type=float, default=0.0, help="Ray: GPUs per worker (e.g. 1 or 0.5)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--task-options", nargs=argparse.REMAINDER, default=[],
                        help="LAST argument: everything after it goes to the task, e.g. --task-options --model dis --format flo")


def run(args: argparse.Namespace) -> int:
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
