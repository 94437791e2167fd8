"""Writing RGB frames to a video file, atomically.

::

    with VideoWriter("out/flow.mp4", fps=30) as writer:
        for image in images:          # uint8 [H, W, 3] RGB, all the same size
            writer.write(image)
    write_video("out/clip.mp4", frames, fps=24)

The video is encoded into a temporary file beside the target and renamed over it when the writer
closes, so the target either does not exist or is complete; leaving the ``with`` block through an
exception removes the temporary file.

Odd sizes. Chroma-subsampled pixel formats (the default ``yuv420p``, which every player decodes)
need even widths / heights; such frames are padded by repeating their last column / row, so a
``95 x 63`` frame is stored as ``96 x 64`` (the original pixels stay at the top-left).
"""
from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from motion4d.atomic import atomic_path
from motion4d.checks import check_choice, check_dtype, check_float, check_int, check_shape
from motion4d.errors import InputFileError, InvalidArgumentError, ShapeError

WRITER_BACKENDS = ("auto", "pyav", "opencv")
# Default PyAV codec per container, then the fallback when the first is not compiled in.
_PYAV_CODECS = {
    ".mp4": ("libx264", "mpeg4"),
    ".mov": ("libx264", "mpeg4"),
    ".mkv": ("libx264", "mpeg4"),
    ".webm": ("libvpx-vp9",),
    ".avi": ("mpeg4",),
}
_OPENCV_FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}
_CRF_CODECS = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libaom-av1": (0, 63)}


