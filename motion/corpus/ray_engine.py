"""The Ray Data engine of the corpus runner: the pending videos mapped over a pool of (GPU) workers."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .listing import Video
from .tasks import process_video


def _ray_process(row: dict[str, Any]) -> dict[str, Any]:
    record = process_video(row["task"], Video(row["path"], row["id"]), row["out"], row["options"], row["device"],
                           tuple(row["shard"]))
    return {"record": json.dumps(record)}


def run_ray(task: str, videos: list[Video], out: Path, options: list[str], device: str | None,
            shard: tuple[int, int], ray_options: dict[str, Any]) -> list[dict[str, Any]]:
    """Ray Data adapter: one row per video, mapped over a pool of workers (GPU workers when asked).

    ``ray_options``: ``address`` (cluster; default start or join a local one), ``workers``
    (concurrency), ``num_gpus`` (per worker).
    """
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
