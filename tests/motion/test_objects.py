"""Objects from motion: camera fit, track grouping, ids over time, and the targets against the
baselines on sequences with exact boxes made from real images (small scale here, full in slow tests)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import motion
from motion.objects import (
    Objects,
    background_subtraction_objects,
    detect_objects,
    fit_camera_motion,
    frame_difference_objects,
    group_tracks,
    make_object_sequence,
    mot_metrics,
)
from motion.objects.camera import apply_homography
from motion.objects.sequences import real_video_path
from motion.track_video import write_objects_video, write_tracks_video


def test_camera_fit_recovers_the_homography_despite_movers():
    rng = np.random.default_rng(0)
    truth = np.array([[1.01, 0.02, 3.0], [-0.015, 0.99, -2.0], [1e-5, -2e-5, 1.0]])
    source = rng.uniform(0, 300, (400, 2))
    target = apply_homography(truth, source) + rng.normal(0, 0.1, (400, 2))
    target[:120] += rng.uniform(3, 10, (120, 2))  # 30 % movers
    fit = fit_camera_motion(source, target)
    probe = rng.uniform(0, 300, (50, 2))
    assert np.abs(apply_homography(fit.matrix, probe) - apply_homography(truth, probe)).max() < 0.2
    assert not fit.inliers[:120].any() and fit.inliers[120:].mean() > 0.95
    static = fit_camera_motion(source, source, "none")
    assert np.array_equal(static.matrix, np.eye(3))


def test_group_tracks_finds_the_movers_on_a_panning_camera():
    from tests.motion.test_track_exports import _two_movers_on_panning_camera

    tracks, truth = _two_movers_on_panning_camera()
    labels = group_tracks(tracks)
    assert np.array_equal(labels == 0, truth == 0)  # the whole background, and only it, is static
    for k in (1, 2):
        assert len(np.unique(labels[truth == k])) == 1  # each mover is one object
    assert labels[truth == 1][0] != labels[truth == 2][0]
    # without removing the camera motion the panning background would be "moving"
    assert (group_tracks(tracks, camera="none") > 0).mean() > 0.9


def _scores(seq, found):
    return mot_metrics(seq.truth, found)


def test_static_camera_beats_both_baselines_on_idf1():
    seq = make_object_sequence("rocket", "static", num_frames=30, num_objects=3, seed=21)
    ours = _scores(seq, detect_objects(seq.frames, device="cpu"))
    mog2 = _scores(seq, background_subtraction_objects(seq.frames))
    diff = _scores(seq, frame_difference_objects(seq.frames))
    assert ours["idf1"] > mog2["idf1"] and ours["idf1"] > diff["idf1"]
    assert ours["mota"] > 0.4


def test_moving_camera_still_boxes_the_movers():
    seq = make_object_sequence("Urban2", "moving", num_frames=30, num_objects=3, seed=22)
    found = detect_objects(seq.frames, device="cpu")
    ours = _scores(seq, found)
    mog2 = _scores(seq, background_subtraction_objects(seq.frames))
    assert mog2["mota"] < -1  # background subtraction boxes the moving background
    assert ours["mota"] > mog2["mota"] + 2 and ours["num_false_positives"] < mog2["num_false_positives"] / 5
    # the masks lie on the movers, not on the background
    on_movers = (found.masks > 0) & (seq.truth.masks > 0)
    assert on_movers.sum() > 0.6 * (found.masks > 0).sum()


def _crossing_sequence(num_frames: int = 36) -> tuple[np.ndarray, Objects]:
    """Two real patches crossing on a real static background, the front one hiding the other."""
    background = cv2.resize(motion.objects.sequences.real_image("coffee"), (240, 160))
    patches = [motion.objects.sequences.real_image(n) for n in ("chelsea", "astronaut")]
    patches = [cv2.resize(p, (36, 36), interpolation=cv2.INTER_AREA) for p in patches]
    rng = np.random.default_rng(0)
    frames, rows = [], []
    for t in range(num_frames):
        image = background.astype(np.float32).copy()
        for k, (x, y) in enumerate([(20 + 5 * t, 60), (200 - 5 * t, 66)]):
            image[y:y + 36, x:x + 36] = patches[k]
            rows.append((t, k + 1, [x, y, 36, 36]))
        frames.append(np.clip(image + rng.normal(0, 1.5, image.shape), 0, 255).astype(np.uint8))
    truth = Objects(frame=[r[0] for r in rows], ids=[r[1] for r in rows], boxes=[r[2] for r in rows],
                    num_frames=num_frames, image_size=(160, 240))
    return np.stack(frames), truth


def test_front_object_keeps_its_id_through_a_crossing():
    frames, truth = _crossing_sequence()
    found = detect_objects(frames, device="cpu")
    scores = mot_metrics(truth, found)
    assert scores["mota"] > 0.7 and scores["mostly_tracked"] == 2
    # the patch in front (entering from the right) has one id before, during and after the contact
    ids, boxes = found.in_frame(3)
    front = int(ids[np.argmax(boxes[:, 0])])
    for t in (12, 18, 24, 33):
        ids, boxes = found.in_frame(t)
        true_box = truth.in_frame(t)[1][1]
        from motion.objects import box_iou

        assert front in ids.tolist() and box_iou(boxes[ids == front], true_box[None])[0, 0] > 0.5, t


def test_objects_files_and_overlays(tmp_path):
    seq = make_object_sequence("Grove3", "static", num_frames=12, num_objects=2, seed=5)
    found = detect_objects(seq.frames, device="cpu")
    assert found.masks.shape == (12, 240, 320)
    back = Objects.load_mot(found.save_mot(tmp_path / "o.txt"), image_size=(240, 320), num_frames=12)
    assert np.array_equal(back.ids, found.ids) and np.allclose(back.boxes, found.boxes, atol=1e-3)
    written = found.save_masks(tmp_path / "masks")
    assert len(written) == 12
    assert np.array_equal(cv2.imread(str(written[6]), cv2.IMREAD_UNCHANGED), found.masks[6])
    video = write_objects_video(found, seq.frames, tmp_path / "o.mp4", fps=5, progress=False)
    assert motion.read_frames(video).shape == (12, 240, 320, 3)
    summary = json.loads(found.save_summary(tmp_path / "o.json").read_text())
    assert summary["num_objects"] == found.num_objects
    assert "Objects(" in repr(found) and "\n" not in repr(found)


def test_tracks_overlay_fades_static_points_and_boxes_movers(tmp_path):
    from tests.motion.test_track_exports import _two_movers_on_panning_camera

    tracks, truth = _two_movers_on_panning_camera(t=4)
    frames = np.full((4, 128, 200, 3), 40, np.uint8)
    outputs = {}
    for style in ("fade", "hide", "show"):
        path = write_tracks_video(tracks, frames, tmp_path / f"{style}.mp4", fps=5, static=style, progress=False)
        outputs[style] = motion.read_frames(path).astype(int)
    x, y = np.round(tracks.xy[2, 0]).astype(int)  # a background point
    assert abs(outputs["hide"][2, y, x] - 40).max() < 12  # hidden
    faded = outputs["fade"][2, y, x]
    assert faded.mean() > 60 and np.ptp(faded) < 25  # a grey dot
    assert np.ptp(outputs["show"][2, y - 1:y + 2, x - 1:x + 2], axis=-1).max() > 60  # a coloured dot
    # the movers' boxes are drawn in the fade / hide styles only
    box = tracks[truth == 1].boxes()["box"][2]
    edge = outputs["fade"][2, int(box[1]) - 1:int(box[1] + box[3]) + 1, int(box[0]) - 2:int(box[0]) + 1]
    assert np.ptp(edge, axis=-1).max() > 60


def test_cli_objects_writes_boxes_masks_overlay_and_summary(tmp_path):
    import motmetrics as mm

    from motion4d.cli import objects as cli
    from motion4d.cli import subcommand_parser

    seq = make_object_sequence("Grove3", "static", num_frames=10, num_objects=2, seed=6)
    source = motion.write_video(tmp_path / "clip.mp4", seq.frames, fps=10, crf=0)
    parser = subcommand_parser("objects")
    out = tmp_path / "out"
    args = parser.parse_args([str(source), "--out", str(out), "--no-progress", "--device", "cpu"])
    assert cli.run(args) == 0
    boxes = mm.io.loadtxt(str(out / "objects.txt"), fmt="mot15-2D")
    assert len(boxes) > 0 and boxes.index.get_level_values(0).min() >= 1
    assert len(list((out / "masks").glob("*.png"))) == 10
    assert motion.read_frames(out / "objects_overlay.mp4").shape == (10, 240, 320, 3)
    summary = json.loads((out / "objects.json").read_text())
    assert summary["num_objects"] == len(set(boxes.index.get_level_values(1)))


# ---------------------------------------------------------------- slow: full scale


@pytest.mark.slow
def test_report_set_targets():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_objects", Path(__file__).resolve().parents[2] / "bench" / "objects.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run(bench.REPORT, frames=60, objects=4)  # the configuration of the reported table

    def mean(camera, method, key):
        return np.mean([r[key] for r in rows if r["camera"] == camera and r["method"] == method])

    for baseline in ("MOG2 + IoU", "frame diff + IoU"):
        assert mean("static", "objects (ours)", "idf1") > mean("static", baseline, "idf1")
    assert mean("moving", "objects (ours)", "mota") > 0
    for name in sorted({r["sequence"] for r in rows if r["camera"] == "moving"}):
        by = {r["method"]: r for r in rows if r["sequence"] == name}
        assert by["objects (ours)"]["mota"] > by["MOG2 + IoU"]["mota"] + 1, name


@pytest.mark.slow
def test_real_street_video_walker_is_one_object():
    path = real_video_path("bikes")
    found = detect_objects(path, device="cpu", start=187, stop=242)  # the shot of a walker passing a parked bike
    lifetimes = found.lifetimes()
    longest = max(lifetimes, key=lifetimes.get)
    assert lifetimes[longest] >= 20  # one id follows the walker through the shot
    boxed = {int(t) for t in found.frame[found.ids == longest]}
    assert sum(lifetimes.values()) - lifetimes[longest] < lifetimes[longest]  # fragments are short-lived
    assert len(boxed) == lifetimes[longest]
