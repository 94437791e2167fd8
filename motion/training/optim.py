"""The optimizer and schedule of the RAFT-family recipe, and SyncBatchNorm for multi-GPU runs."""
from __future__ import annotations

import torch
from torch import nn

from motion4d.errors import InvalidArgumentError

from .config import TrainConfig


def sync_batchnorm(model: nn.Module, world_size: int, device: torch.device, enabled: bool = True) -> nn.Module:
    """``model`` with its BatchNorm layers turned into ``SyncBatchNorm`` (same parameters and
    buffers) when ``enabled`` and several processes train on CUDA; else ``model`` unchanged."""
    if not enabled or world_size < 2 or torch.device(device).type != "cuda":
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def make_optimizer(model: nn.Module, config: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW + OneCycle exactly as RAFT / VideoFlow (``total_steps = steps + 100``, linear anneal)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise InvalidArgumentError(f"{type(model).__name__} has no learnable parameters; nothing to train")
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, eps=config.epsilon)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.steps + 100, pct_start=config.pct_start,
        cycle_momentum=False, anneal_strategy="linear",
    )
    return optimizer, scheduler


