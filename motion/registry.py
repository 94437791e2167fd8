"""Name -> builder registry for flow methods: ``create(name, weights=..., device=...)``."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .errors import InvalidArgumentError
from .models.base import FlowModel

Builder = Callable[..., FlowModel]


@dataclass(frozen=True)
class ModelEntry:
    """One registered method: its builder and a one-line description."""

    name: str
    builder: Builder
    description: str
    trainable: bool


_REGISTRY: dict[str, ModelEntry] = {}

# Modules that register models on import; imported lazily by list_models()/create().
_PROVIDERS = (
    "motion.models.classical",
    "motion.models.reynolds",
    "motion.models.videoflow",
    "motion.models.splatflow",
    "motion.models.streamflow",
    "motion.models.tiny",
)


def register(name: str, description: str = "", trainable: bool = False) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(weights=None, **options) -> FlowModel`` under ``name``."""

    def wrap(builder: Builder) -> Builder:
        _REGISTRY[name] = ModelEntry(name, builder, description or (builder.__doc__ or "").strip().split("\n")[0], trainable)
        return builder

    return wrap


def _load_providers() -> None:
    for module in _PROVIDERS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency inside an existing provider
                raise


def list_models() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    _load_providers()
    return sorted(_REGISTRY)


def model_entries() -> list[ModelEntry]:
    """Registered entries with their descriptions, sorted by name."""
    _load_providers()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> CUDA when available else CPU; anything else as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def create(name: str, weights: Any = None, device: str | torch.device | None = "auto", **options: Any) -> FlowModel:
    """Build the flow method ``name`` (see :func:`list_models`) on ``device`` in eval mode.

    Args:
        name: registered name, e.g. ``"dis"``, ``"reynolds"``, ``"videoflow-mof"``.
        weights: a checkpoint path, a named weight set, or None (fresh initialisation for networks).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        options: method-specific options forwarded to the builder.
    """
    _load_providers()
    if name not in _REGISTRY:
        raise InvalidArgumentError(f"unknown model {name!r}; available: {sorted(_REGISTRY)}")
    model = _REGISTRY[name].builder(weights=weights, **options)
    return model.to(resolve_device(device)).eval()
