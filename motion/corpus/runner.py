"""The corpus runner: this shard's pending videos through one task, locally or on a Ray cluster."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from motion4d.errors import InvalidArgumentError

from .frozen import freeze_corpus
from .listing import Video
from .manifest import ShardSummary, append_manifest, manifest_path, read_manifest, summary_path
from .tasks import TASKS, CorpusWorker, parse_task_args, settled_record, task_argv

ENGINES = ("local", "ray")


@dataclass
class CorpusReport:
    """What one shard did: ``done`` this run, ``skipped`` (settled by an earlier run), ``failed`` and
    ``damaged`` videos (resolved paths) of this shard, including damaged ones known from earlier runs."""

    shard: tuple[int, int]
    assigned: int
    done: int
    skipped: int
    failed: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    launch: str = "a single process"


def resolve_shard(shard_index: int | None, num_shards: int | None) -> tuple[tuple[int, int], str]:
    """``(index, count)`` of this process's shard and who decided it (explicit, or torchrun / srun / array)."""
    from motion.distributed import check_shard, shard_from_env
    from motion.launch import check_explicit_shard, read_launch

    if (shard_index is None) != (num_shards is None):
        raise InvalidArgumentError("give both --shard-index and --num-shards, or neither (then torchrun / Slurm decide)")
    if shard_index is not None:
        check_explicit_shard()
        return check_shard(shard_index, num_shards), "--shard-index/--num-shards"
    return shard_from_env(), read_launch().describe()


def _local_device(options: Sequence[str], device: str | None) -> str | None:
    """This process's GPU under torchrun / srun (``cuda:LOCAL_RANK``) when CUDA is there and nothing was asked."""
    if device is not None or "--device" in options:
        return device
    import torch

    if not torch.cuda.is_available():
        return None
    from motion.launch import read_launch

    launch = read_launch()
    local = launch.torchrun[2] if launch.torchrun else launch.srun[2] if launch.srun else 0
    return f"cuda:{local % torch.cuda.device_count()}"


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
    threads: int | None = None,
    ray_options: dict[str, Any] | None = None,
    refresh_list: bool = False,
    retry_damaged: bool = False,
    progress: bool = True,
) -> CorpusReport:
    """Process this shard's videos of ``source`` (see :mod:`motion.corpus`).

    Args:
        source: folder of videos / frame folders, or a list file; frozen into ``out_dir/corpus.jsonl``
            by the first process (later ones and reruns read that list).
        shard_index, num_shards: this shard; default: from torchrun / srun / Slurm arrays.
        engine: ``local`` (this process) or ``ray`` (a Ray Data actor pool; ``ray_options``:
            ``address``, ``actors``, ``num_cpus`` and ``num_gpus`` per actor, ``runtime_env``).
        device: ``--device`` for the tasks (local engine; default ``cuda:LOCAL_RANK`` when CUDA is there).
        threads: torch / OpenCV threads per process (Ray: per actor, default its ``num_cpus``).
        refresh_list: list ``source`` again into ``out_dir/corpus.jsonl`` (no shard may be running).
        retry_damaged: process again videos recorded as damaged.

    Per-video failures never raise: they are recorded (manifest, summary, :class:`CorpusReport`).
    """
    from tqdm.auto import tqdm

    from motion4d.checks import check_choice

    check_choice(engine, "engine", ENGINES)
    if task not in TASKS:
        raise InvalidArgumentError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if threads is not None and threads < 1:
        raise InvalidArgumentError(f"threads must be >= 1, got {threads}")
    shard, launch = resolve_shard(shard_index, num_shards)
    options = list(options)
    out = Path(out_dir).resolve()  # workers elsewhere (Ray) and reruns from other folders see one path
    if engine == "local":  # bad options fail before any work
        device = _local_device(options, device)
        parse_task_args(task, task_argv(task, Video(str(out / "probe"), "probe"), out, options, device))
    else:
        from .ray_engine import check_ray_options

        check_ray_options(task, options, out, ray_options or {})
    corpus = freeze_corpus(source, out, refresh=refresh_list)
    from motion.distributed import shard_items

    mine = shard_items(corpus.videos, *shard)
    manifest = manifest_path(out, shard)
    recorded = read_manifest(out)
    pending: list[Video] = []
    settled: list[dict[str, Any]] = []
    for video in mine:
        record = settled_record(task, out, video, options, retry_damaged)
        if record is None:
            pending.append(video)
            continue
        settled.append(record)
        if recorded.get(video.path, {}).get("status") != record["status"]:  # e.g. finished as a driver was killed
            append_manifest(manifest, {**record, "recovered": True})
    summary = ShardSummary(summary_path(out, shard), task=task, options=options, shard=list(shard), launch=launch,
                           engine=engine, corpus=str(corpus.path), assigned=len(mine))
    summary.data["skipped"] = len(settled)
    summary.data["damaged"].update({r["video"]: r.get("error", "") for r in settled if r["status"] == "damaged"})
    summary.write()
    report = CorpusReport(shard, len(mine), 0, len(settled), [], [r["video"] for r in settled if r["status"] == "damaged"],
                          launch)
    bar = tqdm(total=len(pending), desc=f"corpus {task} shard {shard[0]}/{shard[1]}", unit="video",
               disable=not progress)
    for record in _records(engine, task, pending, out, options, device, threads, shard, ray_options or {}):
        append_manifest(manifest, record)
        summary.add(record)
        if record["status"] == "done":
            report.done += 1
        else:
            getattr(report, record["status"]).append(record["video"])
        bar.update(1)
        bar.set_postfix(failed=len(report.failed), damaged=len(report.damaged))
    bar.close()
    summary.finish()
    return report


def _records(engine: str, task: str, videos: list[Video], out: Path, options: list[str], device: str | None,
             threads: int | None, shard: tuple[int, int], ray_options: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each video's record, as it finishes."""
    if not videos:
        return
    if engine == "ray":
        from .ray_engine import run_ray

        yield from run_ray(task, videos, out, options, shard, {**ray_options, "threads": threads})
        return
    worker = CorpusWorker(task, options, out, device, threads=threads)  # the model is built once, here
    for video in videos:
        yield worker.process(video, shard)
