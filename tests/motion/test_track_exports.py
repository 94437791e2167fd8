"""Every track export read back by the anchor's own reader: py-motmetrics (MOT), TAP-Vid's layout and
metric definition (re-implemented here as an independent oracle), CoTracker tensors."""
from __future__ import annotations

import pickle

import motmetrics as mm
import numpy as np
import pytest
import torch

from motion.track_formats import TRACK_FORMATS
from motion.track_io import export_tracks, save_tracks
from motion.track_metrics import evaluate_tracks
from motion.tracks import Tracks
from motion4d.errors import InvalidArgumentError


def _two_movers_on_panning_camera(t: int = 12, seed: int = 0) -> tuple[Tracks, np.ndarray]:
    """Background grid moved by a camera pan + zoom, and two 4x4 point blocks moving their own way."""
    rng = np.random.default_rng(seed)
    gy, gx = np.mgrid[8:120:12, 8:160:12]
    background = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64)
    by, bx = np.mgrid[0:16:4, 0:16:4]
    block = np.stack([bx.ravel(), by.ravel()], 1).astype(np.float64)
    starts, velocities = [np.array([30.0, 40.0]), np.array([110.0, 80.0])], [np.array([3.0, 1.0]), np.array([-2.5, -2.0])]
    xy = np.zeros((t, len(background) + 2 * len(block), 2))
    centre = np.array([80.0, 64.0])
    for s in range(t):
        zoom, shift = 1.0 + 0.004 * s, np.array([1.5 * s, -0.8 * s])
        xy[s, :len(background)] = (background - centre) * zoom + centre + shift
        for k in range(2):
            part = slice(len(background) + k * len(block), len(background) + (k + 1) * len(block))
            xy[s, part] = starts[k] + velocities[k] * s + block
    xy += rng.normal(0, 0.05, xy.shape)
    truth = np.zeros(xy.shape[1], np.int64)
    truth[len(background):len(background) + len(block)] = 1
    truth[len(background) + len(block):] = 2
    visible = np.ones(xy.shape[:2], bool)
    return Tracks(xy=xy, visible=visible, image_size=(128, 200)), truth


def test_mot_export_groups_moving_tracks_and_reads_back_in_motmetrics(tmp_path):
    tracks, truth = _two_movers_on_panning_camera()
    path = save_tracks(tracks, tmp_path / "tracks.txt")  # no groups: the tracks are grouped into objects
    loaded = mm.io.loadtxt(str(path), fmt="mot15-2D")
    frames = loaded.index.get_level_values(0)
    assert sorted(set(frames)) == list(range(1, 13))  # 1-based frame numbers
    assert sorted(set(loaded.index.get_level_values(1))) == [1, 2]  # one id per mover, none for the background
    assert len(loaded) == 2 * 12  # one box per object per frame
    # py-motmetrics subtracts 1 from the stored coordinates: it gets our 0-based pixel-edge boxes back
    expected = tracks[truth > 0].boxes(truth[truth > 0])
    first = loaded.loc[(1, 1)]
    box = expected["box"][(expected["frame"] == 0) & (expected["group"] == 1)][0]
    assert np.allclose([first["X"], first["Y"], first["Width"], first["Height"]], box, atol=1e-3)
    # scored against the true grouping, the export is perfect
    gt = save_tracks(tracks[truth > 0], tmp_path / "gt.txt", groups=truth[truth > 0])
    from motion.objects.evaluate import evaluate_mot_files

    scores = evaluate_mot_files(gt, path)
    assert scores["mota"] == pytest.approx(1.0) and scores["idf1"] == pytest.approx(1.0)


def test_mot_rows_are_one_based(tmp_path):
    xy = np.array([[[0, 0], [3, 4]]], np.float32)
    tracks = Tracks(xy=xy, visible=np.ones((1, 2), bool), image_size=(10, 10))
    path = save_tracks(tracks, tmp_path / "one.txt", groups=np.array([1, 1]))
    assert path.read_text() == "1,1,1.000,1.000,4.000,5.000,1.0000,-1,-1,-1\n"  # pixel (0, 0) is MOT's (1, 1)


