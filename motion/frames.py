"""Streaming frame readers: videos, image folders, image lists and frame arrays.

``open_video`` reads a video file, an image folder, a list of image paths or a ``[T, H, W, 3]``
array through one interface and yields :class:`Frame` objects one at a time, so memory stays
bounded however long the video is::

    with motion.open_video("clip.mp4", start=10, stride=2, resize=512) as video:
        for frame in video:                # frame.image: uint8 [H, W, 3] RGB
            ...
    frames = motion.read_frames("clip.mp4", stop=8)   # uint8 [8, H, W, 3]

Frame accuracy. ``index`` is the frame's position in the source (0 = first frame), whatever
``start``/``stride`` are. PyAV decodes sequentially; for ``start > 0`` it seeks to the keyframe
before ``start`` and derives the index of the first decoded frame from its timestamp (exact for
constant-frame-rate videos; pass ``seek=False`` to decode from the first frame and count, which is
exact for any video). The OpenCV backend always decodes from the first frame and counts.

Damaged files. Damage is detected, not swallowed: a packet the demuxer flags as corrupt, a frame
the decoder had to conceal errors in, a decoding error, or a stream that ends before the number of
frames its container declares (its frame count, or its duration times its rate). What happens is
the ``on_damage`` policy:

* ``"error"`` (default): :class:`~motion4d.errors.DamagedFileError` naming the path and the first
  damaged frame (frames before it have been yielded already);
* ``"warn"``: every frame that decodes is yielded (concealed ones included) and one
  ``RuntimeWarning`` at the end says what was damaged;
* ``"skip"``: frames with concealed errors are left out (their indices are missing from the
  stream), reading stops where decoding breaks off, and one ``RuntimeWarning`` says what was left out.

Either way :attr:`VideoSource.damage` describes the damage of the last pass (None when intact).

Seeking. PyAV seeks to the keyframe before ``start`` and numbers frames from timestamps; the
numbering is verified on the frames that follow (each step of one frame must advance the timestamp
by one frame period) and, where it does not hold (containers without a usable index or with a rate
that disagrees with their timestamps), decoding restarts from the first frame and counts.
"""
from __future__ import annotations

import itertools
import math
import numbers
import os
import re
import warnings
import weakref
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence, Union

import cv2
import numpy as np

from motion4d.checks import check_choice, check_file, check_int, check_shape, require
from motion4d.errors import DamagedFileError, InputFileError, InvalidArgumentError, ShapeError
from motion4d.lazy_torch import is_tensor

from .image_io import IMAGE_EXTENSIONS, read_image

DEFAULT_IMAGE_FPS = 30.0
VIDEO_BACKENDS = ("auto", "pyav", "opencv")
DAMAGE_POLICIES = ("error", "warn", "skip")

