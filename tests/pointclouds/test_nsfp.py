"""NSFP, its distance-transform (Fast NSF) mode, chunking and accumulation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from motion.errors import InvalidArgumentError, ShapeError
from pointclouds import estimate_scene_flow, scene_flow_metrics
from pointclouds.methods.dt import DistanceGrid, ball_offsets
from pointclouds.methods.nsfp import EarlyStopping, NSFPConfig, _loss_step, accumulate, build_field, fit_nsfp, make_config

SMALL = {"hidden_size": 32, "num_layers": 3}


def _scipy_edt(grid: DistanceGrid, points: np.ndarray) -> np.ndarray:
    """Independent reference: scipy's exact EDT of the same seed voxels."""
    h, lo = grid.voxel_size, grid.origin.numpy()
    free = np.ones(grid.shape, bool)
    cells = np.round((points - lo) / h).astype(int)
    free[cells[:, 0], cells[:, 1], cells[:, 2]] = False
    return ndimage.distance_transform_edt(free, sampling=h)


def test_ball_offsets_are_the_integer_ball() -> None:
    offsets = ball_offsets(3).numpy()
    brute = [(a, b, c) for a in range(-3, 4) for b in range(-3, 4) for c in range(-3, 4) if a * a + b * b + c * c <= 9]
    assert sorted(map(tuple, offsets.tolist())) == sorted(brute)


def test_distance_grid_exact_in_band_and_close_outside(rng: np.random.Generator) -> None:
    pts = rng.uniform([-2, -1, 0], [2, 1, 3], size=(300, 3)).astype(np.float32)
    grid = DistanceGrid.build(pts, voxel_size=0.1, band=5, coarse_factor=4, margin=1.5)
    exact = _scipy_edt(grid, pts)
    dense = grid.dense().numpy()
    near = exact <= 0.5 + 1e-6
    np.testing.assert_allclose(dense[near], exact[near], atol=1e-5)
    far = ~near
    assert far.sum() > 1000
    assert np.abs(dense[far] - exact[far]).mean() < 0.03
    assert np.abs(dense[far] - exact[far]).max() < 0.25


def test_distance_grid_trilinear_matches_explicit_interpolation(rng: np.random.Generator) -> None:
    pts = rng.uniform(-1, 1, size=(200, 3)).astype(np.float32)
    grid = DistanceGrid.build(pts, voxel_size=0.1, band=11, coarse_factor=1)
    nodes = grid.dense().numpy().astype(np.float64)
    query = rng.uniform(-0.9, 0.9, size=(50, 3))
    out = grid(torch.from_numpy(query).float()).numpy()
    for q, value in zip(query, out):
        u = (q - grid.origin.numpy()) / grid.voxel_size
        i0 = np.floor(u).astype(int)
        f = u - i0
        expected = 0.0
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    w = (f[0] if dx else 1 - f[0]) * (f[1] if dy else 1 - f[1]) * (f[2] if dz else 1 - f[2])
                    expected += w * nodes[i0[0] + dx, i0[1] + dy, i0[2] + dz]
        assert value == pytest.approx(expected, abs=1e-4)


def test_distance_grid_gradient_points_away_from_the_cloud() -> None:
    pts = np.zeros((1, 3), np.float32)
    grid = DistanceGrid.build(pts, voxel_size=0.1, band=8, margin=1.0)
    q = torch.tensor([[0.33, 0.0, 0.0], [0.0, -0.27, 0.0]], requires_grad=True)
    grid(q).sum().backward()
    assert q.grad[0, 0] > 0.9 and q.grad[1, 1] < -0.9


def test_distance_grid_rejects_huge_grids() -> None:
    with pytest.raises(InvalidArgumentError):
        DistanceGrid.build(np.array([[0, 0, 0], [1000, 1000, 50]], np.float32), voxel_size=0.05)


def test_early_stopping_follows_nsfp_rule() -> None:
    stop = EarlyStopping(patience=2, min_delta=0.1)
    assert [stop.step(v) for v in (1.0, 0.95, 0.85, 0.84, 0.83)] == [False, False, False, False, True]
    assert EarlyStopping(5, 0.0).step(float("nan"))


@pytest.mark.parametrize("backward_flow", [False, True])
def test_chunked_loss_and_gradients_equal_the_unchunked_ones(backward_flow: bool, rng: np.random.Generator) -> None:
    src = torch.from_numpy(rng.uniform(-2, 2, size=(157, 3))).double()
    tgt = torch.from_numpy(rng.uniform(-2, 2, size=(131, 3))).double()
    grads = []
    losses = []
    for chunk in (10_000, 23):
        cfg = make_config("nsfp", chunk_size=chunk, backward_flow=backward_flow, truncate=1.0, **SMALL)
        net = build_field(cfg, torch.device("cpu")).double()
        inverse = build_field(cfg, torch.device("cpu")).double() if backward_flow else None
        loss, _ = _loss_step(net, inverse, src, tgt, None, cfg)
        modules = [net] + ([inverse] if inverse is not None else [])
        grads.append(torch.cat([p.grad.reshape(-1) for m in modules for p in m.parameters()]))
        losses.append(loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)


