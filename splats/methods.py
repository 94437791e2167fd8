"""Name -> entry registry of the 4D Gaussian reconstruction methods (``gaussian-flow``, ``gflow``).

Each method module registers its class with :func:`register_gaussian_method`::

    @register_gaussian_method("gflow", GFlowConfig, "GFlow (AAAI 2025): 4D Gaussians from monocular video")
    class GFlow: ...

``gaussian_method(name).cls(gaussian_method(name).config_cls(...))`` builds a method.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

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
    """

    name: str
    cls: type
    config_cls: type
    description: str


GAUSSIAN_METHODS: Registry[GaussianMethod] = Registry(
    "Gaussian method", providers=("splats.gaussian_flow", "splats.gflow")
)


def register_gaussian_method(name: str, config_cls: type, description: str) -> Callable[[C], C]:
    """Class decorator registering a Gaussian method under ``name``."""

    def wrap(cls: C) -> C:
        GAUSSIAN_METHODS.add(name, GaussianMethod(name, cls, config_cls, description), origin=cls.__module__)
        return cls

    return wrap


def list_gaussian_methods() -> list[str]:
    """Registered Gaussian method names, sorted."""
    return GAUSSIAN_METHODS.names()


def gaussian_method(name: str) -> GaussianMethod:
    """The entry of ``name`` (InvalidArgumentError listing the known names otherwise)."""
    return GAUSSIAN_METHODS.get(name)
