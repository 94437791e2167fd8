"""The Ray Data engine of the corpus runner: the pending videos mapped over an actor pool.

``ray.data.from_items`` over the pending part of the frozen list (paths resolved on the driver, one
block per video so the pool's parallelism is not capped by the block count), then ``map_batches``
with :class:`RayCorpusWorker`, a callable class: each actor builds the task's model once and
processes videos one at a time. Results are streamed back with ``iter_rows`` as they finish and the
runner appends each to the manifest at once, so a driver that is killed leaves every finished
video on record (and the next run recovers videos finished after the last record from their
``.done.json``).

Resources per actor come from ``num_cpus`` / ``num_gpus``; before anything runs the driver checks
that the cluster's nodes can hold at least one actor (and the requested number), so an impossible
request fails at once instead of waiting forever. Devices: an actor without GPUs hides them
(``CUDA_VISIBLE_DEVICES=""``, set before torch touches CUDA) and computes on the CPU, whatever the
driver sees; an actor with GPUs uses the first device Ray made visible to it (``cuda:0`` of its
``CUDA_VISIBLE_DEVICES``). Each actor limits torch and OpenCV to its CPUs (``threads``, default
``num_cpus``) and logs its device, threads, model and videos to ``OUT/logs/ray-actor-<host>-<pid>.log``.

Every node needs the package installed (same version) and the videos and ``OUT`` on a shared file
system at the same paths; ``runtime_env`` (e.g. ``{"env_vars": {...}}``) is passed to ``ray.init``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from motion4d.errors import BackendUnavailableError, InvalidArgumentError, MissingDependencyError

from .listing import Video
from .tasks import CorpusWorker, option_value, parse_task_args, task_argv

LOG_FOLDER = "logs"


def require_ray() -> Any:
    """The ``ray`` module with Ray Data, or MissingDependencyError saying what to install where."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "motion4d corpus --engine ray needs Ray Data: pip install 'ray[data]' (or 'motion4d[ray]') on the driver "
            f"and on every node of the cluster ({exc})") from exc
    return ray


def check_ray_options(task: str, options: Sequence[str], out: Path, ray_options: dict[str, Any]) -> None:
    """Refuse bad Ray settings and task options on the driver, before a cluster is contacted."""
    require_ray()
    if option_value(options, "--device") is not None:
        raise InvalidArgumentError(
            "with --engine ray each actor's device follows --ray-gpus (a CPU actor computes on the CPU, a GPU actor on "
            "the GPU Ray gives it): leave --device out of the task options")
    cpus, gpus = ray_options.get("num_cpus", 1), ray_options.get("num_gpus", 0)
    if not (isinstance(cpus, (int, float)) and cpus > 0):
        raise InvalidArgumentError(f"--ray-cpus must be > 0, got {cpus}")
    if not (isinstance(gpus, (int, float)) and gpus >= 0):
        raise InvalidArgumentError(f"--ray-gpus must be >= 0, got {gpus}")
    actors = ray_options.get("actors")
    if actors is not None and actors < 1:
        raise InvalidArgumentError(f"--ray-actors must be >= 1, got {actors}")
    # the options are checked here, the device on the actors (this machine may have no GPU)
    parse_task_args(task, task_argv(task, Video(str(out / "probe"), "probe"), out, options, None), check_device=False)


def actors_that_fit(nodes: Sequence[dict[str, float]], num_cpus: float, num_gpus: float) -> int:
    """How many actors of ``num_cpus`` CPUs and ``num_gpus`` GPUs the nodes' resources hold."""
    total = 0
    for resources in nodes:
        fit = math.floor(resources.get("CPU", 0) / num_cpus + 1e-9) if num_cpus else math.inf
        if num_gpus:
            fit = min(fit, math.floor(resources.get("GPU", 0) / num_gpus + 1e-9))
        total += 0 if fit == math.inf else fit
    return total


