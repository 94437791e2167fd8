"""motion.training.train under a 2-process gloo group: VideoFlow (whose checkpoints carry modules the
forward never calls) trains as DDP replicas that match one process on the global batch."""
from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

import motion
from motion.training import SyntheticClips, TrainConfig, train


def _config() -> TrainConfig:
    return TrainConfig(steps=2, batch_size=2, lr=1e-3, iters=1, crop=(64, 64), reverse_prob=0.5, seed=3,
                       log_every=1, checkpoint_every=2, progress=False)


def _data() -> SyntheticClips:
    return SyntheticClips(4, 3, 72, 80, seed=9, num_layers=1)


def _model():
    torch.manual_seed(0)
    return motion.create("videoflow-bof", device="cpu")  # Twins encoders: LayerNorm, no batch statistics


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    from motion.distributed import setup_distributed, teardown_distributed

    torch.set_num_threads(1)
    ctx = setup_distributed("gloo", "cpu", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = train(_model(), _data(), _config(), ctx=ctx)
        torch.save({"state": result.model.state_dict(), "history": result.history}, f"{out}/rank{rank}.pt")
    finally:
        teardown_distributed(ctx)


@pytest.mark.slow  # about 50 s on a loaded 2-core machine (the Twins encoders)
def test_videoflow_ddp_replicas_match_one_process(tmp_path):
    import torch._dynamo  # noqa: F401  (imported lazily by torch.optim; once here, inherited by the forked ranks)

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True,
                       start_method=method)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    single = train(_model(), _data(), _config())
    initial = _model().state_dict()
    moved = 0.0
    for key, value in single.model.state_dict().items():
        assert torch.equal(ranks[0]["state"][key], ranks[1]["state"][key]), key
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-4, atol=1e-5)
        moved = max(moved, float((value.float() - initial[key].float()).abs().max()))
    assert moved > 1e-4  # two real updates, not a comparison of untrained weights
    # logged losses are means over the ranks, i.e. the single process's loss on the global batch
    for a, b in zip(ranks[0]["history"], single.history):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, b["loss"])
