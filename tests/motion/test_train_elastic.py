"""Elastic resume: a checkpoint written by N gloo processes continues on M with the same global batch,
and the loss curve equals the uninterrupted run's; the sampler's order does not depend on the world size."""
from __future__ import annotations

import json

import pytest
import torch
import torch.multiprocessing as mp

import motion
from motion.distributed import ResumableDistributedSampler
from motion.training import SyntheticClips, TrainConfig, train

STEPS, CUT = 6, 3


def _config() -> TrainConfig:
    # 10 clips, global batch 4: 2 batches per epoch, so the cut (step 3) lies inside the second epoch
    return TrainConfig(steps=STEPS, batch_size=4, lr=2e-3, iters=1, crop=(24, 32), reverse_prob=0.5, seed=5,
                       log_every=1, checkpoint_every=CUT, progress=False, preview=False)


def _model():
    torch.manual_seed(0)
    return motion.create("tiny-flow", device="cpu")


def _data() -> SyntheticClips:
    return SyntheticClips(10, 2, 32, 40, seed=2, num_layers=1)


def _worker(rank: int, world: int, init_file: str, out: str, resume: str | None, result: str) -> None:
    from motion.distributed import setup_distributed, teardown_distributed

    torch.set_num_threads(1)
    ctx = setup_distributed("gloo", "cpu", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        run = train(_model(), _data(), _config(), out, ctx=ctx, resume=resume)
        if rank == 0:
            with open(result, "w") as f:
                json.dump([row["loss"] for row in run.history], f)
    finally:
        teardown_distributed(ctx)


def _two_processes(tmp_path, name: str, resume: str | None) -> list[float]:
    import torch._dynamo  # noqa: F401  (imported lazily by torch.optim; once here, inherited by the forked ranks)

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    result = tmp_path / f"{name}.json"
    mp.start_processes(_worker, args=(2, str(tmp_path / f"{name}.rendezvous"), str(tmp_path / name), resume, str(result)),
                       nprocs=2, join=True, start_method=method)
    return json.loads(result.read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    torch.set_num_threads(1)
    run = train(_model(), _data(), _config(), out)
    assert run.step == STEPS and len(run.history) == STEPS
    return out, [row["loss"] for row in run.history]


def test_two_processes_resume_on_one(uninterrupted, tmp_path):
    _, expected = uninterrupted
    losses_two = _two_processes(tmp_path, "two", None)
    assert losses_two == pytest.approx(expected, abs=1e-5)  # DDP on the global batch = one process
    cut = tmp_path / "two" / "checkpoints" / f"step_{CUT:07d}.pt"
    resumed = train(_model(), _data(), _config(), tmp_path / "resumed", resume=str(cut))
    assert resumed.step == STEPS and len(resumed.losses) == STEPS - CUT
    assert [row["loss"] for row in resumed.history] == pytest.approx(expected, abs=1e-5)
    assert resumed.losses == pytest.approx(expected[CUT:], abs=1e-5)
    assert max(expected) - min(expected) > 1e-3  # the curve moves: not a comparison of constants


def test_one_process_resumes_on_two(uninterrupted, tmp_path):
    out, expected = uninterrupted
    cut = out / "checkpoints" / f"step_{CUT:07d}.pt"
    losses = _two_processes(tmp_path, "elastic", str(cut))
    assert losses == pytest.approx(expected, abs=1e-5)
    config = json.loads((tmp_path / "elastic" / "train_config.json").read_text())
    assert config["world_size"] == 2 and config["per_rank_batch"] == 2


def test_sampler_order_is_independent_of_the_world_size():
    data = list(range(23))
    one = ResumableDistributedSampler(data, 1, 0, batch_size=6, seed=4)
    one.set_epoch(3)
    single = list(one)
    assert len(single) == 18 and len(set(single)) == 18  # 3 whole global batches, no repeats
    for world in (2, 3, 6):
        ranks = [ResumableDistributedSampler(data, world, r, batch_size=6, seed=4) for r in range(world)]
        for sampler in ranks:
            sampler.set_epoch(3)
        parts = [list(s) for s in ranks]
        per = 6 // world
        rebuilt = [i for b in range(3) for part in parts for i in part[b * per:(b + 1) * per]]
        assert rebuilt == single, world  # global batch b: rank 0's slice, rank 1's, ... = the single order
    # a position in global batches means the same on any world size
    late = ResumableDistributedSampler(data, 2, 1, batch_size=6, seed=4)
    late.set_position(3, 2)
    assert list(late) == single[2 * 6 + 3:3 * 6] and len(late) == 3