PathLike = Union[str, os.PathLike]
Resize = Union[tuple[int, int], float, int, None]
Source = Union[PathLike, Sequence[PathLike], np.ndarray, "torch.Tensor", "VideoSource"]


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame.

    Attributes:
        image: ``uint8 [H, W, 3]`` RGB, C-contiguous (after ``resize``).
        index: position of the frame in the source (0 = first frame), independent of ``start``/``stride``.
        time: seconds; from the frame timestamp for videos (0 at the first frame), ``index / fps`` otherwise.
    """

    image: np.ndarray
    index: int
    time: float


# ---------------------------------------------------------------------------------------------
# Decoders: each yields every frame of its source from ``start`` on, with a lazy image loader so
# frames that the stride skips are never converted to RGB.


class _Decoded(NamedTuple):
    index: int
    time: float
    load: Callable[[], np.ndarray]
    damage: str | None = None  # why the frame is damaged (decoded with concealed errors), or None


class _DecodeFailure(Exception):
    """Internal: the source broke off part-way; ``VideoSource`` turns it into an error or a warning."""


def _check_frame_size(image: np.ndarray, width: int, height: int, what: str, reference: str) -> None:
    h, w = image.shape[:2]
    if (w, h) != (width, height):
        raise InputFileError(
            f"frames of different sizes: {what} is {w}x{h} (WxH) but {reference} is {width}x{height}"
        )


class _ArrayDecoder:
    backend = "array"
    path = None

    def __init__(self, array: np.ndarray | torch.Tensor, fps: float):
        if is_tensor(array):
            array = array.detach().cpu().numpy()
        check_shape(array, "frames", ("T", "H", "W", 3))
        if array.dtype != np.uint8:
            raise ShapeError(f"frames must be uint8 [T, H, W, 3] RGB, got dtype {array.dtype}")
        if 0 in array.shape:
            raise InvalidArgumentError(f"frames must hold at least one non-empty frame, got shape {list(array.shape)}")
        self._array = array
        self.fps = fps
        self.num_frames, self.height, self.width = array.shape[:3]

    def frames(self, start: int) -> Iterator[_Decoded]:
        for i in range(start, self.num_frames):
            yield _Decoded(i, i / self.fps, partial(np.ascontiguousarray, self._array[i]))


class _ImageDecoder:
    backend = "images"

    def __init__(self, files: list[Path], fps: float, path: Path | None):
        self._files = files
        self.fps = fps
        self.path = path
        self.num_frames = len(files)
        self.height, self.width = read_image(files[0]).shape[:2]

    def frames(self, start: int) -> Iterator[_Decoded]:
        for i in range(start, self.num_frames):
            yield _Decoded(i, i / self.fps, partial(self._load, i))

    def _load(self, i: int) -> np.ndarray:
        image = read_image(self._files[i])
        _check_frame_size(image, self.width, self.height, str(self._files[i]), f"the first image {self._files[0]}")
        return image


class _PyAVDecoder:
    backend = "pyav"

    def __init__(self, path: Path, seek: bool):
        self._av = require("av", "reading videos with PyAV")
        self.path = path
        self._seek = seek
        container = self._open()
        try:
            stream = self._video_stream(container)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if rate:
                self._rate = Fraction(rate)
            else:
                warnings.warn(f"{path} does not state a frame rate; assuming {DEFAULT_IMAGE_FPS} fps", RuntimeWarning)
                self._rate = Fraction(DEFAULT_IMAGE_FPS)
            self.fps = float(self._rate)
            self._time_base = Fraction(stream.time_base) if stream.time_base else None
            self.num_frames = int(stream.frames) or None
            self._expected, self._expected_from = self._declared_length(container, stream)
            try:
                head = list(itertools.islice(container.decode(stream), 3))
            except self._av.FFmpegError as exc:
                raise InputFileError(f"video: {path} could not decode its first frame: {exc}") from exc
            if not head:
                raise InputFileError(f"video: {path} contains no decodable video frames")
            first = head[0]
            self.width, self.height = first.width, first.height
            origin = first.pts if first.pts is not None else stream.start_time
            self._origin = int(origin) if origin is not None else None
            # Frame numbers may come from timestamps (to seek) only where the first frames' timestamps
            # step one frame period per frame; otherwise frames are counted from the first.
            self._pts_numbering = self._time_base is not None and self._origin is not None and all(
                self._index_from_pts(f.pts) == i for i, f in enumerate(head))
        finally:
            container.close()

    def _declared_length(self, container: Any, stream: Any) -> tuple[int | None, str]:
        """Frames the container declares: its count, else the video stream's (or the only stream's)
        duration times the rate; with how it was found, for messages."""
        if self.num_frames:
            return self.num_frames, "frame count"
        seconds = None
        if stream.duration and self._time_base:
            seconds = float(stream.duration * self._time_base)
        elif container.duration and len(container.streams) == 1:
            seconds = container.duration / 1_000_000  # microseconds (av.time_base)
        if not seconds or seconds <= 0:
            return None, ""
        return int(round(seconds * self.fps)), "duration"

    def _shortfall(self, decoded: int) -> str | None:
        """Why ``decoded`` frames fall short of what the container declares, or None."""
        if self._expected is None:
            return None
        # counts are exact up to one frame (edit lists, decoder delay); durations up to rounding
        slack = 1 if self._expected_from == "frame count" else max(2, round(0.02 * self._expected))
        if decoded >= self._expected - slack:
            return None
        return f"decoding stopped at frame {decoded} of the {self._expected} its {self._expected_from} declares"

    def _open(self) -> Any:
        try:
            return self._av.open(str(self.path), mode="r", metadata_errors="ignore")
        except (self._av.FFmpegError, OSError, UnicodeError) as exc:
            raise InputFileError(f"video: {self.path} is not a readable video file (PyAV: {exc})") from exc

    def _video_stream(self, container: Any) -> Any:
        if not container.streams.video:
            raise InputFileError(f"video: {self.path} has no video stream")
        return container.streams.video[0]

    def _time(self, pts: int | None, index: int) -> float:
        if pts is None or self._time_base is None or self._origin is None:
            return index / self.fps
        return float((pts - self._origin) * self._time_base)

    def _index_from_pts(self, pts: int | None) -> int | None:
        if pts is None or self._time_base is None or self._origin is None:
            return None
        return round((pts - self._origin) * self._time_base * self._rate)

    def _decoded_frames(self, container: Any) -> Iterator[Any]:
        """``(frame, from a corrupt packet)`` in presentation order; decoding errors become ``_DecodeFailure``.

        Slice threading only: FFmpeg's frame threading drops undecodable frames silently, which
        would shift every later index, whereas single-frame decoding reports them.
        """
        stream = self._video_stream(container)
        stream.thread_type = "SLICE"
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except self._av.FFmpegError as exc:
                raise _DecodeFailure(f"reading the file failed ({exc})") from exc
            try:
                frames = packet.decode()
            except self._av.FFmpegError as exc:
                raise _DecodeFailure(f"decoding failed ({exc})") from exc
            for frame in frames:
                yield frame, packet.is_corrupt

    def frames(self, start: int) -> Iterator[_Decoded]:
        seek = self._seek and self._pts_numbering and start > 0
        container = self._open()
        try:
            if seek:
                # Half a frame before ``start`` so rounding never lands after it; the demuxer goes
                # back to the keyframe at or before this timestamp.
                target = self._origin + math.floor((start - Fraction(1, 2)) / (self._rate * self._time_base))
                try:
                    container.seek(max(target, self._origin), stream=self._video_stream(container),
                                   backward=True, any_frame=False)
                except self._av.FFmpegError:
                    seek = False
            decoded = self._decoded_frames(container)
            index = 0
            while (item := next(decoded, None)) is not None:
                frame, corrupt_packet = item
                if seek:
                    seek = False
                    first_index = self._index_from_pts(frame.pts)
                    if first_index is None or first_index > start:
                        # The seek landed after ``start`` (or timestamps are missing): decode from the beginning.
                        decoded.close()
                        container.close()
                        container = self._open()
                        decoded = self._decoded_frames(container)
                        continue
                    index = first_index
                if index >= start:
                    damage = ("its data is damaged or cut short" if corrupt_packet
                              else "the decoder concealed errors in it" if frame.is_corrupt else None)
                    yield _Decoded(index, self._time(frame.pts, index), partial(self._to_rgb, frame, index), damage)
                index += 1
            shortfall = self._shortfall(index)
            if shortfall is not None:
                raise _DecodeFailure(shortfall)
        except _DecodeFailure as failure:
            raise _DecodeFailure(f"frame {index} could not be read: {failure}") from failure.__cause__
        finally:
            container.close()

    def _to_rgb(self, frame: Any, index: int) -> np.ndarray:
        try:
            image = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
        except (self._av.FFmpegError, ValueError) as exc:
            raise _DecodeFailure(f"converting frame {index} to RGB failed ({exc})") from exc
        _check_frame_size(image, self.width, self.height, f"frame {index} of {self.path}", "frame 0")
        return image


class _OpenCVDecoder:
    backend = "opencv"

    def __init__(self, path: Path):
        self.path = path
        capture = self._open()
        try:
            fps = capture.get(cv2.CAP_PROP_FPS)
            if not fps or not math.isfinite(fps) or fps <= 0:
                warnings.warn(f"{path} does not state a frame rate; assuming {DEFAULT_IMAGE_FPS} fps", RuntimeWarning)
                fps = DEFAULT_IMAGE_FPS
            self.fps = float(fps)
            count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
            self.num_frames = int(count) if count and count > 0 else None
            ok, first = capture.read()
            if not ok or first is None:
                raise InputFileError(f"video: {path} contains no decodable video frames")
            self.height, self.width = first.shape[:2]
        finally:
            capture.release()

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise InputFileError(f"video: {self.path} is not a readable video file (OpenCV could not open it)")
        # Match PyAV, which returns frames as stored (no rotation from container metadata).
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
        return capture

    def frames(self, start: int) -> Iterator[_Decoded]:
        capture = self._open()
        try:
            index = 0
            while capture.grab():
                if index >= start:
                    time = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                    yield _Decoded(index, time, partial(self._retrieve, capture, index))
                index += 1
            # OpenCV reports a damaged stream as a plain end of stream: compare with the container's
            # count, allowing one frame for the rounding of counts estimated from the duration.
            if self.num_frames is not None and index < self.num_frames - 1:
                raise _DecodeFailure(f"decoding stopped at frame {index} of the {self.num_frames} the container lists")
        finally:
            capture.release()

    def _retrieve(self, capture: cv2.VideoCapture, index: int) -> np.ndarray:
        ok, bgr = capture.retrieve()
        if not ok or bgr is None:
            raise _DecodeFailure(f"decoding failed at frame {index}")
        _check_frame_size(bgr, self.width, self.height, f"frame {index} of {self.path}", "frame 0")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _natural_key(name: str) -> tuple[list[Any], str]:
    # re.split with one capture group alternates text / digits, so positions always hold the same type.
    parts = re.split(r"(\d+)", name)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], name


def list_images(folder: PathLike) -> list[Path]:
    """Image files directly inside ``folder`` (hidden files skipped), naturally sorted (frame2 < frame10)."""
    root = Path(folder)
    files = [
        p for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def _video_decoder(path: Path, backend: str, seek: bool) -> Any:
    if backend == "opencv":
        return _OpenCVDecoder(path)
    if backend == "pyav":
        return _PyAVDecoder(path, seek)
    try:
        import av  # noqa: F401
    except ImportError:
        return _OpenCVDecoder(path)
    try:
        return _PyAVDecoder(path, seek)
    except InputFileError as pyav_error:
        try:
            return _OpenCVDecoder(path)
        except InputFileError:
            raise pyav_error from None


def _make_decoder(source: Any, backend: str, fps: float | None, seek: bool) -> Any:
    image_fps = DEFAULT_IMAGE_FPS if fps is None else fps
    if isinstance(source, np.ndarray) or is_tensor(source):
        return _ArrayDecoder(source, image_fps)
    if isinstance(source, (str, os.PathLike)):
        path = check_file(source, "source")
        if path.is_dir():
            files = list_images(path)
            if not files:
                raise InputFileError(
                    f"source: folder {path} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
                )
            return _ImageDecoder(files, image_fps, path)
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return _ImageDecoder([path], image_fps, path)
        return _video_decoder(path, backend, seek)
    if isinstance(source, (list, tuple)):
        if not source:
            raise InvalidArgumentError("source: the list of image paths is empty")
        bad = [p for p in source if not isinstance(p, (str, os.PathLike))]
        if bad:
            raise InvalidArgumentError(f"source: a list must hold image paths, got a {type(bad[0]).__name__}")
        files = [check_file(p, "source") for p in source]
        return _ImageDecoder(files, image_fps, None)
    raise InvalidArgumentError(
        "source must be a video path, an image folder, a list of image paths or a uint8 [T, H, W, 3] array, "
        f"got {type(source).__name__}"
    )


def same_size_frames(frames: Iterable[Frame], source_name: str) -> Iterator[Frame]:
    """Yield ``frames``, raising an InputFileError naming ``source_name`` when one differs in size from the first."""
    first_shape = None
    for frame in frames:
        if first_shape is None:
            first_shape = frame.image.shape
        elif frame.image.shape != first_shape:
            raise InputFileError(
                f"{source_name}: frame {frame.index} has size {frame.image.shape[1]}x{frame.image.shape[0]}, "
                f"but the first frame is {first_shape[1]}x{first_shape[0]}; all frames must have one size"
            )
        yield frame


# ---------------------------------------------------------------------------------------------
# Resizing


def resolve_resize(width: int, height: int, resize: Resize) -> tuple[int, int]:
    """Output ``(W, H)`` for a frame of ``width x height`` under a ``resize`` spec.

    ``resize`` is ``None`` (keep), a ``(W, H)`` tuple (exact size), a float (scale factor, e.g. 0.5)
    or an int (largest side in pixels; smaller frames are kept as they are, aspect ratio preserved).
    """
    if resize is None:
        return width, height
    if isinstance(resize, (tuple, list)):
        positive_ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in resize)
        if len(resize) != 2 or not positive_ints:
            raise InvalidArgumentError(f"resize as a size must be (W, H) with two positive ints, got {resize!r}")
        return int(resize[0]), int(resize[1])
    if isinstance(resize, bool):
        raise InvalidArgumentError(f"resize must be (W, H), a float scale or an int max side, got {resize!r}")
    if isinstance(resize, (int, np.integer)):
        if resize <= 0:
            raise InvalidArgumentError(f"resize as a max side must be a positive int, got {resize}")
        longest = max(width, height)
        if longest <= resize:
            return width, height
        scale = int(resize) / longest
        return (
            int(resize) if width == longest else max(1, round(width * scale)),
            int(resize) if height == longest else max(1, round(height * scale)),
        )
    if isinstance(resize, (float, np.floating)):
        if not math.isfinite(resize) or resize <= 0:
            raise InvalidArgumentError(f"resize as a scale must be a positive finite float, got {resize}")
        return max(1, round(width * float(resize))), max(1, round(height * float(resize)))
    raise InvalidArgumentError(f"resize must be (W, H), a float scale or an int max side, got {type(resize).__name__}")


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``[H, W, C]`` to ``size = (W, H)``: area averaging when shrinking, bilinear when enlarging."""
    height, width = image.shape[:2]
    if (width, height) == tuple(size):
        return image
    shrink = size[0] <= width and size[1] <= height
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------------------------
# The public reader


