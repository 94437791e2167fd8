"""Point tracks: the :class:`Tracks` container (positions, visibility, confidence over frames).

::

    tracks = motion.track_points("clip.mp4", model="dis", grid=16)   # motion.tracking
    tracks.save("out/tracks.csv")                                  # .csv .parquet .npz .pkl .json .txt
    tracks = motion.Tracks.load("out/tracks.csv")
    tracks.to_tapvid()                                             # TAP-Vid dict (normalised, occluded)

The file layouts are in :mod:`motion.track_formats`, which does not import this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion4d.checks import check_shape
from motion4d.errors import InvalidArgumentError

from . import track_formats


@dataclass(repr=False)
class Tracks:
    """``N`` point tracks over ``T`` frames.

    Attributes:
        xy: ``float32 [T, N, 2]`` pixel positions (x right, y down; pixel centres are integers).
        visible: ``bool [T, N]``.
        confidence: ``float32 [T, N]`` in [0, 1] or None.
        ids: ``int64 [N]`` track ids (default ``0..N-1``).
        frame_indices: ``int64 [T]`` index of each frame in its source video (default ``0..T-1``).
        times: ``float64 [T]`` timestamps in seconds, or None.
        image_size: ``(H, W)`` of the frames the pixel positions refer to.
        query: ``float32 [N, 3]`` ``(t, x, y)`` query of each track (t indexes the T frames), or None.
    """

    xy: np.ndarray
    visible: np.ndarray
    image_size: tuple[int, int]
    confidence: np.ndarray | None = None
    ids: np.ndarray | None = None
    frame_indices: np.ndarray | None = None
    times: np.ndarray | None = None
    query: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xy = np.asarray(_numpy(self.xy), dtype=np.float32)
        dims = check_shape(self.xy, "xy", ("T", "N", 2))
        t, n = dims["T"], dims["N"]
        self.visible = np.asarray(_numpy(self.visible)).astype(bool)
        check_shape(self.visible, "visible", (t, n))
        if self.confidence is not None:
            self.confidence = np.asarray(_numpy(self.confidence), dtype=np.float32)
            check_shape(self.confidence, "confidence", (t, n))
        self.ids = np.arange(n, dtype=np.int64) if self.ids is None else np.asarray(self.ids, dtype=np.int64)
        check_shape(self.ids, "ids", (n,))
        if len(np.unique(self.ids)) != n:
            raise InvalidArgumentError("ids must be unique")
        self.frame_indices = (
            np.arange(t, dtype=np.int64) if self.frame_indices is None else np.asarray(self.frame_indices, dtype=np.int64)
        )
        check_shape(self.frame_indices, "frame_indices", (t,))
        if self.times is not None:
            self.times = np.asarray(self.times, dtype=np.float64)
            check_shape(self.times, "times", (t,))
        if self.query is not None:
            self.query = np.asarray(_numpy(self.query), dtype=np.float32)
            check_shape(self.query, "query", (n, 3))
        size = tuple(int(s) for s in self.image_size)
        if len(size) != 2 or min(size) <= 0:
            raise InvalidArgumentError(f"image_size must be (H, W) with positive sizes, got {self.image_size!r}")
        self.image_size = size  # type: ignore[assignment]

    def __repr__(self) -> str:
        """One line: sizes, visibility and which optional fields are set (never the arrays)."""
        h, w = self.image_size
        parts = [f"{self.num_tracks} tracks", f"{self.num_frames} frames", f"{w}x{h}"]
        if self.num_tracks and self.num_frames:
            parts.append(f"{self.visible.mean():.0%} visible")
        if self.num_frames:
            first, last = int(self.frame_indices[0]), int(self.frame_indices[-1])
            parts.append(f"source frames {first}..{last}")
        present = [name for name in ("confidence", "times", "query") if getattr(self, name) is not None]
        if present:
            parts.append("with " + ", ".join(present))
        if self.metadata:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in list(self.metadata.items())[:3])
            parts.append(f"metadata: {shown}" + (", ..." if len(self.metadata) > 3 else ""))
        return f"Tracks({'; '.join(parts)})"

    @property
    def num_frames(self) -> int:
        return int(self.xy.shape[0])

    @property
    def num_tracks(self) -> int:
        return int(self.xy.shape[1])

    def __len__(self) -> int:
        return self.num_tracks

    def __getitem__(self, index: Any) -> Tracks:
        """Select tracks (not frames): ``tracks[mask]``, ``tracks[[0, 3]]``, ``tracks[2:5]``."""
        index = np.arange(self.num_tracks)[index]
        index = np.atleast_1d(index)
        return replace(
            self,
            xy=self.xy[:, index],
            visible=self.visible[:, index],
            confidence=None if self.confidence is None else self.confidence[:, index],
            ids=self.ids[index],
            query=None if self.query is None else self.query[index],
            metadata=dict(self.metadata),
        )

    def inside_image(self) -> np.ndarray:
        """``bool [T, N]``: positions inside the image (pixel-centre rectangle)."""
        h, w = self.image_size
        x, y = self.xy[..., 0], self.xy[..., 1]
        return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)

    def boxes(self, groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Axis-aligned boxes around the visible points of each group, per frame.

        Args:
            groups: ``int [N]`` group label of each track (e.g. an object id); default: one group.

        Returns:
            A long table: ``frame [K]`` (index into the T frames), ``group [K]``, ``box [K, 4]``
            (left, top, width, height in pixels of the pixel-edge convention, i.e. covering the
            points' pixels), ``confidence [K]`` (mean confidence, 1 without confidences). Frames where
            a group has no visible point give no row.
        """
        groups = np.zeros(self.num_tracks, np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        check_shape(groups, "groups", (self.num_tracks,))
        frames_out, groups_out, boxes_out, conf_out = [], [], [], []
        for label in np.unique(groups):
            members = groups == label
            for t in range(self.num_frames):
                seen = members & self.visible[t]
                if not seen.any():
                    continue
                pts = self.xy[t, seen]
                low, high = pts.min(axis=0), pts.max(axis=0) + 1.0
                frames_out.append(t)
                groups_out.append(label)
                boxes_out.append([low[0], low[1], high[0] - low[0], high[1] - low[1]])
                conf_out.append(1.0 if self.confidence is None else float(self.confidence[t, seen].mean()))
        return {
            "frame": np.asarray(frames_out, np.int64),
            "group": np.asarray(groups_out, np.int64),
            "box": np.asarray(boxes_out, np.float32).reshape(-1, 4),
            "confidence": np.asarray(conf_out, np.float32),
        }

    # file formats: motion.track_formats (motion.track_io has the same as functions)
    def save(self, path: str | Path, **options: Any) -> Path:
        """Write to ``path``; the format follows the extension (see :func:`motion.track_io.save_tracks`)."""
        return track_formats.write_file(self, path, **options)

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> Tracks:
        """Read a file written by :meth:`save` (see :func:`motion.track_io.load_tracks`)."""
        return track_formats.read_file(path, build=cls, **options)

    def to_tapvid(self) -> dict[str, np.ndarray]:
        """TAP-Vid arrays: ``points [N, T, 2]`` normalised x, y; ``occluded [N, T]``; ``query_points [N, 3]`` (t, y, x)."""
        return track_formats.to_tapvid(self)

    def to_cotracker(self) -> dict[str, np.ndarray]:
        """CoTracker layout: ``tracks [1, T, N, 2]``, ``visibility [1, T, N]``, ``queries [1, N, 3]`` (t, x, y)."""
        return track_formats.to_cotracker(self)


def _numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
