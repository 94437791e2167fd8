"""Name -> entry registry of scene-flow methods behind :func:`pointclouds.estimate_scene_flow`.

Each method module registers its run function with :func:`register_method`::

    @register_method("nn", "nearest-neighbour flow", options=("device", "backend"))
    def nearest_neighbor_flow(source, target, *, device="cpu", backend="auto") -> SceneFlowOutput: ...
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

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
    """

    name: str
    run: RunFn
    description: str
    options: tuple[str, ...]


SCENE_FLOW_METHODS: Registry[SceneFlowMethod] = Registry(
    "scene-flow method",
    providers=("pointclouds.methods.baselines", "pointclouds.methods.nsfp", "pointclouds.methods.scoop"),
)


def register_method(name: str, description: str, options: Sequence[str]) -> Callable[[RunFn], RunFn]:
    """Decorator registering ``run(source, target, **options) -> SceneFlowOutput`` under ``name``."""

    def wrap(run: RunFn) -> RunFn:
        SCENE_FLOW_METHODS.add(name, SceneFlowMethod(name, run, description, tuple(options)), origin=run.__module__)
        return run

    return wrap


def list_methods() -> list[str]:
    """Names accepted by :func:`pointclouds.estimate_scene_flow`, sorted."""
    return SCENE_FLOW_METHODS.names()


def method_entries() -> list[SceneFlowMethod]:
    """Registered entries, sorted by name."""
    return SCENE_FLOW_METHODS.entries()


def run_method(method: str, source: Any, target: Any, **options: Any) -> SceneFlowOutput:
    """Run the registered ``method`` after checking its options."""
    entry = SCENE_FLOW_METHODS.get(method)
    split_options(options, set(entry.options), method)
    return entry.run(source, target, **options)
