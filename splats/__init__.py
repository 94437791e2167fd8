"""motion4d Gaussians: splat parameters, cameras, rendering, Gaussian-Flow and GFlow.

Public names are imported lazily (PEP 562) so that importing never touches gsplat's CUDA build.
``splats.render`` is the render function (module :mod:`splats.rendering`); no submodule shares its name,
so importing submodules never rebinds it.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Gaussians": "splats.gaussians",
    "Cameras": "splats.cameras",
    "render": "splats.rendering",
    "GaussianFlow": "splats.gaussian_flow",
    "GFlow": "splats.gflow",
    "Scene4D": "splats.gflow",
    "list_gaussian_methods": "splats.methods",
    "gaussian_method": "splats.methods",
    "DepthProvider": "splats.depth_providers",
    "depth_provider": "splats.depth_providers",
    "TwoViewDepth": "splats.depth_providers",
    "two_view_depth": "splats.depth_prior",
}
_SUBMODULES = {"gaussians", "cameras", "rendering", "gsplat_bridge", "gaussian_flow", "gflow", "synthetic", "methods",
               "depth_prior", "depth_providers", "depth_fill", "reprojected_scene", "posed_video", "video_reconstruction"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"splats.{name}")
    raise AttributeError(f"module 'splats' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