def _chroma_subsampling(pixel_format: str) -> tuple[int, int]:
    """``(x, y)`` factors by which ``pixel_format`` subsamples chroma (1 = none)."""
    import av

    try:
        fmt = av.VideoFormat(pixel_format, 4, 4)
    except (ValueError, av.FFmpegError) as exc:
        raise InvalidArgumentError(f"pixel_format {pixel_format!r} is not known to FFmpeg: {exc}") from exc
    return max(4 // c.width for c in fmt.components), max(4 // c.height for c in fmt.components)


def _pad_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    return np.pad(image, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


class VideoWriter:
    """Encode ``uint8 [H, W, 3]`` RGB frames into a video file (see the module notes).

    Args:
        path: output file; the extension picks the container (.mp4, .mov, .mkv, .webm, .avi).
        fps: frames per second (a float or a Fraction such as ``Fraction(30000, 1001)``).
        codec: PyAV encoder name; default by extension (libx264 for mp4/mov/mkv, libvpx-vp9 for
            webm, mpeg4 for avi).
        crf: constant-rate-factor quality for libx264/libx265/libvpx-vp9 (lower is better; 18 is
            visually lossless for x264, 0 is lossless). Other codecs get a bit rate instead.
        bit_rate: bits per second for codecs without a crf (default: 0.5 bit per pixel per frame).
        pixel_format: stored pixel format (``yuv420p`` plays everywhere).
        backend: ``"pyav"``, ``"opencv"`` (mp4v / MJPG fourcc; ``codec``/``crf`` do not apply) or
            ``"auto"`` (PyAV when installed).
        options: extra encoder options for PyAV, e.g. ``{"preset": "veryslow"}``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | Fraction = 30.0,
        *,
        codec: str | None = None,
        crf: int = 18,
        bit_rate: int | None = None,
        pixel_format: str = "yuv420p",
        backend: str = "auto",
        options: dict[str, str] | None = None,
    ):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in _PYAV_CODECS:
            raise InvalidArgumentError(f"path: {self.path} has extension {ext!r}, expected one of {list(_PYAV_CODECS)}")
        check_float(fps, "fps", minimum=0.0)
        check_choice(backend, "backend", WRITER_BACKENDS)
        if backend == "auto":
            try:
                import av  # noqa: F401

                backend = "pyav"
            except ImportError:
                backend = "opencv"
        self.backend = backend
        self.fps = fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(1001)
        self.pixel_format = pixel_format
        self._options = dict(options or {})
        self._bit_rate = bit_rate
        if backend == "pyav":
            import av

            if codec is None:
                available = [c for c in _PYAV_CODECS[ext] if c in av.codecs_available]
                if not available:
                    raise InvalidArgumentError(
                        f"none of the codecs {list(_PYAV_CODECS[ext])} for {ext} is available in PyAV"
                    )
                codec = available[0]
            elif codec not in av.codecs_available:
                raise InvalidArgumentError(f"codec {codec!r} is not available in this PyAV build")
            self._subsampling = _chroma_subsampling(pixel_format)
            if codec in _CRF_CODECS:
                low, high = _CRF_CODECS[codec]
                check_int(crf, f"crf for {codec}", minimum=low, maximum=high)
        else:
            if pixel_format != "yuv420p":
                raise InvalidArgumentError(
                    "the OpenCV backend writes yuv420p only; use backend='pyav' for other pixel formats"
                )
            self._subsampling = (2, 2)
        self.codec = codec
        self.crf = int(crf)
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (W, H) of the input frames
        self._stored_size: tuple[int, int] | None = None
        self._atomic: Any = None
        self._tmp: Path | None = None
        self._container: Any = None
        self._stream: Any = None
        self._cv_writer: cv2.VideoWriter | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    def _begin(self, width: int, height: int) -> None:
        sx, sy = self._subsampling
        self.size = (width, height)
        self._stored_size = (-(-width // sx) * sx, -(-height // sy) * sy)
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        try:
            if self.backend == "pyav":
                self._open_pyav()
            else:
                self._open_opencv()
        except BaseException as exc:
            self._discard(exc)
            raise

    def _open_pyav(self) -> None:
        import av

        options = {"movflags": "+faststart"} if self.path.suffix.lower() in (".mp4", ".mov") else {}
        try:
            self._container = av.open(str(self._tmp), mode="w", options=options)
            stream = self._container.add_stream(self.codec, rate=self.fps)
        except av.FFmpegError as exc:
            raise InputFileError(f"video: cannot create {self.path} with codec {self.codec}: {exc}") from exc
        stream.width, stream.height = self._stored_size
        stream.pix_fmt = self.pixel_format
        codec_options = {}
        if self.codec in _CRF_CODECS:
            codec_options["crf"] = str(self.crf)
            if self.codec == "libvpx-vp9":
                codec_options["b"] = "0"  # constant quality mode
        else:
            w, h = self._stored_size
            stream.bit_rate = int(self._bit_rate or max(200_000, 0.5 * w * h * float(self.fps)))
        codec_options.update(self._options)
        stream.options = codec_options
        self._stream = stream

    def _open_opencv(self) -> None:
        fourcc = cv2.VideoWriter.fourcc(*_OPENCV_FOURCC[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self._tmp), fourcc, float(self.fps), self._stored_size)
        if not writer.isOpened():
            fourcc_name = _OPENCV_FOURCC[self.path.suffix.lower()]
            raise InputFileError(f"video: OpenCV cannot write {self.path} (fourcc {fourcc_name})")
        self._cv_writer = writer

    def write(self, frame: np.ndarray) -> None:
        """Append one ``uint8 [H, W, 3]`` RGB frame (the first frame fixes the size)."""
        if self._closed:
            raise InvalidArgumentError(f"VideoWriter for {self.path} is closed")
        if hasattr(frame, "image") and isinstance(frame.image, np.ndarray):  # a motion.frames.Frame
            frame = frame.image
        if not isinstance(frame, np.ndarray):
            raise ShapeError(f"frame must be a numpy array uint8 [H, W, 3], got {type(frame).__name__}")
        dims = check_shape(frame, "frame", ("H", "W", 3))
        check_dtype(frame, "frame", (np.dtype(np.uint8),))
        if dims["H"] == 0 or dims["W"] == 0:
            raise ShapeError(f"frame must not be empty, got shape {list(frame.shape)}")
        if self.size is None:
            self._begin(dims["W"], dims["H"])
        elif (dims["W"], dims["H"]) != self.size:
            raise ShapeError(
                f"frame {self.frames_written} is {dims['W']}x{dims['H']} (WxH) but {self.path} was started "
                f"at {self.size[0]}x{self.size[1]}; all frames of a video must have one size"
            )
        image = _pad_to(np.ascontiguousarray(frame), *self._stored_size)
        try:
            if self.backend == "pyav":
                import av

                video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                video_frame.pts = self.frames_written
                video_frame.time_base = 1 / self.fps
                for packet in self._stream.encode(video_frame):
                    self._container.mux(packet)
            else:
                self._cv_writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        except BaseException as exc:
            self._discard(exc)
            raise
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file and move it into place; returns the path.

        Raises:
            InvalidArgumentError: no frame was written (no file is created).
        """
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self._closed = True
            raise InvalidArgumentError(f"no frames were written to {self.path}; the file was not created")
        try:
            if self.backend == "pyav":
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
            else:
                self._cv_writer.release()
                if not self._tmp.exists() or self._tmp.stat().st_size == 0:
                    raise InputFileError(f"video: OpenCV wrote nothing to {self.path}")
        except BaseException as exc:
            self._discard(exc)
            raise
        self._closed = True
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Stop without creating the file (the temporary file is removed)."""
        if not self._closed:
            self._discard(None)

    def _discard(self, exc: BaseException | None) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            if self._container is not None:
                self._container.close()
        if self._cv_writer is not None:
            self._cv_writer.release()
        if self._atomic is not None:
            error = exc if exc is not None else InvalidArgumentError("aborted")
            with contextlib.suppress(BaseException):
                self._atomic.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and getattr(self, "_atomic", None) is not None:
            self.abort()


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray] | np.ndarray,
    fps: float | Fraction = 30.0,
    **options: Any,
) -> Path:
    """Write ``frames`` (``uint8 [T, H, W, 3]`` array, or an iterable of ``[H, W, 3]`` arrays or
    :class:`~motion.frames.Frame` objects, e.g. an open video) to ``path`` atomically.

    ``options`` go to :class:`VideoWriter` (codec, crf, bit_rate, pixel_format, backend, options).
    Returns the path.
    """
    if isinstance(frames, np.ndarray):
        check_shape(frames, "frames", ("T", "H", "W", 3))
    with VideoWriter(path, fps, **options) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path


__all__ = ["VideoWriter", "write_video"]
