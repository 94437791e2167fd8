"""The corpus runner: this shard's pending videos through one task, locally or on Ray."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from motion4d.atomic import atomic_write_text
from motion4d.errors import InvalidArgumentError

from .listing import list_corpus
from .manifest import append_manifest, manifest_path
from .ray_engine import run_ray
from .tasks import TASKS, is_done, parse_task_args, process_video, task_argv

ENGINES = ("local", "ray")


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
    """Process this shard's videos of ``source`` (see :mod:`motion.corpus`)."""
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
        records = run_ray(task, pending, out, options, device, shard, ray_options or {})
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
