"""The training-free depth prior (two-view geometry on the video's flow) and the edge-aware fill,
checked against real depth: scikit-image's Middlebury motorcycle photograph and its stereo depth,
seen by a virtual camera on a known path (:mod:`splats.reprojected_scene`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")

import motion  # noqa: E402
from motion4d.errors import InvalidArgumentError, ShapeError  # noqa: E402
from splats.depth_fill import edge_aware_fill  # noqa: E402
from splats.depth_prior import pair_geometry, two_view_depth  # noqa: E402
from splats.epipolar import rigid_flow  # noqa: E402
from splats.reprojected_scene import interpolate_pose, reprojected_video  # noqa: E402


def _abs_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean |d - d*| / d* after one median scale for the whole video (monocular depth has no scale)."""
    scale = np.median(gt) / np.median(pred)
    return float(np.mean(np.abs(pred * scale - gt) / gt))


@pytest.fixture(scope="module")
def clip():
    video = reprojected_video(n_frames=6, long_side=128, seed=0)
    flow = motion.estimate_flow(video.frames, model="dis", backward=True, progress=False)
    return video, np.asarray(flow.forward), np.asarray(flow.backward)


# ------------------------------------------------------------------ edge-aware fill
def test_fill_keeps_depth_edges_at_image_edges():
    h, w = 40, 60
    image = np.zeros((h, w, 3), np.uint8)
    image[:, 30:] = 200  # an image edge at x = 30
    truth = np.where(np.arange(w)[None] < 30, 1.0, 3.0).repeat(h, 0)
    confidence = np.zeros((h, w))
    rng = np.random.default_rng(0)
    confidence[rng.integers(0, h, 12), rng.integers(0, 25, 12)] = 1.0  # samples far from the edge only
    confidence[rng.integers(0, h, 12), rng.integers(35, w, 12)] = 1.0
    guided = edge_aware_fill(truth, confidence, image)
    flat = edge_aware_fill(truth, confidence, np.zeros_like(image))  # the same solve without a guide
    assert np.abs(guided - truth).max() < 0.05
    assert np.abs(flat - truth).max() > 0.5  # without the image the step is smeared across the gap


def test_fill_propagates_a_slanted_plane_from_sparse_samples():
    h, w = 48, 64
    ys, xs = np.mgrid[0:h, 0:w]
    inverse = 0.2 + 0.004 * xs + 0.002 * ys  # inverse depth of a plane is affine in the image
    confidence = (np.random.default_rng(1).random((h, w)) < 0.05).astype(float)
    image = (np.random.default_rng(2).random((h, w, 3)) * 30 + 100).astype(np.uint8)  # texture, no edges
    filled = edge_aware_fill(inverse, confidence, image)
    assert np.mean(np.abs(filled - inverse) / inverse) < 0.02


def test_fill_rejects_bad_inputs():
    with pytest.raises(InvalidArgumentError):
        edge_aware_fill(np.ones((4, 4)), np.zeros((4, 4)), np.zeros((4, 4, 3)))
    with pytest.raises(ShapeError):
        edge_aware_fill(np.ones((4, 4)), np.ones((4, 5)), np.zeros((4, 4, 3)))
    with pytest.raises(InvalidArgumentError):
        edge_aware_fill(np.ones((4, 4)), -np.ones((4, 4)), np.zeros((4, 4, 3)))


def test_fill_large_frames_are_solved_in_bands():
    h, w = 120, 160
    ys, xs = np.mgrid[0:h, 0:w]
    inverse = 0.3 + 0.002 * xs
    confidence = (np.random.default_rng(3).random((h, w)) < 0.1).astype(float)
    image = np.full((h, w, 3), 128, np.uint8)
    small = edge_aware_fill(inverse, confidence, image, max_pixels=4000)
    assert np.mean(np.abs(small - inverse) / inverse) < 0.02


# ------------------------------------------------------------------ relative pose
def test_pair_geometry_recovers_the_known_relative_pose(clip):
    video, forward, _ = clip
    K = torch.tensor(video.K)
    for i in (0, 3):
        exact = rigid_flow(torch.tensor(video.depth[i], dtype=torch.float64), K, torch.tensor(video.world_to_cam[i]),
                           torch.tensor(video.world_to_cam[i + 1])).numpy()
        rel = video.world_to_cam[i + 1] @ np.linalg.inv(video.world_to_cam[i])
        direction = rel[:3, 3] / np.linalg.norm(rel[:3, 3])
        for flow, tol_deg in ((exact, 0.5), (forward[i], 20.0)):
            geometry = pair_geometry(flow, video.K, ~video.moving_mask[i])
            assert geometry is not None and geometry.translates
            angle = np.degrees(np.arccos(np.clip(geometry.translation @ direction, -1, 1)))
            rot_err = np.degrees(np.arccos(np.clip((np.trace(geometry.rotation.T @ rel[:3, :3]) - 1) / 2, -1, 1)))
            assert angle < tol_deg, (i, angle)
            assert rot_err < 0.5, (i, rot_err)


