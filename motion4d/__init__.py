"""motion4d's shared core: what ``motion`` (2-D), ``pointclouds`` (3-D) and ``splats`` (Gaussians) share.

* :mod:`motion4d.errors` - the exception hierarchy (``Motion4DError`` and subclasses);
* :mod:`motion4d.checks` - argument and tensor validation raising those errors;
* :mod:`motion4d.atomic` - atomic file output (temporary file + rename);
* :mod:`motion4d.device` - one ``resolve_device`` for ``auto`` / ``cpu`` / ``cuda[:N]`` / ``mps``;
* :mod:`motion4d.imaging` - uint8 <-> [0, 1] frame conversion and PSNR;
* :mod:`motion4d.registry` - the name -> entry registry behind every ``create``/``list_*`` function;
* :mod:`motion4d.cli` - the ``motion4d`` console script.

This package imports only torch and numpy (no model, no optional dependency), so every other
package can build on it without import cycles.
"""
from __future__ import annotations

from .errors import (  # noqa: F401  (re-exported)
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
