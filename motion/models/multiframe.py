"""Small helpers shared by the SplatFlow and StreamFlow models (option checks, frames, correlation)."""
from __future__ import annotations

from typing import Any

import torch

from motion4d.imaging import as_stream_frame

CORR_LEVELS = 4
CORR_RADIUS = 4
CORR_MODES = ("all_pairs", "on_the_fly")
ATTENTION_MODES = ("auto", "dense", "fused")


def as_batch_frame(frame: Any, name: str = "frame") -> torch.Tensor:
    """A stream element (``[3, H, W]``, ``[B, 3, H, W]`` or a reader's uint8 ``[H, W, 3]``) -> ``float [B, 3, H, W]``
    in [0, 1] (:func:`motion4d.imaging.as_stream_frame`)."""
    return as_stream_frame(frame, name)


def correlation(fmap1: torch.Tensor, fmap2: torch.Tensor, mode: str, backend: str):
    """RAFT's 4-level, radius-4 correlation of ``[N, D, h, w]`` features (``motion.ops``)."""
    from ..ops import CorrelationVolume  # imported lazily: the ops package may compile kernels

    return CorrelationVolume(fmap1, fmap2, num_levels=CORR_LEVELS, radius=CORR_RADIUS, mode=mode, backend=backend)


def fused_attention(attention: str, corr_mode: str) -> bool:
    """GMA evaluation path: ``auto`` is dense with all-pairs correlation and fused with on-the-fly."""
    if attention == "auto":
        return corr_mode == "on_the_fly"
    return attention == "fused"