# ------------------------------------------------------------------ the prior
def test_two_view_prior_is_closer_to_real_depth_than_a_plane(clip):
    video, forward, backward = clip
    estimate = two_view_depth(video.frames, forward, backward, video.K)
    assert estimate.method == "two-view" and estimate.notice is None
    assert estimate.depth.shape == video.depth.shape and (estimate.depth > 0).all()
    assert np.median(estimate.depth[0]) == pytest.approx(1.0, rel=1e-5)  # the stated scale convention
    prior = _abs_rel(estimate.depth, video.depth)
    constant = _abs_rel(np.ones_like(video.depth), video.depth)
    print(f"AbsRel: two-view {prior:.3f}, constant {constant:.3f}, gap {estimate.info['gap']}")
    assert prior < 0.25 and prior < 0.7 * constant
    # one scale for the whole video: per-frame medians follow the real ones
    ratio = np.median(estimate.depth.reshape(len(video.depth), -1), 1) / np.median(video.depth.reshape(len(video.depth), -1), 1)
    assert ratio.max() / ratio.min() < 1.15


def test_rotating_camera_gives_a_constant_plane_and_a_notice():
    video = reprojected_video(n_frames=4, long_side=96, seed=2, object_name=None, camera_travel=0.0)
    flow = motion.estimate_flow(video.frames, model="dis", backward=True, progress=False)
    estimate = two_view_depth(video.frames, flow.forward, flow.backward, video.K)
    assert estimate.method == "constant"
    assert "does not translate" in estimate.notice
    assert np.all(estimate.depth == 1.0)


def test_triangulation_that_keeps_nothing_gives_a_constant_plane_and_a_notice(clip, monkeypatch):
    """Pairs that translate but whose every triangulated pixel is rejected (e.g. flow inconsistent with
    the pair's geometry) must fall back to the plane with a notice, not fail on an empty percentile."""
    import splats.depth_prior as depth_prior

    video, forward, backward = clip
    real = depth_prior.triangulate_pair

    def rejects_everything(*args, **kwargs):
        tri = real(*args, **kwargs)
        return {k: np.zeros_like(v) if k.startswith("confidence") else v for k, v in tri.items()}

    monkeypatch.setattr(depth_prior, "triangulate_pair", rejects_everything)
    estimate = two_view_depth(video.frames, forward, backward, video.K)
    assert estimate.method == "constant"
    assert "no usable depth" in estimate.notice
    assert np.all(estimate.depth == 1.0) and estimate.depth.shape == video.depth.shape


def test_interpolated_pose_lies_between_the_two_cameras():
    video = reprojected_video(n_frames=3, long_side=64, seed=0, object_name=None)
    a, b = video.world_to_cam[0], video.world_to_cam[2]
    mid = interpolate_pose(a, b, 0.5)
    centre = lambda m: -m[:3, :3].T @ m[:3, 3]  # noqa: E731
    np.testing.assert_allclose(centre(mid), 0.5 * (centre(a) + centre(b)), atol=1e-9)
    np.testing.assert_allclose(mid, video.world_to_cam[1], atol=1e-6)  # the path is linear in s


def test_two_view_provider_triangulates_its_own_full_resolution_flow(clip):
    """The provider's default flow is DIS down to full resolution: on the real-depth clip its prior is
    closer to the real depth than the same prior on the video's default (half-resolution) DIS flow,
    and it equals two_view_depth on the flow OpenCV computes with finest scale 0."""
    import cv2

    from splats.depth_providers import TwoViewDepth

    video, forward, backward = clip
    own = TwoViewDepth().estimate(video.frames, forward=forward, backward=backward, K=video.K)
    given = TwoViewDepth(flow_model=None).estimate(video.frames, forward=forward, backward=backward, K=video.K)
    assert own.info["flow"] == {"model": "dis", "finest_scale": 0} and given.info["flow"] == {"model": "given"}
    own_error, given_error = _abs_rel(own.depth, video.depth), _abs_rel(given.depth, video.depth)
    print(f"AbsRel: own full-resolution flow {own_error:.3f}, the video's DIS flow {given_error:.3f}")
    assert own_error < 0.9 * given_error

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in video.frames]

    def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dis.setFinestScale(0)
        return dis.calc(a, b, None).transpose(2, 0, 1)

    fwd = np.stack([flow(a, b) for a, b in zip(grey[:-1], grey[1:])])
    bwd = np.stack([flow(b, a) for a, b in zip(grey[:-1], grey[1:])])
    np.testing.assert_array_equal(own.depth, two_view_depth(video.frames, fwd, bwd, video.K).depth)
    with pytest.raises(InvalidArgumentError, match="forward"):
        TwoViewDepth(flow_model=None).estimate(video.frames, K=video.K)
    with pytest.raises(InvalidArgumentError, match="intrinsics"):
        TwoViewDepth().estimate(video.frames)


