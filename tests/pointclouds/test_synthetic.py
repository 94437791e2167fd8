"""Synthetic scene-flow pairs: exact flow from the known rigid motions, options, speed."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from motion4d.errors import InvalidArgumentError
from pointclouds.metrics import scene_flow_metrics
from pointclouds.neighbors import knn
from pointclouds.synthetic import make_scene_flow_pair


def apply(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ T[:3, :3].T + T[:3, 3]


def test_rigid_flow_is_exactly_ego_and_object_motion():
    s = make_scene_flow_pair(4096, seed=3, num_objects=4)
    ego, motions = s.meta["ego_motion"].astype(np.float64), s.meta["object_motions"].astype(np.float64)
    labels = s.point_data["labels"]
    src = s.source.astype(np.float64)
    expected = np.empty_like(src)
    ground = labels == 0
    expected[ground] = apply(ego, src[ground]) - src[ground]  # static: ego motion only
    for k in range(1, len(motions) + 1):
        sel = labels == k
        expected[sel] = apply(ego @ motions[k - 1], src[sel]) - src[sel]
    np.testing.assert_allclose(s.flow, expected, atol=1e-4)
    assert ground.sum() > 0 and (labels > 0).sum() > 0
    assert not np.allclose(ego, np.eye(4))
    # dynamic flags agree with the motions
    for k in range(1, len(motions) + 1):
        moving = not np.allclose(motions[k - 1], np.eye(4), atol=1e-6)
        assert np.all(s.point_data["dynamic"][labels == k] == moving)


def test_warped_source_lands_on_target_surfaces():
    """With a dense target, source + flow lies on the target surfaces, source alone does not."""
    s = make_scene_flow_pair(2000, seed=5, num_target_points=60000, num_objects=3, nonrigid=True)
    warped = knn(torch.from_numpy(s.source + s.flow), torch.from_numpy(s.target), 1).dist[:, 0]
    static = knn(torch.from_numpy(s.source), torch.from_numpy(s.target), 1).dist[:, 0]
    objects = s.point_data["labels"] > 0
    assert warped[objects].median() < 0.1
    assert static[objects].median() > 3 * warped[objects].median()


def test_ego_off_makes_ground_static_and_nonrigid_differs_from_rigid():
    s = make_scene_flow_pair(1000, seed=1, ego_motion=False)
    ground = s.point_data["labels"] == 0
    assert np.abs(s.flow[ground]).max() == 0.0
    rigid = make_scene_flow_pair(1000, seed=1, static_fraction=0.0)
    bent = make_scene_flow_pair(1000, seed=1, static_fraction=0.0, nonrigid=True)
    np.testing.assert_array_equal(rigid.source, bent.source)
    objects = rigid.point_data["labels"] > 0
    assert scene_flow_metrics(bent.flow[objects], rigid.flow[objects])["epe3d"] > 0.02
    np.testing.assert_array_equal(rigid.flow[~objects], bent.flow[~objects])


def test_seeded_and_options():
    a, b = make_scene_flow_pair(512, seed=9), make_scene_flow_pair(512, seed=9)
    np.testing.assert_array_equal(a.source, b.source)
    np.testing.assert_array_equal(a.target, b.target)
    assert not np.array_equal(a.source, make_scene_flow_pair(512, seed=10).source)
    partial = make_scene_flow_pair(3000, seed=2, overlap=0.5)
    world_t1 = apply(np.linalg.inv(partial.meta["ego_motion"].astype(np.float64)), partial.target)
    assert world_t1[:, 0].max() < 0.0 + 1e-4  # x_cut = -extent + 2 * extent * 0.5 = 0
    assert 0.3 < partial.mask.mean() < 0.7
    noisy = make_scene_flow_pair(512, seed=9, noise=0.02)
    residual = noisy.source - a.source
    assert 0.01 < residual.std() < 0.03
    np.testing.assert_array_equal(noisy.flow, a.flow)  # flow of the underlying surface points
    assert len(make_scene_flow_pair(300, num_target_points=700).target) == 700
    assert (make_scene_flow_pair(300, num_objects=0).point_data["labels"] == 0).all()


def test_fast():
    make_scene_flow_pair(8192, seed=0)  # warm-up
    t0 = time.perf_counter()
    for seed in range(5):
        make_scene_flow_pair(8192, seed=seed, nonrigid=seed % 2 == 1, overlap=0.8)
    assert (time.perf_counter() - t0) / 5 < 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_points": 0},
        {"overlap": 0.0},
        {"overlap": 1.5},
        {"noise": -1.0},
        {"num_objects": -1},
        {"ground_fraction": 2.0},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(InvalidArgumentError):
        make_scene_flow_pair(**kwargs)


# --------------------------------------------- ego motion / dynamic / ground helpers on synthetic data
def test_ego_compensation_and_dynamic_mask_recover_synthetic_labels():
    from pointclouds.geometry import compensate_ego, dynamic_mask, rigid_flow

    s = make_scene_flow_pair(3000, seed=4, static_fraction=0.3)
    ego = s.meta["ego_motion"]
    ground = s.point_data["labels"] == 0
    np.testing.assert_allclose(rigid_flow(s.source[ground], ego), s.flow[ground], atol=1e-5)
    residual = compensate_ego(s.flow, s.source, ego)
    assert np.abs(residual[ground]).max() < 1e-5
    dyn = dynamic_mask(s.flow, s.source, ego)
    # every synthetic mover moves by >= 0.2 * max speed per sweep, far above 0.05 m
    np.testing.assert_array_equal(dyn, s.point_data["dynamic"])


def test_ground_mask_height_and_plane():
    from pointclouds.geometry import ground_mask

    s = make_scene_flow_pair(3000, seed=6, ego_motion=False)
    ground = s.point_data["labels"] == 0
    by_height = ground_mask(s.source, "height", height=-1.6, axis=2)
    assert by_height[ground].all() and by_height[~ground].mean() < 0.08  # only object bases
    pytest.importorskip("open3d")
    by_plane = ground_mask(s.source, "plane", distance=0.05)
    assert by_plane[ground].mean() > 0.99 and by_plane[~ground].mean() < 0.05
    wall = np.column_stack([np.zeros(500), np.random.default_rng(0).uniform(-5, 5, (500, 2))])
    with pytest.raises(InvalidArgumentError, match="perpendicular"):
        ground_mask(wall, "plane")
