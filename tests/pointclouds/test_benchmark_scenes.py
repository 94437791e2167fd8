"""The scene-flow benchmark's generators: exact flow, frame conventions, disjoint tuning / reporting sets."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from motion4d.errors import InvalidArgumentError
from pointclouds.benchmark import (
    CONVENTIONS,
    GEOMETRIES,
    REPORTING_SET,
    SENSORS,
    TUNING_SET,
    SceneSpec,
    benchmark_set,
    make_benchmark_scene,
)
from pointclouds.benchmark.scenes import CONVENTION_MATRICES
from pointclouds.methods.baselines import kabsch

pytest.importorskip("open3d")


def test_sets_are_disjoint_and_cover_every_factor() -> None:
    tuning, reporting = set(TUNING_SET), set(REPORTING_SET)
    assert not tuning & reporting
    assert not {s.seed for s in tuning} & {s.seed for s in reporting}
    for specs in (TUNING_SET, REPORTING_SET):
        assert {s.geometry for s in specs} == set(GEOMETRIES)
        assert {s.sensor for s in specs} == set(SENSORS)
        assert len({s.convention for s in specs}) >= 3
        motions = {s.motion for s in specs}
        assert "static" in motions and any("nonrigid" in m for m in motions) and any("ego" in m for m in motions)
    assert {s.convention for s in REPORTING_SET} == set(CONVENTIONS)
    points = [s.num_points for s in REPORTING_SET]
    assert min(points) <= 2048 and max(points) >= 60000
    assert [s.num_points for s in benchmark_set("reporting", max_points=4096)] == [min(p, 4096) for p in points]


def test_a_fresh_draw_keeps_the_families_with_seeds_no_set_uses() -> None:
    used = {s.seed for s in TUNING_SET} | {s.seed for s in REPORTING_SET}
    fresh = benchmark_set("reporting", max_points=2048, draw=1)
    assert {s.seed for s in fresh}.isdisjoint(used)
    assert [dataclasses.replace(s, seed=0, num_points=0) for s in fresh] == \
        [dataclasses.replace(s, seed=0, num_points=0) for s in REPORTING_SET]
    first, again = make_benchmark_scene(fresh[6]), make_benchmark_scene(benchmark_set("reporting", 2048, draw=1)[6])
    listed = make_benchmark_scene(benchmark_set("reporting", 2048)[6])
    np.testing.assert_array_equal(first.source, again.source)  # a draw is reproducible
    assert first.name != listed.name and not np.array_equal(first.source, listed.source)
    with pytest.raises(InvalidArgumentError, match="draw"):
        benchmark_set("reporting", draw=-1)


def test_static_scene_has_zero_flow_and_ego_scene_a_rigid_one() -> None:
    static = make_benchmark_scene(SceneSpec("room", "static", "uniform", "rotated", 800, 1, extent=5.0, noise=0.0))
    assert np.abs(static.flow).max() == 0.0 and len(static.source) == 800
    ego = make_benchmark_scene(SceneSpec("street", "ego", "lidar", "lidar_z_up", 3000, 2, extent=30.0, noise=0.0))
    src = ego.source.astype(np.float64)
    import torch

    T = kabsch(torch.from_numpy(src), torch.from_numpy(src + ego.flow)).numpy()
    residual = np.linalg.norm(src @ T[:3, :3].T + T[:3, 3] - (src + ego.flow), axis=1)
    assert residual.max() < 1e-3 and np.linalg.norm(ego.flow, axis=1).mean() > 0.3  # a real motion, all rigid
    # source + flow lies on the surfaces the target samples (uniform samples: no sensor pattern that the
    # unmoved source would share with the target, as lidar rings do)
    from scipy.spatial import cKDTree

    room = make_benchmark_scene(SceneSpec("room", "ego", "uniform", "rotated", 4000, 2, extent=5.0, noise=0.0))
    tree = cKDTree(room.target)
    moved, still = tree.query(room.source + room.flow)[0], tree.query(room.source)[0]
    assert np.median(moved) < 0.7 * np.median(still) and np.median(moved) < 1.5 * room.meta["spacing"]


def test_movers_are_labelled_and_move_on_their_own() -> None:
    s = make_benchmark_scene(SceneSpec("room", "movers", "camera", "camera_y_down", 3000, 3, extent=5.0, noise=0.0))
    dynamic = s.point_data["dynamic"]
    assert 0 < dynamic.mean() < 0.5
    assert np.abs(s.flow[~dynamic]).max() < 1e-9  # the sensor stands still: the room does not move
    assert np.linalg.norm(s.flow[dynamic], axis=1).mean() > 0.02


def test_conventions_are_fixed_changes_of_axes() -> None:
    base = SceneSpec("street", "ego+movers", "camera", "lidar_z_up", 1500, 5, extent=25.0)
    ref = make_benchmark_scene(base)
    for convention in ("camera_y_down", "camera_y_up"):
        other = make_benchmark_scene(dataclasses.replace(base, convention=convention))
        C = CONVENTION_MATRICES[convention]
        np.testing.assert_allclose(other.source, ref.source @ C.T, atol=1e-5)
        np.testing.assert_allclose(other.flow, ref.flow @ C.T, atol=1e-5)
        np.testing.assert_array_equal(other.mask, ref.mask)
    rotated = make_benchmark_scene(dataclasses.replace(base, convention="rotated"))
    R = rotated.meta["convention"].astype(np.float64)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(rotated.source, ref.source @ R.T, atol=1e-4)
    # camera y-down: the ground (below the sensor) has positive y
    down = make_benchmark_scene(dataclasses.replace(base, convention="camera_y_down"))
    assert np.median(down.source[:, 1]) > 0 and np.median(ref.source[:, 2]) < 0


def test_overlap_and_noise() -> None:
    spec = SceneSpec("room", "ego", "camera", "lidar_z_up", 2000, 6, extent=6.0, noise=0.0)
    full = make_benchmark_scene(spec)
    cropped = make_benchmark_scene(dataclasses.replace(spec, overlap=0.7))
    assert len(cropped.target) < 0.75 * len(full.target) and cropped.mask.mean() < full.mask.mean()
    noisy = make_benchmark_scene(dataclasses.replace(spec, noise=0.01))
    np.testing.assert_allclose(noisy.flow, full.flow, atol=1e-9)  # noise moves the samples, not their flow
    assert 0.003 < np.abs(noisy.source - full.source).mean() < 0.02
    # with a cropped target, each kept point still gets its noise along its own ray from the sensor
    clean = make_benchmark_scene(dataclasses.replace(spec, overlap=0.7))
    noisy = make_benchmark_scene(dataclasses.replace(spec, overlap=0.7, noise=0.01))
    shift = noisy.target - clean.target
    sine = np.linalg.norm(np.cross(shift, clean.target), axis=1) / (
        np.linalg.norm(shift, axis=1) * np.linalg.norm(clean.target, axis=1))
    assert len(clean.target) == len(noisy.target) and np.percentile(sine, 90) < 1e-3  # float32 points


def test_real_depth_geometry_and_bad_specs() -> None:
    pytest.importorskip("skimage")
    s = make_benchmark_scene(SceneSpec("real_depth", "rigid", "uniform", "camera_y_down", 1000, 7, noise=0.0))
    assert 5 < s.meta["extent"] < 60 and len(s.source) == 1000
    with pytest.raises(InvalidArgumentError):
        SceneSpec("forest", "ego", "lidar", "lidar_z_up", 1000, 1).validate()
    with pytest.raises(InvalidArgumentError):
        SceneSpec("room", "ego", "lidar", "lidar_z_up", 1000, 1, overlap=0.0).validate()
    with pytest.raises(InvalidArgumentError):
        benchmark_set("validation")
    with pytest.raises(InvalidArgumentError, match="real_depth"):  # would be a static scene
        SceneSpec("street", "rigid", "lidar", "lidar_z_up", 1000, 1).validate()
