"""Baselines and the common interface: exact answers on known motions, bad input -> Motion4DError."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from motion4d.errors import InvalidArgumentError, Motion4DError, NonFiniteError, ShapeError
from pointclouds import PointCloud, estimate_scene_flow
from pointclouds.methods.baselines import kabsch


def _rigid(yaw: float, pitch: float, t: tuple[float, float, float]) -> np.ndarray:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    T = np.eye(4)
    T[:3, :3] = Rz @ Ry
    T[:3, 3] = t
    return T


def test_zero_flow_shape_and_type(rng: np.random.Generator) -> None:
    src = rng.normal(size=(50, 3)).astype(np.float32)
    out = estimate_scene_flow(src, rng.normal(size=(40, 3)), method="zero")
    assert out.flow.shape == (50, 3) and out.flow.dtype == torch.float32
    assert torch.count_nonzero(out.flow) == 0
    assert out.method == "zero" and out.numpy().shape == (50, 3)


def test_nearest_neighbour_flow_matches_brute_force(rng: np.random.Generator) -> None:
    src = rng.uniform(-5, 5, size=(300, 3))
    tgt = rng.uniform(-5, 5, size=(250, 3))
    out = estimate_scene_flow(PointCloud(src), torch.from_numpy(tgt), method="nn")
    expected = np.empty_like(src)
    for i, p in enumerate(src.astype(np.float32).astype(np.float64)):
        d = ((tgt.astype(np.float32) - p) ** 2).sum(1)
        expected[i] = tgt.astype(np.float32)[d.argmin()] - p
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_kabsch_recovers_transform_and_avoids_reflections(rng: np.random.Generator) -> None:
    a = torch.from_numpy(rng.normal(size=(40, 3)))
    T = torch.from_numpy(_rigid(0.7, -0.3, (1.0, -2.0, 0.5)))
    b = a @ T[:3, :3].T + T[:3, 3]
    np.testing.assert_allclose(kabsch(a, b).numpy(), T.numpy(), atol=1e-10)
    mirrored = a * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    R = kabsch(a, mirrored)[:3, :3]
    assert torch.linalg.det(R) == pytest.approx(1.0, abs=1e-9)


def test_icp_recovers_a_rigid_motion(rng: np.random.Generator) -> None:
    # an anisotropic blob (no symmetric ambiguity) seen twice with different samples order
    src = rng.normal(size=(800, 3)) * np.array([4.0, 2.0, 1.0])
    T = _rigid(0.08, 0.02, (0.4, -0.25, 0.1))
    tgt = (src @ T[:3, :3].T + T[:3, 3])[rng.permutation(len(src))]
    out = estimate_scene_flow(src, tgt, method="icp", max_iterations=100, tolerance=0.0)
    expected = src @ T[:3, :3].T + T[:3, 3] - src
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-3)
    np.testing.assert_allclose(out.extras["transform"].numpy(), T, atol=1e-3)
    assert out.extras["fitness"] == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["zero", "nn", "icp", "nsfp", "nsfp-fast", "scoop"])
def test_bad_clouds_raise(method: str, rng: np.random.Generator) -> None:
    good = rng.normal(size=(30, 3)).astype(np.float32)
    nan = good.copy()
    nan[3, 1] = np.nan
    inf = good.copy()
    inf[0, 0] = np.inf
    for source, target, error in (
        (np.zeros((0, 3), np.float32), good, ShapeError),
        (good, np.zeros((0, 3), np.float32), ShapeError),
        (nan, good, NonFiniteError),
        (good, inf, NonFiniteError),
        (good[:, :2], good, ShapeError),
        (good[None], good, ShapeError),
        ("points.ply", good, ShapeError),
        (good.astype(np.complex64), good, ShapeError),
    ):
        with pytest.raises(error):
            estimate_scene_flow(source, target, method=method, weights="untrained") if method == "scoop" else \
                estimate_scene_flow(source, target, method=method)


def test_unknown_method_and_options_raise(rng: np.random.Generator) -> None:
    pts = rng.normal(size=(20, 3))
    with pytest.raises(InvalidArgumentError):
        estimate_scene_flow(pts, pts, method="flownet3d")
    with pytest.raises(InvalidArgumentError):
        estimate_scene_flow(pts, pts, method="nn", patience=3)
    with pytest.raises(InvalidArgumentError):
        estimate_scene_flow(pts, pts, method="nsfp", not_an_option=1)
    with pytest.raises(InvalidArgumentError):
        estimate_scene_flow(pts, pts, method="icp", max_iterations=0)
    with pytest.raises(Motion4DError):
        estimate_scene_flow(pts, pts, method="icp", init=np.eye(3))


def test_warp_checks_length(rng: np.random.Generator) -> None:
    src = rng.normal(size=(25, 3)).astype(np.float32)
    out = estimate_scene_flow(src, src + 1e-3, method="nn")
    np.testing.assert_allclose(out.warp(src).numpy(), src + 1e-3, atol=1e-6)
    with pytest.raises(ShapeError):
        out.warp(src[:10])


def test_icp_uses_open3d_and_agrees_with_the_fallback(rng: np.random.Generator) -> None:
    """open3d's registration_icp (the default when installed) and the KD-tree + Kabsch fallback find
    the same transform; an unavailable back-end is refused."""
    pytest.importorskip("open3d")
    src = rng.normal(size=(1500, 3)) * np.array([4.0, 2.0, 1.0])
    T = _rigid(-0.06, 0.03, (0.3, 0.2, -0.1))
    tgt = (src @ T[:3, :3].T + T[:3, 3])[rng.permutation(len(src))]
    fast = estimate_scene_flow(src, tgt, method="icp", max_iterations=100, tolerance=1e-9)
    slow = estimate_scene_flow(src, tgt, method="icp", max_iterations=100, tolerance=0.0, backend="scipy")
    assert fast.extras["backend"] == "open3d" and slow.extras["backend"] == "kabsch"
    np.testing.assert_allclose(fast.extras["transform"].numpy(), T, atol=1e-4)
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), atol=1e-3)


def test_icp_falls_back_without_open3d(rng: np.random.Generator, monkeypatch) -> None:  # noqa: ANN001
    from motion4d.errors import BackendUnavailableError
    from pointclouds.methods import baselines

    monkeypatch.setattr(baselines, "_open3d_available", lambda: False)
    src = rng.normal(size=(400, 3)) * np.array([4.0, 2.0, 1.0])
    T = _rigid(0.05, 0.0, (0.2, -0.1, 0.0))
    tgt = src @ T[:3, :3].T + T[:3, 3]
    out = estimate_scene_flow(src, tgt, method="icp", max_iterations=100, tolerance=0.0)
    assert out.extras["backend"] == "kabsch"
    np.testing.assert_allclose(out.extras["transform"].numpy(), T, atol=1e-4)
    with pytest.raises(BackendUnavailableError):
        estimate_scene_flow(src, tgt, method="icp", backend="open3d")
