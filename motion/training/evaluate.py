"""End-point error of a VideoFlow-style network on held-out clips (no augmentation)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .clips import clip_from_item


def evaluate_epe(model: nn.Module, clips: Sequence[dict[str, Any]], iters: int | None = None) -> float:
    """Mean end-point error of the interior forward flows over ``clips`` (no augmentation)."""
    was_training = model.training
    model.eval()
    errors = []
    with torch.no_grad():
        for item in clips:
            clip = clip_from_item(item)
            frames = clip["frames"][None].to(next(model.parameters()).device)
            out = model.interior_flows(frames, iters=iters)
            target = clip["flow_forward"][1:].to(out.forward.device)
            errors.append((out.forward[0] - target).norm(dim=1).mean().item())
    model.train(was_training)
    return float(np.mean(errors))
