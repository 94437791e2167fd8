"""Name -> entry registry of scene-flow methods behind :func:`pointclouds.estimate_scene_flow`.

Each method module registers its run function with :func:`register_method`, with its model card
(:mod:`pointclouds.methods.cards`)::

    @register_method("nn", "nearest-neighbour flow", options=("device", "backend"), card=NN_CARD)
    def nearest_neighbor_flow(source, target, *, device="cpu", backend="auto") -> SceneFlowOutput: ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from motion4d.cards import CardRow, ModelCard, filter_cards
from motion4d.registry import Registry

from .common import SceneFlowOutput, split_options

RunFn = Callable[..., SceneFlowOutput]


@dataclass(frozen=True)
class SceneFlowMethod:
    """One registered scene-flow method.

    Attributes:
        name: the registered name (``estimate_scene_flow(..., method=name)``).
        run: ``run(source, target, **options) -> SceneFlowOutput``.
        description: one line for listings.
        options: the option names ``run`` accepts (others are refused before it runs).
        card: the model card (paper, code, licences, weights, reported numbers, speed), or None.
    """

    name: str
    run: RunFn
    description: str
    options: tuple[str, ...]
    card: ModelCard | None = None


SCENE_FLOW_METHODS: Registry[SceneFlowMethod] = Registry(
    "scene-flow method",
    providers=("pointclouds.methods.baselines", "pointclouds.methods.nsfp", "pointclouds.methods.scoop"),
)


def register_method(name: str, description: str, options: Sequence[str],
                    card: ModelCard | None = None) -> Callable[[RunFn], RunFn]:
    """Decorator registering ``run(source, target, **options) -> SceneFlowOutput`` under ``name``."""

    def wrap(run: RunFn) -> RunFn:
        SCENE_FLOW_METHODS.add(name, SceneFlowMethod(name, run, description, tuple(options), card), origin=run.__module__)
        return run

    return wrap


def list_methods(details: bool = False, licence: str | None = None) -> Any:
    """Names accepted by :func:`pointclouds.estimate_scene_flow`, sorted; with ``details=True`` the
    :class:`motion4d.cards.CardRow` of each (see :func:`motion4d.cards.filter_cards` for ``licence``)."""
    rows = filter_cards(method_rows(), licence)
    return rows if details else [r.name for r in rows]


def method_rows() -> list[CardRow]:
    """One :class:`~motion4d.cards.CardRow` per registered scene-flow method, sorted by name."""
    return [CardRow(e.name, "scene flow", e.description, e.card) for e in SCENE_FLOW_METHODS.entries()]


def method_entries() -> list[SceneFlowMethod]:
    """Registered entries, sorted by name."""
    return SCENE_FLOW_METHODS.entries()


def run_method(method: str, source: Any, target: Any, **options: Any) -> SceneFlowOutput:
    """Run the registered ``method`` after checking its options."""
    entry = SCENE_FLOW_METHODS.get(method)
    split_options(options, set(entry.options), method)
    return entry.run(source, target, **options)
