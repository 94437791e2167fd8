"""Name -> entry registry for flow methods: ``create(name, weights=..., device=...)``.

Each model module registers its builder with a decorator, declaring with it what the rest of the
package needs to know about the method (timm / torchvision style)::

    @register("videoflow-mof", "VideoFlow MOP/MOF ...", trainable=True,
              weights={"sintel": WeightSet("videoflow_mof-sintel-739e4d3a.ckpt", "MOF_sintel.pth")},
              protocols={"sintel": SequenceProtocol(...), ...})
    def build_videoflow_mof(weights=None, **options) -> FlowModel: ...
"""
from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from motion4d.device import resolve_device
from motion4d.errors import CheckpointError, InvalidArgumentError
from motion4d.registry import Registry

from .models.base import FlowModel
from .models.checkpoints import WeightSet, download_weight_set

if TYPE_CHECKING:
    from .protocols import Protocol

Builder = Callable[..., FlowModel]


@dataclass(frozen=True)
class TrainingRecipe:
    """How a model's training differs from the RAFT-family staged recipe (:data:`motion.training.recipes.STAGES`).

    Attributes:
        stages: stage (``"things"``, ``"sintel"``, ``"kitti"``) -> settings that differ from the
            common stage (:class:`~motion.training.TrainConfig` fields, ``mixture``, ``augment_ranges``).
        eraser_prob: probability of RAFT's eraser (occlusion) augmentation.
    """

    stages: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    eraser_prob: float = 0.0


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
        recipe: the training recipe (trainable methods; None means the common staged recipe).
    """

    name: str
    builder: Builder
    description: str
    trainable: bool = False
    weights: Mapping[str, WeightSet] = field(default_factory=dict)
    protocols: Mapping[str, Protocol] = field(default_factory=dict)
    recipe: TrainingRecipe | None = None


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
    recipe: TrainingRecipe | None = None,
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


def named_weights_url(model_name: str, weights: str) -> str:
    """Download URL of the named weight set ``weights`` of ``model_name`` (CheckpointError if unknown)."""
    table = MODELS.get(model_name).weights
    if weights not in table:
        raise CheckpointError(f"no named weights {weights!r} for {model_name!r}; known: {sorted(table)}")
    return table[weights].url


def download_named_weights(model_name: str, weights: str, progress: bool = True) -> Path:
    """Local path of the named weight set ``weights`` of ``model_name``, downloaded once (hash-checked)."""
    named_weights_url(model_name, weights)  # unknown names fail here, before any download
    weight_set = MODELS.get(model_name).weights[weights]
    return download_weight_set(weight_set, f"the {weights!r} weights of {model_name}", progress=progress)


def resolve_weights(model_name: str, weights: Any) -> Any:
    """``weights`` with a named weight set of ``model_name`` replaced by its local file.

    Paths, state_dicts and None pass through; a bare word that is neither a file nor a known name
    raises CheckpointError listing the names.
    """
    entry = MODELS.get(model_name)
    if not isinstance(weights, str):
        return weights
    if weights in entry.weights:
        return download_named_weights(model_name, weights)
    if not Path(weights).exists() and os.sep not in weights and "." not in weights:
        raise CheckpointError(
            f"weights={weights!r} is neither an existing file nor a named weight set of {model_name} "
            f"(known: {sorted(entry.weights)})"
        )
    return weights


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
    _check_options(name, entry.builder, options)  # before any weights are downloaded
    try:
        model = entry.builder(weights=resolve_weights(name, weights), **options)
    except TypeError as exc:  # a builder forwarding **options to a constructor that does not take one
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown is None or unknown.group(1) not in options:
            raise
        raise InvalidArgumentError(f"model {name!r} takes no option {unknown.group(1)!r}") from exc
    return model.to(target).eval()


def _check_options(name: str, builder: Builder, options: Mapping[str, Any]) -> None:
    """Raise InvalidArgumentError for options a builder with a closed signature does not take."""
    parameters = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # the builder checks its options itself (or its constructor does)
    accepted = sorted(p for p in parameters if p != "weights")
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidArgumentError(
            f"model {name!r} takes no option {', '.join(map(repr, unknown))}; it takes {', '.join(accepted) or 'none'}"
        )
