"""The closest-point grid behind NSFP's fast mode, against brute-force nearest neighbours."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from motion4d.errors import InputTooLargeError, InvalidArgumentError
from pointclouds.methods.dt import BYTES_PER_VOXEL, GRID_BYTES, NO_POINT, DistanceGrid, ball_offsets, splat_nearest


def _brute_nearest(query: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest point (index, distance) of every query by an explicit loop over the points."""
    best = np.full(len(query), np.inf)
    arg = np.zeros(len(query), dtype=np.int64)
    q = query.astype(np.float64)
    for j, p in enumerate(points.astype(np.float64)):
        d = np.sqrt(((q - p) ** 2).sum(-1))
        closer = d < best
        best[closer], arg[closer] = d[closer], j
    return arg, best


def _nodes(grid: DistanceGrid) -> np.ndarray:
    X, Y, Z = grid.shape
    ijk = np.stack(np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij"), -1).reshape(-1, 3)
    return ijk * grid.voxel_size + grid.origin.numpy().astype(np.float64)


def test_ball_offsets_are_the_integer_ball() -> None:
    offsets = ball_offsets(3).numpy()
    brute = [(a, b, c) for a in range(-3, 4) for b in range(-3, 4) for c in range(-3, 4) if a * a + b * b + c * c <= 9]
    assert sorted(map(tuple, offsets.tolist())) == sorted(brute)


def test_splat_nearest_is_the_exact_closest_point_transform_inside_the_band(rng: np.random.Generator) -> None:
    dims, band = [24, 20, 16], 3
    coords = rng.uniform([band + 1.5] * 3, np.array(dims) - band - 2.5, size=(40, 3)).astype(np.float32)
    index = splat_nearest(torch.from_numpy(coords), dims, band).numpy().reshape(-1)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in dims], indexing="ij"), -1).reshape(-1, 3)
    arg, dist = _brute_nearest(ijk.astype(np.float64), coords)
    inside = dist <= band - 1e-4
    outside = dist > band + 1e-4
    assert inside.sum() > 1000 and outside.sum() > 1000
    # ties (several points at the same distance) may pick either point: compare distances too
    chosen = np.linalg.norm(ijk[inside] - coords[index[inside]], axis=1)
    np.testing.assert_allclose(chosen, dist[inside], atol=1e-4)
    assert (index[inside] == arg[inside]).mean() > 0.999
    assert (index[outside] == NO_POINT).all()


def test_grid_distances_at_nodes_are_exact_in_the_band(rng: np.random.Generator) -> None:
    pts = rng.uniform([-2, -1, 0], [2, 1, 3], size=(300, 3)).astype(np.float32)
    grid = DistanceGrid.build(pts, voxel_size=0.1, band=5, coarse_factor=4, margin=1.0)
    nodes = _nodes(grid)
    exact, _ = cKDTree(pts.astype(np.float64)).query(nodes)
    dense = grid.dense().numpy().reshape(-1)
    near = exact <= 0.5 - 1e-4
    assert near.sum() > 10_000
    np.testing.assert_allclose(dense[near], exact[near], atol=1e-5)
    # far nodes use the coarse grid: never below the true distance, off by at most the coarse bound
    far = ~near
    assert far.sum() > 10_000
    slack = math.sqrt(3) * grid.coarse_factor * grid.voxel_size
    assert (dense[far] >= exact[far] - 1e-5).all()
    assert (dense[far] <= exact[far] + slack + 1e-5).all()
    assert np.abs(dense[far] - exact[far]).mean() < 0.05


def test_grid_queries_measure_the_distance_to_a_nearly_nearest_point(rng: np.random.Generator) -> None:
    pts = rng.uniform(-1, 1, size=(200, 3)).astype(np.float32)
    grid = DistanceGrid.build(pts, voxel_size=0.1, band=6, coarse_factor=2)
    query = rng.uniform(-1.3, 1.3, size=(3000, 3)).astype(np.float32)
    arg, exact = _brute_nearest(query, pts)
    q = torch.from_numpy(query)
    idx = grid.nearest(q).numpy()
    value = grid(q).numpy()
    # the value is the distance to the assigned point, which is an actual point of the cloud
    np.testing.assert_allclose(value, np.linalg.norm(query - pts[idx], axis=1), atol=1e-6)
    # |q - p| <= d(q) + 2 |q - node| <= d(q) + sqrt(3) h inside the band
    inside = exact < 0.6 - 0.1
    assert inside.sum() > 1000
    assert (value[inside] <= exact[inside] + math.sqrt(3) * 0.1 + 1e-5).all()
    assert (value >= exact - 1e-5).all()
    assert (value[inside] - exact[inside]).mean() < 0.01
    assert (idx[inside] == arg[inside]).mean() > 0.8


def test_grid_gradient_is_the_unit_vector_from_the_assigned_point(rng: np.random.Generator) -> None:
    pts = rng.uniform(-1, 1, size=(50, 3)).astype(np.float32)
    grid = DistanceGrid.build(pts, voxel_size=0.1, band=4)
    q = torch.from_numpy(rng.uniform(-1, 1, size=(100, 3)).astype(np.float32)).requires_grad_(True)
    grid(q).sum().backward()
    p = torch.from_numpy(pts)[grid.nearest(q)]
    expected = (q.detach() - p) / (q.detach() - p).norm(dim=-1, keepdim=True)
    torch.testing.assert_close(q.grad, expected, rtol=1e-5, atol=1e-6)


def test_grid_gradient_is_zero_on_a_point_and_finite_outside_the_grid() -> None:
    pts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
    grid = DistanceGrid.build(pts, voxel_size=0.1, band=4, margin=0.5)
    q = torch.tensor([[0.0, 0.0, 0.0], [40.0, -3.0, 2.0]], requires_grad=True)
    d = grid(q)
    d.sum().backward()
    assert d[0].item() == 0.0 and torch.equal(q.grad[0], torch.zeros(3))
    # clamped to the border: still the distance to a real point of the cloud, never less than the truth
    assert d[1].item() == pytest.approx(float(np.linalg.norm([39.0, -3.0, 2.0])), rel=1e-6)
    assert torch.isfinite(q.grad).all()


def test_grid_covers_the_cover_points_and_validates_its_options() -> None:
    pts = np.zeros((1, 3), np.float32)
    grid = DistanceGrid.build(pts, voxel_size=0.1, cover=np.array([[3.0, 0.0, 0.0]], np.float32))
    top = grid.origin + (torch.tensor(grid.shape) - 1) * grid.voxel_size
    assert top[0] >= 3.0 + 0.7 - 1e-6
    far_apart = np.array([[0, 0, 0], [1000, 1000, 50]], np.float32)
    with pytest.raises(InputTooLargeError, match="budget"):
        DistanceGrid.build(far_apart, voxel_size=0.05, coarsen=False)
    # memory is bounded by the budget, not by the extent: the grid gets coarser instead
    with pytest.warns(RuntimeWarning, match="instead of 0.05 m"):
        coarse = DistanceGrid.build(far_apart, voxel_size=0.05)
    assert math.prod(coarse.shape) * BYTES_PER_VOXEL <= GRID_BYTES and coarse.voxel_size > 0.05
    with pytest.raises(InvalidArgumentError):
        DistanceGrid.build(pts, band=0)
    with pytest.raises(InvalidArgumentError):
        DistanceGrid.build(pts, voxel_size=-0.1)
