"""A toy run of the training loop on many synthetic clips: the end-point error on clips never seen in
training improves on the untrained network (VideoFlow-BOF with the light RAFT encoder, 64x64 crops)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import motion
from motion.train import AugmentConfig, SyntheticClips, TrainConfig, evaluate_epe, train

SCENE = {"num_layers": 1, "max_speed": 3.0}


@pytest.fixture
def one_thread():
    """Small tensors on a shared machine: one thread is faster than threads waiting for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow  # ~60 s of CPU time (2-4 min on a loaded 2-core machine)
def test_training_on_synthetic_clips_improves_held_out_epe(one_thread):
    training = SyntheticClips(64, 3, 72, 80, seed=1000, **SCENE)  # scenes 1000..1063
    held_out = [SyntheticClips(6, 3, 64, 64, seed=0, **SCENE)[i] for i in range(6)]  # scenes 0..5: never trained on
    zero_flow = float(np.mean([np.linalg.norm(c["flow_forward"][1], axis=0).mean() for c in held_out]))
    torch.manual_seed(0)
    model = motion.create("videoflow-bof", device="cpu", encoder="basic", iters=2, train_iters=2)
    before = evaluate_epe(model, held_out)
    config = TrainConfig(steps=80, batch_size=2, lr=1e-3, iters=2, crop=(64, 64), gamma=0.8, seed=0,
                         log_every=10, progress=False)
    result = train(model, training, config, augment=AugmentConfig(crop=(64, 64), min_scale=-0.1, max_scale=0.3))
    after = evaluate_epe(model, held_out)
    losses = [row["loss"] for row in result.history]
    print(f"held-out EPE: untrained {before:.3f}, trained {after:.3f}, zero flow {zero_flow:.3f}; "
          f"training loss per 10 steps {np.round(losses, 3).tolist()}")
    assert result.step == 80 and len(losses) == 8 and np.isfinite(losses).all()
    # measured over two seeds: 1.65 -> 1.18 and 1.76 -> 1.14 (ratios 0.71, 0.65); zero flow 1.17. In this
    # budget the network only unlearns its random initial flows; beating zero flow takes longer runs.
    assert after < 0.8 * before
