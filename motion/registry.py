"""Name -> entry registry for flow methods: ``create(name, weights=..., device=...)``.

Each model module registers its builder with a decorator, declaring with it what the rest of the
package needs to know about the method (timm / torchvision style)::

    @register("videoflow-mof", "VideoFlow MOP/MOF ...", trainable=True, card=VIDEOFLOW_MOF_CARD,
              protocols={"sintel": SequenceProtocol(...), ...}, hyper_parameters=MOF_HYPER_PARAMETERS)
    def build_videoflow_mof(weights=None, **options) -> FlowModel: ...

The :class:`~motion4d.cards.ModelCard` (:mod:`motion.models.cards`) is the record of the method's
paper, code, licences, weight sets, reported numbers and speed; the named weight sets that
``create(name, weights="sintel")`` downloads, and their aliases (ptlflow's names), are read from it.
"""
from __future__ import annotations

import inspect
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from motion4d.cards import CardRow, ModelCard, cards_table, filter_cards
from motion4d.device import resolve_device
from motion4d.errors import CheckpointError, InvalidArgumentError
from motion4d.registry import Registry

from .models.base import FlowModel
from .models.checkpoint_settings import CheckpointSettingsWarning, HyperParameter, options_from_hyper_parameters
from .models.checkpoints import WeightSet, download_weight_set, read_checkpoint

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
        card: the model card (None for methods registered without one, e.g. in tests).
        weight_aliases: other names of named weight sets, ``alias -> name`` (ptlflow's names).
        hyper_parameters: ptlflow checkpoint arguments and what the model builds for them (see
            :mod:`motion.models.checkpoint_settings`), for ``create(..., config_from_checkpoint=True)``.
    """

    name: str
    builder: Builder
    description: str
    trainable: bool = False
    weights: Mapping[str, WeightSet] = field(default_factory=dict)
    protocols: Mapping[str, Protocol] = field(default_factory=dict)
    recipe: TrainingRecipe | None = None
    card: ModelCard | None = None
    weight_aliases: Mapping[str, str] = field(default_factory=dict)
    hyper_parameters: tuple[HyperParameter, ...] = ()

    def canonical_weights(self, weights: str) -> str | None:
        """The named weight set ``weights`` stands for (itself, or the set it is an alias of), or None."""
        if weights in self.weights:
            return weights
        return self.weight_aliases.get(weights)


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
    card: ModelCard | None = None,
    weights: Mapping[str, WeightSet] | None = None,
    protocols: Mapping[str, Protocol] | None = None,
    recipe: TrainingRecipe | None = None,
    hyper_parameters: tuple[HyperParameter, ...] = (),
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(weights=None, **options) -> FlowModel`` under ``name``.

    ``description`` defaults to the first line of the builder's docstring. The named weight sets
    come from ``card`` (its downloadable :class:`~motion4d.cards.WeightCard` entries and their
    aliases), or from ``weights`` for a method without a card (not both). Registering a name twice
    warns and keeps the newer entry.
    """
    if card is not None and weights is not None:
        raise InvalidArgumentError(f"register({name!r}): give the weight sets in the card or in weights=, not both")
    table = dict(weights or {})
    aliases: dict[str, str] = {}
    if card is not None:
        table = {w.name: WeightSet(w.asset, w.official_file) for w in card.downloadable().values()}
        aliases = card.aliases()

    def wrap(builder: Builder) -> Builder:
        summary = description or (builder.__doc__ or "").strip().split("\n")[0]
        entry = ModelEntry(name, builder, summary, trainable, table, dict(protocols or {}), recipe, card, aliases,
                           tuple(hyper_parameters))
        MODELS.add(name, entry, origin=builder.__module__)
        return builder

    return wrap


def list_models(details: bool = False, licence: str | None = None) -> Any:
    """Names accepted by :func:`create`, sorted; with ``details=True`` a :class:`ModelTable` of their
    cards (printing it shows the table).

    ``licence`` keeps the methods whose card matches (see :func:`motion4d.cards.filter_cards`):
    ``"commercial-ok"`` (the code motion4d runs and the published weights allow commercial use),
    ``"commercial-unclear"``, ``"none stated"``, or a licence name such as ``"MIT"``.
    """
    rows = filter_cards(model_rows(), licence)
    return ModelTable(rows) if details else [r.name for r in rows]


class ModelTable(list):
    """Card rows (:class:`motion4d.cards.CardRow`) that print as a table; ``.json()`` for scripts."""

    def __str__(self) -> str:
        return cards_table(self)

    def markdown(self) -> str:
        return cards_table(self, markdown=True)

    def json(self) -> str:
        from motion4d.cards import cards_json

        return cards_json(self)


def model_rows() -> list[CardRow]:
    """One :class:`~motion4d.cards.CardRow` per registered flow method, sorted by name."""
    return [CardRow(e.name, "optical flow", e.description, e.card) for e in MODELS.entries()]


def model_entries() -> list[ModelEntry]:
    """Registered entries with their descriptions, sorted by name."""
    return MODELS.entries()


def model_entry(name: str) -> ModelEntry:
    """The entry of ``name`` (InvalidArgumentError listing the known names otherwise)."""
    return MODELS.get(name)


def _known_weights(entry: ModelEntry) -> list[str]:
    return sorted(entry.weights) + [f"{a} (= {n})" for a, n in sorted(entry.weight_aliases.items())]


def named_weights_url(model_name: str, weights: str) -> str:
    """Download URL of the named weight set (or alias) ``weights`` of ``model_name`` (CheckpointError if unknown)."""
    entry = MODELS.get(model_name)
    name = entry.canonical_weights(weights)
    if name is None:
        raise CheckpointError(f"no named weights {weights!r} for {model_name!r}; known: {_known_weights(entry)}")
    return entry.weights[name].url


def download_named_weights(model_name: str, weights: str, progress: bool = True) -> Path:
    """Local path of the named weight set (or alias) ``weights`` of ``model_name``, downloaded once (hash-checked)."""
    named_weights_url(model_name, weights)  # unknown names fail here, before any download
    entry = MODELS.get(model_name)
    name = entry.canonical_weights(weights)
    label = f"the {name!r} weights of {model_name}" + (f" (alias {weights!r})" if name != weights else "")
    return download_weight_set(entry.weights[name], label, progress=progress)


def resolve_weights(model_name: str, weights: Any) -> Any:
    """``weights`` with a named weight set (or an alias of one) of ``model_name`` replaced by its local file.

    Paths, state_dicts and None pass through; a bare word that is neither a file nor a known name
    raises CheckpointError listing the names.
    """
    entry = MODELS.get(model_name)
    if not isinstance(weights, str):
        return weights
    if entry.canonical_weights(weights) is not None:
        return download_named_weights(model_name, weights)
    if not Path(weights).exists() and os.sep not in weights and "." not in weights:
        raise CheckpointError(
            f"weights={weights!r} is neither an existing file nor a named weight set of {model_name} "
            f"(known: {_known_weights(entry)})"
        )
    return weights


def create(name: str, weights: Any = None, device: str | torch.device | None = "auto", *,
           config_from_checkpoint: bool = False, **options: Any) -> FlowModel:
    """Build the flow method ``name`` (see :func:`list_models`) on ``device`` in eval mode.

    Args:
        name: registered name, e.g. ``"dis"``, ``"reynolds"``, ``"videoflow-mof"``.
        weights: a checkpoint path, a named weight set or an alias of one (see
            ``model_entry(name).card`` or ``motion4d models NAME``), or None (fresh initialisation).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        config_from_checkpoint: build the model with the settings stored in the checkpoint (ptlflow's
            ``hyper_parameters``, or the config of our own checkpoints) for the options the model
            declares (``model_entry(name).hyper_parameters``: iterations, encoder, group size);
            options given here take precedence.
        options: method-specific options forwarded to the builder.
    """
    entry = MODELS.get(name)
    target = resolve_device(device)
    _check_options(name, entry.builder, options)  # before any weights are downloaded
    resolved = resolve_weights(name, weights)
    # inference settings chosen here (or taken from the checkpoint) need no warning that they differ
    chosen = config_from_checkpoint or any(p.option in options for p in entry.hyper_parameters if not p.architecture)
    if config_from_checkpoint:
        options = {**checkpoint_options(name, resolved), **options}
    try:
        with warnings.catch_warnings():
            if chosen:
                warnings.simplefilter("ignore", CheckpointSettingsWarning)
            model = entry.builder(weights=resolved, **options)
    except TypeError as exc:  # a builder forwarding **options to a constructor that does not take one
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown is None or unknown.group(1) not in options:
            raise
        raise InvalidArgumentError(f"model {name!r} takes no option {unknown.group(1)!r}") from exc
    if not isinstance(getattr(type(model), "registry_name", None), property):
        model.registry_name = name  # outputs and checkpoints record the registered name, not the class
    return model.to(target).eval()


def checkpoint_options(name: str, weights: Any) -> dict[str, Any]:
    """The builder options of model ``name`` that the checkpoint ``weights`` (a path or a loaded
    checkpoint) was saved with: from ptlflow's ``hyper_parameters`` through the model's
    ``hyper_parameters`` table, or from the ``config`` of our own format (the same options)."""
    entry = MODELS.get(name)
    if not entry.hyper_parameters:
        raise InvalidArgumentError(f"config_from_checkpoint: model {name!r} declares no checkpoint settings")
    if weights is None:
        raise InvalidArgumentError("config_from_checkpoint=True needs weights=")
    _, fmt, meta = read_checkpoint(weights)
    source = "<state_dict>" if isinstance(weights, Mapping) else str(weights)
    if fmt == "ptlflow":
        return options_from_hyper_parameters(meta["hyper_parameters"], entry.hyper_parameters, name, source)
    if fmt == "motion4d":
        wanted = {p.option for p in entry.hyper_parameters if p.option is not None}
        return {k: v for k, v in (meta.get("config") or {}).items() if k in wanted}
    raise CheckpointError(f"config_from_checkpoint: {source} is a bare state_dict ({fmt} format) and stores no settings")


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
