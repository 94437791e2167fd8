"""D-NeRF dataset layout: ``transforms_{train,val,test}.json`` + RGBA PNGs with per-frame ``time``.

Reads a scene folder (bouncingballs, lego, ...) into frames, cameras and times for
:class:`splats.GaussianFlow`, compositing the alpha channel over a background colour as the
D-NeRF / Gaussian-Flow papers do (white). :func:`write_dnerf` writes the same layout (used to
export synthetic scenes and by the tests).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from motion4d.checks import check_choice, check_file, check_shape
from motion4d.errors import InputFileError, MissingFileError, ShapeError

from .cameras import Cameras, read_transforms_json, write_transforms_json

SPLITS = ("train", "val", "test")


@dataclass
class DNeRFSplit:
    frames: np.ndarray  # uint8 [M, H, W, 3]
    cameras: Cameras
    times: np.ndarray  # [M] in [0, 1]
    paths: list[Path]


def read_dnerf(folder: str | os.PathLike, split: str = "train", background: tuple[float, float, float] = (1.0, 1.0, 1.0),
               downscale: int = 1) -> DNeRFSplit:
    """Read one split of a D-NeRF scene.

    Args:
        folder: the scene folder holding ``transforms_<split>.json``.
        background: RGB in [0, 1] composited behind RGBA images.
        downscale: integer factor to shrink images (and intrinsics) by, e.g. 2 for the usual 400 px.
    """
    import cv2

    check_choice(split, "split", SPLITS)
    folder = check_file(folder, "D-NeRF folder")
    json_path = folder / f"transforms_{split}.json"
    if not json_path.exists():
        raise MissingFileError(f"{folder}: no transforms_{split}.json (not a D-NeRF scene folder?)")
    listing = read_transforms_json(json_path)
    if listing.times is None:
        raise InputFileError(f"{json_path}: frames have no 'time' (not a dynamic D-NeRF scene)")
    if downscale < 1:
        raise ShapeError(f"downscale must be >= 1, got {downscale}")
    bg = np.asarray(background, dtype=np.float32)
    frames = []
    for path in listing.image_paths:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputFileError(f"{path}: cannot read the image listed in {json_path.name}")
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        if img.dtype != np.uint8:
            img = (img.astype(np.float32) / np.iinfo(img.dtype).max * 255).astype(np.uint8)
        rgb = img[..., 2::-1].astype(np.float32) / 255.0
        if img.shape[-1] == 4:
            alpha = img[..., 3:].astype(np.float32) / 255.0
            rgb = rgb * alpha + bg * (1 - alpha)
        if rgb.shape[:2] != (listing.cameras.height, listing.cameras.width):
            raise InputFileError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, the json says "
                                 f"{listing.cameras.width}x{listing.cameras.height}")
        if downscale > 1:
            rgb = cv2.resize(rgb, (rgb.shape[1] // downscale, rgb.shape[0] // downscale), interpolation=cv2.INTER_AREA)
        frames.append((rgb * 255 + 0.5).clip(0, 255).astype(np.uint8))
    cameras = listing.cameras
    if downscale > 1:
        h, w = frames[0].shape[:2]
        cameras = cameras.scaled(w / cameras.width)
        cameras = Cameras(cameras.K, cameras.world_to_cam, w, h)
    return DNeRFSplit(np.stack(frames), cameras, listing.times, listing.image_paths)


def write_dnerf(folder: str | os.PathLike, split: str, frames: np.ndarray, cameras: Cameras,
                times: np.ndarray | torch.Tensor) -> Path:
    """Write frames ``uint8 [M, H, W, 3]`` + cameras + times as ``<split>/r_000.png``, ..., and
    ``transforms_<split>.json``."""
    import cv2

    from motion4d.atomic import atomic_path

    check_choice(split, "split", SPLITS)
    check_shape(frames, "frames", ("M", cameras.height, cameras.width, 3))
    if len(frames) != len(cameras):
        raise ShapeError(f"frames ({len(frames)}) and cameras ({len(cameras)}) must have the same count")
    folder = Path(folder)
    (folder / split).mkdir(parents=True, exist_ok=True)
    names = []
    for i, frame in enumerate(frames):
        name = f"{split}/r_{i:03d}.png"
        with atomic_path(folder / name) as tmp:
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(frame[..., ::-1])):
                raise InputFileError(f"cannot write {folder / name}")
        names.append(name)
    write_transforms_json(folder / f"transforms_{split}.json", cameras, names, np.asarray(times, dtype=np.float64))
    return folder
