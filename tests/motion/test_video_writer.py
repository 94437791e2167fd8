"""VideoWriter / write_video: frames read back by an independent reader (cv2.VideoCapture or raw
PyAV), odd sizes, quality options, atomic output and errors."""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from motion.frames import open_video
from motion.video_writer import VideoWriter, write_video
from motion4d.errors import InvalidArgumentError, ShapeError

BLOCK = 16


def numbered_frames(n: int, width: int = 96, height: int = 64) -> np.ndarray:
    """``uint8 [n, H, W, 3]``: bits of the frame number as black / white blocks over a moving gradient."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        frames[i, ..., 0] = (xx * 2 + i * 3) % 256
        frames[i, ..., 1] = (yy * 3 + i * 5) % 256
        frames[i, ..., 2] = 90
        for b in range(5):
            frames[i, :BLOCK, b * BLOCK:(b + 1) * BLOCK] = 255 if (i >> b) & 1 else 0
    return frames


def frame_number(image: np.ndarray) -> int:
    return sum(int(image[2:BLOCK - 2, b * BLOCK + 2:(b + 1) * BLOCK - 2].mean() > 127) << b for b in range(5))


def read_with_opencv(path: Path) -> tuple[np.ndarray, float]:
    """Independent reader: every frame as RGB via cv2.VideoCapture, and the stated fps."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps = capture.get(cv2.CAP_PROP_FPS)
    images = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(images), fps


@pytest.mark.parametrize(
    "name, options, codec",
    [
        ("clip.mp4", {}, "h264"),
        ("clip.mkv", {}, "h264"),
        ("clip.webm", {"options": {"deadline": "realtime"}}, "vp9"),
        ("clip.avi", {}, "mpeg4"),
        ("clip.mp4", {"backend": "opencv"}, "mpeg4"),
        ("clip.avi", {"backend": "opencv"}, "mjpeg"),
    ],
)
def test_round_trip_through_an_independent_reader(tmp_path, name, options, codec):
    frames = numbered_frames(20)
    path = write_video(tmp_path / name, frames, fps=25, **options)
    assert path == tmp_path / name
    decoded, fps = read_with_opencv(path)
    assert fps == pytest.approx(25)
    assert decoded.shape == frames.shape
    assert [frame_number(im) for im in decoded] == list(range(20))
    assert np.abs(decoded.astype(int) - frames).mean() < 4.0
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == codec
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left


def test_odd_size_is_padded_by_repeating_the_last_row_and_column(tmp_path):
    rng = np.random.default_rng(0)
    frames = cv2.GaussianBlur(rng.integers(0, 256, (63 * 4, 95, 3), dtype=np.uint8), (0, 0), 3).reshape(4, 63, 95, 3)
    with VideoWriter(tmp_path / "odd.mp4", fps=10) as writer:
        for image in frames:
            writer.write(image)
    assert writer.size == (95, 63) and writer.frames_written == 4
    decoded, _ = read_with_opencv(tmp_path / "odd.mp4")
    assert decoded.shape == (4, 64, 96, 3)
    assert np.abs(decoded[:, :63, :95].astype(int) - frames).mean() < 3.0
    assert np.abs(decoded[:, :63, 95].astype(int) - frames[:, :, 94]).mean() < 4.0
    assert np.abs(decoded[:, 63, :95].astype(int) - frames[:, 62, :]).mean() < 4.0
    # A pixel format without chroma subsampling keeps the size exactly.
    write_video(tmp_path / "odd444.mkv", frames, fps=10, pixel_format="yuv444p")
    assert open_video(tmp_path / "odd444.mkv").source_size == (95, 63)


def test_quality_options(tmp_path):
    frames = numbered_frames(6)
    lossless = write_video(tmp_path / "lossless.mkv", frames, crf=0, pixel_format="yuv444p")
    rough = write_video(tmp_path / "rough.mp4", frames, crf=45)
    with av.open(str(lossless)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv444p"
        exact = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    # crf 0 in 4:4:4 is lossless up to the RGB <-> YCbCr rounding.
    assert np.abs(exact.astype(int) - frames).max() <= 3
    rough_error = np.abs(read_with_opencv(rough)[0].astype(int) - frames).mean()
    assert rough_error > np.abs(exact.astype(int) - frames).mean()
    assert rough.stat().st_size < lossless.stat().st_size


def test_fractional_frame_rate_and_transcoding_a_video_source(tmp_path):
    frames = numbered_frames(12)
    src = write_video(tmp_path / "ntsc.mp4", frames, fps=Fraction(30000, 1001))
    with av.open(str(src)) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)
    numpy_rate = write_video(tmp_path / "numpy_rate.mkv", frames[:2], fps=np.float32(12.5), crf=np.int64(20))
    with av.open(str(numpy_rate)) as container:
        assert container.streams.video[0].average_rate == Fraction(25, 2)
    # Frames straight from a reader (Frame objects) are accepted.
    out = write_video(tmp_path / "every_other.mp4", open_video(src, stride=2), fps=15)
    decoded, fps = read_with_opencv(out)
    assert fps == pytest.approx(15)
    assert [frame_number(im) for im in decoded] == list(range(0, 12, 2))


def test_exception_mid_write_leaves_no_file_and_keeps_an_old_one(tmp_path):
    target = tmp_path / "out.mp4"
    frames = numbered_frames(5)
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(target, fps=10) as writer:
            writer.write(frames[0])
            writer.write(frames[1])
            assert not target.exists()  # only the temporary file exists while writing
            assert len(list(tmp_path.iterdir())) == 1
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous result")
    with pytest.raises(ShapeError, match="one size"):
        write_video(target, [frames[0], frames[1][:32]], fps=10)
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_abort_and_no_frames(tmp_path):
    writer = VideoWriter(tmp_path / "a.mp4")
    writer.write(numbered_frames(1)[0])
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidArgumentError, match="closed"):
        writer.write(numbered_frames(1)[0])
    with pytest.raises(InvalidArgumentError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [], fps=10)
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_and_arguments(tmp_path):
    frame = numbered_frames(1)[0]
    with VideoWriter(tmp_path / "ok.mp4") as writer:
        with pytest.raises(ShapeError, match="uint8"):
            writer.write(frame.astype(np.float32))
        with pytest.raises(ShapeError, match=r"\[H, W, 3\]"):
            writer.write(frame[..., 0])
        with pytest.raises(ShapeError):
            writer.write("frame")
        writer.write(frame)
    assert (tmp_path / "ok.mp4").exists()
    for kwargs in ({"fps": 0}, {"fps": -5}, {"fps": float("nan")}, {"crf": 60}, {"crf": 1.5},
                   {"codec": "nope264"}, {"backend": "gstreamer"}, {"pixel_format": "yuv9000p"},
                   {"backend": "opencv", "pixel_format": "yuv444p"}):
        with pytest.raises(InvalidArgumentError):
            VideoWriter(tmp_path / "x.mp4", **kwargs)
    with pytest.raises(InvalidArgumentError, match=r"\.gif"):
        VideoWriter(tmp_path / "x.gif")
    with pytest.raises(ShapeError):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8), np.uint8))


def test_writer_falls_back_to_opencv_without_pyav(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    writer = VideoWriter(tmp_path / "cv.mp4", fps=12)
    assert writer.backend == "opencv"
    with writer:
        for image in numbered_frames(6):
            writer.write(image)
    monkeypatch.undo()
    decoded, fps = read_with_opencv(tmp_path / "cv.mp4")
    assert fps == pytest.approx(12) and [frame_number(im) for im in decoded] == list(range(6))