# ---------------------------------------------------------------- TAP-Vid


def _reference_compute_tapvid_metrics(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks, query_mode):
    """TAP-Vid's metric definition written out again, batch-first as in its evaluation code:
    ``query_points [B, N, 3]`` (t, y, x), ``*_occluded [B, N, T]``, ``*_tracks [B, N, T, 2]`` (x, y) in
    pixels of 256x256 frames. Returns the per-video values ``[B]``."""
    out = {}
    b, n, t = gt_occluded.shape
    evaluation = np.zeros((b, n, t), bool)
    for i in range(b):
        for j in range(n):
            q = int(round(query_points[i, j, 0]))
            for s in range(t):
                evaluation[i, j, s] = s > q if query_mode == "first" else s != q
    visible, pred_visible = ~gt_occluded, ~pred_occluded
    out["occlusion_accuracy"] = np.sum((visible == pred_visible) & evaluation, axis=(1, 2)) / np.sum(evaluation, axis=(1, 2))
    fractions, jaccards = [], []
    for threshold in (1, 2, 4, 8, 16):
        within = np.sum((pred_tracks - gt_tracks) ** 2, axis=-1) < threshold ** 2
        correct = within & visible
        fraction = np.sum(correct & evaluation, axis=(1, 2)) / np.sum(visible & evaluation, axis=(1, 2))
        true_positives = np.sum(correct & pred_visible & evaluation, axis=(1, 2))
        gt_positives = np.sum(visible & evaluation, axis=(1, 2))
        false_positives = np.sum((~visible | ~within) & pred_visible & evaluation, axis=(1, 2))
        fractions.append(fraction)
        jaccards.append(true_positives / (gt_positives + false_positives))
    out["average_pts_within_thresh"] = np.mean(fractions, axis=0)
    out["average_jaccard"] = np.mean(jaccards, axis=0)
    return out


def test_tapvid_pickle_has_the_released_layout_and_scores_like_the_reference(tmp_path):
    rng = np.random.default_rng(3)
    t, n, h, w = 8, 30, 48, 64
    gt_xy = rng.uniform(0, [w - 1, h - 1], (t, n, 2)).astype(np.float32)
    gt_vis = rng.random((t, n)) < 0.8
    gt_vis[0] = True
    query = np.stack([np.zeros(n), gt_xy[0, :, 0], gt_xy[0, :, 1]], 1).astype(np.float32)
    gt = Tracks(xy=gt_xy, visible=gt_vis, image_size=(h, w), query=query)
    pred = Tracks(xy=gt_xy + rng.normal(0, 1.5, gt_xy.shape), visible=rng.random((t, n)) < 0.8, image_size=(h, w))
    video = rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    files = {}
    for name, tracks in (("gt", gt), ("pred", pred)):
        files[name] = save_tracks(tracks, tmp_path / f"{name}.pkl", video=video, video_name="clip")
    data = {k: pickle.loads(p.read_bytes()) for k, p in files.items()}
    entry = data["gt"]["clip"]
    assert list(data["gt"]) == ["clip"]
    assert entry["video"].dtype == np.uint8 and entry["video"].shape == (t, h, w, 3)
    assert np.array_equal(entry["video"], video)
    assert entry["points"].shape == (n, t, 2) and entry["occluded"].shape == (n, t) and entry["occluded"].dtype == bool
    assert entry["points"].min() >= 0 and entry["points"].max() <= 1
    # TAP-Vid's evaluation: normalised points scaled to 256x256, queries from the first visible frame
    gt_occ = data["gt"]["clip"]["occluded"][None]
    gt_tracks = data["gt"]["clip"]["points"][None] * 256.0
    pred_tracks = data["pred"]["clip"]["points"][None] * 256.0
    pred_occ = data["pred"]["clip"]["occluded"][None]
    first = np.argmax(~gt_occ[0], axis=1)
    query_points = np.stack([first, np.zeros(n), np.zeros(n)], 1)[None]
    reference = _reference_compute_tapvid_metrics(query_points, gt_occ, gt_tracks, pred_occ, pred_tracks, "first")
    ours = evaluate_tracks(pred, gt)
    for key in ("occlusion_accuracy", "average_pts_within_thresh", "average_jaccard"):
        assert ours[key] == pytest.approx(float(reference[key][0]), abs=1e-6)
    # frames can be omitted, or read from the source video at the tracks' frames
    bare = pickle.loads(save_tracks(gt, tmp_path / "bare.pkl").read_bytes())
    assert list(bare) == ["bare"] and "video" not in bare["bare"]


