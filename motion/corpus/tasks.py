"""One video of a corpus through one task: the ``motion4d flow`` / ``encode`` / ``track`` code with its options.

A task's options are that subcommand's command-line arguments (``["--model", "dis", "--format",
"flo"]``). A finished video has ``OUT/<id>/.done.json`` (written last, atomically) recording the
task and options; a video that fails is recorded and retried on the next run.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from motion4d.atomic import atomic_write_text
from motion4d.errors import InvalidArgumentError

from .listing import Video

#: task -> the ``motion4d`` subcommand that runs it
TASKS: dict[str, str] = {"flow": "flow", "encode": "encode", "track": "track"}
DONE_NAME = ".done.json"


def task_output(task: str, out_dir: Path, video: Video) -> Path:
    """What the task's ``--out`` is for a video: a folder, or the encoding's MP4 inside it."""
    folder = out_dir / video.id
    return folder / "encoding.mp4" if task == "encode" else folder


def _task_parser(task: str) -> argparse.ArgumentParser:
    from motion4d.cli import subcommand_parser

    if task not in TASKS:
        raise InvalidArgumentError(f"--task must be one of {sorted(TASKS)}, got {task!r}")
    return subcommand_parser(TASKS[task], prog=f"motion4d corpus --task {task} --", add_help=False, exit_on_error=False)


def task_argv(task: str, video: Video, out_dir: Path, options: Sequence[str], device: str | None) -> list[str]:
    argv = [video.path, "--out", str(task_output(task, out_dir, video)), *options]
    if "--no-progress" not in options:
        argv.append("--no-progress")
    if device is not None and "--device" not in options:
        argv += ["--device", device]
    return argv


def parse_task_args(task: str, argv: Sequence[str]) -> argparse.Namespace:
    """The task's arguments, settled as the subcommand settles them (``--device`` checked on this machine)."""
    from motion4d.cli import prepare_arguments

    parser = _task_parser(task)
    try:
        args = parser.parse_args(list(argv))
    except (argparse.ArgumentError, SystemExit) as exc:
        raise InvalidArgumentError(f"bad options for task {task}: {' '.join(argv[2:])} ({exc})") from exc
    return prepare_arguments(args)


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
        from motion4d.cli import subcommand_module

        with contextlib.redirect_stdout(log):
            code = subcommand_module(TASKS[task]).run(args)
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
