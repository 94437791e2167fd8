"""One video of a corpus through one task: the ``motion4d flow`` / ``encode`` / ``track`` code with its options.

A task's options are that subcommand's command-line arguments (``["--model", "dis", "--format",
"flo"]``). A :class:`CorpusWorker` (one per process, or per Ray actor) builds the task's flow model
once and runs every video it is given through the subcommand with that model. Outcomes:

* ``done``: ``OUT/<id>/.done.json`` (written last, atomically) records the task, its options and
  the video's size and modification time when it was processed; a rerun skips the video while they
  all match;
* ``damaged``: the video reader raised :class:`~motion4d.errors.DamagedFileError` (truncated or
  corrupt file); ``OUT/<id>/.damaged.json`` records it and reruns skip the video until the file
  changes (or ``retry_damaged``);
* ``failed``: any other error (unreadable input, out of memory, ...): recorded and retried on the
  next run.

A failure never escapes :meth:`CorpusWorker.process`: one bad video does not stop the corpus.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

from motion4d.atomic import atomic_write_text
from motion4d.device import resolve_device
from motion4d.errors import DamagedFileError, InvalidArgumentError

from .listing import Video, video_stamp

#: task -> the ``motion4d`` subcommand that runs it
TASKS: dict[str, str] = {"flow": "flow", "encode": "encode", "track": "track"}
#: tasks whose subcommand runs a flow model (built once per worker)
MODEL_TASKS = ("flow", "track")
DONE_NAME = ".done.json"
DAMAGED_NAME = ".damaged.json"
ATTEMPT_NAME = ".attempt.json"  # the options and video version the folder's outputs belong to
STATUSES = ("done", "damaged", "failed")


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


def parse_task_args(task: str, argv: Sequence[str], check_device: bool = True) -> argparse.Namespace:
    """The task's arguments, settled as the subcommand settles them (``--device`` checked on this
    machine unless ``check_device`` is False: a Ray driver checks for workers elsewhere)."""
    from motion4d.cli import prepare_arguments

    parser = _task_parser(task)
    try:
        args = parser.parse_args(list(argv))
    except (argparse.ArgumentError, SystemExit) as exc:
        raise InvalidArgumentError(f"bad options for task {task}: {' '.join(argv[2:])} ({exc})") from exc
    if check_device:
        return prepare_arguments(args)
    args.no_progress = True
    return args


def option_value(options: Sequence[str], flag: str) -> str | None:
    """The value given to ``flag`` in ``options`` (``--flag V`` or ``--flag=V``; the last one wins)."""
    value = None
    for i, item in enumerate(options):
        if item == flag and i + 1 < len(options):
            value = options[i + 1]
        elif item.startswith(flag + "="):
            value = item.split("=", 1)[1]
    return value


def _signature(task: str, options: Sequence[str]) -> str:
    return json.dumps({"task": task, "options": list(options)})


def _marker(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def settled_record(task: str, out_dir: Path, video: Video, options: Sequence[str],
                   retry_damaged: bool = False) -> dict[str, Any] | None:
    """The record of an earlier attempt that need not be repeated (done, or damaged and unchanged), else None."""
    names = (DONE_NAME,) if retry_damaged else (DONE_NAME, DAMAGED_NAME)
    for name in names:
        marker = _marker(out_dir / video.id / name)
        if marker is None or marker.get("signature") != _signature(task, options):
            continue
        if [marker.get("bytes"), marker.get("mtime_ns")] != list(video_stamp(Path(video.path))):
            continue  # the file changed (replaced, repaired) since: process it again
        return {k: v for k, v in marker.items() if k != "signature"}
    return None


def is_done(task: str, out_dir: Path, video: Video, options: Sequence[str]) -> bool:
    """Whether ``video`` was finished by this task with these options (and has not changed since)."""
    record = settled_record(task, out_dir, video, options, retry_damaged=True)
    return record is not None and record.get("status") == "done"


def _build_model(task: str, args: argparse.Namespace) -> Any:
    if task not in MODEL_TASKS:
        return None
    import motion
    from motion4d.cli.arguments import parse_options

    return motion.create(args.model, weights=getattr(args, "weights", None), device=args.device,
                         **parse_options(args.option))


class CorpusWorker:
    """Runs one task on video after video with one model, built once (see the module docstring).

    Args:
        task, options: the task and its subcommand's options.
        out_dir: the corpus output folder (resolved).
        device: ``--device`` for the task when ``options`` give none (None: the subcommand's default).
        threads: torch and OpenCV threads of this process (None: leave them).
        engine: recorded in each record (``local`` / ``ray``).
    """

    def __init__(self, task: str, options: Sequence[str], out_dir: str | os.PathLike, device: str | None = None, *,
                 threads: int | None = None, engine: str = "local") -> None:
        self.task, self.options, self.out = task, list(options), Path(out_dir)
        self.device, self.engine = device, engine
        if threads is not None:
            import cv2
            import torch

            torch.set_num_threads(int(threads))
            cv2.setNumThreads(int(threads))
        probe = parse_task_args(task, task_argv(task, Video("probe", "probe"), self.out, self.options, device))
        asked = getattr(probe, "device", None)
        self.resolved_device = str(resolve_device(asked)) if isinstance(asked, str) else "cpu"
        self.model = _build_model(task, probe)
        self.models_built = int(self.model is not None)

    def _claim(self, folder: Path, stamp: list[int]) -> None:
        """Start an attempt in ``folder``: what an earlier attempt with other options or on another version
        of the video left there is removed (the subcommand would refuse it); the same attempt's partial
        outputs are kept, so an interrupted video resumes where it stopped."""
        attempt = {"signature": _signature(self.task, self.options), "stamp": stamp}
        previous = _marker(folder / ATTEMPT_NAME)
        if previous is not None and previous != attempt:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / ATTEMPT_NAME, json.dumps(attempt))
        for name in (DONE_NAME, DAMAGED_NAME):  # an earlier outcome no longer holds while this attempt runs
            (folder / name).unlink(missing_ok=True)

    def process(self, video: Video, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
        """Run the task on ``video``; never raises for a failure of that video: returns its manifest record."""
        started = time.perf_counter()
        size, mtime_ns = video_stamp(Path(video.path))  # of the version processed: a later change means redo
        record: dict[str, Any] = {"video": video.path, "id": video.id, "bytes": size, "mtime_ns": mtime_ns,
                                  "task": self.task, "shard": list(shard), "engine": self.engine,
                                  "device": self.resolved_device, "host": socket.gethostname(), "pid": os.getpid(),
                                  "started": time.time()}
        folder = self.out / video.id
        self._claim(folder, [size, mtime_ns])
        log = io.StringIO()
        try:
            args = parse_task_args(self.task, task_argv(self.task, video, self.out, self.options, self.device))
            from motion4d.cli import subcommand_module

            module = subcommand_module(TASKS[self.task])
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                code = module.run(args, model=self.model) if self.model is not None else module.run(args)
            if code not in (0, None):
                raise RuntimeError(f"task {self.task} exited with status {code}")
        except DamagedFileError as exc:
            record.update(status="damaged", error=f"{type(exc).__name__}: {exc}")
            log.write(traceback.format_exc())
        except Exception as exc:  # one bad video must not stop the corpus: record it and go on
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            log.write(traceback.format_exc())
        else:
            record.update(status="done")
        record["seconds"] = time.perf_counter() - started
        atomic_write_text(folder / "log.txt", log.getvalue())
        marker = {"done": DONE_NAME, "damaged": DAMAGED_NAME}.get(record["status"])
        if marker is not None:  # written last: its presence means the outcome is final
            atomic_write_text(folder / marker, json.dumps({**record, "signature": _signature(self.task, self.options)},
                                                          indent=2))
        return record


def process_video(task: str, video: Video, out_dir: str | os.PathLike, options: Sequence[str],
                  device: str | None = None, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Run ``task`` on one video with a worker of its own (see :class:`CorpusWorker` to reuse the model)."""
    return CorpusWorker(task, options, Path(out_dir), device).process(video, shard)
