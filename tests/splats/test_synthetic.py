"""Synthetic dynamic scenes: the ground truth agrees with the analytic motion and with itself."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from splats.synthetic import PeriodicMotion, PolynomialMotion, make_scene, monocular_sequence


@pytest.fixture(scope="module")
def mono():
    return monocular_sequence(n_frames=5, width=48, height=36, n_tracks=40, ball_points=200, backdrop_spacing=0.12)


def test_motions_are_analytic():
    t = torch.tensor([0.0, 0.25, 0.5])
    poly = PolynomialMotion(torch.tensor([[1.0, 0, 0], [0, 2.0, 0], [0, 0, 4.0]]))
    torch.testing.assert_close(poly(t), torch.tensor([[1.0, 0, 0], [1.0, 0.5, 0.25], [1.0, 1.0, 1.0]]))
    per = PeriodicMotion(torch.tensor([0.5, 0.0, 0.0]))
    torch.testing.assert_close(per(t)[:, 0], torch.tensor([0.0, 0.5, 0.0]), atol=1e-6, rtol=0)


def test_objects_move_rigidly_along_their_trajectory():
    scene = make_scene(n_objects=2, ball_points=100, backdrop_spacing=0.3)
    ball = scene.objects[0]
    for t in (0.0, 0.3, 0.8):
        g = ball.gaussians_at(t)
        centre = ball.center_at(torch.tensor([t]))[0]
        torch.testing.assert_close(g.means.mean(0), centre, atol=2e-3, rtol=0)
        # rigid: pairwise distances are preserved
        d0 = torch.cdist(ball.local.means, ball.local.means)
        torch.testing.assert_close(torch.cdist(g.means, g.means), d0, atol=1e-3, rtol=1e-4)
    assert (scene.labels == 0).sum() == len(scene.static)


def test_motion_seed_draws_other_motions_and_default_is_unchanged():
    default = make_scene(n_objects=2, ball_points=20, backdrop_spacing=0.5)
    swing = default.objects[0].translation
    assert swing.amplitude[0] == pytest.approx(0.45) and swing.frequency == 1.0 and swing.phase == 0.0
    t = torch.linspace(0, 1, 9)
    drawn = [make_scene(n_objects=2, ball_points=20, backdrop_spacing=0.5, motion_seed=s) for s in (1, 1, 2)]
    paths = [torch.cat([o.center_at(t) for o in sc.objects]) for sc in drawn]
    torch.testing.assert_close(paths[0], paths[1])  # deterministic
    assert (paths[0] - paths[2]).abs().max() > 0.05
    for sc in drawn:
        a = sc.objects[0].translation
        assert 0.35 <= float(a.amplitude[0]) <= 0.5 and 0.8 <= a.frequency <= 1.2
        assert 0.5 * math.pi <= abs(sc.objects[0].spin_rate) <= 1.5 * math.pi
    # the backdrop depends on seed only
    torch.testing.assert_close(drawn[0].static.colors, default.static.colors)


def test_monocular_ground_truth_is_consistent(mono):
    scene, seq = mono
    t, h, w = seq.depth.shape
    assert seq.frames.shape == (5, 36, 48, 3) and seq.frames.dtype == np.uint8
    assert seq.forward_flow.shape == (4, 2, 36, 48) and seq.backward_flow.shape == (4, 2, 36, 48)
    assert seq.moving_mask.any() and not seq.moving_mask.all()
    # depth: the backdrop plane z=1 seen by each camera
    static_px = ~seq.moving_mask & (seq.alpha > 0.99)
    c2w = seq.cameras.cam_to_world
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    for i in range(t):
        k = seq.cameras.K[i]
        rays = torch.stack([(xs - k[0, 2]) / k[0, 0], (ys - k[1, 2]) / k[1, 1], torch.ones_like(xs)], -1)
        world_dirs = rays @ c2w[i, :3, :3].T
        # the plane z = 1 along the ray: depth = (1 - origin_z) / dir_z (rays have camera z = 1)
        plane_depth = (1.0 - c2w[i, 2, 3]) / world_dirs[..., 2]
        err = (seq.depth[i] - plane_depth)[static_px[i]].abs()
        assert err.median() < 0.02
    # flow agrees with the tracks of visible points
    errs = []
    for i in range(t - 1):
        vis = seq.tracks_visible[i] & seq.tracks_visible[i + 1]
        px = seq.tracks_xy[i][vis].round().long()
        inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
        motion = (seq.tracks_xy[i + 1] - seq.tracks_xy[i])[vis][inside]
        flow = seq.forward_flow[i][:, px[inside, 1], px[inside, 0]].T
        errs.append((flow - motion).norm(dim=-1))
    errs = torch.cat(errs)
    assert len(errs) > 20 and errs.median() < 0.2
    # forward then backward flow returns to the start on static, unoccluded pixels
    f, b = seq.forward_flow[0], seq.backward_flow[0]
    x2 = (xs + f[0]).round().long().clamp(0, w - 1)
    y2 = (ys + f[1]).round().long().clamp(0, h - 1)
    cycle = (f + b[:, y2, x2]).norm(dim=0)
    assert cycle[static_px[0]].median() < 0.3
