"""Where this process sits in a launched job: torchrun, Slurm (``srun`` tasks, array jobs) or alone.

Only environment variables are read (the launchers' own contract), so every function takes an
``env`` mapping (default ``os.environ``) and tests run without a cluster:

* torchrun: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``;
* a Slurm job step started by ``srun``: ``SLURM_STEP_ID`` (set in ``srun`` tasks only, never in the
  batch script), ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (else ``SLURM_NTASKS``),
  ``SLURM_LOCALID``, ``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST``, ``SLURM_JOB_ID``;
* a Slurm array element: ``SLURM_ARRAY_TASK_ID``, ``_MIN``, ``_MAX``, ``_STEP``, ``_COUNT``;
* the batch script itself: ``SLURM_NTASKS`` without ``SLURM_STEP_ID``.

Corpus shards (:func:`shard_from_env`), composed from the outside in (array element, then the
processes inside it):

======================================  ======================  ===================================
launch                                  variables               shard (index of count)
======================================  ======================  ===================================
plain process                           none                    0 of 1
``torchrun --nproc_per_node=w``         RANK=r WORLD_SIZE=w     r of w
``srun -n n`` (n tasks)                 SLURM_PROCID=p, n       p of n
``sbatch --array=MIN-MAX:STEP``         ID, MIN, MAX, STEP      a = (ID-MIN)/STEP of A = (MAX-MIN)/STEP+1
array + ``srun -n n``                   ID..., p, n             a*n + p of A*n
array + ``torchrun`` (w processes)      ID..., r, w             a*w + r of A*w
``srun -n n torchrun --nnodes=n``       p, n, r, w = n*l        r of w (one torchrun job over the tasks)
``srun -n n torchrun --standalone``     p, n, r, w = l          p*w + r of n*w (n separate torchruns)
array + either of the two above         ...                     a*k + i of A*k (k, i: the row above)
refused: batch script with n > 1 tasks  SLURM_NTASKS=n, no step  (only 1 of n processes would run)
refused: array ids that are not a range e.g. ``--array=1,4,9``   give ``--shard-index/--num-shards``
refused: torchrun w neither n*l nor l   inside ``srun -n n``    (tasks' torchruns half joined)
======================================  ======================  ===================================

Training (:func:`process_rank`): torchrun's variables, else an ``srun`` step's (each task one
process; :func:`slurm_rendezvous` derives ``MASTER_ADDR``/``MASTER_PORT`` from the step's first
node and the job id), else a single process; the batch script of a multi-task allocation is refused.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

from motion4d.errors import InvalidArgumentError

#: MASTER_PORT under srun: PORT_BASE + (16 * job id + step id mod 16) mod PORT_SPAN (below Linux's ephemeral ports)
PORT_BASE, PORT_SPAN = 12000, 20000


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise InvalidArgumentError(f"environment variable {name}={value!r} is not an integer") from exc


@dataclass(frozen=True)
class Launch:
    """What the launchers say about this process (None: not launched that way)."""

    torchrun: tuple[int, int, int, int] | None = None  # RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE
    srun: tuple[int, int, int] | None = None  # SLURM_PROCID, tasks in the step, SLURM_LOCALID
    array: tuple[int, int] | None = None  # index of this element, number of elements
    batch_tasks: int = 1  # SLURM_NTASKS of an allocation seen from its batch script (no srun step)

    def describe(self) -> str:
        parts = []
        if self.array is not None:
            parts.append(f"Slurm array element {self.array[0]} of {self.array[1]}")
        if self.srun is not None:
            parts.append(f"srun task {self.srun[0]} of {self.srun[1]}")
        if self.torchrun is not None:
            parts.append(f"torchrun rank {self.torchrun[0]} of {self.torchrun[1]}")
        return ", ".join(parts) or "a single process"


def read_launch(env: Mapping[str, str] | None = None) -> Launch:
    """The launch of this process from ``env`` (see the module docstring); bad values raise."""
    env = os.environ if env is None else env
    torchrun = None
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None and world is not None:
        _check_index(rank, world, "RANK", "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK")
        local_world = _int(env, "LOCAL_WORLD_SIZE")
        torchrun = (rank, world, rank if local is None else local, 1 if local_world is None else local_world)
    srun = None
    step = _int(env, "SLURM_STEP_ID")
    if step is not None and step >= 0:  # an srun task (the batch script has no step id)
        procid = _int(env, "SLURM_PROCID")
        tasks = _int(env, "SLURM_STEP_NUM_TASKS")
        tasks = _int(env, "SLURM_NTASKS") if tasks is None else tasks
        if procid is not None and tasks is not None:
            _check_index(procid, tasks, "SLURM_PROCID", "SLURM_STEP_NUM_TASKS")
            local = _int(env, "SLURM_LOCALID")
            srun = (procid, tasks, 0 if local is None else local)
    batch_tasks = 1
    if srun is None:
        batch_tasks = max(1, _int(env, "SLURM_NTASKS") or 1)
    return Launch(torchrun, srun, _array(env), batch_tasks)


def _check_index(index: int, count: int, index_name: str, count_name: str) -> None:
    if count < 1 or not 0 <= index < count:
        raise InvalidArgumentError(f"{index_name}={index} with {count_name}={count}: expected 0 <= {index_name} < {count_name}")


def _array(env: Mapping[str, str]) -> tuple[int, int] | None:
    task = _int(env, "SLURM_ARRAY_TASK_ID")
    if task is None:
        return None
    first, last = _int(env, "SLURM_ARRAY_TASK_MIN"), _int(env, "SLURM_ARRAY_TASK_MAX")
    step, count = _int(env, "SLURM_ARRAY_TASK_STEP") or 1, _int(env, "SLURM_ARRAY_TASK_COUNT")
    if first is None or (last is None and count is None):
        raise InvalidArgumentError("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_MAX "
                                   "(or _COUNT): cannot tell this element's place in the array")
    span = (last - first) // step + 1 if last is not None else count
    if step < 1 or task < first or (task - first) % step or (task - first) // step >= span:
        raise InvalidArgumentError(f"SLURM_ARRAY_TASK_ID={task} is not on the array's range {first}-{last}:{step}")
    if count is not None and count != span:
        raise InvalidArgumentError(
            f"the Slurm array's ids are not one range (SLURM_ARRAY_TASK_COUNT={count} ids between {first} and {last} "
            f"with step {step}): submit it as --array=MIN-MAX[:STEP], or give --shard-index/--num-shards yourself")
    return (task - first) // step, span


def _processes(launch: Launch) -> tuple[int, int]:
    """``(index, count)`` of this process inside one array element (torchrun / srun / alone)."""
    if launch.torchrun is not None:
        rank, world, _, local_world = launch.torchrun
        if launch.srun is None or launch.srun[1] == 1:
            return rank, world
        procid, tasks, _ = launch.srun
        if world == tasks * local_world:  # the tasks' torchrun agents joined one job: RANK is global
            return rank, world
        if world == local_world:  # each task runs its own standalone torchrun
            return procid * world + rank, tasks * world
        raise InvalidArgumentError(
            f"srun started {tasks} tasks whose torchrun jobs have WORLD_SIZE={world} with LOCAL_WORLD_SIZE={local_world}: "
            f"expected {tasks * local_world} (one job: torchrun --nnodes={tasks} with a rendezvous endpoint) or "
            f"{local_world} (torchrun --standalone in each task)")
    if launch.srun is not None:
        return launch.srun[0], launch.srun[1]
    if launch.batch_tasks > 1:
        raise InvalidArgumentError(
            f"Slurm allocated {launch.batch_tasks} tasks (SLURM_NTASKS={launch.batch_tasks}) but this process runs in the "
            f"batch script, not in an srun step, so only 1 of the {launch.batch_tasks} processes would run: start the "
            "command with srun (one process per task) or torchrun, or pass --shard-index/--num-shards")
    return 0, 1


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(shard index, shard count)`` of this process from torchrun / Slurm (the table of the module docstring)."""
    launch = read_launch(env)
    index, count = _processes(launch)
    if launch.array is not None:
        element, elements = launch.array
        return element * count + index, elements * count
    return index, count


