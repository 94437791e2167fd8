"""Objects over time: per-frame boxes with stable ids, optional per-pixel masks, and their files.

:class:`Objects` is what :func:`motion.objects.detect_objects`, the baselines and the ground truth of
:mod:`motion.objects.sequences` share. Boxes are ``(left, top, width, height)`` in 0-based
pixel-edge coordinates (the left edge of pixel column 0 is x = 0); MOT files store them 1-based
(:func:`motion.track_formats.write_mot_rows`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.checks import check_shape
from motion4d.errors import InvalidArgumentError

from ..track_formats import read_mot, write_mot_rows


@dataclass(repr=False)
class Objects:
    """``K`` detections of objects in ``T`` frames.

    Attributes:
        frame: ``int64 [K]`` frame of each detection (index into the T frames).
        ids: ``int64 [K]`` object id (>= 1), stable over frames.
        boxes: ``float32 [K, 4]`` ``(left, top, width, height)`` in pixels (0-based pixel edges).
        num_frames: ``T``.
        image_size: ``(H, W)``.
        scores: ``float32 [K]`` confidence in [0, 1] (default 1).
        masks: ``uint16 [T, H, W]`` object id per pixel (0 = background), or None.
        frame_indices: ``int64 [T]`` source index of each frame (default ``0..T-1``).
        metadata: free-form (method, options, ...).
    """

    frame: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    num_frames: int
    image_size: tuple[int, int]
    scores: np.ndarray | None = None
    masks: np.ndarray | None = None
    frame_indices: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frame = np.asarray(self.frame, np.int64).reshape(-1)
        k = len(self.frame)
        self.ids = np.asarray(self.ids, np.int64).reshape(-1)
        check_shape(self.ids, "ids", (k,))
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        check_shape(self.boxes, "boxes", (k, 4))
        self.scores = np.ones(k, np.float32) if self.scores is None else np.asarray(self.scores, np.float32).reshape(-1)
        check_shape(self.scores, "scores", (k,))
        self.num_frames = int(self.num_frames)
        self.image_size = tuple(int(s) for s in self.image_size)  # type: ignore[assignment]
        if k and (self.frame.min() < 0 or self.frame.max() >= self.num_frames):
            raise InvalidArgumentError(f"frame must index the {self.num_frames} frames")
        if k and self.ids.min() < 1:
            raise InvalidArgumentError("object ids must be >= 1")
        pairs = self.frame * (int(self.ids.max(initial=0)) + 1) + self.ids
        if len(np.unique(pairs)) != k:
            raise InvalidArgumentError("an object id appears twice in one frame")
        if self.masks is not None:
            self.masks = np.asarray(self.masks)
            check_shape(self.masks, "masks", (self.num_frames, *self.image_size))
        self.frame_indices = (np.arange(self.num_frames, dtype=np.int64) if self.frame_indices is None
                              else np.asarray(self.frame_indices, np.int64))
        check_shape(self.frame_indices, "frame_indices", (self.num_frames,))

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"Objects({self.num_objects} objects; {len(self)} boxes in {self.num_frames} frames; {w}x{h}"
                f"{'; with masks' if self.masks is not None else ''})")

    @property
    def num_objects(self) -> int:
        return len(np.unique(self.ids))

    def in_frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [k], boxes [k, 4])`` of frame ``t``, by id."""
        rows = np.nonzero(self.frame == t)[0]
        rows = rows[np.argsort(self.ids[rows])]
        return self.ids[rows], self.boxes[rows]

    def lifetimes(self) -> dict[int, int]:
        """Number of frames each id is detected in."""
        ids, counts = np.unique(self.ids, return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary: counts, per-id first / last frame and frame count."""
        per_id = {}
        for i in np.unique(self.ids):
            frames = self.frame[self.ids == i]
            per_id[str(int(i))] = {"first_frame": int(self.frame_indices[frames.min()]),
                                   "last_frame": int(self.frame_indices[frames.max()]), "frames": len(frames)}
        return {
            "num_objects": self.num_objects,
            "num_boxes": len(self),
            "num_frames": self.num_frames,
            "image_size": list(self.image_size),
            "frames_with_objects": len(np.unique(self.frame)),
            "objects": per_id,
            "metadata": self.metadata,
        }

    # files
    def save_mot(self, path: str | os.PathLike) -> Path:
        """MOTChallenge text file: 1-based source frame numbers, ids and pixel coordinates (atomic)."""
        write_mot_rows(path, self.frame_indices[self.frame] + 1, self.ids, self.boxes, self.scores)
        return Path(path)

    @classmethod
    def load_mot(cls, path: str | os.PathLike, image_size: tuple[int, int], num_frames: int | None = None) -> Objects:
        """Read a MOTChallenge file (frame ``f`` becomes frame index ``f - 1``)."""
        table = read_mot(path)
        frames = table["frame"] - 1
        count = int(frames.max()) + 1 if len(frames) else 0
        return cls(frame=frames, ids=table["id"], boxes=table["box"], scores=table["confidence"],
                   num_frames=num_frames if num_frames is not None else count, image_size=image_size)

    def save_masks(self, folder: str | os.PathLike) -> list[Path]:
        """One 16-bit PNG per frame (``000000.png`` ..., by source index): the object id of each pixel."""
        import cv2

        if self.masks is None:
            raise InvalidArgumentError("these objects have no masks")
        out = Path(folder)
        written = []
        for t in range(self.num_frames):
            path = out / f"{int(self.frame_indices[t]):06d}.png"
            with atomic_path(path) as tmp:
                if not cv2.imwrite(str(tmp), self.masks[t].astype(np.uint16)):
                    raise OSError(f"cannot write {path}")
            written.append(path)
        return written

    def save_summary(self, path: str | os.PathLike, **extra: Any) -> Path:
        """:meth:`summary` (and ``extra`` entries) as JSON (atomic)."""
        atomic_write_text(path, json.dumps({**self.summary(), **extra}, indent=2, default=str))
        return Path(path)


def boxes_from_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frame [K], ids [K], boxes [K, 4])``: the tight box of every id > 0 in each ``masks [T, H, W]`` frame."""
    import cv2

    frames, ids, boxes = [], [], []
    for t in range(masks.shape[0]):
        labels = np.unique(masks[t])
        for label in labels[labels > 0]:
            x, y, w, h = cv2.boundingRect((masks[t] == label).astype(np.uint8))
            frames.append(t)
            ids.append(int(label))
            boxes.append([x, y, w, h])
    return np.asarray(frames, np.int64), np.asarray(ids, np.int64), np.asarray(boxes, np.float32).reshape(-1, 4)
