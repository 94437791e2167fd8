"""`motion4d flow | encode | track` run in-process on a small synthetic video."""
from __future__ import annotations

import json

import numpy as np
import pytest

import motion
from motion.models.opencv_flow import DISEngine
from motion.synthetic import make_sequence
from motion.video_writer import write_video
from motion4d.cli import main


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    seq = make_sequence(T=9, height=48, width=64, seed=5, num_tracks=20)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, seq.frames, fps=10, crf=0)
    return path


def test_flow_resumes_after_interruption(clip, tmp_path, monkeypatch, capsys):
    out = tmp_path / "flow"
    calls = []
    original = DISEngine.flow

    def counting(self, a, b):
        calls.append(1)
        if interrupt_after is not None and len(calls) > interrupt_after:
            raise KeyboardInterrupt
        return original(self, a, b)

    monkeypatch.setattr(DISEngine, "flow", counting)
    argv = ["flow", str(clip), "--model", "dis", "--out", str(out), "--format", "flo,png", "--workers", "1",
            "--no-progress"]
    interrupt_after = 4  # dies computing pair 4
    assert main(argv) == 130  # interrupted: a message, status 130, finished pairs kept
    assert "interrupted, rerun to resume" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "forward").glob("*.flo")) == [f"{k:06d}.flo" for k in range(4)]
    calls.clear()
    interrupt_after = None
    assert main(argv) == 0
    assert len(calls) == 4  # pairs 4..7 only
    assert "4 pairs computed, 4 already done" in capsys.readouterr().out
    flow, valid = motion.read_flow(out / "forward" / "000007.flo")
    assert flow.shape == (48, 64, 2) and valid.all()
    config = json.loads((out / "flow_config.json").read_text())
    assert config["model"] == "dis" and config["formats"] == ["flo", "png"] and config["workers"] == 1


def test_flow_reports_bad_input(tmp_path, capsys):
    assert main(["flow", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["flow", str(tmp_path), "--out", str(tmp_path / "o"), "--format", "gif", "--no-progress"]) == 2


def test_encode_rgb_video_and_hsv_pngs(clip, tmp_path):
    video = tmp_path / "enc.mp4"
    assert main(["encode", str(clip), "--rgb", "--out", str(video), "--no-progress", "--batch", "3"]) == 0
    assert motion.read_frames(video).shape == (8, 48, 64, 3)
    pngs = tmp_path / "rgb"
    assert main(["encode", str(clip), "--out", str(pngs), "--no-progress", "--normalize", "fixed"]) == 0
    frames = motion.read_frames(pngs)
    source = motion.read_frames(clip)
    grey = source[:-1] @ np.array([0.299, 0.587, 0.114])
    assert frames.shape == (8, 48, 64, 3)
    assert np.abs(frames[..., 2].astype(float) - grey).max() <= 1  # B = intensity of the source frame
    assert frames[..., 0].max() > 50 and frames[..., 1].max() > 50  # |v_o| and |v_r| respond to the motion
    config = json.loads((tmp_path / "enc.mp4.json").read_text())
    assert config["channels"] == "R=|v_o|, G=|v_r|, B=intensity" and config["encoder"]["normalize"] == "percentile"
    folder = tmp_path / "hsv"
    assert main(["encode", str(clip), "--hsv", "v_r", "--out", str(folder), "--max-frames", "3", "--no-progress"]) == 0
    assert sorted(p.name for p in folder.glob("*.png")) == ["000000.png", "000001.png"]


def test_track_exports_and_overlay(clip, tmp_path):
    queries = tmp_path / "q.csv"
    queries.write_text("t,x,y\n0,10,12\n2,30.5,20\n")
    out = tmp_path / "tracks"
    argv = ["track", str(clip), "--out", str(out), "--format", "csv,cotracker,tapvid,mot,json", "--queries", str(queries),
            "--overlay", "--no-progress"]
    assert main(argv) == 0
    tracks = motion.Tracks.load(out / "tracks.csv")
    assert tracks.num_tracks == 2 and tracks.num_frames == 9 and tracks.image_size == (48, 64)
    assert np.allclose(tracks.xy[0, 0], [10, 12]) and np.allclose(tracks.xy[2, 1], [30.5, 20])
    for name in ("tracks.npz", "tracks.pkl", "tracks.json"):
        assert np.allclose(motion.Tracks.load(out / name).xy, tracks.xy, atol=1e-4)
    # MOT boxes are moving objects now (issue #23): two query points on this clip form none
    assert (out / "tracks.txt").read_text() == ""
    assert motion.read_frames(out / "tracks_overlay.mp4").shape == (9, 48, 64, 3)
    assert json.loads((out / "track_config.json").read_text())["num_tracks"] == 2
    # another configuration into the same folder is refused, then replaces the earlier outputs with --overwrite
    assert main(["track", str(clip), "--out", str(out), "--grid", "16", "--no-progress", "--max-frames", "4"]) == 2
    assert main(["track", str(clip), "--out", str(out), "--grid", "16", "--no-progress", "--max-frames", "4",
                 "--overwrite"]) == 0
    assert motion.Tracks.load(out / "tracks.csv").num_tracks == 12
    assert not (out / "tracks.pkl").exists() and not (out / "tracks_overlay.mp4").exists()


def test_flow_writes_occlusion_and_confidence_with_workers(clip, tmp_path, capsys):
    out = tmp_path / "flow"
    argv = ["flow", str(clip), "--model", "farneback", "--out", str(out), "--format", "flo,occ,conf", "--workers", "2",
            "--backward", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "8 pairs computed" in printed and "stages (items per busy second): decode" in printed
    for folder, ext in (("forward", "flo"), ("forward_occlusion", "png"), ("forward_confidence", "npy"),
                        ("backward_occlusion", "png"), ("backward_confidence", "npy")):
        assert sorted(p.name for p in (out / folder).iterdir()) == [f"{k:06d}.{ext}" for k in range(8)], folder
    confidence = np.load(out / "forward_confidence" / "000003.npy")
    assert confidence.dtype == np.float32 and 0 <= confidence.min() and confidence.max() <= 1
    assert main(["flow", str(clip), "--out", str(tmp_path / "o"), "--workers", "none", "--no-progress"]) == 2
    assert "--workers must be a positive integer or auto" in capsys.readouterr().err


def test_track_takes_workers(clip, tmp_path):
    out = tmp_path / "tracks"
    assert main(["track", str(clip), "--out", str(out), "--grid", "16", "--workers", "2", "--no-progress"]) == 0
    assert (out / "tracks.csv").exists()
