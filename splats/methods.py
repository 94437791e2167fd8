"""Name -> entry registry of the 4D Gaussian reconstruction methods (``gaussian-flow``, ``gflow``).

Each method module registers its class with :func:`register_gaussian_method`, with its model card
(:mod:`splats.cards`)::

    @register_gaussian_method("gflow", GFlowConfig, "GFlow (AAAI 2025): 4D Gaussians from monocular video",
                              card=GFLOW_CARD)
    class GFlow: ...

``gaussian_method(name).cls(gaussian_method(name).config_cls(...))`` builds a method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from motion4d.cards import CardRow, ModelCard, filter_cards
from motion4d.registry import Registry

C = TypeVar("C", bound=type)


@dataclass(frozen=True)
class GaussianMethod:
    """One registered Gaussian method.

    Attributes:
        name: the registered name (``motion4d reconstruct --method NAME``).
        cls: the method class; ``cls(config)`` builds it.
        config_cls: its configuration dataclass.
        description: one line for listings.
        card: the model card (paper, code, licences, reported numbers, speed), or None.
    """

    name: str
    cls: type
    config_cls: type
    description: str
    card: ModelCard | None = None


GAUSSIAN_METHODS: Registry[GaussianMethod] = Registry(
    "Gaussian method", providers=("splats.gaussian_flow", "splats.gflow")
)


def register_gaussian_method(name: str, config_cls: type, description: str,
                             card: ModelCard | None = None) -> Callable[[C], C]:
    """Class decorator registering a Gaussian method under ``name``."""

    def wrap(cls: C) -> C:
        GAUSSIAN_METHODS.add(name, GaussianMethod(name, cls, config_cls, description, card), origin=cls.__module__)
        return cls

    return wrap


def list_gaussian_methods(details: bool = False, licence: str | None = None) -> Any:
    """Registered Gaussian method names, sorted; with ``details=True`` the :class:`motion4d.cards.CardRow`
    of each (see :func:`motion4d.cards.filter_cards` for ``licence``)."""
    rows = filter_cards(gaussian_rows(), licence)
    return rows if details else [r.name for r in rows]


def gaussian_rows() -> list[CardRow]:
    """One :class:`~motion4d.cards.CardRow` per registered Gaussian method, sorted by name."""
    return [CardRow(e.name, "4D Gaussians", e.description, e.card) for e in GAUSSIAN_METHODS.entries()]


def gaussian_method(name: str) -> GaussianMethod:
    """The entry of ``name`` (InvalidArgumentError listing the known names otherwise)."""
    return GAUSSIAN_METHODS.get(name)
