"""Exceptions shared by ``motion``, ``pointclouds`` and ``splats``.

Every public function validates its inputs and raises one of these with the offending argument
name, shape or path in the message. Each subclass also derives from the closest built-in exception
so that ``except ValueError`` / ``except FileNotFoundError`` keep working for callers that expect them.
"""
from __future__ import annotations


class Motion4DError(Exception):
    """Base class of every error raised on purpose by motion4d."""


class InvalidArgumentError(Motion4DError, ValueError):
    """An argument has a value outside what the function accepts (e.g. an unknown mode)."""


class ShapeError(Motion4DError, ValueError):
    """A tensor or array has the wrong shape, dtype or number of dimensions."""


class NonFiniteError(ShapeError):
    """An input holds NaN or infinite values where finite numbers are required."""


class InputFileError(Motion4DError, OSError):
    """An input file or folder cannot be used: unreadable, corrupt, truncated, empty or wrong format."""


class DamagedFileError(InputFileError):
    """A file opens but is damaged: truncated, or holding corrupt data (e.g. frames a decoder concealed)."""


class InputTooLargeError(InputFileError):
    """A file declares more data than the configured limit allows (see :mod:`motion4d.limits`)."""


class MissingFileError(InputFileError, FileNotFoundError):
    """An input path does not exist."""


class MissingDependencyError(Motion4DError, ImportError):
    """An optional dependency needed by the requested feature is not installed."""


class CheckpointError(Motion4DError):
    """A checkpoint does not match the model: missing, unexpected or mis-shaped keys, wrong format."""


class BackendUnavailableError(Motion4DError, RuntimeError):
    """A requested compute backend (compiled op, CUDA, gsplat) is not available on this machine."""


__all__ = [
    "Motion4DError",
    "InvalidArgumentError",
    "ShapeError",
    "NonFiniteError",
    "InputFileError",
    "DamagedFileError",
    "InputTooLargeError",
    "MissingFileError",
    "MissingDependencyError",
    "CheckpointError",
    "BackendUnavailableError",
]