def _sideways_flows(frames: int, h: int, w: int, object_drift: float):
    """Exact flows of a camera stepping sideways past a static surface whose depth varies with the row
    (so a point keeps its depth and row from frame to frame), with a square that moves with 1.5x the
    background's parallax and drifts ``object_drift`` px per frame down, off its epipolar line.
    Returns forward, backward ``[T-1, 2, H, W]`` and the square's masks ``bool [T, H, W]``."""
    focal_baseline = 6.0
    rows = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    still = np.stack([focal_baseline / (3.0 + 0.8 * np.sin(rows / 3.0)), np.zeros_like(rows)])
    along = 1.5 * float(still[0].mean())
    ys, xs = np.mgrid[0:h, 0:w]
    masks = np.stack([(ys >= 10 + object_drift * t) & (ys < 22 + object_drift * t)
                      & (xs >= 12 + along * t) & (xs < 24 + along * t) for t in range(frames)])
    forward, backward = [], []
    for t in range(frames - 1):
        f, b = still.copy(), -still
        f[:, masks[t]] = np.array([along, object_drift], np.float32)[:, None]
        b[:, masks[t + 1]] = -np.array([along, object_drift], np.float32)[:, None]
        forward.append(f)
        backward.append(b)
    return np.stack(forward), np.stack(backward), masks


def test_independent_motion_is_found_over_wider_gaps():
    """A square drifting 0.6 px per frame off its epipolar line stays under the 1 px Sampson threshold in
    every consecutive pair; over gaps of 3-4 frames it is found (backward chains for the last frames),
    and the still surface is not."""
    from splats.depth_prior import independent_motion_masks

    forward, backward, truth = _sideways_flows(8, 40, 64, object_drift=0.6)
    consecutive = independent_motion_masks(forward, backward, gaps=(1,))
    wide = independent_motion_masks(forward, backward, gaps=(1, 2, 3, 4))
    assert wide.shape == truth.shape
    recall = lambda m: float((m & truth).sum() / truth.sum())  # noqa: E731
    false_alarm = lambda m: float((m & ~truth).sum() / (~truth).sum())  # noqa: E731
    assert recall(consecutive) < 0.05
    assert recall(wide) > 0.8 and all((wide[t] & truth[t]).sum() > 0.6 * truth[t].sum() for t in range(8))
    assert false_alarm(wide) < 0.02
    dilated = independent_motion_masks(forward, backward, gaps=(1, 2, 3, 4), dilation=2)
    assert (dilated >= wide).all() and dilated.sum() > wide.sum()


def test_prior_leaves_independently_moving_pixels_to_the_fill(clip):
    """On the real-depth clip (a real cut-out moving in 3-D), pixels found moving get no triangulated
    depth: the prior takes them from their surroundings instead of triangulating them as if still.
    Most of what one pair's Sampson test let through of the true object is left out, and most still pixels
    keep their measurement (measured: object 0.41 -> 0.13 of its pixels, still 0.91 -> 0.85)."""
    from splats.depth_prior import TwoViewDepthConfig

    video, forward, backward = clip
    with_movers = two_view_depth(video.frames, forward, backward, video.K)
    without = two_view_depth(video.frames, forward, backward, video.K, TwoViewDepthConfig(mover_gaps=()))
    moving = video.moving_mask
    measured_with, measured_without = with_movers.confidence > 0, without.confidence > 0
    print(f"object measured: {measured_with[moving].mean():.2f} (without: {measured_without[moving].mean():.2f}); "
          f"still measured: {measured_with[~moving].mean():.2f} ({measured_without[~moving].mean():.2f})")
    assert measured_without[moving].mean() > 0.3  # triangulated as if still: each pair's Sampson test misses it
    assert measured_with[moving].mean() < 0.5 * measured_without[moving].mean()
    assert measured_with[~moving].mean() > 0.8 * measured_without[~moving].mean()
    assert 0 < with_movers.info["moving_fraction"] < 0.3