def check_explicit_shard(env: Mapping[str, str] | None = None) -> None:
    """Refuse an explicit shard in a multi-process launch (every process would do the same shard)."""
    launch = read_launch(env)
    processes = launch.torchrun[1] if launch.torchrun is not None else launch.srun[1] if launch.srun is not None else 1
    if processes > 1:
        raise InvalidArgumentError(
            f"--shard-index/--num-shards name one shard, but this process is one of {processes} ({launch.describe()}): "
            "each would process the same videos; leave both out so the launcher's ranks decide")


def process_rank(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` of a training process: torchrun, else an srun step, else ``(0, 1, 0)``."""
    launch = read_launch(env)
    if launch.torchrun is not None:
        rank, world, local, local_world = launch.torchrun
        if launch.srun is not None and launch.srun[1] > 1 and world != launch.srun[1] * local_world:
            raise InvalidArgumentError(
                f"srun started {launch.srun[1]} tasks but their torchrun job has WORLD_SIZE={world}: give torchrun "
                f"--nnodes={launch.srun[1]} and a rendezvous endpoint so the tasks form one job (or srun one task per GPU "
                "without torchrun)")
        return rank, world, local
    if launch.srun is not None:
        return launch.srun
    if launch.batch_tasks > 1:
        raise InvalidArgumentError(
            f"Slurm allocated {launch.batch_tasks} tasks (SLURM_NTASKS={launch.batch_tasks}) but this process runs in the "
            "batch script, not in an srun step: start training with `srun motion4d train ...` (one process per task) "
            "or with torchrun")
    return 0, 1, 0


def first_host(nodelist: str) -> str:
    """The first host of a Slurm hostlist (``"gpu[07-09,12],cpu3"`` -> ``"gpu07"``)."""
    entry, depth = [], 0
    for char in nodelist.strip():
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            break
        entry.append(char)
    host = re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0], "".join(entry))
    if not host or "[" in host or "]" in host:
        raise InvalidArgumentError(f"cannot read the first host of the Slurm node list {nodelist!r}")
    return host


def slurm_rendezvous(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``MASTER_ADDR`` (the step's first node) and ``MASTER_PORT`` (from the job and step ids) of an srun step.

    Values already in ``env`` are kept (export ``MASTER_PORT`` in the batch script to choose it).
    """
    env = os.environ if env is None else env
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    job = _int(env, "SLURM_JOB_ID")
    found = {k: env[k] for k in ("MASTER_ADDR", "MASTER_PORT") if env.get(k)}
    if "MASTER_ADDR" not in found:
        if not nodelist:
            raise InvalidArgumentError("MASTER_ADDR is not set and no SLURM_STEP_NODELIST / SLURM_JOB_NODELIST to derive it from")
        found["MASTER_ADDR"] = first_host(nodelist)
    if "MASTER_PORT" not in found:
        if job is None:
            raise InvalidArgumentError("MASTER_PORT is not set and no SLURM_JOB_ID to derive it from")
        step = max(0, _int(env, "SLURM_STEP_ID") or 0)
        found["MASTER_PORT"] = str(PORT_BASE + (16 * job + step % 16) % PORT_SPAN)
    return found


__all__ = ["Launch", "check_explicit_shard", "first_host", "process_rank", "read_launch", "shard_from_env",
           "slurm_rendezvous"]
