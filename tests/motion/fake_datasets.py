"""Miniature flow data sets in the exact on-disk layouts of the real ones, for tests.

Each ``write_*`` function writes random frames (lossless PNG/PPM) and random ground truth into
``root`` and returns the ground truth it wrote, so a test can compare a reader's output exactly.
Flow values are chosen to be exactly representable in each file format (float32 for ``.flo`` and
``.pfm``, multiples of 1/64 px for KITTI PNGs) and the file encoders here are written
independently of :mod:`motion.flow_io` (raw bytes / OpenCV), so a reader bug cannot be hidden by a
matching writer bug.

Usage from any test (run from the repository root)::

    from tests.motion.fake_datasets import write_sintel
    gt = write_sintel(tmp_path / "Sintel", scenes={"alley_1": 4})
    ds = motion.data.MpiSintel(tmp_path / "Sintel", "training", "clean")
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

Size = tuple[int, int]


# --------------------------------------------------------------------------------------------------
# Independent minimal encoders
# --------------------------------------------------------------------------------------------------


def encode_flo(path: Path, flow: np.ndarray) -> None:
    """Middlebury .flo: b'PIEH', int32 width, height, float32 u, v interleaved (little endian)."""
    height, width = flow.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"PIEH")
        f.write(np.array([width, height], "<i4").tobytes())
        f.write(np.asarray(flow, "<f4").tobytes())


def encode_kitti_png(path: Path, flow: np.ndarray, valid: np.ndarray) -> None:
    """KITTI 16-bit PNG: file channels R, G, B = u*64 + 2^15, v*64 + 2^15, valid."""
    rgb = np.zeros(flow.shape[:2] + (3,), np.uint16)
    rgb[..., 0] = np.round(flow[..., 0] * 64 + 32768).astype(np.uint16)
    rgb[..., 1] = np.round(flow[..., 1] * 64 + 32768).astype(np.uint16)
    rgb[..., 2] = valid
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., [2, 1, 0]]))


def encode_pfm(path: Path, data: np.ndarray, little_endian: bool = True) -> None:
    """PFM: 'PF'/'Pf', 'W H', scale (negative = little endian), rows bottom to top."""
    height, width = data.shape[:2]
    tag = "PF" if data.ndim == 3 else "Pf"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(f"{tag}\n{width} {height}\n{-1.0 if little_endian else 1.0}\n".encode())
        f.write(np.asarray(data[::-1], "<f4" if little_endian else ">f4").tobytes())


def encode_image(path: Path, rgb: np.ndarray) -> None:
    """Lossless RGB image (PNG / PPM by extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def encode_mask(path: Path, mask: np.ndarray) -> None:
    """Binary mask as an 8-bit PNG with 0 / 255."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask.astype(np.uint8) * 255)


# --------------------------------------------------------------------------------------------------
# Random content
# --------------------------------------------------------------------------------------------------


def random_frames(rng: np.random.Generator, count: int, size: Size) -> np.ndarray:
    """uint8 ``[count, H, W, 3]`` noise (distinct frames, so ordering mistakes show)."""
    return rng.integers(0, 256, size=(count, *size, 3), dtype=np.uint8)


def random_float_flow(rng: np.random.Generator, size: Size, scale: float = 20.0) -> np.ndarray:
    """float32 ``[H, W, 2]`` with arbitrary (non-grid) values."""
    return (rng.standard_normal((*size, 2)) * scale).astype(np.float32)


def random_kitti_flow(rng: np.random.Generator, size: Size) -> tuple[np.ndarray, np.ndarray]:
    """Flow on the 1/64 px grid in [-300, 300] and a ~70 % valid mask; flow is 0 where invalid."""
    flow = (rng.integers(-300 * 64, 300 * 64 + 1, size=(*size, 2)) / 64.0).astype(np.float32)
    valid = rng.random(size) < 0.7
    flow[~valid] = 0
    return flow, valid


# --------------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------------


def write_sintel(
    root: str | os.PathLike,
    scenes: Mapping[str, int] | None = None,
    test_scenes: Mapping[str, int] | None = None,
    size: Size = (11, 17),
    passes: Sequence[str] = ("clean", "final"),
    occlusions: bool = True,
    invalid: bool = True,
    seed: int = 0,
) -> dict:
    """MPI-Sintel-complete layout.

    Args:
        scenes: training scene name -> number of frames (default ``{"alley_1": 4, "cave_2": 3}``).
        test_scenes: test scene name -> number of frames (default ``{"ambush_1": 3}``).

    Returns:
        ``{"frames": {split: {pass: {scene: uint8 [N, H, W, 3]}}}, "flow": {scene: float32
        [N-1, H, W, 2]}, "occlusion": {scene: bool [N-1, H, W]}, "invalid": {scene: bool
        [N-1, H, W]}}`` (training scenes only for the last three).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    scenes = {"alley_1": 4, "cave_2": 3} if scenes is None else dict(scenes)
    test_scenes = {"ambush_1": 3} if test_scenes is None else dict(test_scenes)
    gt: dict = {"frames": {"training": {}, "test": {}}, "flow": {}, "occlusion": {}, "invalid": {}}
    for split, split_scenes in (("training", scenes), ("test", test_scenes)):
        for pass_name in passes:
            gt["frames"][split][pass_name] = {}
            for scene, count in split_scenes.items():
                frames = random_frames(rng, count, size)
                gt["frames"][split][pass_name][scene] = frames
                for i, frame in enumerate(frames, start=1):
                    encode_image(root / split / pass_name / scene / f"frame_{i:04d}.png", frame)
    for scene, count in scenes.items():
        flows = np.stack([random_float_flow(rng, size) for _ in range(count - 1)])
        occ = rng.random((count - 1, *size)) < 0.3
        inv = rng.random((count - 1, *size)) < 0.1
        gt["flow"][scene], gt["occlusion"][scene], gt["invalid"][scene] = flows, occ, inv
        for i in range(count - 1):
            name = f"frame_{i + 1:04d}"
            encode_flo(root / "training" / "flow" / scene / f"{name}.flo", flows[i])
            if occlusions:
                encode_mask(root / "training" / "occlusions" / scene / f"{name}.png", occ[i])
            if invalid:
                encode_mask(root / "training" / "invalid" / scene / f"{name}.png", inv[i])
    return gt


def write_kitti(
    root: str | os.PathLike,
    scenes: int = 3,
    size: Size = (10, 23),
    splits: Sequence[str] = ("training", "testing"),
    multiview_frames: Iterable[int] | None = None,
    multiview_root: str | os.PathLike | None = None,
    noc: bool = True,
    seed: int = 0,
) -> dict:
    """KITTI 2015 ``data_scene_flow`` layout, optionally with the multi-view extension.

    Scene ``i`` has size ``(H + i, W + 2 i)`` (real scenes differ in size too). Frames ``_10`` and
    ``_11`` always go to ``root``; ``multiview_frames`` (e.g. ``range(21)``) go to ``multiview_root``
    (default ``root``), where ``_10``/``_11`` are the same images as in ``root``.

    Returns:
        ``{"frames": {split: {scene: {frame_number: uint8 [H, W, 3]}}}, "flow": {scene: float32
        [H, W, 2]}, "valid": {scene: bool [H, W]}, "valid_noc": {scene: bool [H, W]}}`` (training
        scenes; flow is 0 where invalid; valid_noc is a subset of valid).
    """
    root = Path(root)
    mv_root = Path(multiview_root) if multiview_root is not None else root
    rng = np.random.default_rng(seed)
    extra = sorted(set(multiview_frames or ()))
    gt: dict = {"frames": {}, "flow": {}, "valid": {}, "valid_noc": {}}
    for split in splits:
        gt["frames"][split] = {}
        for i in range(scenes):
            scene = f"{i:06d}"
            scene_size = (size[0] + i, size[1] + 2 * i)
            numbers = sorted({10, 11} | set(extra))
            frames = dict(zip(numbers, random_frames(rng, len(numbers), scene_size)))
            gt["frames"][split][scene] = frames
            for n, frame in frames.items():
                if n in (10, 11):
                    encode_image(root / split / "image_2" / f"{scene}_{n:02d}.png", frame)
                if n in extra:
                    encode_image(mv_root / split / "image_2" / f"{scene}_{n:02d}.png", frame)
            if split == "training":
                flow, valid = random_kitti_flow(rng, scene_size)
                valid_noc = valid & (rng.random(scene_size) < 0.8)
                gt["flow"][scene], gt["valid"][scene], gt["valid_noc"][scene] = flow, valid, valid_noc
                encode_kitti_png(root / split / "flow_occ" / f"{scene}_10.png", flow, valid)
                if noc:
                    noc_flow = np.where(valid_noc[..., None], flow, 0)
                    encode_kitti_png(root / split / "flow_noc" / f"{scene}_10.png", noc_flow, valid_noc)
    return gt


def write_things(
    root: str | os.PathLike,
    split: str = "TRAIN",
    letters: Sequence[str] = ("A", "B"),
    sequences: int = 1,
    frames: Sequence[int] = (6, 7, 8, 9),
    cameras: Sequence[str] = ("left", "right"),
    passes: Sequence[str] = ("clean", "final"),
    size: Size = (9, 13),
    seed: int = 0,
) -> dict:
    """FlyingThings3D full-release layout (``frames_*pass`` PNGs, ``optical_flow`` 3-channel PFMs).

    Like the real data, into_future / into_past files exist for every frame (the first frame's
    into_past and the last frame's into_future point outside the sequence).

    Returns:
        ``{"frames": {pass: {name: uint8 [N, H, W, 3]}}, "future": {name: float32 [N, H, W, 2]},
        "past": {name: float32 [N, H, W, 2]}}`` with ``name = "TRAIN/A/0000/left"``; ``future[k]``
        is frame k -> k+1, ``past[k]`` is frame k -> k-1.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    gt: dict = {"frames": {p: {} for p in passes}, "future": {}, "past": {}}
    for letter in letters:
        for seq in range(sequences):
            for camera in cameras:
                name = f"{split}/{letter}/{seq:04d}/{camera}"
                tag = "L" if camera == "left" else "R"
                for pass_name in passes:
                    images = random_frames(rng, len(frames), size)
                    gt["frames"][pass_name][name] = images
                    for n, image in zip(frames, images):
                        encode_image(root / f"frames_{pass_name}pass" / name / f"{n:04d}.png", image)
                flow_dir = root / "optical_flow" / split / letter / f"{seq:04d}"
                for key, folder, prefix in (("future", "into_future", "OpticalFlowIntoFuture"),
                                            ("past", "into_past", "OpticalFlowIntoPast")):
                    flows = np.stack([random_float_flow(rng, size) for _ in frames])
                    gt[key][name] = flows
                    for n, flow in zip(frames, flows):
                        data = np.concatenate([flow, np.zeros((*size, 1), np.float32)], axis=-1)
                        encode_pfm(flow_dir / folder / camera / f"{prefix}_{n:04d}_{tag}.pfm", data)
    return gt


def write_chairs(
    root: str | os.PathLike,
    split_codes: Sequence[int] = (1, 2, 1, 1, 2),
    size: Size = (8, 12),
    split_file: bool = True,
    seed: int = 0,
) -> dict:
    """FlyingChairs_release layout: ``data/{n:05d}_img1.ppm``, ``_img2.ppm``, ``_flow.flo`` for
    n = 1 .. len(split_codes) and ``FlyingChairs_train_val.txt`` holding ``split_codes``.

    Returns:
        ``{"img1": uint8 [N, H, W, 3], "img2": ..., "flow": float32 [N, H, W, 2], "split": list}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    count = len(split_codes)
    gt = {
        "img1": random_frames(rng, count, size),
        "img2": random_frames(rng, count, size),
        "flow": np.stack([random_float_flow(rng, size) for _ in range(count)]),
        "split": list(split_codes),
    }
    for k in range(count):
        n = k + 1
        encode_image(root / "data" / f"{n:05d}_img1.ppm", gt["img1"][k])
        encode_image(root / "data" / f"{n:05d}_img2.ppm", gt["img2"][k])
        encode_flo(root / "data" / f"{n:05d}_flow.flo", gt["flow"][k])
    if split_file:
        (root / "FlyingChairs_train_val.txt").write_text("".join(f"{c}\n" for c in split_codes))
    return gt


def write_hd1k(
    root: str | os.PathLike,
    sequences: Mapping[int, int] | None = None,
    size: Size = (9, 14),
    seed: int = 0,
) -> dict:
    """HD1K layout: ``hd1k_input/image_2/{seq:06d}_{frame:04d}.png`` and
    ``hd1k_flow_gt/flow_occ/{seq:06d}_{frame:04d}.png`` (KITTI PNG) for every frame but the last.

    Args:
        sequences: sequence number -> frame count (default ``{0: 4, 1: 3}``).

    Returns:
        ``{"frames": {"000000": uint8 [N, H, W, 3]}, "flow": {"000000": float32 [N-1, H, W, 2]},
        "valid": {"000000": bool [N-1, H, W]}}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    sequences = {0: 4, 1: 3} if sequences is None else dict(sequences)
    gt: dict = {"frames": {}, "flow": {}, "valid": {}}
    for seq, count in sequences.items():
        name = f"{seq:06d}"
        frames = random_frames(rng, count, size)
        pairs = [random_kitti_flow(rng, size) for _ in range(count - 1)]
        gt["frames"][name] = frames
        gt["flow"][name] = np.stack([f for f, _ in pairs])
        gt["valid"][name] = np.stack([v for _, v in pairs])
        for i, frame in enumerate(frames):
            encode_image(root / "hd1k_input" / "image_2" / f"{name}_{i:04d}.png", frame)
        for i, (flow, valid) in enumerate(pairs):
            encode_kitti_png(root / "hd1k_flow_gt" / "flow_occ" / f"{name}_{i:04d}.png", flow, valid)
    return gt
