"""Name -> entry registry for flow methods: ``create(name, weights=..., device=...)``.

Each model module registers its builder with a decorator, declaring with it what the rest of the
package needs to know about the method (timm / torchvision style)::

    @register("videoflow-mof", "VideoFlow MOP/MOF ...", trainable=True,
              weights={"sintel": WeightSet("videoflow_mof-sintel-739e4d3a.ckpt", "MOF_sintel.pth")},
              protocols={"sintel": SequenceProtocol(...), ...})
    def build_videoflow_mof(weights=None, **options) -> FlowModel: ...
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from motion4d.device import resolve_device
from motion4d.registry import Registry

from .models.base import FlowModel
from .models.checkpoints import WeightSet

if TYPE_CHECKING:
    from .protocols import Protocol

Builder = Callable[..., FlowModel]


@dataclass(frozen=True)
class ModelEntry:
    """One registered method.

    Attributes:
        name: the registered name (``motion.create(name)``).
        builder: ``builder(weights=None, **options) -> FlowModel``.
        description: one line for listings.
        trainable: whether the method has learnable parameters.
        weights: named weight sets, ``name -> WeightSet`` (``create(name, weights="sintel")``).
        protocols: evaluation protocol per benchmark (``"sintel"``, ``"kitti"``, ``"things"``, see
            :mod:`motion.protocols`); benchmarks not listed use the protocol derived from the
            model's ``frames_per_window`` (:func:`motion.protocols.default_protocol`).
        recipe: the training recipe of the method, or None.
    """

    name: str
    builder: Builder
    description: str
    trainable: bool = False
    weights: Mapping[str, WeightSet] = field(default_factory=dict)
    protocols: Mapping[str, Protocol] = field(default_factory=dict)
    recipe: Callable[..., Any] | None = None


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


def register(
    name: str,
    description: str = "",
    trainable: bool = False,
    *,
    weights: Mapping[str, WeightSet] | None = None,
    protocols: Mapping[str, Protocol] | None = None,
    recipe: Callable[..., Any] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(weights=None, **options) -> FlowModel`` under ``name``.

    ``description`` defaults to the first line of the builder's docstring; the other arguments
    fill the :class:`ModelEntry`. Registering a name twice warns and keeps the newer entry.
    """

    def wrap(builder: Builder) -> Builder:
        summary = description or (builder.__doc__ or "").strip().split("\n")[0]
        entry = ModelEntry(name, builder, summary, trainable, dict(weights or {}), dict(protocols or {}), recipe)
        MODELS.add(name, entry, origin=builder.__module__)
        return builder

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return MODELS.names()


def model_entries() -> list[ModelEntry]:
    """Registered entries with their descriptions, sorted by name."""
    return MODELS.entries()


def model_entry(name: str) -> ModelEntry:
    """The entry of ``name`` (InvalidArgumentError listing the known names otherwise)."""
    return MODELS.get(name)


def create(name: str, weights: Any = None, device: str | torch.device | None = "auto", **options: Any) -> FlowModel:
    """Build the flow method ``name`` (see :func:`list_models`) on ``device`` in eval mode.

    Args:
        name: registered name, e.g. ``"dis"``, ``"reynolds"``, ``"videoflow-mof"``.
        weights: a checkpoint path, a named weight set (see ``model_entry(name).weights``), or None
            (fresh initialisation for networks).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        options: method-specific options forwarded to the builder.
    """
    entry = MODELS.get(name)
    target = resolve_device(device)
    model = entry.builder(weights=weights, **options)
    return model.to(target).eval()
