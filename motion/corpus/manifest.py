"""The corpus manifest: one JSON line per attempt in ``OUT/manifest/shard-IIIII-of-NNNNN.jsonl``."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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
