"""``motion4d reconstruct --method gflow VIDEO --depth DIR --out DIR``: outputs, resume, errors."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from motion4d.cli import main

TINY = {"n_init": 600, "init_iterations": 10, "init_densify_at": [5], "camera_iterations": 5,
        "gaussian_iterations": 5}


def _texture_video(folder, depth_dir, t=3, h=32, w=40):
    """A smooth random texture panning 1.5 px per frame (a camera sliding sideways over a plane)."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur((rng.random((h, w + 10, 3)) * 255).astype(np.uint8), (5, 5), 1.5)
    folder.mkdir()
    depth_dir.mkdir()
    for i in range(t):
        shift = np.float32([[1, 0, -1.5 * i], [0, 1, 0]])
        frame = cv2.warpAffine(big, shift, (w, h), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame[..., ::-1])
        cv2.imwrite(str(depth_dir / f"{i:04d}.png"), np.full((h, w), 2500, np.uint16))  # 2.5 m in mm


def test_cli_reconstruct_gflow_writes_outputs_and_resumes(tmp_path, capsys):
    video, depth, out = tmp_path / "video", tmp_path / "depth", tmp_path / "run"
    _texture_video(video, depth)
    argv = ["reconstruct", "--method", "gflow", str(video), "--depth", str(depth), "--out", str(out),
            "--config", json.dumps(TINY), "--quiet", "--intrinsics", "40,40,19.5,15.5"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["resumed_from_frame"] == 0
    assert summary["psnr_mean"] > 20
    for name in ("scene.pt", "config.json", "gflow_config.json", "checkpoints/frame_00002.pt",
                 "export/poses_tum.txt", "export/colmap/cameras.txt", "export/tracks.csv", "export/tracks_3d.npz",
                 "export/masks/00002.png", "export/gaussians/frame_00000.ply", "export/render.mp4"):
        assert (out / name).exists(), name
    assert main(argv) == 0  # everything checkpointed: nothing left to fit
    assert json.loads((out / "summary.json").read_text())["resumed_from_frame"] == 3
    capsys.readouterr()


@pytest.mark.parametrize("problem", ["no_depth", "depth_count"])
def test_cli_reconstruct_gflow_reports_bad_input(tmp_path, capsys, problem):
    video, depth, out = tmp_path / "video", tmp_path / "depth", tmp_path / "run"
    _texture_video(video, depth)
    argv = ["reconstruct", "--method", "gflow", str(video), "--out", str(out), "--quiet"]
    if problem == "depth_count":
        (depth / "0002.png").unlink()
        argv += ["--depth", str(depth)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and ("depth" in err)
