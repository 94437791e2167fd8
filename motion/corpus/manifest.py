"""The corpus manifest: one JSON line per attempt in ``OUT/manifest/shard-IIIII-of-NNNNN.jsonl``, keyed by
the video's resolved path, plus a summary per shard (``shard-IIIII-of-NNNNN.summary.json``) rewritten
after every video, so a shard that is killed leaves what it finished on record."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from motion4d.atomic import atomic_write_text


def manifest_path(out_dir: Path, shard: tuple[int, int]) -> Path:
    return out_dir / "manifest" / f"shard-{shard[0]:05d}-of-{shard[1]:05d}.jsonl"


def summary_path(out_dir: Path, shard: tuple[int, int]) -> Path:
    return manifest_path(out_dir, shard).with_suffix(".summary.json")


def append_manifest(path: Path, record: dict[str, Any]) -> None:
    """Append one record (one line, flushed and synced: a kill loses at most the line being written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_manifest(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Latest record per video (resolved path) over every shard's manifest (torn lines of a killed run are ignored)."""
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


class ShardSummary:
    """``shard-IIIII-of-NNNNN.summary.json``: counts and the failed / damaged videos with their errors,
    rewritten atomically after each video (``state`` is ``running`` until the shard ends)."""

    def __init__(self, path: Path, **header: Any) -> None:
        self.path = path
        self.data: dict[str, Any] = {**header, "state": "running", "started": time.time(), "done": 0, "skipped": 0,
                                     "failed": {}, "damaged": {}}
        self.write()

    def add(self, record: dict[str, Any]) -> None:
        status = record["status"]
        for key in ("failed", "damaged"):
            self.data[key].pop(record["video"], None)
        if status == "done":
            self.data["done"] += 1
        else:
            self.data[status][record["video"]] = record.get("error", "")
        self.write()

    def finish(self) -> None:
        self.data.update(state="finished", finished=time.time())
        self.write()

    def write(self) -> None:
        self.data["updated"] = time.time()
        atomic_write_text(self.path, json.dumps(self.data, indent=2))
