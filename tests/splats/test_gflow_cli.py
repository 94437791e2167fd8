"""``motion4d reconstruct --method gflow VIDEO --out DIR`` with nothing else: outputs (PLY files that
open3d reads), resume, Ctrl-C in a real process, depth folders, bad input; ``--method gaussian-flow``
on a video with poses from the GFlow run or from its COLMAP files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from motion4d.cli import main

TINY = {"n_init": 600, "init_iterations": 10, "init_densify_at": [5], "camera_iterations": 5,
        "gaussian_iterations": 5}
ROOT = Path(__file__).resolve().parents[2]


def _texture_video(folder, t=3, h=32, w=40, depth_dir=None):
    """A smooth random texture panning 1.5 px per frame (a camera sliding sideways over a plane)."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur((rng.random((h, w + 4 * t, 3)) * 255).astype(np.uint8), (5, 5), 1.5)
    folder.mkdir()
    for i in range(t):
        shift = np.float32([[1, 0, -1.5 * i], [0, 1, 0]])
        frame = cv2.warpAffine(big, shift, (w, h), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame[..., ::-1])
    if depth_dir is not None:
        depth_dir.mkdir()
        for i in range(t):
            cv2.imwrite(str(depth_dir / f"{i:04d}.png"), np.full((h, w), 2500, np.uint16))  # 2.5 m in mm


def _poses(out: Path) -> list[str]:
    return [ln for ln in (out / "export" / "poses_tum.txt").read_text().splitlines() if not ln.startswith("#")]


@pytest.fixture(scope="module")
def gflow_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gflow_cli")
    video, out = root / "video", root / "run"
    _texture_video(video)
    argv = ["reconstruct", "--method", "gflow", str(video), "--out", str(out), "--config", json.dumps(TINY), "--quiet"]
    assert main(argv) == 0
    return video, out, argv


def test_plain_video_needs_nothing_else_and_writes_everything(gflow_run, capsys):
    _, out, _ = gflow_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["resumed_from_frame"] == 0 and summary["size"] == [40, 32]
    assert summary["psnr_mean"] > 20
    # a pure pan over a plane has no parallax: the prior says so and falls back to a plane
    assert summary["depth_prior"] == "constant" and "does not translate" in summary["depth_notice"]
    for name in ("scene.pt", "config.json", "gflow_run.json", "progress.json", "priors/flow.npz", "priors/depth.json",
                 "priors/depth/frame_00002.npy", "checkpoints/frame_00002.pt", "export/poses_tum.txt",
                 "export/colmap/cameras.txt", "export/tracks.csv", "export/tracks_3d.npz", "export/masks/00002.png",
                 "export/overview.png", "export/render.mp4"):
        assert (out / name).exists(), name
    assert json.loads((out / "progress.json").read_text()) == {"frames_done": 3, "frames": 3, "finished": True}
    assert len(_poses(out)) == 3


def test_exported_gaussians_open_in_open3d(gflow_run):
    o3d = pytest.importorskip("open3d")
    from splats.scene4d import Scene4D

    _, out, _ = gflow_run
    scene = Scene4D.load(out / "scene.pt")
    for t in range(3):
        cloud = o3d.io.read_point_cloud(str(out / "export" / "gaussians" / f"frame_{t:05d}.ply"))
        assert len(cloud.points) == len(scene.states[t]["means"]) > 0
        np.testing.assert_allclose(np.asarray(cloud.points), scene.states[t]["means"].numpy(), atol=1e-5)


def test_rerun_resumes_and_other_settings_are_refused(gflow_run, capsys):
    _, out, argv = gflow_run
    assert main(argv) == 0  # everything checkpointed: nothing left to fit
    assert json.loads((out / "summary.json").read_text())["resumed_from_frame"] == 3
    assert main(argv + ["--resize", "20"]) == 2  # another size in the same folder
    assert "different configuration" in capsys.readouterr().err


