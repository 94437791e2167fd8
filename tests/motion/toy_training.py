"""A few optimiser steps of a flow network on one synthetic clip, for the models' toy-training tests."""
from __future__ import annotations

from typing import Callable

import torch

from motion.synthetic import make_sequence


def toy_fit_epe(build: Callable[[], torch.nn.Module], steps: int, lr: float = 4e-4, seed: int = 0) -> tuple[float, float]:
    """EPE of the model ``build()`` makes on a 3-frame 64x64 synthetic clip before and after ``steps``
    AdamW steps on the model's own ``loss`` of its ``training_predictions`` (grad-norm clip 1.0, as the
    RAFT-family recipe). The model is built after seeding, so its initialisation is the same in every run."""
    torch.manual_seed(seed)
    model = build()
    seq = make_sequence(T=3, height=64, width=64, seed=1, max_speed=2.0)
    frames = seq.frames_tensor()
    target = torch.from_numpy(seq.flow_forward)[None]

    def epe() -> float:
        model.eval()
        with torch.no_grad():
            return (model(frames).forward - target).norm(dim=2).mean().item()

    before = epe()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    model.train()
    for _ in range(steps):
        loss, _ = model.loss(model.training_predictions(frames), {"flow_forward": target})
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    return before, epe()
