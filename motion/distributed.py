"""Distributed data parallel for ``torchrun`` / Slurm, and sharding of work across processes.

Training::

    ctx = setup_distributed()              # reads RANK / WORLD_SIZE / LOCAL_RANK (torchrun) or SLURM_*
    model = wrap_ddp(model, ctx)           # NCCL on GPUs, gloo on CPU
    sampler = ResumableDistributedSampler(dataset, ctx.world_size, ctx.rank, seed=1234)
    if ctx.is_main: ...                    # only rank 0 writes logs and checkpoints
    teardown_distributed(ctx)

Corpus processing: :func:`shard_from_env` gives ``(shard index, shard count)`` from torchrun or
Slurm (array jobs first, then tasks), :func:`shard_items` the items of one shard.
"""
from __future__ import annotations

import datetime
import os
import random
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from motion4d.checks import check_choice, check_int
from motion4d.errors import BackendUnavailableError, InvalidArgumentError

T = TypeVar("T")
BACKENDS = ("auto", "nccl", "gloo")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: single process, no process group

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidArgumentError(f"environment variable {name}={value!r} is not an integer") from exc


def env_rank(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun (``RANK``...) or Slurm tasks (``SLURM_PROCID``...)."""
    env = os.environ if env is None else env
    for rank_key, world_key, local_key in (("RANK", "WORLD_SIZE", "LOCAL_RANK"),
                                          ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")):
        rank, world = _int_env(env, rank_key), _int_env(env, world_key)
        if rank is not None and world is not None:
            local = _int_env(env, local_key)
            return rank, world, rank if local is None else local
    return 0, 1, 0


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(shard index, shard count)``: torchrun ``RANK/WORLD_SIZE``, a Slurm array
    (``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN`` of ``SLURM_ARRAY_TASK_COUNT``), Slurm tasks
    (``SLURM_PROCID/SLURM_NTASKS``), else ``(0, 1)``."""
    env = os.environ if env is None else env
    rank, world = _int_env(env, "RANK"), _int_env(env, "WORLD_SIZE")
    if rank is not None and world is not None:
        return check_shard(rank, world)
    task, count = _int_env(env, "SLURM_ARRAY_TASK_ID"), _int_env(env, "SLURM_ARRAY_TASK_COUNT")
    if task is not None and count is not None:
        first = _int_env(env, "SLURM_ARRAY_TASK_MIN") or 0
        return check_shard(task - first, count)
    rank, world = _int_env(env, "SLURM_PROCID"), _int_env(env, "SLURM_NTASKS")
    if rank is not None and world is not None:
        return check_shard(rank, world)
    return 0, 1


def check_shard(index: int, count: int) -> tuple[int, int]:
    count = check_int(count, "number of shards", minimum=1)
    index = check_int(index, "shard index", minimum=0, maximum=count - 1)
    return index, count


def shard_items(items: Sequence[T], index: int, count: int) -> list[T]:
    """Items ``index, index + count, ...``: the shards partition ``items``, each item in exactly one."""
    check_shard(index, count)
    return list(items[index::count])


def setup_distributed(
    backend: str = "auto",
    device: str | torch.device = "auto",
    *,
    init_method: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    local_rank: int | None = None,
    timeout_s: float = 1800.0,
) -> DistributedContext:
    """Join the process group described by the environment (or by the arguments).

    With one process nothing is initialised. ``backend="auto"`` picks NCCL when the device is a GPU
    and gloo otherwise; each GPU rank uses ``cuda:<local_rank>``. ``init_method`` defaults to
    ``env://`` (torchrun sets ``MASTER_ADDR``/``MASTER_PORT``); tests use ``file://``.
    """
    check_choice(backend, "backend", BACKENDS)
    env_r, env_w, env_l = env_rank()
    rank = env_r if rank is None else rank
    world_size = env_w if world_size is None else world_size
    local_rank = (env_l if rank == env_r else rank) if local_rank is None else local_rank
    check_shard(rank, world_size)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError("device cuda requested but no CUDA GPU is available")
        device = torch.device("cuda", local_rank % torch.cuda.device_count() if device.index is None else device.index)
        torch.cuda.set_device(device)
    if world_size == 1:
        return DistributedContext(rank, 1, local_rank, device, None)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise InvalidArgumentError("backend nccl needs CUDA devices; use gloo on CPU")
    if not dist.is_available():
        raise BackendUnavailableError("this PyTorch build has no torch.distributed support")
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistributedContext(rank, world_size, local_rank, device, backend)


def teardown_distributed(ctx: DistributedContext | None = None) -> None:
    """Leave the process group (no-op for single-process runs)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wrap_ddp(model: torch.nn.Module, ctx: DistributedContext, **options: Any) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` in a multi-process job, the model itself otherwise."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, **options)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP / DataParallel wrapper."""
    return getattr(model, "module", model)


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (just ``[obj]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(value: float, ctx: DistributedContext) -> float:
    """Mean of a scalar over the ranks (for logging)."""
    if not ctx.distributed:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=ctx.device if ctx.backend == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world_size


# --------------------------------------------------------------------------------------------------
# Random state


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's Python / NumPy / torch (CPU and CUDA) generator states, as tensors and plain
    Python values only, so checkpoints holding them load with ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------------
# Sampling


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` that can start part-way through an epoch (exact resume).

    For epoch ``e`` the data set is permuted with seed ``seed + e`` and rank ``r`` takes every
    ``world_size``-th index from ``r``; so the union over ranks of each step's batches is one
    contiguous block of the permutation, the same block a single process with the global batch sees.
    :meth:`set_position` skips the first ``start`` indices of this rank's list.
    """

    def __init__(self, dataset: Any, num_replicas: int = 1, rank: int = 0, *, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Epoch to draw and how many of this rank's indices were already consumed in it."""
        self.set_epoch(epoch)
        if start < 0 or start > self.num_samples:
            raise InvalidArgumentError(f"sampler start must be in [0, {self.num_samples}], got {start}")
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


__all__ = [
    "DistributedContext", "ResumableDistributedSampler", "all_gather_objects", "all_reduce_mean", "barrier",
    "check_shard", "env_rank", "rng_state", "seed_everything", "set_rng_state", "setup_distributed",
    "shard_from_env", "shard_items", "teardown_distributed", "unwrap", "wrap_ddp",
]
