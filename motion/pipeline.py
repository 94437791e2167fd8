"""Staged streaming: decode, compute and write overlap, so a video runs at the speed of its slowest stage.

The video commands (:func:`motion.estimate_flow`, :func:`motion.iter_flow`, :func:`motion.track_points`,
:func:`motion.models.reynolds_encoding.encode_video`, and through them ``motion4d flow`` / ``track`` /
``encode`` / ``corpus``) are built from three pieces, each a thread or a pool of threads joined by
bounded queues, so memory holds a few frames and flows however long the video is:

* :func:`prefetch`: runs an iterator (the decoder, with its conversions) in a background thread,
  ``depth`` items ahead of the consumer;
* :func:`ordered_map`: applies a function on ``workers`` threads and yields the results in input
  order, at most ``workers + depth`` items in flight (OpenCV, PyAV and torch release the GIL while
  they compute, so threads run on separate cores);
* :class:`BackgroundWriter`: runs write tasks in order on one thread, ``depth`` tasks behind the
  producer; the first error is raised in the producer at its next call.

A stage that fails raises its exception in the consuming thread; closing a consumer early (``break``,
an exception, Ctrl-C) stops the stages and joins their threads. :class:`StageClock` counts the items
and the busy seconds of each stage: items per busy second is the speed that stage alone would allow.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

from motion4d.checks import check_int

T = TypeVar("T")
R = TypeVar("R")

_END = object()
_POLL_SECONDS = 0.1


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity masks
        return max(1, os.cpu_count() or 1)


@dataclass
class StageClock:
    """Items and busy seconds per stage (thread-safe), e.g. ``{"decode": [250, 0.61], "flow": [249, 9.8]}``."""

    counts: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, stage: str, seconds: float, items: int = 1) -> None:
        with self._lock:
            entry = self.counts.setdefault(stage, [0, 0.0])
            entry[0] += items
            entry[1] += seconds

    @contextmanager
    def timing(self, stage: str, items: int = 1) -> Iterator[None]:
        """Count the ``with`` block's duration as busy time of ``stage`` (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start, items)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: ``items``, busy ``seconds`` and ``per_second`` (items per busy second; per worker
        for a stage that runs on several threads)."""
        with self._lock:
            return {stage: {"items": int(n), "seconds": s, "per_second": n / s if s > 0 else float("inf")}
                    for stage, (n, s) in self.counts.items()}


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; False when stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int = 4, name: str = "prefetch", clock: StageClock | None = None) -> Iterator[T]:
    """Yield ``items``, produced ``depth`` ahead in a background thread.

    The iterator is created, advanced and closed in that thread (a generator's ``finally`` runs
    there, e.g. a decoder closing its file). Its exception is raised here, after the items it
    produced before. Leaving the loop early stops the thread. With ``clock``, the time spent in
    ``next(items)`` counts as busy time of stage ``name``.
    """
    check_int(depth, "depth", minimum=1)
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        iterator = None
        try:
            iterator = iter(items)
            while not stop.is_set():
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    _put(box, (_END, None), stop)
                    return
                if clock is not None:
                    clock.add(name, time.perf_counter() - start)
                if not _put(box, (None, item), stop):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            _put(box, (_END, exc), stop)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=f"motion4d-{name}", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, value = box.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not thread.is_alive() and box.empty():
                    return  # the producer stopped without an end marker (it was told to stop)
                continue
            if kind is _END:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        thread.join()


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int = 1, depth: int = 2,
                name: str = "map") -> Iterator[R]:
    """``map(function, items)`` on ``workers`` threads, results in input order.

    At most ``workers + depth`` items are in flight (taken from ``items`` but not yet yielded).
    ``workers=1`` calls ``function`` in the consuming thread. The first exception (in input order)
    is raised here; the items in flight after it are cancelled or awaited, never yielded. An error
    of ``items`` itself (e.g. a damaged video found by the decoder) comes after every item taken
    before it: those are all computed and yielded first, so what a run delivers before such an
    error does not depend on timing.
    """
    check_int(workers, "workers", minimum=1)
    check_int(depth, "depth", minimum=0)
    iterator = iter(items)
    if workers == 1:
        with closing_iterator(iterator):
            for item in iterator:
                yield function(item)
        return
    pending: deque[Future] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"motion4d-{name}")
    source_error: BaseException | None = None
    try:
        with closing_iterator(iterator):
            while True:
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                except Exception as exc:  # noqa: BLE001 - comes after the items in flight, in input order
                    source_error = exc
                    break
                pending.append(pool.submit(function, item))
                while len(pending) >= workers + depth or (pending and pending[0].done()):
                    yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        if source_error is not None:
            raise source_error
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


@contextmanager
def closing_iterator(iterator: Iterator[Any]) -> Iterator[Iterator[Any]]:
    """Close ``iterator`` (a generator) on leaving the block, so the stages it owns stop now, not at
    garbage collection."""
    try:
        yield iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class BackgroundWriter:
    """Runs write tasks in submission order on one thread, ``depth`` tasks behind the producer.

    ``submit(function, *args)`` blocks while ``depth`` tasks wait; it raises the first error of an
    earlier task (nothing is written after it). :meth:`close` waits for the queued tasks and raises
    that error too; :meth:`abort` drops the tasks not started (each write is atomic, so a dropped
    task leaves no file). Use it as a context manager: it closes on success and aborts on an error.
    """

    def __init__(self, depth: int = 8, name: str = "write", clock: StageClock | None = None):
        check_int(depth, "depth", minimum=1)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._name = name
        self._clock = clock
        self._thread = threading.Thread(target=self._run, name=f"motion4d-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                task = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if task is _END:
                return
            if self._error is not None or self._stop.is_set():
                continue  # after an error or an abort: drain without writing
            function, args, items = task
            start = time.perf_counter()
            try:
                function(*args)
            except BaseException as exc:  # noqa: BLE001 - raised in the producer
                self._error = exc
            finally:
                if self._clock is not None and items:
                    self._clock.add(self._name, time.perf_counter() - start, items)

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._stop.set()
            raise error

    def submit(self, function: Callable[..., Any], *args: Any, items: int = 1) -> None:
        """Queue ``function(*args)``; ``items`` is what it counts for in the stage clock."""
        self._raise()
        if not self._thread.is_alive():
            raise RuntimeError(f"the {self._name} thread has stopped")
        while not _put(self._queue, (function, args, items), self._stop):
            self._raise()
            raise RuntimeError(f"the {self._name} thread was stopped")
        self._raise()

    def close(self) -> None:
        """Wait until every queued task has run; raise the first error of one."""
        if self._thread.is_alive():
            _put(self._queue, _END, self._stop)
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop without running the tasks still queued (the one running finishes)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


AUTO_WORKERS_MAX = 8
"""``workers="auto"`` uses at most this many threads: frames and flows in flight grow with the workers
(a 4K pair with its flows is ~200 MB), and one process's decoder and writer stop keeping up beyond it."""


def resolve_workers(workers: int | str | None, parallel: bool) -> int:
    """Compute threads for a stage: ``"auto"``/None = the available cores (at most :data:`AUTO_WORKERS_MAX`)
    when the work can be spread over them (``parallel``), else 1; an int is taken as given (>= 1)."""
    if workers is None or workers == "auto":
        return min(available_cores(), AUTO_WORKERS_MAX) if parallel else 1
    return check_int(workers, "workers", minimum=1)  # type: ignore[return-value]


__all__ = ["AUTO_WORKERS_MAX", "BackgroundWriter", "StageClock", "available_cores", "closing_iterator", "ordered_map", "prefetch",
           "resolve_workers"]