def actor_device(num_gpus: float) -> str:
    """The device of an actor: the CPU without GPUs (whatever CUDA the process could see), else the first
    GPU of its ``CUDA_VISIBLE_DEVICES`` (Ray sets it to the GPUs it assigned)."""
    if not num_gpus:
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError(f"this Ray actor was given {num_gpus} GPU but torch sees no CUDA device "
                                      f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    return "cuda:0"


class RayCorpusWorker:
    """The callable class of ``map_batches``: one per actor, the model built once in ``__init__``."""

    def __init__(self, task: str, options: list[str], out: str, num_cpus: float, num_gpus: float,
                 threads: int | None, shard: tuple[int, int]) -> None:
        if not num_gpus:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything initialises CUDA here: a CPU actor sees none
        self.shard = tuple(shard)
        threads = threads or max(1, int(num_cpus))
        folder = Path(out) / LOG_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"ray-actor-{socket.gethostname()}-{os.getpid()}.log"
        started = time.perf_counter()
        self.worker = CorpusWorker(task, options, out, actor_device(num_gpus), threads=threads, engine="ray")
        import cv2
        import torch

        self._log(f"actor ready: device {self.worker.resolved_device}, CUDA_VISIBLE_DEVICES="
                  f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}, threads torch={torch.get_num_threads()} "
                  f"opencv={cv2.getNumThreads()}, models built {self.worker.models_built} "
                  f"({time.perf_counter() - started:.1f} s)")

    def _log(self, line: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        records = []
        for path, video_id, size in zip(batch["path"], batch["id"], batch["bytes"]):
            record = self.worker.process(Video(str(path), str(video_id), int(size)), self.shard)
            self._log(f"{record['status']} {record['video']} in {record['seconds']:.2f} s "
                      f"(batch of {len(batch['path'])}, models built {self.worker.models_built})")
            records.append(json.dumps(record))
        return {"record": np.array(records, dtype=object)}


def build_dataset(ray: Any, videos: Sequence[Video]) -> Any:
    """The pending videos as a Ray dataset of one block per video (resolved paths, ids, sizes)."""
    rows = [{"path": v.path, "id": v.id, "bytes": v.bytes} for v in videos]
    return ray.data.from_items(rows, override_num_blocks=len(rows))


def _cluster_nodes(ray: Any) -> list[dict[str, float]]:
    return [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]


def _describe(nodes: Sequence[dict[str, float]]) -> str:
    return ", ".join(f"{n.get('CPU', 0):g} CPU + {n.get('GPU', 0):g} GPU" for n in nodes) or "no live nodes"


def run_ray(task: str, videos: list[Video], out: Path, options: list[str], shard: tuple[int, int],
            ray_options: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each video's manifest record, as the actor pool finishes it.

    ``ray_options``: ``address`` (default: start a local cluster, or the one ``RAY_ADDRESS`` names),
    ``actors`` (default: as many as the cluster holds, at most one per video), ``num_cpus`` (1) and
    ``num_gpus`` (0) per actor, ``threads`` per actor (default ``num_cpus``), ``runtime_env``.
    """
    ray = require_ray()
    num_cpus, num_gpus = float(ray_options.get("num_cpus") or 1), float(ray_options.get("num_gpus") or 0)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_options.get("address"), runtime_env=ray_options.get("runtime_env"), log_to_driver=False,
                 logging_level=logging.WARNING)
    try:
        nodes = _cluster_nodes(ray)
        fit = actors_that_fit(nodes, num_cpus, num_gpus)
        asked = f"{num_cpus:g} CPU" + (f" + {num_gpus:g} GPU" if num_gpus else "")
        if fit < 1:
            raise BackendUnavailableError(
                f"the Ray cluster cannot hold one actor of {asked} (its nodes: {_describe(nodes)}): lower --ray-cpus / "
                "--ray-gpus or add nodes with those resources")
        actors = ray_options.get("actors") or min(fit, len(videos))
        if actors > fit:
            raise BackendUnavailableError(
                f"--ray-actors {actors}: the Ray cluster holds {fit} actors of {asked} (its nodes: {_describe(nodes)})")
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the runner shows one bar over the videos
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        dataset = build_dataset(ray, videos).map_batches(
            RayCorpusWorker,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            fn_constructor_kwargs={"task": task, "options": list(options), "out": str(out), "num_cpus": num_cpus,
                                   "num_gpus": num_gpus, "threads": ray_options.get("threads"), "shard": list(shard)},
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
        for row in dataset.iter_rows():
            yield json.loads(row["record"])
    finally:
        if started_here:
            ray.shutdown()
