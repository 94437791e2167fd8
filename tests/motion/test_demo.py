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


def test_error_map_colours_zero_and_large_errors_apart():
    from motion.demo import error_map

    gt = np.zeros((2, 8, 8), np.float32)
    exact, off = error_map(gt, gt, 3.0), error_map(gt + 5.0, gt, 3.0)
    assert (exact == exact[0, 0]).all() and (off == off[0, 0]).all()
    assert exact[0, 0, 2] > exact[0, 0, 0] and off[0, 0, 0] > off[0, 0, 2]  # blue at 0, red past the scale


def test_ground_truth_picture_shows_only_what_the_sequence_has():
    """Issue #17: a single-layer clip without occlusion drew two black columns and no tracks."""
    import motion
    from motion.synthetic import warp_image_sequence

    photo = motion.sample_data.photograph("astronaut")
    plain = warp_image_sequence(photo, T=3, motion="smooth", height=64, width=96, seed=0, max_speed=0.5, num_tracks=0)
    layered = motion.make_sequence(T=3, height=64, width=96, seed=0)
    narrow, wide = plain.preview(), layered.preview()
    # frame | flow | occluded (the borders leave the view) against frame | flow | occluded | layers | tracks
    assert plain.occlusion[:2].any() and int(plain.layer_ids.max()) == 0
    assert abs(narrow.shape[1] / wide.shape[1] - 3 / 5) < 0.02
