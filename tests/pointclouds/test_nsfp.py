"""NSFP, its distance-transform (Fast NSF) mode, chunking and accumulation."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from motion4d.errors import InvalidArgumentError, ShapeError
from pointclouds import estimate_scene_flow, scene_flow_metrics
from pointclouds.methods.dt import DistanceGrid
from pointclouds.methods.nsfp import (
    EarlyStopping,
    NSFPConfig,
    _cosine_lr,
    _dt_terms,
    _loss_step,
    _reverse_terms,
    accumulate,
    build_field,
    fit_nsfp,
    make_config,
)

SMALL = {"hidden_size": 32, "num_layers": 3}
#: the distance-transform (Fast NSF grid) variant, no longer the nsfp-fast preset but still an option
GRID = {"loss": "dt", "scale_free": False, "rigid_init": False, "rigid_margin": None}


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


def test_chunked_lookup_loss_with_reverse_term_equals_the_unchunked_one(rng: np.random.Generator) -> None:
    """Fast mode's full-cloud step: the lookup term plus the target-to-source term, chunked or not,
    and the reverse term against an explicit loop over target points (float64)."""
    src = torch.from_numpy(rng.uniform(-2, 2, size=(157, 3))).double()
    tgt = torch.from_numpy(rng.uniform(-2, 2, size=(131, 3))).double()
    grid = DistanceGrid.build(tgt.float(), voxel_size=0.1, cover=src.float())
    reverse_idx = torch.from_numpy(rng.integers(0, len(src), len(tgt)))
    grads, losses = [], []
    for chunk in (10_000, 23):
        cfg = make_config("nsfp-fast", chunk_size=chunk, truncate=1.0, truncate_slope=0.1, reverse_weight=0.7,
                          **GRID, **SMALL)
        net = build_field(cfg, torch.device("cpu")).double()
        loss, _ = _loss_step(net, None, src, tgt, grid, cfg, reverse_idx)
        grads.append(torch.cat([p.grad.reshape(-1) for p in net.parameters()]))
        losses.append(loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        flow = net(src)
        forward = _dt_terms(grid, (src + flow).float(), 1.0, 0.1).double().sum() / len(src)
        reverse = 0.0
        for i in range(len(tgt)):
            d = torch.linalg.vector_norm(src[reverse_idx[i]] + flow[reverse_idx[i]] - tgt[i]).item()
            reverse += d if d < 1.0 else 1.0 + 0.1 * (d - 1.0)
    assert losses[1] == pytest.approx(forward.item() + 0.7 * reverse / len(tgt), rel=1e-5)


def test_reverse_terms_pull_the_matched_source_points_towards_the_target() -> None:
    warped = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[0.5, 0.0, 0.0], [0.0, 3.0, 0.0]])
    terms = _reverse_terms(warped, targets, truncate=1.0, slope=0.1)
    torch.testing.assert_close(terms.detach(), torch.tensor([0.5, 1.0 + 0.1 * 2.0]))
    terms.sum().backward()
    # gradient descent moves each warped point towards its target point, weakly beyond 1 m
    torch.testing.assert_close(warped.grad, torch.tensor([[-1.0, 0.0, 0.0], [0.0, -0.1, 0.0]]))


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


def test_grid_mode_recovers_a_translation(rng: np.random.Generator) -> None:
    src, tgt, gt = _translated_pair(rng)
    opts = dict(device="cpu", max_iterations=100, patience=100, voxel_size=0.05, batch_points=128, batch_iterations=60,
                **GRID, **SMALL)
    out = estimate_scene_flow(src, tgt, method="nsfp-fast", **opts)
    assert scene_flow_metrics(out.flow, gt)["epe3d"] < 0.1
    assert out.extras["config"]["loss"] == "dt" and not out.extras["config"]["backward_flow"]
    assert out.extras["dt_build_s"] > 0
    # the best-loss snapshot is taken among the full-cloud steps only
    assert 60 < out.extras["best_iteration"] <= out.iterations <= 100
    again = estimate_scene_flow(src, tgt, method="nsfp-fast", **opts)
    torch.testing.assert_close(out.flow, again.flow, rtol=0, atol=0)


def test_cosine_schedule_runs_from_lr_to_its_floor() -> None:
    cfg = make_config("nsfp-fast", lr=0.01, lr_min_factor=0.1, max_iterations=11)
    rates = [_cosine_lr(cfg, i) for i in range(1, 12)]
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(0.001)
    assert rates[5] == pytest.approx(0.0055)  # half-way: the mean of both ends
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_dt_terms_pull_fully_inside_and_weakly_beyond_the_truncation() -> None:
    grid = DistanceGrid.build(np.zeros((1, 3), np.float32), voxel_size=0.1, margin=3.0)
    q = torch.tensor([[0.3, 0.0, 0.0], [0.0, 2.0, 0.0]], requires_grad=True)
    terms = _dt_terms(grid, q, truncate=1.0, slope=0.1)
    # near: the distance itself; far: r + slope * (d - r) with r = 1 m
    torch.testing.assert_close(terms.detach(), torch.tensor([0.3, 1.0 + 0.1 * 1.0]))
    terms.sum().backward()
    torch.testing.assert_close(q.grad, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.1, 0.0]]))
    dropped = _dt_terms(grid, q.detach().requires_grad_(True), truncate=1.0, slope=0.0)
    assert dropped[1].item() == pytest.approx(1.0)
    assert torch.equal(_dt_terms(grid, q.detach(), truncate=None), grid(q.detach()))


def test_config_validation() -> None:
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp", loss="dt")  # dt is forward-only
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp", lr=-1.0)
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp-faster")
    with pytest.raises(InvalidArgumentError):
        NSFPConfig(activation="tanh").validate()
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp", batch_points=512)  # a chamfer term over a subset is biased
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp", truncate_slope=0.1)
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp", reverse_weight=1.0)  # the chamfer loss has its own target-to-source term
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp-fast", reverse_refresh=0)
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp-fast", reverse_weight=-1.0)
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp-fast", lr_schedule="step")
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp-fast", lr_min_factor=1.5)
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp-fast", batch_average=1.0)
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp-fast", batch_points=0)


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


SCENES = ((3, False), (4, True), (5, False), (6, True))  # (seed, non-rigid) at 2,048 points


@functools.lru_cache(maxsize=None)
def _scene_epe(method: str, seed: int, nonrigid: bool) -> float:
    """EPE3D of ``method`` (default options) on one synthetic scene; cached across the slow tests."""
    from pointclouds.synthetic import make_scene_flow_pair

    s = make_scene_flow_pair(2048, seed=seed, nonrigid=nonrigid, overlap=0.9, noise=0.01, extent=15.0)
    opts = {"device": "cpu"} if method.startswith("nsfp") else {}
    out = estimate_scene_flow(s.source, s.target, method=method, **opts)
    return scene_flow_metrics(out.flow, s.flow, s.mask)["epe3d"]


@pytest.mark.slow
def test_nsfp_beats_baselines_on_synthetic_scenes() -> None:
    """NSFP beats the better of NN flow and ICP by a fifth or more on two scenes.

    (Half, while ICP was the KD-tree + Kabsch loop, which stopped earlier: open3d's ICP reaches 0.53 m
    on the first scene instead of 0.85 m; NSFP 0.36 m.)"""
    for seed, nonrigid in SCENES[:2]:
        epe = {m: _scene_epe(m, seed, nonrigid) for m in ("nn", "icp", "nsfp")}
        assert epe["nsfp"] < 0.8 * min(epe["nn"], epe["icp"]), epe


@pytest.mark.slow
def test_nsfp_fast_beats_baselines_on_synthetic_scenes() -> None:
    """Fast mode beats the better baseline on every scene, by about a third on average (scenes of another
    generator than the benchmark's: mover-dominated, so the scale-free fast mode fits them from no motion)."""
    ratios = []
    for seed, nonrigid in SCENES:
        epe = {m: _scene_epe(m, seed, nonrigid) for m in ("nn", "icp", "nsfp-fast")}
        ratios.append(epe["nsfp-fast"] / min(epe["nn"], epe["icp"]))
        assert ratios[-1] < 0.85, (seed, epe)
    # measured 0.71 / 0.32 / 0.80 / 0.79 (mean 0.66) against open3d's ICP; the bounds were 0.8 / 0.6
    # against the KD-tree + Kabsch ICP, which stopped earlier (0.85 m instead of 0.53 m on the first scene)
    assert float(np.mean(ratios)) < 0.7, ratios


@pytest.mark.slow
def test_nsfp_fast_stays_close_to_nsfp() -> None:
    """Fast mode's mean EPE3D over the four scenes is within 10 % of NSFP's (the issue's target).

    Measured: NSFP 0.411, scale-free fast mode 0.384 (0.697 while it always started from the ICP
    motion, which these mover-dominated scenes do not have; 0.608 with target-to-source indices 25
    steps stale instead of 5).
    """
    fast = np.mean([_scene_epe("nsfp-fast", seed, nonrigid) for seed, nonrigid in SCENES])
    full = np.mean([_scene_epe("nsfp", seed, nonrigid) for seed, nonrigid in SCENES])
    assert fast < 1.1 * full, (fast, full)


def test_stop_forecast_is_early_stopping_aware() -> None:
    """On a geometrically settling loss the forecast final step, made at a third of the run, is within
    30 % of where EarlyStopping really stops (the old bar's total was max_iterations: 5,000)."""
    from pointclouds.methods.nsfp import StopForecast

    patience, min_delta = 30, 1e-4
    losses = [0.01 + 0.5 * 0.985**t for t in range(5000)]
    stopper = EarlyStopping(patience, min_delta)
    stop = next(t for t, v in enumerate(losses, start=1) if stopper.step(v))
    forecast = StopForecast(patience, min_delta, 5000)
    guesses = [forecast.update(t, v) for t, v in enumerate(losses[:stop], start=1)]
    assert all(g is None for g in guesses[: 2 * patience])
    third = guesses[stop // 3]
    assert third is not None and abs(third - stop) < 0.3 * stop, (third, stop)
    assert guesses[-1] == pytest.approx(stop, abs=patience)
    assert all(g is None or g <= 5000 for g in guesses)


def test_stop_forecast_on_a_real_fit(rng: np.random.Generator) -> None:
    from pointclouds.methods.nsfp import StopForecast

    src, tgt, _ = _translated_pair(rng, 300)
    cfg = make_config("nsfp", backward_flow=False, **SMALL)
    result = fit_nsfp(src, tgt, cfg, device="cpu")
    assert len(result.losses) == result.iterations < cfg.max_iterations
    forecast = StopForecast(cfg.patience, cfg.min_delta, cfg.max_iterations)
    guesses = [forecast.update(t, v) for t, v in enumerate(result.losses, start=1)]
    half = next((g for g in guesses[result.iterations // 2:] if g is not None), None)
    assert half is not None and half < 3 * result.iterations, (half, result.iterations)


def test_reused_indices_give_nsfps_chamfer(rng: np.random.Generator) -> None:
    """The lean loss with prebuilt KD-trees equals chamfer_distance's (both directions, truncated, cycle)."""
    from pointclouds.methods.nsfp import NearestIndex
    from pointclouds.neighbors import chamfer_distance

    src = torch.from_numpy(rng.uniform(-2, 2, size=(300, 3)).astype(np.float32))
    tgt = torch.from_numpy(rng.uniform(-2, 2, size=(280, 3)).astype(np.float32))
    cfg = make_config("nsfp", truncate=1.0, hidden_dtype="float32", **SMALL)
    net, inverse = build_field(cfg, torch.device("cpu")), build_field(cfg, torch.device("cpu"))
    loss, flow = _loss_step(net, inverse, src, tgt, None, cfg, indices=(NearestIndex(src), NearestIndex(tgt)))
    with torch.no_grad():
        warped = src + net(src)
        back = warped - inverse(warped)
        expected = chamfer_distance(warped, tgt, truncate=1.0).loss + chamfer_distance(back, src, truncate=1.0).loss
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(flow, warped - src)


def test_bf16_hidden_products_stay_close_to_float32(rng: np.random.Generator) -> None:
    from pointclouds.methods.nsfp import FlowField

    torch.manual_seed(0)
    exact = FlowField(64, 4)
    half = FlowField(64, 4, hidden_dtype=torch.bfloat16)
    half.load_state_dict(exact.state_dict())
    x = torch.from_numpy(rng.normal(size=(500, 3)).astype(np.float32))
    a, b = exact(x), half(x)
    assert b.dtype == torch.float32
    assert (a - b).norm() / a.norm() < 2e-2
    assert make_config("nsfp", hidden_dtype="float32").hidden_dtype == "float32"
    with pytest.raises(InvalidArgumentError):
        make_config("nsfp", hidden_dtype="float16")


def _box_room(rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walls of a box room seen twice (independent samples) after a small rigid motion, plus a moved box."""
    def surface(n: int) -> np.ndarray:
        p = rng.uniform(-1, 1, size=(n, 3)) * np.array([3.0, 2.0, 1.5])
        axis = rng.integers(0, 3, n)
        p[np.arange(n), axis] = np.sign(rng.uniform(-1, 1, n)) * np.array([3.0, 2.0, 1.5])[axis]
        return p
    R = np.array([[np.cos(0.04), -np.sin(0.04), 0], [np.sin(0.04), np.cos(0.04), 0], [0, 0, 1]])
    t = np.array([0.15, -0.05, 0.02])
    src = surface(1500)
    tgt = surface(1500) @ R.T + t
    flow = src @ R.T + t - src
    return (src * scale).astype(np.float32), (tgt * scale).astype(np.float32), (flow * scale).astype(np.float32)


def test_fast_mode_is_scale_free(rng: np.random.Generator) -> None:
    """nsfp-fast on a room and on the same room 40x larger (a street): the same flow, scaled."""
    src, tgt, gt = _box_room(rng, 1.0)
    small = estimate_scene_flow(src, tgt, method="nsfp-fast", device="cpu", hidden_dtype="float32")
    large = estimate_scene_flow(src * 40, tgt * 40, method="nsfp-fast", device="cpu", hidden_dtype="float32")
    np.testing.assert_allclose(large.numpy() / 40, small.numpy(), atol=2e-3)
    assert scene_flow_metrics(small.flow, gt)["epe3d"] < 0.2 * scene_flow_metrics(
        estimate_scene_flow(src, tgt, method="nn").flow, gt)["epe3d"]
    assert small.extras["spacing"] * 40 == pytest.approx(large.extras["spacing"], rel=1e-4)


def test_fast_mode_does_not_depend_on_the_vertical_axis(rng: np.random.Generator) -> None:
    src, tgt, gt = _box_room(rng, 1.0)
    from pointclouds.benchmark.meshes import random_rotation

    R = random_rotation(np.random.default_rng(5)).astype(np.float32)
    upright = estimate_scene_flow(src, tgt, method="nsfp-fast", device="cpu")
    turned = estimate_scene_flow(src @ R.T, tgt @ R.T, method="nsfp-fast", device="cpu")
    a = scene_flow_metrics(upright.flow, gt)["epe3d"]
    b = scene_flow_metrics(turned.flow, gt @ R.T)["epe3d"]
    assert b < 1.5 * a + 0.01 and a < 1.5 * b + 0.01, (a, b)


@pytest.mark.parametrize("seed, convention, extent, overlap, points", [(34, "camera_y_up", 40.0, 0.85, 2048),
                                                                      (39, "camera_y_down", 30.0, 0.8, 2048),
                                                                      (60, "camera_y_up", 40.0, 0.85, 4096),
                                                                      (62, "camera_y_up", 40.0, 0.85, 4096)])
def test_fast_mode_keeps_a_standing_camera_still_among_movers(seed: int, convention: str, extent: float,
                                                              overlap: float, points: int) -> None:
    """A camera standing in a street, cars driving along it, the target cropped (issue #21's failing family,
    tuning seeds): the walls and ground do not pin a slide along the street, and a score with a residual cap
    wider than the noise let ICP's slide onto the cars beat "no motion" (seeds 34 / 39: rigid start |t| 0.84 /
    1.37 m, nsfp-fast EPE3D 0.13 / 1.12 against NN's 0.11 / 0.36); with the robust cap alone, seeds 60 / 62
    still slid (|t| 0.66 / 1.30 m, EPE3D 0.51 / 1.12 against NN's 0.18 / 0.37) until the motion also needed
    the support of the points that tell it from no motion."""
    pytest.importorskip("open3d")
    from pointclouds.benchmark.scenes import SceneSpec, make_benchmark_scene

    sample = make_benchmark_scene(SceneSpec("street", "movers", "camera", convention, points, seed, extent=extent,
                                            noise=0.02, overlap=overlap))
    out = estimate_scene_flow(sample.source, sample.target, method="nsfp-fast", device="cpu")
    assert float(out.extras["rigid_transform"][:3, 3].norm()) < 0.1 * out.extras["spacing"]
    epe = {m: scene_flow_metrics(estimate_scene_flow(sample.source, sample.target, method=m).flow, sample.flow,
                                 sample.mask)["epe3d"] for m in ("nn", "icp")}
    assert scene_flow_metrics(out.flow, sample.flow, sample.mask)["epe3d"] < min(epe.values()), epe


def test_robust_cap_follows_the_best_candidates_noise() -> None:
    from pointclouds.methods.nsfp_fast import CAP_SIGMAS, robust_cap

    rng = np.random.default_rng(0)
    fitted, spread = np.abs(rng.normal(0, 0.02, 10000)), np.abs(rng.normal(0, 0.3, 10000))
    assert robust_cap([spread, fitted], spacing=0.01) == pytest.approx(CAP_SIGMAS * 0.02, rel=0.05)
    assert robust_cap([np.zeros(100), spread], spacing=0.1) == 0.05  # noise-free fit: half a spacing


def test_motion_support_counts_only_the_points_that_tell_the_motions_apart() -> None:
    from pointclouds.methods.nsfp_fast import motion_support

    still = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.05, 0.0])  # cap 0.2: three points fit only the motion,
    moved = np.array([0.0, 0.05, 1.0, 0.0, 0.0, 0.0, 0.0, 0.04])  # one only no motion, four both
    assert motion_support(still, moved, cap=0.2) == pytest.approx(0.75)
    assert motion_support(moved, still, cap=0.2) == pytest.approx(0.25)
    assert motion_support(still[:2], moved[:2], cap=0.2) == 0.5



def test_area_uniform_subset_evens_out_the_sensors_density() -> None:
    """Two 1 m x 1 m patches, one sampled 16x denser (a camera's near ground against a far wall): a random
    subset keeps 94 % of its points on the dense patch, the area-uniform one about half."""
    from pointclouds.methods.nsfp_fast import area_uniform_subset

    rng = np.random.default_rng(0)
    dense = np.c_[rng.random((16000, 2)), np.zeros(16000)]
    sparse = np.c_[rng.random((1000, 2)) + [5.0, 0.0], np.zeros(1000)]
    points = np.r_[dense, sparse]
    pick = area_uniform_subset(points, 500, spacing=0.005)
    assert len(pick) <= 500 and len(np.unique(pick)) == len(pick)
    assert 0.35 < np.mean(pick < len(dense)) < 0.65
    assert np.array_equal(pick, area_uniform_subset(points, 500, spacing=0.005))  # deterministic


def test_weakest_direction_is_the_slide_that_planes_leave_free() -> None:
    """A corridor (floor and two walls along one axis, any orientation): its axis, up to sign."""
    from pointclouds.benchmark.meshes import random_rotation
    from pointclouds.methods.nsfp_fast import weakest_direction

    R = random_rotation(np.random.default_rng(3))
    normals = np.r_[np.tile([0.0, 0.0, 1.0], (500, 1)), np.tile([0.0, 1.0, 0.0], (300, 1)),
                    np.tile([0.0, -1.0, 0.0], (300, 1)), np.tile([1.0, 0.0, 0.0], (20, 1))]  # a far end wall
    assert abs(weakest_direction(normals @ R.T) @ R[:, 0]) > 0.999


def test_fast_mode_fits_driving_cars_with_their_own_icp() -> None:
    """Cars driving along a street seen by a standing camera (tuning seed 30): a chamfer-fitted field leaves
    a car that moved metres along its own sides nearly where it was (EPE3D 0.139 against NN's 0.146 without
    the movers' ICP); each off-surface cluster's own ICP brings it onto its target."""
    pytest.importorskip("open3d")
    from pointclouds.benchmark.scenes import SceneSpec, make_benchmark_scene

    sample = make_benchmark_scene(SceneSpec("street", "movers", "camera", "camera_y_up", 4096, 30, extent=40.0,
                                            noise=0.02, overlap=0.8))
    out = estimate_scene_flow(sample.source, sample.target, method="nsfp-fast", device="cpu")
    nn_flow = estimate_scene_flow(sample.source, sample.target, method="nn").flow
    assert out.extras["mover_clusters"] >= 1
    assert scene_flow_metrics(out.flow, sample.flow, sample.mask)["epe3d"] < 0.5 * scene_flow_metrics(
        nn_flow, sample.flow, sample.mask)["epe3d"]
    cars = sample.mask & sample.point_data["dynamic"]
    error = {name: np.linalg.norm(np.asarray(f)[cars] - sample.flow[cars], axis=1).mean()
             for name, f in (("fast", out.flow), ("nn", nn_flow))}
    assert error["fast"] < 0.6 * error["nn"], error
