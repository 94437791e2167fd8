"""Output folders owned by one run configuration: identity, lock, stale temporaries, resume checks.

A resumable run (flow, tracks, encodings, objects, evaluation) writes its files into one folder and
skips what is already there when rerun. That is only safe when the folder holds results of the same
source and the same settings, and when no other run writes into it at the same time.
:class:`OutputFolder` enforces both::

    with OutputFolder(out_dir, "flow_config.json", config, result_keys, overwrite) as folder:
        ...  # write outputs atomically; folder.resumed says whether earlier results are reused

* the configuration records the source's identity (:func:`source_identity`: resolved path, size,
  modification time and a hash of its first MiB) and every setting; a rerun whose result-changing
  settings differ is refused naming the differing keys (``overwrite=True`` / ``--overwrite``
  replaces the folder's configuration instead);
* a lock file (``.motion4d.lock``, an OS advisory lock released when the process ends, however it
  ends) refuses a second concurrent run on the same folder;
* temporary files left by a killed run (``.*.tmp*`` from :mod:`motion4d.atomic`) are removed once
  the lock is held;
* the configuration is written when the folder is entered, i.e. after the caller has checked its
  inputs; :meth:`OutputFolder.record` adds what the run wrote (``"outputs"``), and a run with
  ``overwrite=True`` removes the outputs its predecessor recorded, so no file of another run stays.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic import TEMP_MARKER, atomic_write_text
from .errors import InputFileError, InvalidArgumentError

LOCK_NAME = ".motion4d.lock"
HASHED_BYTES = 1 << 20


class OutputLockedError(InvalidArgumentError):
    """Another run is writing into the output folder."""


def source_identity(source: Any) -> dict[str, Any]:
    """What identifies a run's input: for a file or folder its resolved path, size, mtime and a
    SHA-256 of its first MiB (of its first file for folders); for an array its shape, dtype and a
    hash of its first MiB; for a list of paths, the identity of each."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).resolve()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            return {"path": str(path), "files": len(files),
                    "first": source_identity(files[0]) if files else None}
        stat = path.stat()
        with open(path, "rb") as f:
            head = f.read(HASHED_BYTES)
        return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "sha256_head": hashlib.sha256(head).hexdigest()}
    if isinstance(source, (list, tuple)):
        return {"files": [source_identity(p) for p in source]}
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        array = source.detach().cpu().numpy() if hasattr(source, "detach") else np.asarray(source)
        head = np.ascontiguousarray(array).reshape(-1).view(np.uint8)[:HASHED_BYTES].tobytes()
        return {"array": list(array.shape), "dtype": str(array.dtype), "sha256_head": hashlib.sha256(head).hexdigest()}
    return {"object": type(source).__name__}


def _comparable(identity: dict[str, Any] | None) -> dict[str, Any] | None:
    """The parts of an identity that must match on resume (a touched but unchanged file still matches)."""
    if not isinstance(identity, dict):
        return identity
    return {k: (_comparable(v) if isinstance(v, dict) else v) for k, v in identity.items() if k != "mtime_ns"}


class OutputFolder:
    """An output folder held by one run (see the module docstring).

    Args:
        folder: the output folder (created).
        config_name: file name of the configuration inside it, e.g. ``"flow_config.json"``.
        config: the run's configuration (JSON-serialisable), including ``"source_identity"``.
        result_keys: the keys whose values change results; they must match a previous run's.
        overwrite: replace a previous configuration instead of refusing a different one.
    """

    def __init__(self, folder: str | os.PathLike, config_name: str, config: dict[str, Any],
                 result_keys: Sequence[str], overwrite: bool = False):
        self.path = Path(folder)
        self.config_path = self.path / config_name
        self.config = config
        self.result_keys = tuple(result_keys)
        self.overwrite = overwrite
        self.resumed = False
        self._lock: Any = None

    def __enter__(self) -> "OutputFolder":
        if self.path.exists() and not self.path.is_dir():
            raise InvalidArgumentError(f"output folder {self.path} is a file")
        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            self._remove_stale_temporaries()
            self.resumed = self._check_previous()
            atomic_write_text(self.config_path, json.dumps(self.config, indent=2))
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._release()

    # ------------------------------------------------------------------ lock
    def _acquire(self) -> None:
        lock = open(self.path / LOCK_NAME, "a+")
        try:
            _lock_file(lock)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise OutputLockedError(
                f"output folder {self.path} is in use by another run (pid {holder}); wait for it to finish "
                "or choose another folder") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def _release(self) -> None:
        if self._lock is not None:
            _unlock_file(self._lock)
            self._lock.close()
            self._lock = None

    # ------------------------------------------------------------------ contents
    def _remove_stale_temporaries(self) -> None:
        for path in self.path.rglob(f".*{TEMP_MARKER}*"):
            if path.is_file():
                path.unlink(missing_ok=True)

    def record(self, **entries: Any) -> None:
        """Add ``entries`` (e.g. ``outputs=[...]``, counts) to the configuration file."""
        self.config = {**self.config, **entries}
        atomic_write_text(self.config_path, json.dumps(self.config, indent=2, default=str))

    def _remove_recorded_outputs(self) -> None:
        try:
            previous = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        root = self.path.resolve()
        for name in previous.get("outputs") or []:
            path = Path(name).resolve()
            if root not in path.parents:  # only what lies inside this folder
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _check_previous(self) -> bool:
        if not self.config_path.exists():
            return False
        if self.overwrite:
            self._remove_recorded_outputs()
            return False
        try:
            previous = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputFileError(
                f"{self.config_path}: unreadable configuration of a previous run ({exc}); replace it with "
                "overwrite=True") from exc
        changed = [k for k in self.result_keys
                   if _comparable(previous.get(k)) != _comparable(self.config.get(k))]
        if changed:
            details = "; ".join(_describe_change(k, previous.get(k), self.config.get(k)) for k in changed)
            raise InvalidArgumentError(
                f"{self.path} holds results of a different configuration ({details}); use another folder or "
                "replace them with overwrite=True")
        return True


def _describe_change(key: str, old: Any, new: Any) -> str:
    """``key: old -> new``, with a source identity shortened to its path and what differs."""
    if isinstance(old, dict) and isinstance(new, dict) and "path" in new:
        differs = sorted(k for k in set(old) | set(new) if k != "path" and _comparable(old.get(k)) != _comparable(new.get(k)))
        what = f" ({', '.join(differs)} differ)" if differs else ""
        return f"{key}: {old.get('path')} -> {new.get('path')}{what}"
    return f"{key}: {old!r} -> {new!r}"


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_file(handle: Any) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock_file(handle: Any) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock_file(handle: Any) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(handle: Any) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
