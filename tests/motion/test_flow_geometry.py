"""Flow geometry: pixel grids, the two bilinear samplers, backward warping, forward-backward check."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from motion.flow_geometry import (
    FB_ALPHA,
    FB_BETA,
    coords_grid,
    forward_backward_error,
    pixel_grid,
    sample_at_points,
    sample_bilinear,
    warp_backward,
)
from motion.ops import _reference


def _bilinear_clamped(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent reference: ``field [C, H, W]`` at ``(x, y)``, positions clamped into the image."""
    _, h, w = field.shape
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(int), w - 2)
    y0 = np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = x - x0, y - y0
    return ((1 - fx) * (1 - fy) * field[:, y0, x0] + fx * (1 - fy) * field[:, y0, x0 + 1]
            + (1 - fx) * fy * field[:, y0 + 1, x0] + fx * fy * field[:, y0 + 1, x0 + 1])


def test_pixel_grids_hold_x_then_y():
    grid = pixel_grid(3, 4)
    assert grid.shape == (2, 3, 4) and grid[0, 2, 3] == 3 and grid[1, 2, 3] == 2
    batched = coords_grid(2, 3, 4, dtype=torch.float64)
    assert batched.shape == (2, 2, 3, 4) and batched.is_contiguous() and batched.dtype == torch.float64
    assert torch.equal(batched[1], grid.double())


def test_sample_at_points_is_bilinear_and_clamps_at_the_border():
    rng = np.random.default_rng(0)
    field = rng.normal(size=(3, 9, 13))
    points = np.stack([rng.uniform(-3, 15, 500), rng.uniform(-3, 11, 500)], axis=1)
    got = sample_at_points(torch.from_numpy(field).float(), torch.from_numpy(points))
    assert got.shape == (500, 3) and got.dtype == torch.float64  # the field takes the points' dtype
    np.testing.assert_allclose(got.numpy(), _bilinear_clamped(field, points[:, 0], points[:, 1]).T, atol=1e-6)
    exact = sample_at_points(torch.from_numpy(field), torch.tensor([[4.0, 7.0], [-2.0, 30.0]], dtype=torch.float64))
    np.testing.assert_array_equal(exact.numpy(), [field[:, 7, 4], field[:, 8, 0]])


def test_raft_sampler_is_the_operation_of_the_op_reference():
    rng = np.random.default_rng(1)
    image = torch.from_numpy(rng.normal(size=(2, 4, 11, 17))).float()
    coords = torch.from_numpy(rng.uniform(-2, 19, size=(2, 2, 5, 6))).float()
    ours = sample_bilinear(image, coords)
    reference = _reference.bilinear_sample(image, coords.permute(0, 2, 3, 1))
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    outside = sample_bilinear(image, torch.full((2, 2, 1, 1), -5.0))
    assert torch.equal(outside, torch.zeros_like(outside))  # zeros outside, unlike sample_at_points


def test_warp_backward_reads_the_target_along_the_flow():
    rng = np.random.default_rng(2)
    target = torch.from_numpy(rng.normal(size=(2, 10, 12)))
    flow = torch.zeros(2, 10, 12, dtype=torch.float64)
    flow[0], flow[1] = 2.0, -1.0  # every source pixel (x, y) lands on (x + 2, y - 1)
    warped = warp_backward(target, flow)
    torch.testing.assert_close(warped[:, 1:, :10], target[:, :9, 2:], rtol=0, atol=1e-12)
    torch.testing.assert_close(warped[:, 0, :10], target[:, 0, 2:], rtol=0, atol=1e-12)  # off the top: border row
    torch.testing.assert_close(warped[:, 1:, 10:], target[:, :9, 11:].expand(-1, -1, 2), rtol=0, atol=1e-12)


def test_forward_backward_error_follows_sundaram():
    assert (FB_ALPHA, FB_BETA) == (0.01, 0.5)
    forward = torch.tensor([[3.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    backward = torch.tensor([[-3.0, 0.0], [0.0, 0.0], [-1.5, -1.0]])
    error, tolerance = forward_backward_error(forward, backward, dim=1)
    torch.testing.assert_close(error, torch.tensor([0.0, 25.0, 0.25]))
    torch.testing.assert_close(tolerance, torch.tensor([0.68, 0.75, 0.5 + 0.01 * (2 + 3.25)]))
    assert (error <= tolerance).tolist() == [True, False, True]
    dense_error, dense_tolerance = forward_backward_error(forward.T[:, :, None], backward.T[:, :, None], 0.1, 0.0)
    torch.testing.assert_close(dense_error[:, 0], error)
    torch.testing.assert_close(dense_tolerance[:, 0], 0.1 * (tolerance - 0.5) / 0.01)


@pytest.mark.parametrize("seed", [0, 1])
def test_epipolar_occlusion_matches_an_independent_check(seed):
    from splats.epipolar import forward_backward_occlusion

    rng = np.random.default_rng(seed)
    h, w = 14, 18
    forward = rng.normal(0, 2.0, size=(2, h, w))
    backward = -forward + rng.normal(0, 0.6, size=(2, h, w))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    tx, ty = xs + forward[0], ys + forward[1]
    back = _bilinear_clamped(backward, tx.ravel(), ty.ravel()).reshape(2, h, w)
    error = ((forward + back) ** 2).sum(0)
    tolerance = 0.01 * ((forward ** 2).sum(0) + (back ** 2).sum(0)) + 0.5
    outside = (tx < -0.5) | (tx > w - 0.5) | (ty < -0.5) | (ty > h - 0.5)
    expected = (error > tolerance) | outside
    got = forward_backward_occlusion(torch.from_numpy(forward), torch.from_numpy(backward)).numpy()
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(got, expected)