def test_tapvid_reads_frames_from_a_video_path(tmp_path):
    import motion
    from motion.synthetic import make_sequence

    seq = make_sequence(T=5, height=32, width=48, seed=2, num_tracks=4)
    folder = tmp_path / "frames"
    for i, frame in enumerate(seq.frames):
        motion.write_image(folder / f"{i:03d}.png", frame)
    tracks = Tracks(xy=seq.tracks_xy[1:4], visible=seq.tracks_visible[1:4], image_size=(32, 48), frame_indices=[1, 2, 3])
    data = pickle.loads(save_tracks(tracks, tmp_path / "t.pkl", video=folder).read_bytes())
    assert list(data) == ["frames"] and np.array_equal(data["frames"]["video"], seq.frames[1:4])
    with pytest.raises(InvalidArgumentError):
        save_tracks(tracks, tmp_path / "bad.pkl", video=seq.frames)  # 5 frames for 3-frame tracks


# ---------------------------------------------------------------- CoTracker, names, repr


def test_cotracker_npz_holds_the_model_tensors(tmp_path):
    rng = np.random.default_rng(1)
    tracks = Tracks(xy=rng.uniform(0, 30, (6, 5, 2)), visible=rng.random((6, 5)) < 0.7, image_size=(32, 32))
    (path,) = export_tracks(tracks, tmp_path, ["cotracker"])
    assert path.name == "tracks.npz"
    with np.load(path) as data:
        pred_tracks, pred_visibility = torch.from_numpy(data["tracks"]), torch.from_numpy(data["visibility"])
    assert pred_tracks.shape == (1, 6, 5, 2) and pred_visibility.shape == (1, 6, 5)  # [B, T, N, 2], [B, T, N]
    assert torch.equal(pred_tracks[0], torch.from_numpy(tracks.xy)) and torch.equal(pred_visibility[0], torch.from_numpy(tracks.visible))


def test_one_name_per_format(tmp_path):
    rng = np.random.default_rng(2)
    tracks = Tracks(xy=rng.uniform(0, 30, (4, 3, 2)), visible=np.ones((4, 3), bool), image_size=(32, 32))
    paths = export_tracks(tracks, tmp_path, ["csv", "cotracker", "tapvid", "json"])
    assert [p.name for p in paths] == ["tracks.csv", "tracks.npz", "tracks.pkl", "tracks.json"]
    assert set(TRACK_FORMATS) == {"csv", "parquet", "cotracker", "tapvid", "mot", "json"}
    for alias in ("npz", "tracks_cotracker.npz"):
        with pytest.raises(InvalidArgumentError, match="cotracker"):
            export_tracks(tracks, tmp_path, [alias])


def test_tracks_repr_is_one_short_line():
    tracks = Tracks(xy=np.zeros((200, 5000, 2)), visible=np.ones((200, 5000), bool), image_size=(576, 768),
                    confidence=np.ones((200, 5000)), metadata={"model": "dis", "method": "chained flow"})
    text = repr(tracks)
    assert "\n" not in text and len(text) < 200
    assert text.startswith("Tracks(5000 tracks; 200 frames; 768x576; 100% visible")
    assert "with confidence" in text and "model='dis'" in text
