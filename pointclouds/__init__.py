"""motion4d 3-D: point clouds, neighbours, scene-flow metrics and scene-flow estimation.

Public names are imported lazily (PEP 562).
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PointCloud": "pointclouds.cloud",
    "read_cloud": "pointclouds.cloud",
    "write_cloud": "pointclouds.cloud",
    "depth_to_points": "pointclouds.cloud",
    "pad_batch": "pointclouds.cloud",
    "unpad_batch": "pointclouds.cloud",
    "knn": "pointclouds.neighbors",
    "chamfer_distance": "pointclouds.neighbors",
    "scene_flow_metrics": "pointclouds.metrics",
    "estimate_scene_flow": "pointclouds.methods",
    "SceneFlowOutput": "pointclouds.methods",
    "list_methods": "pointclouds.methods",
}
_SUBMODULES = {"cloud", "neighbors", "metrics", "data", "methods", "synthetic", "geometry", "benchmark"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"pointclouds.{name}")
    raise AttributeError(f"module 'pointclouds' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
