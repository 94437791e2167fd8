"""The corpus frozen once into ``OUT/corpus.jsonl``: the list every shard and every rerun reads.

The first process of a job to get there lists the input (:func:`~motion.corpus.listing.list_corpus`:
sorted, resolved paths, sizes) and publishes the list with a hard link, which succeeds for exactly
one process; the others read the published list. So all shards of a job deal from the same list even
when videos are added to the folder while it runs, and a rerun (from any working directory, with
the input spelled any way) finds the same videos under the same names. ``refresh=True`` lists the
input again (to take in new videos; run it when no shard of the job is running).

Format: a header line ``{"format": "motion4d-corpus-list-v1", "source": ..., "created": ..., "videos": N}``
then one line per video ``{"path": ..., "id": ..., "bytes": ...}``.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from motion4d.atomic import atomic_write_text
from motion4d.errors import InputFileError, InvalidArgumentError

from .listing import Video, list_corpus

LIST_NAME = "corpus.jsonl"
LIST_FORMAT = "motion4d-corpus-list-v1"


@dataclass(frozen=True)
class FrozenCorpus:
    """The published list: where it is, the input it was made from, when, and its videos in order."""

    path: Path
    source: str
    created: float
    videos: list[Video]


def _list_text(source: str, videos: list[Video]) -> str:
    header = {"format": LIST_FORMAT, "source": source, "created": time.time(), "videos": len(videos)}
    lines = [json.dumps(header)] + [json.dumps({"path": v.path, "id": v.id, "bytes": v.bytes}) for v in videos]
    return "\n".join(lines) + "\n"


def read_frozen(path: str | os.PathLike) -> FrozenCorpus:
    """Read a published list (raises InputFileError for anything else, including a cut-off file)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
        header = json.loads(lines[0])
        videos = [Video(**json.loads(line)) for line in lines[1:]]
    except (OSError, IndexError, TypeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{path}: not a readable corpus list ({exc})") from exc
    if header.get("format") != LIST_FORMAT or header.get("videos") != len(videos):
        raise InputFileError(f"{path}: not a complete {LIST_FORMAT} file ({len(videos)} of {header.get('videos')} videos)")
    return FrozenCorpus(path, header["source"], header["created"], videos)


def _publish_once(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` unless it exists: a hard link from a complete temporary file, so
    readers never see a partial list and only one of racing writers wins."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass  # another shard published first: its list is the list
        except OSError:  # a file system without hard links: exclusive create, then the content
            try:
                with open(target, "x") as f:
                    f.write(text)
            except FileExistsError:
                pass
    finally:
        os.unlink(tmp)


def freeze_corpus(source: str | os.PathLike, out_dir: str | os.PathLike, *, refresh: bool = False) -> FrozenCorpus:
    """The list of ``source`` published in ``out_dir`` (made by the first caller; see the module docstring).

    Raises InvalidArgumentError when ``out_dir`` holds the list of another input (unless ``refresh``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / LIST_NAME
    resolved = str(Path(source).resolve())
    if not refresh and target.exists():
        frozen = _read_published(target)
        if frozen.source != resolved:
            raise InvalidArgumentError(
                f"{out} holds the corpus of {frozen.source} ({target}), not of {resolved}: use another --out, or "
                "--refresh-list to list the new input into it")
        return frozen
    text = _list_text(resolved, list_corpus(source))
    if refresh:
        atomic_write_text(target, text)
    else:
        _publish_once(target, text)
    return _read_published(target)


def _read_published(target: Path, wait_s: float = 30.0) -> FrozenCorpus:
    """Read the list, waiting briefly for a writer still filling it (only without hard links)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return read_frozen(target)
        except InputFileError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
