"""Shard identity from torchrun / srun / Slurm-array variables: one test per row of motion.launch's table,
and every array x process combination partitions the corpus exactly once."""
from __future__ import annotations

import itertools

import pytest

from motion.distributed import shard_from_env, shard_items
from motion.launch import check_explicit_shard, read_launch
from motion4d.errors import InvalidArgumentError


def torchrun(rank: int, world: int, local_world: int | None = None) -> dict[str, str]:
    local_world = world if local_world is None else local_world
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank % local_world),
            "LOCAL_WORLD_SIZE": str(local_world), "GROUP_WORLD_SIZE": str(world // local_world)}


def srun(procid: int, tasks: int, step: int = 0) -> dict[str, str]:
    """What an srun task sees (the step id is what tells it from the batch script)."""
    return {"SLURM_JOB_ID": "777", "SLURM_STEP_ID": str(step), "SLURM_PROCID": str(procid), "SLURM_NTASKS": str(tasks),
            "SLURM_STEP_NUM_TASKS": str(tasks), "SLURM_LOCALID": str(procid % 2), "SLURM_STEP_NODELIST": "node[01-02]"}


def batch_script(tasks: int = 1) -> dict[str, str]:
    """What the batch script sees: procid 0, the allocation's task count, no step id."""
    return {"SLURM_JOB_ID": "777", "SLURM_PROCID": "0", "SLURM_NTASKS": str(tasks), "SLURM_LOCALID": "0"}


def array(task: int, first: int, last: int, step: int = 1, count: int | None = None) -> dict[str, str]:
    count = (last - first) // step + 1 if count is None else count
    return {"SLURM_ARRAY_JOB_ID": "700", "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(first),
            "SLURM_ARRAY_TASK_MAX": str(last), "SLURM_ARRAY_TASK_STEP": str(step), "SLURM_ARRAY_TASK_COUNT": str(count)}


ROWS = {
    "plain process": ({}, (0, 1)),
    "torchrun": (torchrun(1, 2), (1, 2)),
    "srun tasks": (srun(2, 4), (2, 4)),
    "array": (array(12, 10, 13), (2, 4)),
    "stepped array --array=0-6:2, id 4": (array(4, 0, 6, 2), (2, 4)),
    "stepped array --array=0-6:2, id 6": (array(6, 0, 6, 2), (3, 4)),
    "array with --ntasks=2 under srun": ({**array(3, 1, 4), **srun(1, 2)}, (5, 8)),
    "torchrun inside an array element": ({**array(1, 0, 2), **batch_script(), **torchrun(1, 2)}, (3, 6)),
    "torchrun in the batch script of a 4-task allocation": ({**batch_script(4), **torchrun(1, 4)}, (1, 4)),
    "srun -n 2 torchrun --nnodes=2 (one job)": ({**srun(1, 2), **torchrun(3, 4, local_world=2)}, (3, 4)),
    "srun -n 2 torchrun --standalone (two jobs)": ({**srun(1, 2), **torchrun(1, 2)}, (3, 4)),
    "array + srun -n 2 + standalone torchrun": ({**array(1, 0, 1), **srun(0, 2), **torchrun(1, 2)}, (5, 8)),
    "batch script of a 1-task allocation": (batch_script(1), (0, 1)),
}

REFUSED = {
    "batch script of a 4-task allocation (no srun)": (batch_script(4), "srun"),
    "array of listed ids --array=1,4,9": (array(4, 1, 9, 1, count=3), "not one range"),
    "array id off the step": (array(3, 0, 6, 2), "not on the array's range"),
    "array id without min/max": ({"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_MIN"),
    "srun tasks with half-joined torchruns": ({**srun(0, 2), **torchrun(0, 3, local_world=2)}, "WORLD_SIZE=3"),
    "rank outside the world": ({"RANK": "4", "WORLD_SIZE": "4"}, "RANK=4"),
    "non-integer variable": ({"RANK": "one", "WORLD_SIZE": "2"}, "RANK='one'"),
}


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
def test_shard_table_row(row):
    env, expected = ROWS[row]
    assert shard_from_env(env) == expected


@pytest.mark.parametrize("row", list(REFUSED), ids=list(REFUSED))
def test_refused_combination(row):
    env, words = REFUSED[row]
    with pytest.raises(InvalidArgumentError, match=words.replace("(", r"\(").replace(")", r"\)")):
        shard_from_env(env)


def test_explicit_shards_are_refused_only_when_processes_would_repeat_them():
    check_explicit_shard({})
    check_explicit_shard(array(2, 0, 3))  # an array element computing its own shard from the id: fine
    with pytest.raises(InvalidArgumentError, match="same videos"):
        check_explicit_shard(torchrun(0, 2))
    with pytest.raises(InvalidArgumentError, match="srun task 1 of 2"):
        check_explicit_shard(srun(1, 2))


@pytest.mark.parametrize("elements,tasks,procs", [(1, 1, 2), (3, 1, 2), (2, 2, 1), (2, 2, 2), (4, 3, 1)])
def test_every_launch_partitions_the_corpus_exactly_once(elements, tasks, procs):
    """All processes of an array x srun x torchrun launch together take each item exactly once."""
    items = list(range(101))
    taken, shards = [], set()
    for a, p, r in itertools.product(range(elements), range(tasks), range(procs)):
        env = {**array(2 * a + 1, 1, 2 * elements - 1, 2)}  # --array=1-(2E-1):2
        if tasks > 1:
            env.update(srun(p, tasks))
        if procs > 1:
            env.update(torchrun(r, procs))
        shard = shard_from_env(env)
        shards.add(shard)
        taken += shard_items(items, *shard)
    assert len(shards) == elements * tasks * procs
    assert sorted(taken) == items


def test_launch_description_names_every_layer():
    launch = read_launch({**array(1, 0, 1), **srun(0, 2), **torchrun(1, 2)})
    assert launch.describe() == "Slurm array element 1 of 2, srun task 0 of 2, torchrun rank 1 of 2"
