"""Windows over a frame sequence: consecutive runs of frames that overlap by one frame.

:meth:`motion.models.base.FlowModel.stream` runs pairwise models on windows of ``batch + 1``
frames, so each call gives ``batch`` flows and every frame is decoded and uploaded once; two
windows share their boundary frame, so together they give every consecutive pair exactly once.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, Iterable, Iterator, TypeVar

from motion4d.errors import InvalidArgumentError, ShapeError

F = TypeVar("F")


@dataclass
class Window(Generic[F]):
    """Consecutive frames of a sequence.

    Attributes:
        frames: the frames, in order (``len(frames) >= 2``).
        start: position of ``frames[0]`` in the sequence.
        skip: leading pairs already given by the previous window (a short tail extended backwards):
            the window's new pairs start at position ``start + skip``.
    """

    frames: list[F]
    start: int = 0
    skip: int = 0

    @property
    def first_pair(self) -> int:
        """Position of the window's first new pair (the pair of frames ``first_pair``, ``first_pair + 1``)."""
        return self.start + self.skip

    @property
    def num_pairs(self) -> int:
        """How many new pairs the window gives."""
        return len(self.frames) - 1 - self.skip

    @property
    def pairs(self) -> list[tuple[F, F]]:
        """The new pairs ``(source, target)``."""
        return list(zip(self.frames[self.skip : -1], self.frames[self.skip + 1 :]))


def plan_windows(frames: Iterable[F], size: int, min_frames: int) -> Iterator[Window[F]]:
    """Windows of ``size`` frames overlapping by one; a tail shorter than ``min_frames`` is extended backwards.

    Frames are read lazily: a window is yielded as soon as its last frame has been read. A sequence
    of fewer than 2 frames gives no window.

    Raises:
        InvalidArgumentError: unless ``2 <= min_frames <= size``.
        ShapeError: the whole sequence is shorter than ``min_frames`` (but has 2 frames or more).
    """
    if size < 2 or min_frames < 2 or min_frames > size:
        raise InvalidArgumentError(f"window size {size} and min_frames {min_frames} must satisfy 2 <= min_frames <= size")
    recent: deque[F] = deque(maxlen=size)
    window: list[F] = []
    start = 0
    for frame in frames:
        window.append(frame)
        if len(window) == size:
            yield Window(window, start)
            recent.extend(window)
            start += size - 1
            window = [frame]
    if len(window) < 2:
        return
    if len(window) >= min_frames:
        yield Window(window, start)
        return
    # the frames before the tail, excluding its first frame (which `recent` ends with)
    history = list(recent)[:-1][-(min_frames - len(window)) :] if recent else []
    if len(history) + len(window) < min_frames:
        raise ShapeError(f"the video has {len(history) + len(window)} frames, the model needs at least {min_frames}")
    yield Window(history + window, start - len(history), skip=len(history))