def test_interrupted_run_keeps_finished_frames_and_the_rerun_continues(tmp_path, capsys, monkeypatch):
    from splats import gflow

    video, out = tmp_path / "video", tmp_path / "run"
    _texture_video(video, t=4)
    argv = ["reconstruct", "--method", "gflow", str(video), "--out", str(out), "--config", json.dumps(TINY), "--quiet",
            "--no-video"]
    original = gflow._Run.fit_frame

    def fit_frame(self, t):  # Ctrl-C while frame 2 is being fitted
        if t == 2:
            raise KeyboardInterrupt
        return original(self, t)

    monkeypatch.setattr(gflow._Run, "fit_frame", fit_frame)
    assert main(argv) == 130
    assert "2/4 frames finished" in capsys.readouterr().err
    assert json.loads((out / "progress.json").read_text()) == {"frames_done": 2, "frames": 4, "finished": False}
    assert len(_poses(out)) == 2 and (out / "export" / "gaussians" / "frame_00001.ply").exists()
    assert not (out / "scene.pt").exists()
    monkeypatch.setattr(gflow._Run, "fit_frame", original)
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_frame"] == 2 and summary["frames"] == 4
    assert len(_poses(out)) == 4


@pytest.mark.slow
def test_ctrl_c_keeps_finished_frames_and_the_rerun_continues(tmp_path):
    video, out = tmp_path / "video", tmp_path / "run"
    _texture_video(video, t=5)
    slow = {**TINY, "gaussian_iterations": 150}  # ~1-3 s per frame: time to interrupt in the middle
    argv = [sys.executable, "-m", "motion4d", "reconstruct", "--method", "gflow", str(video), "--out", str(out),
            "--config", json.dumps(slow), "--no-progress", "--no-video", "--depth", "constant"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Ctrl-C handled as in a terminal even when this test runs where SIGINT is ignored (`nohup ... &`),
    # which a child would otherwise inherit
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not (out / "checkpoints" / "frame_00001.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted, rerun to resume" in err
    done = json.loads((out / "progress.json").read_text())["frames_done"]
    assert 2 <= done < 5
    assert len(_poses(out)) == done
    assert all((out / "export" / "gaussians" / f"frame_{t:05d}.ply").exists() for t in range(done))
    rerun = subprocess.run(argv + ["--quiet"], env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_frame"] == done and summary["frames"] == 5


def test_depth_folder_and_provider_names(tmp_path, capsys):
    video, depth, out = tmp_path / "video", tmp_path / "depth", tmp_path / "run"
    _texture_video(video, depth_dir=depth)
    base = ["reconstruct", "--method", "gflow", str(video), "--config", json.dumps(TINY), "--quiet", "--no-video"]
    assert main(base + ["--depth", str(depth), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["depth_prior"] == "folder"
    assert main(base + ["--depth", "constant", "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["depth_prior"] == "constant"
    capsys.readouterr()


@pytest.mark.parametrize("problem", ["unknown_depth", "depth_count", "poses_missing"])
def test_bad_input_is_reported(tmp_path, capsys, problem):
    video, depth, out = tmp_path / "video", tmp_path / "depth", tmp_path / "run"
    _texture_video(video, depth_dir=depth)
    argv = ["reconstruct", "--method", "gflow", str(video), "--out", str(out), "--quiet"]
    if problem == "unknown_depth":
        argv += ["--depth", "mono-magic"]
    elif problem == "depth_count":
        (depth / "0002.png").unlink()
        argv += ["--depth", str(depth)]
    else:
        argv[2] = "gaussian-flow"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and ("depth" in err or "--poses" in err)


@pytest.mark.parametrize("source", ["gflow_run", "colmap"])
def test_gaussian_flow_on_a_video_with_poses(gflow_run, tmp_path, capsys, source):
    video, run, _ = gflow_run
    poses = run if source == "gflow_run" else run / "export" / "colmap"
    out = tmp_path / "gf"
    argv = ["reconstruct", "--method", "gaussian-flow", str(video), "--poses", str(poses), "--out", str(out),
            "--iterations", "30", "--holdout", "2", "--quiet", "--no-video",
            "--config", json.dumps({"n_init": 500, "densify": {"start": 10, "stop": 20, "every": 10}})]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["poses"] == ("gflow" if source == "gflow_run" else "colmap")
    assert summary["frames"] == 3 and summary["heldout_frames"] == [1] and summary["iterations"] == 30
    assert summary["psnr_train"] > 12 and summary["psnr_heldout"] is not None
    assert (out / "export" / "frame_00002.ply").exists() and (out / "renders" / "compare.png").exists()
