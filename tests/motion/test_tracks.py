"""Point tracks: chaining with forward-backward checks, TAP-Vid metrics, exporters and readers."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import motion
from motion.synthetic import make_sequence
from motion.track_io import (
    load_tracks,
    mot_to_tracks,
    read_mot,
    save_tracks,
)
from motion.track_metrics import evaluate_tracks, tapvid_metrics
from motion.track_video import write_tracks_video
from motion.tracking import ChainOptions, chain_flows, grid_queries, mask_queries, track_points
from motion.tracks import Tracks
from motion4d.errors import InputFileError, InvalidArgumentError

# ---------------------------------------------------------------- chaining


def test_constant_flow_chains_forward_backward_and_leaves_the_image():
    t, h, w = 6, 20, 30
    forward = torch.zeros(t - 1, 2, h, w)
    forward[:, 0] = 3.0  # everything moves 3 px right per frame
    backward = -forward
    query = np.array([[2, 10.0, 5.0], [0, 22.0, 8.0]], np.float32)
    xy, visible, conf = chain_flows(forward, backward, query)
    assert np.allclose(xy[:, 0, 0], 10 + 3 * (np.arange(t) - 2)) and np.allclose(xy[:, 0, 1], 5)
    assert visible[:, 0].all() and np.allclose(conf[:, 0], 1.0)
    # the second point is at x = 22, 25, 28, then would be 31 > 29: it left the image
    assert np.allclose(xy[:3, 1, 0], [22, 25, 28])
    assert visible[:3, 1].all() and not visible[3:, 1].any()
    assert np.allclose(xy[3:, 1, 0], 28) and (conf[3:, 1] == 0).all()


def test_inconsistent_flow_marks_occlusion():
    t, h, w = 4, 16, 16
    forward = torch.zeros(t - 1, 2, h, w)
    forward[:, 0] = 2.0
    backward = -forward.clone()
    backward[0, 0, :, 8:] = 0.0  # frame 1 -> 0 disagrees on the right half: occluded there in frame 1
    xy, visible, _ = chain_flows(forward, backward, np.array([[0, 7.0, 8.0], [0, 2.0, 8.0]], np.float32))
    assert visible[:, 1].all()  # lands at x=4 in frame 1: consistent
    assert visible[0, 0] and not visible[1, 0] and visible[2, 0]  # lands at x=9: inconsistent only in frame 1
    lost = chain_flows(forward, backward, np.array([[0, 7.0, 8.0]], np.float32), ChainOptions(max_occluded=0))[1]
    assert lost[:, 0].tolist() == [True, False, False, False]


def _zero_motion(seq, query):
    xy = np.repeat(query[None, :, 1:], seq.num_frames, axis=0)
    return Tracks(xy=xy, visible=np.ones(xy.shape[:2], bool), image_size=(seq.height, seq.width), query=query)


def test_chained_dis_tracks_reach_a_good_tapvid_score():
    scores = {"gt flow": [], "dis": [], "zero motion": []}
    for seed in (0, 1):
        seq = make_sequence(T=10, height=96, width=128, num_layers=2, seed=seed, num_tracks=150, max_speed=3.0)
        gt = Tracks(xy=seq.tracks_xy, visible=seq.tracks_visible, image_size=(seq.height, seq.width), query=seq.query)
        exact = track_points(flows=(seq.flow_forward, seq.flow_backward), queries=seq.query)
        dis = track_points(seq.frames, "dis", queries=seq.query, device="cpu", progress=False)
        for name, pred in (("gt flow", exact), ("dis", dis), ("zero motion", _zero_motion(seq, seq.query))):
            scores[name].append(evaluate_tracks(pred, gt))
    summary = {k: {m: np.mean([s[m] for s in v]) for m in ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy")}
               for k, v in scores.items()}
    print("\nTAP-Vid (first mode, 256x256 scale) on synthetic layered scenes:")
    for name, values in summary.items():
        print(f"  {name:12s} AJ {values['average_jaccard']:.3f}  <d_avg {values['average_pts_within_thresh']:.3f}"
              f"  OA {values['occlusion_accuracy']:.3f}")
    assert summary["gt flow"]["average_jaccard"] > 0.8
    assert summary["dis"]["average_jaccard"] > 0.6
    assert summary["dis"]["average_jaccard"] > summary["zero motion"]["average_jaccard"] + 0.25
    assert summary["dis"]["average_pts_within_thresh"] > 0.75


def test_queries_and_validation():
    q = grid_queries(10, 20, spacing=5, frame=1)
    assert q.shape == (8, 3) and (q[:, 0] == 1).all() and q[0, 1:].tolist() == [2.0, 2.0]
    mask = np.zeros((10, 20), bool)
    mask[:5, :10] = True
    assert len(grid_queries(10, 20, 5, mask=mask)) == 2
    assert len(mask_queries(mask)) == 50 and len(mask_queries(mask, max_points=7)) == 7
    flows = (np.zeros((2, 2, 10, 20), np.float32),) * 2
    with pytest.raises(InvalidArgumentError, match="outside"):
        track_points(flows=flows, queries=[[0, 25.0, 3.0]])
    with pytest.raises(InvalidArgumentError, match="frame indices"):
        track_points(flows=flows, queries=[[3, 5.0, 3.0]])
    tracks = track_points(flows=flows, grid=5)
    assert tracks.num_tracks == 8 and tracks.num_frames == 3


# ---------------------------------------------------------------- metrics


def _reference_tapvid(query, gt_occ, gt_xy, pred_occ, pred_xy, thresholds=(1, 2, 4, 8, 16)):
    """Explicit per-point loops over the TAP-Vid definitions ('first' mode)."""
    n, t = gt_occ.shape
    agree = evaluated = 0
    counts = {d: dict(tp=0, fp=0, gt_vis=0, within=0) for d in thresholds}
    for i, j in itertools.product(range(n), range(t)):
        if j <= query[i, 0]:
            continue
        evaluated += 1
        agree += pred_occ[i, j] == gt_occ[i, j]
        dist = np.hypot(*(pred_xy[i, j] - gt_xy[i, j]))
        for d in thresholds:
            c = counts[d]
            if not gt_occ[i, j]:
                c["gt_vis"] += 1
                c["within"] += dist < d
                c["tp"] += (dist < d) and not pred_occ[i, j]
            if not pred_occ[i, j] and (gt_occ[i, j] or dist >= d):
                c["fp"] += 1
    jac = [counts[d]["tp"] / (counts[d]["gt_vis"] + counts[d]["fp"]) for d in thresholds]
    within = [counts[d]["within"] / counts[d]["gt_vis"] for d in thresholds]
    return agree / evaluated, float(np.mean(within)), float(np.mean(jac))


def test_tapvid_metrics_match_explicit_definition(rng):
    n, t = 12, 9
    gt_xy = rng.uniform(0, 50, (n, t, 2))
    pred_xy = gt_xy + rng.normal(0, 4, (n, t, 2))
    gt_occ = rng.random((n, t)) < 0.25
    pred_occ = rng.random((n, t)) < 0.25
    query = np.stack([rng.integers(0, t - 1, n), rng.uniform(0, 50, n), rng.uniform(0, 50, n)], axis=1)
    metrics = tapvid_metrics(query, gt_occ, gt_xy, pred_occ, pred_xy)
    oa, within, aj = _reference_tapvid(query, gt_occ, gt_xy, pred_occ, pred_xy)
    assert metrics["occlusion_accuracy"] == pytest.approx(oa)
    assert metrics["average_pts_within_thresh"] == pytest.approx(within)
    assert metrics["average_jaccard"] == pytest.approx(aj)
    perfect = tapvid_metrics(query, gt_occ, gt_xy, gt_occ, gt_xy)
    assert perfect["average_jaccard"] == 1.0 and perfect["occlusion_accuracy"] == 1.0
    # a hand-checked case: one track, 3 evaluated frames
    single = tapvid_metrics(np.array([[0, 0, 0]]), np.array([[False, False, True, False]]),
                            np.zeros((1, 4, 2)), np.array([[False, False, False, True]]),
                            np.array([[[0, 0], [0, 1.5], [0, 0], [0, 0]]]), thresholds=(1, 2))
    # frame 1: visible both, dist 1.5 -> TP at 2 only (FP at 1); frame 2: predicted visible, gt occluded -> FP;
    # frame 3: gt visible, predicted occluded -> FN
    assert single["jaccard_1"] == pytest.approx(0 / (2 + 2)) and single["jaccard_2"] == pytest.approx(1 / (2 + 1))
    assert single["occlusion_accuracy"] == pytest.approx(1 / 3)


# ---------------------------------------------------------------- import / export


@pytest.fixture
def sample_tracks(rng):
    t, n = 5, 7
    xy = rng.uniform(0, 40, (t, n, 2)).astype(np.float32)
    visible = rng.random((t, n)) < 0.8
    query = np.stack([np.zeros(n), xy[0, :, 0], xy[0, :, 1]], axis=1).astype(np.float32)
    visible[0] = True
    return Tracks(xy=xy, visible=visible, confidence=rng.random((t, n)).astype(np.float32), ids=np.arange(10, 10 + n),
                  frame_indices=np.arange(3, 3 + 2 * t, 2), times=np.arange(t) / 12.5, image_size=(48, 64), query=query)


def _assert_same(a: Tracks, b: Tracks, exact_xy: bool = True):
    tol = 0 if exact_xy else 1e-5
    assert np.allclose(a.xy, b.xy, atol=tol, rtol=0)
    assert np.array_equal(a.visible, b.visible)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.frame_indices, b.frame_indices)
    assert a.image_size == b.image_size


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".npz", ".json"])
def test_round_trip_full_formats(tmp_path, sample_tracks, ext):
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    path = sample_tracks.save(tmp_path / f"tracks{ext}")
    back = Tracks.load(path)
    _assert_same(sample_tracks, back)
    assert np.array_equal(back.confidence, sample_tracks.confidence)
    assert np.array_equal(back.query, sample_tracks.query)
    assert np.allclose(back.times, sample_tracks.times)


def test_tapvid_round_trip_and_layout(tmp_path, sample_tracks):
    data = sample_tracks.to_tapvid()
    assert data["points"].shape == (7, 5, 2) and data["occluded"].shape == (7, 5)
    assert np.allclose(data["points"][:, :, 0], (sample_tracks.xy[:, :, 0].T + 0.5) / 64)
    assert np.allclose(data["query_points"][:, 1], (sample_tracks.query[:, 2] + 0.5) / 48)  # (t, y, x)
    back = load_tracks(save_tracks(sample_tracks, tmp_path / "t.pkl"))
    _assert_same(sample_tracks, back, exact_xy=False)
    assert np.allclose(back.query, sample_tracks.query, atol=1e-4)
    cot = sample_tracks.to_cotracker()
    assert cot["tracks"].shape == (1, 5, 7, 2) and cot["visibility"].shape == (1, 5, 7) and cot["queries"].shape == (1, 7, 3)


def test_mot_boxes(tmp_path):
    xy = np.array([[[1, 2], [5, 8], [20, 20]], [[2, 2], [6, 9], [21, 22]]], np.float32)
    visible = np.array([[True, True, True], [True, False, True]])
    tracks = Tracks(xy=xy, visible=visible, image_size=(30, 30), frame_indices=[0, 1])
    path = save_tracks(tracks, tmp_path / "gt.txt", groups=np.array([1, 1, 2]))
    table = read_mot(path)
    assert table["frame"].tolist() == [1, 1, 2, 2] and table["id"].tolist() == [1, 2, 1, 2]
    assert np.allclose(table["box"][0], [1, 2, 5, 7])  # the pixels of points (1,2) and (5,8)
    assert np.allclose(table["box"][2], [2, 2, 1, 1])  # only the visible point of group 1 in frame 2
    centres = mot_to_tracks(table, image_size=(30, 30))
    assert np.allclose(centres.xy[0, 0], [3, 5]) and centres.visible.all()
    with pytest.raises(InvalidArgumentError):
        save_tracks(tracks, tmp_path / "bad.txt", groups=np.array([0, 1, 1]))


def test_reader_errors(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputFileError):
        load_tracks(bad)
    bad_json = tmp_path / "x.json"
    bad_json.write_text("{\"hello\": 1}")
    with pytest.raises(InputFileError):
        load_tracks(bad_json)
    with pytest.raises(motion.MissingFileError):
        load_tracks(tmp_path / "missing.csv")
    with pytest.raises(InvalidArgumentError):
        load_tracks(bad, format="xml")


def test_overlay_video(tmp_path):
    seq = make_sequence(T=4, height=32, width=48, seed=1, num_tracks=5)
    tracks = Tracks(xy=seq.tracks_xy, visible=seq.tracks_visible, image_size=(32, 48))
    path = write_tracks_video(tracks, seq.frames, tmp_path / "overlay.mp4", fps=5)
    frames = motion.read_frames(path)
    assert frames.shape == (4, 32, 48, 3)
    assert np.abs(frames.astype(int) - seq.frames.astype(int)).mean() > 0.5  # something was drawn


def test_streaming_tracking_matches_in_memory_chaining():
    seq = make_sequence(T=6, height=40, width=56, seed=8, num_tracks=30)
    flows = motion.estimate_flow(seq.frames, "dis", device="cpu", backward=True, progress=False)
    query = seq.query.copy()
    streamed = track_points(seq.frames, "dis", queries=query, device="cpu", batch=2, progress=False)
    in_memory = track_points(flows=(flows.forward, flows.backward), queries=query)
    assert np.allclose(streamed.xy, in_memory.xy, atol=1e-5)
    assert np.array_equal(streamed.visible, in_memory.visible)
    assert np.allclose(streamed.confidence, in_memory.confidence, atol=1e-5)
    assert streamed.frame_indices.tolist() == list(range(6)) and streamed.times is not None
    later = query.copy()
    later[::2, 0] = 3  # queries on a later frame chain backwards too
    mixed = track_points(seq.frames, "dis", queries=later, device="cpu", progress=False)
    reference = track_points(flows=(flows.forward, flows.backward), queries=later)
    assert np.allclose(mixed.xy, reference.xy, atol=1e-5) and np.allclose(mixed.xy[3, ::2], later[::2, 1:])
    grid = track_points(seq.frames, "dis", grid=8, device="cpu", progress=False)
    assert grid.num_tracks == 5 * 7 and grid.num_frames == 6


def test_container_selection_and_validation(sample_tracks):
    sub = sample_tracks[[0, 2]]
    assert sub.num_tracks == 2 and sub.ids.tolist() == [10, 12]
    assert np.array_equal(sub.xy, sample_tracks.xy[:, [0, 2]]) and np.array_equal(sub.query, sample_tracks.query[[0, 2]])
    assert sample_tracks[sample_tracks.ids > 14].ids.tolist() == [15, 16]
    inside = sample_tracks.inside_image()
    assert inside.shape == (5, 7) and inside.all()  # the sample positions lie in [0, 40] of a 64x48 image
    with pytest.raises(motion.ShapeError):
        Tracks(xy=np.zeros((3, 2, 2)), visible=np.zeros((3, 3), bool), image_size=(4, 4))
    with pytest.raises(InvalidArgumentError):
        Tracks(xy=np.zeros((3, 2, 2)), visible=np.zeros((3, 2), bool), image_size=(4, 4), ids=[1, 1])
