"""`make demo` end to end on a short clip: every promised output exists and is scored sensibly."""
from __future__ import annotations

import json

import numpy as np

import motion
from motion.demo import run_demo


def test_demo_writes_flow_tracks_and_pictures(tmp_path) -> None:
    summary = run_demo(tmp_path, frames=4, grid=48)
    for name in ("input.mp4", "ground_truth.png", "summary.png", "summary.json", "reynolds_plus.mp4",
                 "tracks/tracks.csv", "tracks/tracks.pkl", "tracks/overlay.mp4",
                 "flow_dis/forward_color.mp4"):
        assert (tmp_path / name).is_file(), name
    assert len(sorted((tmp_path / "flow_dis" / "forward").glob("*.flo"))) == 3
    # DIS recovers the known motion of the real photograph; tracks beat standing still by far
    assert summary["flow"]["dis"]["epe"] < 0.25 * summary["zero_flow_epe"]
    tracks = summary["tracks"]
    assert tracks["average_jaccard"] > tracks["zero_motion_average_jaccard"] + 0.3
    assert json.loads((tmp_path / "summary.json").read_text())["flow"]["dis"]["epe"] == summary["flow"]["dis"]["epe"]
    flow, valid = motion.read_flow(sorted((tmp_path / "flow_dis" / "forward").glob("*.flo"))[0])
    assert flow.shape[:2] == tuple(summary["size"]) and valid.all() and np.isfinite(flow).all()
