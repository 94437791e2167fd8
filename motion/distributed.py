"""Distributed data parallel for ``torchrun`` / Slurm, and sharding of work across processes.

Training::

    ctx = setup_distributed()              # reads RANK / WORLD_SIZE / LOCAL_RANK (torchrun) or SLURM_*
    model = wrap_ddp(model, ctx)           # NCCL on GPUs, gloo on CPU
    sampler = ResumableDistributedSampler(dataset, ctx.world_size, ctx.rank, batch_size=64, seed=1234)
    if ctx.is_main: ...                    # only rank 0 writes logs and checkpoints
    teardown_distributed(ctx)

Under ``srun`` (one process per Slurm task, no torchrun) :func:`setup_distributed` derives
``MASTER_ADDR``/``MASTER_PORT`` from Slurm's variables (:func:`motion.launch.slurm_rendezvous`).

Corpus processing: :func:`shard_from_env` gives ``(shard index, shard count)`` from torchrun,
``srun`` and Slurm arrays (:mod:`motion.launch` has the table), :func:`shard_items` one shard's items.
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
from torch.utils.data import Sampler

from motion4d.checks import check_choice, check_int
from motion4d.errors import BackendUnavailableError, InvalidArgumentError

from .launch import process_rank, read_launch, slurm_rendezvous
from .launch import shard_from_env as launch_shard

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


def env_rank(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun (``RANK``...) or an ``srun`` step (``SLURM_PROCID``...);
    see :func:`motion.launch.process_rank` (a multi-task Slurm batch script without ``srun`` is refused)."""
    return process_rank(env)


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(shard index, shard count)`` from torchrun, ``srun`` and Slurm arrays, composed (the table of
    :mod:`motion.launch`)."""
    return check_shard(*launch_shard(env))


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
    ``env://``: torchrun sets ``MASTER_ADDR``/``MASTER_PORT``, under ``srun`` they are derived from
    Slurm's variables (the first node of the step, a port from the job id) unless exported; tests use
    ``file://``.
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
        if init_method is None or init_method == "env://":
            _rendezvous_from_environment()
        dist.init_process_group(backend, init_method=init_method or "env://", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistributedContext(rank, world_size, local_rank, device, backend)


def _rendezvous_from_environment() -> None:
    """Make sure ``env://`` finds ``MASTER_ADDR``/``MASTER_PORT``: torchrun's, exported ones, or Slurm's."""
    if os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT"):
        return
    if read_launch().srun is not None:
        os.environ.update(slurm_rendezvous())
        return
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    raise InvalidArgumentError(
        f"a {int(os.environ.get('WORLD_SIZE', 0)) or 'multi'}-process job needs {' and '.join(missing)} to meet: start it "
        "with torchrun, with srun (motion4d derives them from Slurm's variables), or export them")


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


class ResumableDistributedSampler(Sampler[int]):
    """This rank's share of every global batch, in an order that does not depend on the number of processes.

    Epoch ``e`` permutes the data set with ``torch.Generator().manual_seed(seed + e)`` (the
    permutation :class:`~torch.utils.data.DistributedSampler` draws; the identity without
    ``shuffle``) and cuts it into global batches of ``batch_size``; rank ``r`` of ``w`` takes the
    slice ``[r * p, (r + 1) * p)`` of each, ``p = batch_size / w``. So global batch ``b`` is the same
    samples in the same order on any number of processes (rank 0's slice, then rank 1's, ...), and a
    position counted in global batches (:meth:`set_position`) means the same thing on any of them:
    a checkpoint written by N processes resumes on M.

    Args:
        batch_size: the global batch (default ``num_replicas``: one sample per rank and step).
        drop_last: drop the last incomplete global batch (else it is completed from the epoch's start).
    """

    def __init__(self, dataset: Any, num_replicas: int = 1, rank: int = 0, *, batch_size: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = True) -> None:
        check_shard(rank, num_replicas)
        batch_size = num_replicas if batch_size is None else check_int(batch_size, "batch_size", minimum=1)
        if batch_size % num_replicas:
            raise InvalidArgumentError(f"batch_size {batch_size} must be divisible by the {num_replicas} processes")
        self.size = len(dataset)
        self.num_replicas, self.rank, self.batch_size = num_replicas, rank, batch_size
        self.per_rank = batch_size // num_replicas
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.batches_per_epoch = self.size // batch_size if drop_last else -(-self.size // batch_size)
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_position(self, epoch: int, batches_done: int = 0) -> None:
        """Epoch to draw and how many of its global batches were already consumed (by any number of processes)."""
        if not 0 <= batches_done <= self.batches_per_epoch:
            raise InvalidArgumentError(f"sampler position must be in [0, {self.batches_per_epoch}] batches, got {batches_done}")
        self.set_epoch(epoch)
        self.start_batch = int(batches_done)

    def epoch_order(self) -> list[int]:
        """The epoch's sample order (all ranks), whole global batches only."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.batches_per_epoch * self.batch_size
        while len(order) < total:  # drop_last=False: complete the last batch from the start
            order += order[: total - len(order)]
        return order[:total]

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order()
        for b in range(self.start_batch, self.batches_per_epoch):
            first = b * self.batch_size + self.rank * self.per_rank
            yield from order[first:first + self.per_rank]

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.per_rank


__all__ = [
    "DistributedContext", "ResumableDistributedSampler", "all_gather_objects", "all_reduce_mean", "barrier",
    "check_shard", "env_rank", "rng_state", "seed_everything", "set_rng_state", "setup_distributed",
    "shard_from_env", "shard_items", "teardown_distributed", "unwrap", "wrap_ddp",
]
