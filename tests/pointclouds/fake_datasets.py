"""Miniature scene-flow data-set trees in the exact layouts of the real releases (for tests)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _hpl_pair(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    pc1 = rng.uniform([-10, -3, 1], [10, 3, 45], size=(n, 3)).astype(np.float32)
    pc2 = pc1 + rng.normal(0, 0.2, size=(n, 3)).astype(np.float32)
    return pc1, pc2


def write_ft3d_s(root: Path, num_train: int = 12, num_test: int = 3, n: int = 300, seed: int = 0) -> Path:
    """``FlyingThings3D_subset_processed_35m``: ``{train,val}/NNNNNNN/pc{1,2}.npy``, stored axes
    (x left, y down, z = -depth) as HPLFlowNet writes them."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_test)):
        for i in range(count):
            folder = root / split / f"{i:07d}"
            folder.mkdir(parents=True)
            pc1, pc2 = _hpl_pair(rng, n)
            flip = np.array([-1, 1, -1], np.float32)  # OpenCV -> HPL storage axes
            np.save(folder / "pc1.npy", pc1 * flip)
            np.save(folder / "pc2.npy", pc2 * flip)
    return root


def write_kitti_s(root: Path, num_scenes: int = 6, n: int = 400, seed: int = 0, mapping: bool = True) -> Path:
    """``KITTI_processed_occ_final/NNNNNN/pc{1,2}.npy`` (x left, y up, z forward) plus, when
    ``mapping``, a ``KITTI_mapping.txt`` whose odd lines are empty (those scenes are dropped)."""
    rng = np.random.default_rng(seed)
    for i in range(num_scenes):
        folder = root / f"{i:06d}"
        folder.mkdir(parents=True)
        pc1, pc2 = _hpl_pair(rng, n)
        pc1[: n // 4, 1] = -1.6  # ground points
        pc2[: n // 4, 1] = -1.6
        np.save(folder / "pc1.npy", pc1)
        np.save(folder / "pc2.npy", pc2)
    if mapping:
        lines = [
            f"2011_09_26 2011_09_26_drive_{i:04d}_sync 0000000001" if i % 2 == 0 else "" for i in range(num_scenes)
        ]
        (root / "KITTI_mapping.txt").write_text("\n".join(lines) + "\n")
    return root


def write_kitti_o(root: Path, indices: tuple[int, ...] = (0, 1, 2, 5), n: int = 350, seed: int = 0) -> Path:
    """``kitti_rm_ground/NNNNNN.npz`` with ``pos1``, ``pos2``, ``gt`` in FlowNet3D's column order
    (the depth is the first stored column)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in indices:
        pos1 = rng.uniform([1, -10, -1], [45, 10, 2], size=(n, 3)).astype(np.float32)  # (depth, x, y)
        gt = rng.normal(0, 0.3, size=(n, 3)).astype(np.float32)
        pos2 = rng.uniform([1, -10, -1], [45, 10, 2], size=(n + 17, 3)).astype(np.float32)
        np.savez(root / f"{i:06d}.npz", pos1=pos1, pos2=pos2, gt=gt)
    return root


def write_generic(root: Path, count: int = 3, n: int = 200, seed: int = 0, with_mask: bool = True) -> Path:
    """A folder of ``.npz`` files with ``pc1``, ``pc2``, ``flow`` and optional ``mask``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pc1 = rng.normal(size=(n, 3)).astype(np.float32)
        flow = rng.normal(0, 0.1, size=(n, 3)).astype(np.float32)
        pc2 = rng.normal(size=(n + 5, 3)).astype(np.float32)
        arrays = {"pc1": pc1, "pc2": pc2, "flow": flow}
        if with_mask:
            arrays["mask"] = rng.random(n) < 0.8
        np.savez(root / f"scene_{i:03d}.npz", **arrays)
    return root
