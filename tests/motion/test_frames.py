"""Frame readers: frame accuracy on clips whose frame number is written in their pixels, every
source kind, bounded memory, every error case, and the pad-to-multiple helpers."""
from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

import motion
from motion.frames import (
    VideoSource,
    _PyAVDecoder,
    list_images,
    open_video,
    read_frames,
    resolve_resize,
)
from motion.video_writer import write_video
from motion4d.errors import InputFileError, InvalidArgumentError, MissingFileError, ShapeError

N_FRAMES = 72
WIDTH, HEIGHT = 96, 64
FPS = 24
BLOCK = 16
BITS = 7  # frame numbers up to 127


def numbered_frames(n: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """``uint8 [n, H, W, 3]``: bit b of the frame number is a black / white 16x16 block in the top rows,
    the rest is a smooth gradient that changes every frame (so codecs see real motion)."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    per_row = width // BLOCK
    for i in range(n):
        frames[i, ..., 0] = (xx * 2 + i * 3) % 256
        frames[i, ..., 1] = (yy * 3 + i * 5) % 256
        frames[i, ..., 2] = 90
        for b in range(BITS):
            r, c = divmod(b, per_row)
            frames[i, r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = 255 if (i >> b) & 1 else 0
    return frames


def frame_number(image: np.ndarray) -> int:
    """Read the number written by :func:`numbered_frames` (works after lossy coding and resizing)."""
    height, width = image.shape[:2]
    block_h, block_w = height * BLOCK // HEIGHT, width * BLOCK // WIDTH
    per_row = WIDTH // BLOCK
    value = 0
    for b in range(BITS):
        r, c = divmod(b, per_row)
        patch = image[r * block_h + 2:(r + 1) * block_h - 2, c * block_w + 2:(c + 1) * block_w - 2]
        value |= int(patch.mean() > 127) << b
    return value


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return numbered_frames(N_FRAMES)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, frames: np.ndarray) -> dict[str, Path]:
    """The same numbered clip as x264 mp4 (our writer; keyframe every 10 frames so seeking is
    exercised), mpeg4 mp4 written by cv2.VideoWriter directly, and VP9 webm (no frame count)."""
    root = tmp_path_factory.mktemp("clips")
    x264 = write_video(root / "x264.mp4", frames, fps=FPS, options={"g": "10"})
    cv_path = root / "opencv.mp4"
    writer = cv2.VideoWriter(str(cv_path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for image in frames:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    vp9 = write_video(root / "vp9.webm", frames[:30], fps=FPS, crf=20, options={"g": "8", "deadline": "realtime"})
    return {"x264": x264, "opencv": cv_path, "vp9": vp9}


RANGES = [(0, None, 1), (0, None, 4), (7, 33, 1), (23, None, 5), (41, 70, 3), (69, None, 1), (10, 11, 1)]


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
@pytest.mark.parametrize("clip", ["x264", "opencv"])
def test_video_is_frame_accurate(clips, clip, backend):
    for start, stop, stride in RANGES:
        video = open_video(clips[clip], start=start, stop=stop, stride=stride, backend=backend)
        got = list(video)
        expected = list(range(start, N_FRAMES if stop is None else stop, stride))
        assert [f.index for f in got] == expected, (start, stop, stride)
        assert [frame_number(f.image) for f in got] == expected, (start, stop, stride)
        assert [f.time for f in got] == pytest.approx([i / FPS for i in expected], abs=1e-6)
        assert video.num_frames == len(expected)
        for f in got:
            assert f.image.dtype == np.uint8 and f.image.shape == (HEIGHT, WIDTH, 3) and f.image.flags.c_contiguous


def test_pyav_seek_lands_before_start_and_matches_sequential(clips, monkeypatch):
    first_indices: list[int | None] = []
    original = _PyAVDecoder._index_from_pts

    def spy(self, pts):
        index = original(self, pts)
        if sys._getframe(1).f_code.co_name == "frames":  # the seek, not the numbering check at open
            first_indices.append(index)
        return index

    monkeypatch.setattr(_PyAVDecoder, "_index_from_pts", spy)
    for start in (15, 37, 66):
        seeked = read_frames(clips["x264"], start=start, stride=2, backend="pyav", seek=True)
        sequential = read_frames(clips["x264"], start=start, stride=2, backend="pyav", seek=False)
        np.testing.assert_array_equal(seeked, sequential)
        assert [frame_number(im) for im in seeked] == list(range(start, N_FRAMES, 2))
    # The seek really skipped decoding: it landed on a keyframe after frame 0 but not after start.
    assert len(first_indices) == 3
    assert all(0 < first <= start for first, start in zip(first_indices, (15, 37, 66)))


def test_video_without_frame_count_and_start_past_end(clips):
    video = open_video(clips["vp9"], backend="pyav")
    assert video.source_num_frames is None and video.num_frames is None
    with pytest.raises(TypeError):
        len(video)
    got = [(f.index, frame_number(f.image)) for f in open_video(clips["vp9"], start=11, stride=6)]
    assert got == [(i, i) for i in range(11, 30, 6)]
    with pytest.raises(InvalidArgumentError, match="past the end"):
        list(open_video(clips["vp9"], start=40, backend="pyav"))
    # a container's frame count is metadata: start is checked against the decoded frames
    with pytest.raises(InvalidArgumentError, match="past the end"):
        list(open_video(clips["x264"], start=N_FRAMES))


def test_metadata_and_decoded_pixels(clips, frames):
    for backend in ("pyav", "opencv"):
        video = open_video(clips["x264"], backend=backend)
        assert video.backend == backend and video.path == clips["x264"]
        assert video.fps == pytest.approx(FPS)
        assert (video.width, video.height) == (WIDTH, HEIGHT) and video.source_size == (WIDTH, HEIGHT)
        assert video.source_num_frames == N_FRAMES and len(video) == N_FRAMES
        decoded = read_frames(clips["x264"], backend=backend)
        assert decoded.shape == frames.shape
        # Lossy but close: x264 at crf 18 and the YUV round trip stay within a few grey levels on average.
        assert np.abs(decoded.astype(int) - frames).mean() < 3.0
    assert open_video(clips["x264"]).backend == "pyav"
    assert "x264.mp4" in repr(open_video(clips["x264"]))


def test_fps_override_sets_times_from_index(clips):
    video = open_video(clips["x264"], fps=10, stop=5)
    assert video.fps == 10
    assert [f.time for f in video] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])


def test_max_frames_and_resize(clips, frames):
    got = read_frames(clips["x264"], start=3, stride=2, max_frames=5)
    assert [frame_number(im) for im in got] == [3, 5, 7, 9, 11]
    with open_video(clips["x264"], resize=0.5, max_frames=4) as video:
        assert (video.width, video.height) == (48, 32) and video.num_frames == 4
        images = [f.image for f in video]
    assert [im.shape for im in images] == [(32, 48, 3)] * 4
    assert [frame_number(im) for im in images] == [0, 1, 2, 3]
    # Against OpenCV INTER_AREA applied to the same decoded frames.
    full = read_frames(clips["x264"], max_frames=4)
    for im, ref in zip(images, full):
        np.testing.assert_array_equal(im, cv2.resize(ref, (48, 32), interpolation=cv2.INTER_AREA))
    assert read_frames(frames, resize=(40, 30), max_frames=2).shape == (2, 30, 40, 3)
    assert read_frames(frames, resize=48, max_frames=2).shape == (2, 32, 48, 3)
    assert read_frames(frames, resize=500, max_frames=2).shape == (2, HEIGHT, WIDTH, 3)  # never enlarges
    enlarged = read_frames(frames, resize=2.0, max_frames=1)[0]
    np.testing.assert_array_equal(enlarged, cv2.resize(frames[0], (192, 128), interpolation=cv2.INTER_LINEAR))


def test_resolve_resize_rules():
    assert resolve_resize(1242, 375, None) == (1242, 375)
    assert resolve_resize(1242, 375, (640, 192)) == (640, 192)
    assert resolve_resize(1242, 375, 0.5) == (621, 188)
    assert resolve_resize(1242, 375, 621) == (621, 188)
    assert resolve_resize(375, 1242, 621) == (188, 621)
    assert resolve_resize(100, 50, 200) == (100, 50)
    for bad in (0, -3, 0.0, float("nan"), (10,), (10, 0), (10.5, 4), True, "512"):
        with pytest.raises(InvalidArgumentError):
            resolve_resize(100, 50, bad)


def write_png_folder(folder: Path, frames: np.ndarray, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in zip(names, frames):
        assert cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def test_folder_is_sorted_naturally_and_exact(tmp_path, frames):
    names = [f"frame{i}.png" for i in range(12)]  # frame2 must come before frame10
    order = np.random.default_rng(1).permutation(12)
    write_png_folder(tmp_path, frames[order], [names[i] for i in order])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".frame99.png").write_bytes(b"hidden temp file")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(tmp_path)] == names
    video = open_video(tmp_path, start=1, stride=3, fps=12)
    assert video.backend == "images" and video.path == tmp_path
    assert video.source_num_frames == 12 and video.num_frames == 4 and video.fps == 12
    got = list(video)
    assert [f.index for f in got] == [1, 4, 7, 10]
    assert [f.time for f in got] == pytest.approx([1 / 12, 4 / 12, 7 / 12, 10 / 12])
    np.testing.assert_array_equal(np.stack([f.image for f in got]), frames[[1, 4, 7, 10]])
    np.testing.assert_array_equal(read_frames(tmp_path), frames[:12])  # PNG is lossless
    assert open_video(tmp_path).fps == 30.0


def test_list_single_image_array_and_tensor_sources(tmp_path, frames):
    write_png_folder(tmp_path, frames[:3], ["a.png", "b.png", "c.png"])
    files = [tmp_path / "c.png", str(tmp_path / "a.png")]  # the list order is kept
    video = open_video(files)
    assert video.path is None and video.num_frames == 2
    np.testing.assert_array_equal(read_frames(files), frames[[2, 0]])
    np.testing.assert_array_equal(read_frames(tmp_path / "b.png"), frames[1:2])
    video = open_video(frames, start=5, stop=20, stride=5, fps=5)
    assert video.backend == "array" and video.num_frames == 3
    got = list(video)
    assert [(f.index, f.time) for f in got] == [(5, 1.0), (10, 2.0), (15, 3.0)]
    np.testing.assert_array_equal(np.stack([f.image for f in got]), frames[5:20:5])
    np.testing.assert_array_equal(read_frames(torch.from_numpy(frames[:4])), frames[:4])
    non_contiguous = frames[:3, :, ::-1]
    images = [f.image for f in open_video(non_contiguous)]
    assert all(im.flags.c_contiguous for im in images)
    np.testing.assert_array_equal(np.stack(images), non_contiguous)
    same = open_video(frames)
    assert open_video(same) is same
    with pytest.raises(InvalidArgumentError):
        open_video(same, stride=2)


def test_iteration_is_lazy_and_memory_is_bounded(tmp_path):
    n, width, height = 240, 160, 120
    path = tmp_path / "long.mp4"
    write_video(path, (numbered_frames(1, width, height)[0] for _ in range(n)), fps=30, crf=35,
                options={"preset": "ultrafast"})
    frame_bytes = width * height * 3
    gc.collect()
    tracemalloc.start()
    try:
        count = 0
        for frame in open_video(path):
            count += 1
        _, streaming_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        stacked = read_frames(path)
        _, stacked_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n and stacked.shape == (n, height, width, 3)
    assert streaming_peak < 8 * frame_bytes, streaming_peak  # a frame or two alive, never the video
    assert stacked_peak > n * frame_bytes  # the same probe sees a full read
    # Lazy: taking one frame decodes only the start of the file.
    iterator = iter(open_video(path))
    first = next(iterator)
    assert first.index == 0
    assert iterator.gi_frame is not None
    iterator.close()


def test_context_manager_closes_running_iterators(clips):
    with open_video(clips["x264"]) as video:
        iterator = iter(video)
        assert next(iterator).index == 0
    assert iterator.gi_frame is None  # the generator ran its cleanup (decoder closed)
    with pytest.raises(StopIteration):
        next(iterator)
    assert [f.index for f in video][:2] == [0, 1]  # a closed source can be iterated again


@pytest.mark.parametrize("backend", ["auto", "pyav", "opencv"])
def test_missing_and_non_video_files(tmp_path, backend):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(MissingFileError, match="nope.mp4"):
        open_video(missing, backend=backend)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(InputFileError, match="notes.mp4"):
        open_video(text, backend=backend)


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_video_with_zero_frames(tmp_path, backend):
    path = tmp_path / "empty.avi"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()
    with pytest.raises(InputFileError, match="empty.avi.*no decodable video frames"):
        open_video(path, backend=backend)


@pytest.fixture(scope="module")
def truncated(tmp_path_factory, frames) -> tuple[Path, Path, Path]:
    """Damaged copies of an mp4: faststart file cut at 60 % (header intact, data cut); plain file
    cut (its index at the end is lost); 1500 bytes zeroed in the middle of the data."""
    root = tmp_path_factory.mktemp("truncated")
    noisy = np.random.default_rng(0).integers(0, 256, frames.shape, dtype=np.uint8)
    noisy[:, :BLOCK * 2] = frames[:, :BLOCK * 2]  # keep the number blocks, make the data large
    whole = write_video(root / "whole.mp4", noisy, fps=FPS, crf=18)  # the writer uses +faststart
    data = whole.read_bytes()
    cut = root / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    container = av.open(str(root / "plain.mp4"), "w")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    for image in frames[:20]:
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    plain_cut = root / "plain_cut.mp4"
    plain_cut.write_bytes((root / "plain.mp4").read_bytes()[:-400])
    damaged = bytearray(data)
    damaged[len(data) // 2:len(data) // 2 + 1500] = bytes(1500)
    zeroed = root / "zeroed.mp4"
    zeroed.write_bytes(bytes(damaged))
    return cut, plain_cut, zeroed


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_truncated_video_raises_or_warns(truncated, backend):
    cut, plain_cut, zeroed = truncated
    video = open_video(cut, backend=backend)
    assert video.source_num_frames == N_FRAMES  # the header still promises the whole clip
    with pytest.raises(InputFileError, match=r"cut\.mp4 is truncated or corrupt: .*frame \d+"):
        list(video)
    with pytest.warns(RuntimeWarning, match=r"cut\.mp4 is truncated"):
        prefix = read_frames(cut, backend=backend, on_damage="warn")
    assert 10 < len(prefix) < N_FRAMES
    assert [frame_number(im) for im in prefix] == list(range(len(prefix)))
    with pytest.raises(InputFileError, match="plain_cut.mp4"):
        open_video(plain_cut, backend=backend)
    with pytest.raises(InputFileError, match=r"zeroed\.mp4 is truncated or corrupt: .*frame \d+"):
        read_frames(zeroed, backend=backend)


def test_folder_errors(tmp_path, frames):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match="empty.*holds no images"):
        open_video(empty)
    (empty / "readme.txt").write_text("x")
    with pytest.raises(InputFileError, match="holds no images"):
        open_video(empty)

    mixed = tmp_path / "mixed"
    write_png_folder(mixed, frames[:3], ["f1.png", "f2.png", "f3.png"])
    assert cv2.imwrite(str(mixed / "f2.png"), np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(InputFileError, match=r"f2\.png is 50x40 .*f1\.png is 96x64"):
        read_frames(mixed)
    assert read_frames(mixed, stop=1).shape == (1, HEIGHT, WIDTH, 3)

    broken = tmp_path / "broken"
    write_png_folder(broken, frames[:2], ["f1.png", "f2.png"])
    (broken / "f2.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(InputFileError, match=r"f2\.png is not a readable image"):
        read_frames(broken)
    (broken / "f1.png").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"f1\.png"):
        open_video(broken)
    with pytest.raises(MissingFileError, match="gone.png"):
        open_video([broken / "f2.png", broken / "gone.png"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stride": 0}, {"stride": -1}, {"stride": 1.5}, {"start": -1}, {"start": 5, "stop": 3},
        {"start": 5, "stop": 5}, {"max_frames": 0}, {"backend": "ffmpeg"}, {"on_damage": "ignore"},
        {"resize": -2}, {"fps": 0}, {"fps": float("inf")},
    ],
)
def test_bad_arguments(frames, kwargs):
    with pytest.raises(InvalidArgumentError):
        open_video(frames, **kwargs)


def test_bad_sources(frames):
    with pytest.raises(InvalidArgumentError, match="source must be"):
        open_video(42)
    with pytest.raises(InvalidArgumentError, match="empty"):
        open_video([])
    with pytest.raises(InvalidArgumentError, match="image paths"):
        open_video([frames[0]])
    with pytest.raises(ShapeError, match="uint8"):
        open_video(frames.astype(np.float32))
    with pytest.raises(ShapeError, match=r"\[T, H, W, 3\]"):
        open_video(frames[..., 0])
    with pytest.raises(InvalidArgumentError, match="at least one"):
        open_video(frames[:0])


def test_lazy_export_from_package():
    assert motion.open_video is open_video and motion.read_frames is read_frames
    assert motion.VideoSource is VideoSource
    assert motion.Frame.__name__ == "Frame"


def test_reader_falls_back_to_opencv_without_pyav(clips, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    video = open_video(clips["x264"], stop=5)
    assert video.backend == "opencv"
    assert [frame_number(f.image) for f in video] == [0, 1, 2, 3, 4]
    with pytest.raises(motion.MissingDependencyError, match="av"):
        open_video(clips["x264"], backend="pyav")
