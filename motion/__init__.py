"""motion4d 2-D motion: frames in, optical flow and point tracks out.

Public names are imported lazily (PEP 562) so ``import motion`` stays cheap and optional
dependencies are only touched by the features that need them.
"""
from __future__ import annotations

import importlib
from typing import Any

from motion4d.errors import (  # noqa: F401  (re-exported)
    BackendUnavailableError,
    CheckpointError,
    DamagedFileError,
    InputFileError,
    InputTooLargeError,
    InvalidArgumentError,
    MissingDependencyError,
    MissingFileError,
    Motion4DError,
    NonFiniteError,
    ShapeError,
)

__version__ = "0.1.0"

_LAZY = {
    # frames and video
    "open_video": "motion.frames",
    "read_frames": "motion.frames",
    "Frame": "motion.frames",
    "VideoSource": "motion.frames",
    "InputPadder": "motion.padding",
    "VideoWriter": "motion.video_writer",
    "write_video": "motion.video_writer",
    "read_image": "motion.image_io",
    "write_image": "motion.image_io",
    # flow files
    "read_flow": "motion.flow_io",
    "write_flow": "motion.flow_io",
    # models
    "FlowModel": "motion.models.base",
    "FlowOutput": "motion.models.base",
    "create": "motion.registry",
    "list_models": "motion.registry",
    "register": "motion.registry",
    "ModelEntry": "motion.registry",
    "model_entry": "motion.registry",
    # pipelines
    "estimate_flow": "motion.estimate",
    "iter_flow": "motion.estimate",
    "evaluate_tracks": "motion.track_metrics",
    "load_tracks": "motion.track_io",
    "save_tracks": "motion.track_io",
    "Tracks": "motion.tracks",
    "track_points": "motion.tracking",
    "flow_to_color": "motion.visualize",
    "flow_metrics": "motion.metrics",
    "make_sequence": "motion.synthetic",
}
_SUBMODULES = {
    "metrics", "visualize", "synthetic", "data", "ops", "models", "tracks", "tracking", "track_formats",
    "track_video", "flow_geometry", "frames", "padding", "flow_io", "video_writer", "image_io", "sample_data",
    "estimate", "registry", "track_io", "track_metrics", "protocols", "windowing", "training", "objects",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"motion.{name}")
    raise AttributeError(f"module 'motion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
