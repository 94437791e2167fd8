"""Name -> builder registry for flow methods: ``create(name, weights=..., device=...)``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from motion4d.device import resolve_device
from motion4d.registry import Registry

from .models.base import FlowModel

Builder = Callable[..., FlowModel]


@dataclass(frozen=True)
class ModelEntry:
    """One registered method: its builder and a one-line description."""

    name: str
    builder: Builder
    description: str
    trainable: bool


MODELS: Registry[ModelEntry] = Registry(
    "model",
    providers=(
        "motion.models.classical",
        "motion.models.reynolds",
        "motion.models.videoflow",
        "motion.models.splatflow",
        "motion.models.streamflow",
        "motion.models.tiny",
    ),
)


def register(name: str, description: str = "", trainable: bool = False) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(weights=None, **options) -> FlowModel`` under ``name``."""

    def wrap(builder: Builder) -> Builder:
        summary = description or (builder.__doc__ or "").strip().split("\n")[0]
        MODELS.add(name, ModelEntry(name, builder, summary, trainable), origin=builder.__module__)
        return builder

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return MODELS.names()


def model_entries() -> list[ModelEntry]:
    """Registered entries with their descriptions, sorted by name."""
    return MODELS.entries()


def create(name: str, weights: Any = None, device: str | torch.device | None = "auto", **options: Any) -> FlowModel:
    """Build the flow method ``name`` (see :func:`list_models`) on ``device`` in eval mode.

    Args:
        name: registered name, e.g. ``"dis"``, ``"reynolds"``, ``"videoflow-mof"``.
        weights: a checkpoint path, a named weight set, or None (fresh initialisation for networks).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        options: method-specific options forwarded to the builder.
    """
    entry = MODELS.get(name)
    target = resolve_device(device)
    model = entry.builder(weights=weights, **options)
    return model.to(target).eval()