def _translated_pair(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian blobs moved by a constant shift; the target holds the same points, shuffled, so the
    chamfer loss has its global minimum (0) exactly at the true flow."""
    centres = rng.uniform(-3, 3, size=(8, 3)).astype(np.float32)
    src = centres[rng.integers(0, 8, n)] + rng.normal(0, 0.25, size=(n, 3)).astype(np.float32)
    shift = np.array([0.3, -0.2, 0.05], np.float32)
    return src, (src + shift)[rng.permutation(n)], np.tile(shift, (n, 1))


def test_nsfp_recovers_a_translation_and_is_deterministic(rng: np.random.Generator) -> None:
    src, tgt, gt = _translated_pair(rng)
    opts = dict(device="cpu", max_iterations=100, patience=100, lr=5e-3, backward_flow=False, **SMALL)
    out = estimate_scene_flow(src, tgt, method="nsfp", **opts)
    nn_flow = estimate_scene_flow(src, tgt, method="nn").flow
    assert scene_flow_metrics(out.flow, gt)["epe3d"] < 0.05
    assert scene_flow_metrics(nn_flow, gt)["epe3d"] > 0.15
    short = {**opts, "max_iterations": 5}
    once, again = (estimate_scene_flow(src, tgt, method="nsfp", **short) for _ in range(2))
    torch.testing.assert_close(once.flow, again.flow, rtol=0, atol=0)
    assert 1 <= out.extras["best_iteration"] <= out.iterations <= 100


def test_best_loss_snapshot_is_kept() -> None:
    rng = np.random.default_rng(1)
    src, tgt, _ = _translated_pair(rng, 200)
    # a huge learning rate makes the loss oscillate: the returned flow is the best one, not the last
    cfg = make_config("nsfp", max_iterations=40, patience=40, lr=0.2, backward_flow=False, **SMALL)
    result = fit_nsfp(src, tgt, cfg, device="cpu")
    best = torch.from_numpy(src) + result.flow
    from pointclouds.neighbors import chamfer_distance

    value = chamfer_distance(best, torch.from_numpy(tgt), truncate=cfg.truncate).loss.item()
    assert value == pytest.approx(result.best_loss, rel=1e-4)
    last = torch.from_numpy(src) + result.field.flow_at(torch.from_numpy(src))
    assert chamfer_distance(last, torch.from_numpy(tgt), truncate=cfg.truncate).loss.item() >= result.best_loss - 1e-7


def test_fast_mode_recovers_a_translation(rng: np.random.Generator) -> None:
    src, tgt, gt = _translated_pair(rng)
    out = estimate_scene_flow(src, tgt, method="nsfp-fast", device="cpu", max_iterations=100, patience=100, voxel_size=0.05, **SMALL)
    assert scene_flow_metrics(out.flow, gt)["epe3d"] < 0.1
    assert out.extras["config"]["loss"] == "dt" and not out.extras["config"]["backward_flow"]
    assert out.extras["dt_build_s"] > 0


def test_config_validation() -> None:
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp", loss="dt")  # dt is forward-only
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp", lr=-1.0)
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp-faster")
    with pytest.raises(InvalidArgumentError):
        NSFPConfig(activation="tanh").validate()


def test_accumulate_merges_sweeps_in_the_last_frame(rng: np.random.Generator) -> None:
    src, _, _ = _translated_pair(rng, 250)
    velocity = np.array([0.25, 0.1, 0.0], np.float32)
    sweeps = [(src + t * velocity)[rng.permutation(len(src))] for t in range(3)]
    sweeps[0] = src
    cloud, frames = accumulate(sweeps, device="cpu", max_iterations=100, patience=100, lr=5e-3,
                               backward_flow=False, return_frames=True, **SMALL)
    assert len(cloud) == 750 and frames.tolist() == [0] * 250 + [1] * 250 + [2] * 250
    # the first sweep, pushed through two fields, lands where the object is in the last sweep
    moved_first = cloud.points[frames == 0]
    truth = sweeps[0] + 2 * velocity
    assert np.linalg.norm(moved_first - truth, axis=1).mean() < 0.1
    np.testing.assert_allclose(cloud.points[frames == 2], sweeps[2])
    with pytest.raises(InvalidArgumentError):
        accumulate(sweeps[:1])
    with pytest.raises(ShapeError):
        accumulate([sweeps[0], sweeps[1][:, :2]])


def _baseline_margin(method: str) -> None:
    """``method`` reaches less than half the EPE3D of the better of NN flow and ICP on two scenes."""
    from pointclouds.synthetic import make_scene_flow_pair

    for seed, nonrigid in ((3, False), (4, True)):
        s = make_scene_flow_pair(2048, seed=seed, nonrigid=nonrigid, overlap=0.9, noise=0.01, extent=15.0)
        epe = {}
        for name, opts in (("nn", {}), ("icp", {}), (method, {"device": "cpu"})):
            out = estimate_scene_flow(s.source, s.target, method=name, **opts)
            epe[name] = scene_flow_metrics(out.flow, s.flow, s.mask)["epe3d"]
        assert epe[method] < 0.5 * min(epe["nn"], epe["icp"]), epe


@pytest.mark.slow
def test_nsfp_beats_baselines_on_synthetic_scenes() -> None:
    _baseline_margin("nsfp")


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue #8 is open: fast mode reaches EPE3D 0.51 (rigid) and 1.17 "
                   "(non-rigid, stops early) against NN 0.89 / 1.16 and ICP 0.85 / 1.13")
def test_nsfp_fast_beats_baselines_on_synthetic_scenes() -> None:
    _baseline_margin("nsfp-fast")
