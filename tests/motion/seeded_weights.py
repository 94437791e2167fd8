"""Seeded random weights that an independent implementation can reproduce from key names alone."""
from __future__ import annotations

import math

import numpy as np
import torch


def seeded_state(reference_state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Every floating tensor randomised (zero-initialised ones included), drawn in sorted key order.

    Scales keep activations in a sane range: matrices ~ N(0, 1/fan_in), norm weights ~ 1 + N(0, 0.1),
    BatchNorm variances in [0.5, 1.5], GMA ``gamma`` ~ 0.5, other vectors ~ N(0, 0.1); the flow heads'
    last layers are scaled down so that flows stay within a few pixels.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(reference_state):
        ref = reference_state[name]
        if not ref.is_floating_point():
            out[name] = ref.clone()
            continue
        t = torch.randn(ref.shape, generator=g, dtype=torch.float64)
        if name.endswith("gamma"):
            t = 0.5 + 0.1 * t
        elif name.endswith("running_var"):
            t = 1.0 + 0.5 * torch.tanh(t)
        elif ref.dim() >= 2:
            t = t / math.sqrt(max(1, int(np.prod(ref.shape[1:]))))
        elif name.endswith(".weight"):
            t = 1.0 + 0.1 * t
        else:
            t = 0.1 * t
        if "flow_head" in name and ("ffn2.2" in name or "conv2" in name):  # flows of a few pixels
            scale = 0.003 if "conv2" in name else 0.0003
            t = scale * t * math.sqrt(max(1, int(np.prod(ref.shape[1:])))) if ref.dim() >= 2 else scale * t
        out[name] = t.float()
    return out
