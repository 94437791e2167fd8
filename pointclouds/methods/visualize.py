"""Pictures and coloured PLY files of a scene-flow result: source (red), target (green), warped
source (blue).

The PNG is drawn with matplotlib (headless ``Agg``; open3d's off-screen renderer needs EGL/GL,
which servers and CI machines often lack): two orthographic views of the two axes with the
largest extent (a bird's-eye view for lidar and camera frames alike), "source vs target" on the
left and "warped source vs target" on the right, so a good flow shows blue on green.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.atomic import atomic_path

SOURCE_RGB = (0.86, 0.15, 0.15)
TARGET_RGB = (0.15, 0.65, 0.2)
WARPED_RGB = (0.15, 0.3, 0.9)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def write_flow_ply(path: str | os.PathLike, source: Any, target: Any, warped: Any) -> Path:
    """One PLY with the three clouds, coloured red / green / blue (open3d writer, atomic)."""
    from pointclouds.cloud import PointCloud, write_cloud

    clouds = [_np(source), _np(target), _np(warped)]
    colours = [np.tile(np.asarray(c, np.float32), (len(p), 1)) for p, c in zip(clouds, (SOURCE_RGB, TARGET_RGB, WARPED_RGB))]
    return write_cloud(path, PointCloud(np.concatenate(clouds), colors=np.concatenate(colours)))


def render_flow_png(
    path: str | os.PathLike,
    source: Any,
    target: Any,
    warped: Any,
    *,
    title: str = "",
    max_points: int = 20000,
    dpi: int = 110,
) -> Path:
    """Two-panel PNG (see the module docstring); at most ``max_points`` points per cloud are drawn."""
    from motion4d.checks import require

    matplotlib = require("matplotlib", "scene-flow pictures", extra="all")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src, tgt, wrp = _np(source), _np(target), _np(warped)
    everything = np.concatenate([src, tgt])
    extent = everything.max(0) - everything.min(0)
    a, b = sorted(np.argsort(extent)[-2:].tolist())
    rng = np.random.default_rng(0)

    def thin(p: np.ndarray) -> np.ndarray:
        return p if len(p) <= max_points else p[rng.choice(len(p), max_points, replace=False)]

    fig, axes = plt.subplots(1, 2, figsize=(12, 6), sharex=True, sharey=True)
    names = "xyz"
    for ax, (moving, label, colour) in zip(axes, ((src, "source", SOURCE_RGB), (wrp, "warped source", WARPED_RGB))):
        t, m = thin(tgt), thin(moving)
        ax.scatter(t[:, a], t[:, b], s=1.0, c=[TARGET_RGB], label="target", linewidths=0)
        ax.scatter(m[:, a], m[:, b], s=1.0, c=[colour], label=label, linewidths=0)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{names[a]} (m)")
        ax.set_ylabel(f"{names[b]} (m)")
        ax.legend(loc="upper right", markerscale=8)
        ax.set_title(f"{label} vs target")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return Path(path)


__all__ = ["render_flow_png", "write_flow_ply", "SOURCE_RGB", "TARGET_RGB", "WARPED_RGB"]
