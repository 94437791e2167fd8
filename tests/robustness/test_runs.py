"""Run-level robustness (issue #16): output folders owned by one run, locks, kills and resumes, modes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import motion
from motion4d.errors import InvalidArgumentError, MissingFileError
from motion4d.outputs import LOCK_NAME, OutputFolder, OutputLockedError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real clips of one size (carphone's first and second halves) and a copy of the first."""
    from motion.sample_data import sample_video

    from .damage import transcode

    root = tmp_path_factory.mktemp("videos")
    full = motion.read_frames(sample_video("carphone"), stop=24)
    first, second = root / "first.mp4", root / "second.mp4"
    motion.write_video(first, full[:12], fps=10)
    motion.write_video(second, full[12:], fps=10)
    return {"first": first, "second": second, "avi": transcode(sample_video("carphone"), root / "long.avi")}


def flow(source: Path, out: Path, **options) -> motion.estimate.FlowResult:
    return motion.estimate_flow(source, model="dis", device="cpu", out_dir=out, progress=False, **options)


def test_a_different_video_into_the_same_folder_is_refused(videos, tmp_path):
    flow(videos["first"], tmp_path / "out")
    with pytest.raises(InvalidArgumentError, match="source_identity") as info:
        flow(videos["second"], tmp_path / "out")
    assert "overwrite=True" in str(info.value) and "second.mp4" in str(info.value)
    again = flow(videos["first"], tmp_path / "out")
    assert again.computed == 0 and again.skipped == 11
    replaced = flow(videos["second"], tmp_path / "out", overwrite=True)
    assert replaced.computed == 11


def test_other_settings_into_the_same_folder_are_refused(videos, tmp_path):
    flow(videos["first"], tmp_path / "out", resize=0.5)
    with pytest.raises(InvalidArgumentError, match=r"resize: 0\.5 -> 0\.75"):
        flow(videos["first"], tmp_path / "out", resize=0.75)
    with pytest.raises(InvalidArgumentError, match="stride"):
        flow(videos["first"], tmp_path / "out", resize=0.5, stride=2)