class VideoSource:
    """Iterable over the :class:`Frame` objects of a source; create it with :func:`open_video`.

    Each iteration opens the source afresh and decodes one frame at a time; the decoder is closed
    when the loop ends, breaks or raises, and by :meth:`close` / leaving a ``with`` block.
    """

    def __init__(
        self,
        decoder: Any,
        *,
        start: int,
        stop: int | None,
        stride: int,
        max_frames: int | None,
        resize: Resize,
        on_damage: str,
        fps: float | None = None,
    ):
        self._decoder = decoder
        self._fps = decoder.fps if fps is None else float(fps)
        # A user frame rate for a video replaces the container's: frame times become index / fps.
        self._time_from_index = fps is not None
        self.start, self.stop, self.stride, self.max_frames = start, stop, stride, max_frames
        self._size = resolve_resize(decoder.width, decoder.height, resize)
        self._on_damage = on_damage
        self.damage: str | None = None
        """What the last pass found damaged (``on_damage="warn"``/``"skip"``), or None."""
        self._live: weakref.WeakSet = weakref.WeakSet()
        total = decoder.num_frames
        # a video container's count is metadata (it may be wrong); image and array counts are exact
        if total is not None and start >= total and decoder.backend in ("images", "array"):
            raise InvalidArgumentError(f"start={start} is past the end of {self._name}: it has {total} frames")

    @property
    def _name(self) -> str:
        return str(self.path) if self.path is not None else f"the {self.backend} source"

    @property
    def path(self) -> Path | None:
        """The video file or image folder (None for arrays and image lists)."""
        return self._decoder.path

    @property
    def backend(self) -> str:
        """``"pyav"``, ``"opencv"``, ``"images"`` or ``"array"``."""
        return self._decoder.backend

    @property
    def fps(self) -> float:
        """Frames per second of the source (container rate; ``fps`` argument or 30 for images)."""
        return self._fps

    @property
    def width(self) -> int:
        """Width of the yielded frames (after ``resize``)."""
        return self._size[0]

    @property
    def height(self) -> int:
        """Height of the yielded frames (after ``resize``)."""
        return self._size[1]

    @property
    def source_size(self) -> tuple[int, int]:
        """``(W, H)`` of the frames as stored, before ``resize``."""
        return self._decoder.width, self._decoder.height

    @property
    def source_num_frames(self) -> int | None:
        """Frames in the whole source: from container metadata for videos (None when not stated), exact otherwise."""
        return self._decoder.num_frames

    @property
    def num_frames(self) -> int | None:
        """Frames this source yields after start / stop / stride / max_frames (None when the length is unknown)."""
        total = self._decoder.num_frames
        if total is None:
            return None
        end = total if self.stop is None else min(self.stop, total)
        count = max(0, -(-(end - self.start) // self.stride))
        return count if self.max_frames is None else min(count, self.max_frames)

    def __len__(self) -> int:
        count = self.num_frames
        if count is None:
            raise TypeError(f"the number of frames of {self._name} is not known before decoding")
        return count

    def __bool__(self) -> bool:
        return True

    def __iter__(self) -> Iterator[Frame]:
        frames = self._generate()
        self._live.add(frames)
        return frames

    def _generate(self) -> Iterator[Frame]:
        decoded = self._decoder.frames(self.start)
        count = 0
        last_index = -1
        damaged: list[str] = []
        self.damage = None
        try:
            for item in decoded:
                last_index = item.index
                if self.stop is not None and item.index >= self.stop:
                    return
                if (item.index - self.start) % self.stride:
                    continue
                if item.damage is not None:
                    self._on_damaged(f"frame {item.index}: {item.damage}", damaged)
                    if self._on_damage == "skip":
                        continue
                image = resize_image(item.load(), self._size)
                time = item.index / self._fps if self._time_from_index else item.time
                yield Frame(image=image, index=item.index, time=time)
                count += 1
                if self.max_frames is not None and count >= self.max_frames:
                    return
        except _DecodeFailure as failure:
            self._on_damaged(str(failure), damaged, cause=failure.__cause__)
        finally:
            decoded.close()
            if damaged:
                self.damage = "; ".join(damaged)
                kept = "left out" if self._on_damage == "skip" else "kept"
                warnings.warn(f"video: {self._name} is truncated or corrupt ({self.damage}); damaged frames {kept}, "
                              f"{count} frames read", RuntimeWarning, stacklevel=3)
        if count == 0 and not damaged:
            raise InvalidArgumentError(
                f"start={self.start} is past the end of {self._name}: its last frame has index {last_index}"
            )

    def _on_damaged(self, what: str, damaged: list[str], cause: BaseException | None = None) -> None:
        if self._on_damage == "error":
            raise DamagedFileError(f"video: {self._name} is truncated or corrupt: {what} "
                                   "(open it with on_damage='warn' or 'skip' to read around the damage)") from cause
        damaged.append(what)

    def close(self) -> None:
        """Close every decoder still open on this source (running loops end)."""
        for frames in list(self._live):
            frames.close()
        self._live.clear()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"VideoSource({self._name}, backend={self.backend}, {self.width}x{self.height}, "
            f"fps={self.fps:g}, num_frames={self.num_frames})"
        )


def open_video(
    source: Source,
    *,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    resize: Resize = None,
    backend: str = "auto",
    fps: float | None = None,
    seek: bool = True,
    on_damage: str = "error",
) -> VideoSource:
    """Open a video, image folder, image list or frame array for streaming.

    Args:
        source: video file path; folder of images (png/jpg/jpeg/bmp/tif/tiff/ppm/pgm/webp, naturally
            sorted so frame2 < frame10, hidden files skipped); a single image path; a list of image
            paths; or a ``uint8 [T, H, W, 3]`` RGB array / tensor (frames are then views of it).
            Videos are returned as stored: rotation metadata is not applied by either backend.
        start, stop, stride: frame indices ``range(start, stop, stride)`` in the source.
        max_frames: yield at most this many frames.
        resize: ``(W, H)`` exact size, a float scale, or an int largest side (never enlarges);
            area averaging when shrinking.
        backend: for video files: ``"pyav"``, ``"opencv"``, or ``"auto"`` (PyAV; OpenCV when PyAV
            is missing or cannot open the file).
        fps: frame rate for image sources (default 30); for videos it replaces the container's
            rate and frame times become ``index / fps``.
        seek: PyAV only: seek to the keyframe before ``start`` instead of decoding from frame 0
            (where the timestamps allow frame-accurate numbering; see the module docstring).
        on_damage: ``"error"`` (DamagedFileError), ``"warn"`` (keep every frame that decodes) or
            ``"skip"`` (leave out damaged frames) for truncated or corrupt videos; see the module docstring.

    Raises:
        MissingFileError, InputFileError: unusable files (not a video, no frames, empty folder,
            unreadable image, frames of different sizes in a folder).
        DamagedFileError: while iterating, a damaged video under ``on_damage="error"``.
        InvalidArgumentError: bad ranges (stride < 1, start < 0, stop <= start, start past the end).
    """
    check_int(start, "start", minimum=0)
    check_int(stride, "stride", minimum=1)
    check_int(stop, "stop", minimum=0, allow_none=True)
    check_int(max_frames, "max_frames", minimum=1, allow_none=True)
    if stop is not None and stop <= start:
        raise InvalidArgumentError(f"stop must be greater than start, got start={start}, stop={stop}")
    check_choice(backend, "backend", VIDEO_BACKENDS)
    check_choice(on_damage, "on_damage", DAMAGE_POLICIES)
    is_number = isinstance(fps, numbers.Real) and not isinstance(fps, bool)
    if fps is not None and (not is_number or not math.isfinite(fps) or fps <= 0):
        raise InvalidArgumentError(f"fps must be a positive number, got {fps!r}")
    if isinstance(source, VideoSource):
        defaults = (start, stop, stride, max_frames, resize, backend, fps, seek, on_damage) == (
            0, None, 1, None, None, "auto", None, True, "error")
        if not defaults:
            raise InvalidArgumentError(
                "source is already an open VideoSource; open the path again to change its options"
            )
        return source
    decoder = _make_decoder(source, backend, None if fps is None else float(fps), seek)
    video_fps = float(fps) if fps is not None and decoder.backend in ("pyav", "opencv") else None
    return VideoSource(
        decoder, start=start, stop=stop, stride=stride, max_frames=max_frames, resize=resize, on_damage=on_damage,
        fps=video_fps,
    )


def read_frames(
    source: Source,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    resize: Resize = None,
    **options: Any,
) -> np.ndarray:
    """Read a range of frames into one array.

    Takes the same arguments as :func:`open_video` (``options``: backend, fps, seek, on_damage).

    Returns:
        ``uint8 [T, H, W, 3]`` RGB.
    """
    with open_video(
        source, start=start, stop=stop, stride=stride, max_frames=max_frames, resize=resize, **options
    ) as video:
        expected = video.num_frames
        if expected is None:
            return np.stack([frame.image for frame in video])
        out = np.empty((expected, video.height, video.width, 3), dtype=np.uint8)
        extra: list[np.ndarray] = []
        count = 0
        for frame in video:
            if count < expected:
                out[count] = frame.image
            else:  # the container under-stated its length
                extra.append(frame.image)
            count += 1
        if extra:
            return np.concatenate([out, np.stack(extra)])
        return out[:count] if count < expected else out


__all__ = [
    "DEFAULT_IMAGE_FPS",
    "Frame",
    "VideoSource",
    "list_images",
    "open_video",
    "read_frames",
    "resize_image",
    "resolve_resize",
]