def test_no_configuration_is_written_when_the_input_fails_its_checks(tmp_path):
    with pytest.raises(MissingFileError):
        flow(tmp_path / "absent.mp4", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_second_concurrent_run_is_refused(videos, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from motion4d.outputs import OutputFolder\n"
         f"with OutputFolder({str(out)!r}, 'c.json', {{}}, ()):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            flow(videos["first"], out)
    finally:
        holder.kill()
        holder.wait()
    assert flow(videos["first"], out).computed == 11  # the lock died with its process


def test_stale_temporaries_are_removed_at_start(videos, tmp_path):
    out = tmp_path / "out"
    flow(videos["first"], out)
    stale = [out / "forward" / ".000003.abcd1234.tmp.flo", out / ".flow_config.x.tmp.json"]
    for path in stale:
        path.write_bytes(b"half-written")
    flow(videos["first"], out)
    assert not any(path.exists() for path in stale)


def test_outputs_follow_the_umask(videos, tmp_path):
    previous = os.umask(0o027)
    try:
        out = tmp_path / "out"
        flow(videos["first"], out, formats=("flo", "png"))
    finally:
        os.umask(previous)
    modes = {oct(p.stat().st_mode & 0o777) for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME}
    assert modes == {oct(0o640)}


@pytest.mark.parametrize("kill_at_files", [3, 40])
def test_killed_runs_resume_to_identical_files(videos, tmp_path, kill_at_files):
    """SIGKILL a flow run part-way, rerun it: the folder ends byte-identical to an uninterrupted run,
    with no temporary file left."""
    clean = tmp_path / "clean"
    flow(videos["avi"], clean, formats=("flo", "png"))
    out = tmp_path / "killed"
    code = ("import motion\n"
            f"motion.estimate_flow({str(videos['avi'])!r}, model='dis', device='cpu', out_dir={str(out)!r}, "
            "formats=('flo', 'png'), progress=False, batch=1)\n")
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    # killed once that many flows are written: the pipeline's writer may be mid-file at that moment
    while len(list((out / "forward").glob("*.flo"))) < kill_at_files and time.monotonic() < deadline:
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    result = flow(videos["avi"], out, formats=("flo", "png"))
    assert result.computed + result.skipped == 119
    assert 0 < result.computed < 119, "the kill must land part-way through the run"
    assert not list(out.rglob(".*.tmp*"))
    for file in clean.rglob("*"):
        if file.is_file() and file.name not in ("flow_config.json", LOCK_NAME):
            assert (out / file.relative_to(clean)).read_bytes() == file.read_bytes(), file


def test_output_folder_checks_its_own_arguments(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        with OutputFolder(target, "c.json", {}, ()):
            pass
    with OutputFolder(tmp_path / "ok", "c.json", {"a": 1}, ("a",)) as folder:
        assert not folder.resumed
    (tmp_path / "ok" / "c.json").write_text("{not json")
    with pytest.raises(Exception, match="unreadable configuration"):
        with OutputFolder(tmp_path / "ok", "c.json", {"a": 1}, ("a",)):
            pass


def test_damaged_video_policies_warn_or_skip(tmp_path):
    from motion.sample_data import sample_video

    from .damage import corrupt

    noisy = corrupt(sample_video("carphone"), tmp_path / "noisy.mp4", 0.5, 2000)
    with pytest.warns(RuntimeWarning, match="concealed errors"):
        kept = motion.read_frames(noisy, on_damage="warn")
    with pytest.warns(RuntimeWarning, match="left out"):
        skipped = motion.read_frames(noisy, on_damage="skip")
    assert len(kept) == 120 and len(skipped) < len(kept)
    video = motion.open_video(noisy, on_damage="warn")
    with pytest.warns(RuntimeWarning):
        frames = list(video)
    assert video.damage and "concealed" in video.damage and len(frames) == 120
    assert np.array_equal(frames[0].image, kept[0])


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_parallel_runs_killed_at_random_points_resume_to_identical_files(videos, tmp_path, seed):
    """The pipeline with two workers and a writer thread (issue #19), SIGKILLed at random moments several
    times, then rerun to the end: after every kill each output present is complete (byte-identical to
    an uninterrupted run's), and the finished folder is byte-identical with no temporary file left."""
    formats = ("flo", "png", "occ", "conf")
    clean = tmp_path / "clean"
    flow(videos["avi"], clean, formats=formats, workers=2)
    expected = {f.relative_to(clean): f.read_bytes() for f in clean.rglob("*")
                if f.is_file() and f.name not in ("flow_config.json", LOCK_NAME)}
    out = tmp_path / "killed"
    code = ("import motion\n"
            f"motion.estimate_flow({str(videos['avi'])!r}, model='dis', device='cpu', out_dir={str(out)!r}, "
            f"formats={formats!r}, workers=2, progress=False)\n")
    rng = np.random.default_rng(seed)
    partial = []
    for _ in range(3):
        before = len(list(out.rglob("*.flo")))
        child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 60
        while len(list(out.rglob("*.flo"))) <= before and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        if child.poll() is not None:
            break
        child.send_signal(signal.SIGKILL)
        child.wait()
        present = [f for f in out.rglob("*") if f.is_file() and f.name not in ("flow_config.json", LOCK_NAME)
                   and ".tmp" not in f.name]
        for file in present:
            assert file.read_bytes() == expected[file.relative_to(out)], file
        complete = {k for k in range(119) if all(
            (out / f"{d}/{k:06d}.{e}").exists() for d, e in (("forward", "flo"), ("forward", "png"),
                                                             ("forward_occlusion", "png"), ("forward_confidence", "npy")))}
        partial.append(len(complete))
    assert partial and partial[0] < 119, "the first kill must land part-way through the run"
    result = flow(videos["avi"], out, formats=formats, workers=2)
    assert (result.computed, result.skipped) == (119 - partial[-1], partial[-1])  # exactly the unfinished pairs
    assert not list(out.rglob(".*.tmp*"))
    done = {f.relative_to(out): f.read_bytes() for f in out.rglob("*")
            if f.is_file() and f.name not in ("flow_config.json", LOCK_NAME)}
    assert done == expected
