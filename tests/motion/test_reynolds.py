"""Reynolds flow: Poisson solvers against references, physics on synthetic scenes with exact flow, encodings."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch

import motion
from motion.models.poisson import (
    dct,
    idct,
    laplacian,
    solve_poisson_dct,
    solve_poisson_pcg,
    weighted_laplacian,
)
from motion.models.reynolds import reynolds_flow
from motion.models.reynolds_encoding import ReynoldsEncoder, flow_to_hsv, reynolds_hsv
from motion.synthetic import make_sequence
from motion4d.errors import InvalidArgumentError, NonFiniteError


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties counted half."""
    values = np.concatenate([positive, negative])
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    # average the ranks of ties
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    n_pos = len(positive)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * len(negative)))


# ---------------------------------------------------------------- solvers


@pytest.mark.parametrize("n", [1, 2, 5, 8, 13])
def test_torch_dct_matches_scipy(n):
    x = torch.randn(3, 4, n, dtype=torch.float64)
    ref = scipy.fft.dct(x.numpy(), type=2, axis=-1)
    assert np.allclose(dct(x).numpy(), ref, atol=1e-10)
    assert np.allclose(idct(dct(x)).numpy(), x.numpy(), atol=1e-12)
    assert np.allclose(dct(x, dim=1).numpy(), scipy.fft.dct(x.numpy(), type=2, axis=1), atol=1e-10)


def _explicit_neumann_laplacian(phi: np.ndarray) -> np.ndarray:
    """Loop-based 5-point Laplacian with zero-flux borders (independent of the vectorised one)."""
    h, w = phi.shape
    out = np.zeros_like(phi)
    for i in range(h):
        for j in range(w):
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                a, b = i + di, j + dj
                if 0 <= a < h and 0 <= b < w:
                    out[i, j] += phi[a, b] - phi[i, j]
    return out


@pytest.mark.parametrize("backend", ["scipy", "torch"])
def test_dct_poisson_solve_is_exact(backend):
    rhs = torch.randn(2, 9, 14, dtype=torch.float64)
    phi = solve_poisson_dct(rhs, backend=backend)
    target = rhs - rhs.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(laplacian(phi), target, atol=1e-10)
    assert np.allclose(_explicit_neumann_laplacian(phi[0].numpy()), target[0].numpy(), atol=1e-10)
    assert phi.mean(dim=(-2, -1)).abs().max() < 1e-12


def test_pcg_solves_variable_coefficient_problem():
    gen = torch.Generator().manual_seed(0)
    coefficient = 0.2 + torch.rand(2, 24, 32, generator=gen, dtype=torch.float64)
    rhs = torch.randn(2, 24, 32, generator=gen, dtype=torch.float64)
    phi, residual = solve_poisson_pcg(coefficient, rhs, iterations=200, tolerance=1e-10)
    cx = 0.5 * (coefficient[..., :, 1:] + coefficient[..., :, :-1])
    cy = 0.5 * (coefficient[..., 1:, :] + coefficient[..., :-1, :])
    target = rhs - rhs.mean(dim=(-2, -1), keepdim=True)
    assert torch.allclose(weighted_laplacian(phi, cx, cy), target, atol=1e-7)
    assert residual.max() < 1e-9
    # constant coefficient: PCG must agree with the direct DCT solve (the preconditioner is exact)
    const = torch.full_like(coefficient, 0.7)
    phi_pcg, _ = solve_poisson_pcg(const, rhs, iterations=5, tolerance=1e-12)
    assert torch.allclose(phi_pcg, solve_poisson_dct(rhs / 0.7), atol=1e-9)


# ---------------------------------------------------------------- physics on synthetic scenes


def _bright_movers(seed: int, **light):
    """A static dark background with bright textured movers (intensities remapped by layer id, so
    the exact flow of the synthetic scene is unchanged)."""
    seq = make_sequence(T=4, height=80, width=112, num_layers=2, seed=seed, background_motion=False, **light)
    frames = seq.frames.astype(np.float32)
    mover = seq.layer_ids > 0
    frames = np.where(mover[..., None], 100 + 0.6 * frames, 0.35 * frames)
    return seq, torch.from_numpy(frames / 255.0).permute(0, 3, 1, 2)


def _mover_directions(v_r: np.ndarray, seq) -> list[float]:
    cosines = []
    for t in range(v_r.shape[0]):
        for layer in (1, 2):
            inside = seq.layer_ids[t] == layer
            if inside.sum() < 30:
                continue
            mean_vr = v_r[t][:, inside].mean(axis=1)
            mean_gt = seq.flow_forward[t][:, inside].mean(axis=1)
            cosines.append(float(mean_vr @ mean_gt / (np.linalg.norm(mean_vr) * np.linalg.norm(mean_gt) + 1e-12)))
    return cosines


@pytest.mark.parametrize("light", [{}, {"brightness_change": 0.06, "local_light": 0.3}], ids=["plain", "lighting"])
def test_reynolds_vr_points_along_bright_movers_and_separates_them(light):
    aucs, ratios, cosines = [], [], []
    for seed in (0, 1, 2):
        seq, frames = _bright_movers(seed, **light)
        terms = reynolds_flow(frames[:-1], frames[1:])
        v_r = terms.v_r.numpy()
        magnitude = np.hypot(v_r[:, 0], v_r[:, 1])
        mover = seq.layer_ids[:-1] > 0
        aucs.append(auc(magnitude[mover], magnitude[~mover]))
        ratios.append(magnitude[mover].mean() / magnitude[~mover].mean())
        cosines += _mover_directions(v_r, seq)
    print(f"\nReynolds |v_r| movers vs background {light}: AUC {np.mean(aucs):.3f} (min {min(aucs):.3f}), "
          f"mean ratio {np.mean(ratios):.1f}x; direction cosine mean {np.mean(cosines):.2f} min {min(cosines):.2f}")
    assert min(aucs) > 0.8
    assert min(ratios) > 2.0
    assert np.mean(cosines) > 0.8 and min(cosines) > 0.3


def test_vr_of_dark_movers_points_backwards():
    """Intensity behaves as mass: a dark object moving right reads as bright background moving left."""
    seq = make_sequence(T=3, height=80, width=112, num_layers=2, seed=0, background_motion=False)
    frames = seq.frames.astype(np.float32)
    frames = np.where((seq.layer_ids > 0)[..., None], 0.3 * frames, 120 + 0.5 * frames)
    frames = torch.from_numpy(frames / 255.0).permute(0, 3, 1, 2)
    v_r = reynolds_flow(frames[:-1], frames[1:]).v_r.numpy()
    assert np.mean(_mover_directions(v_r, seq)) < -0.5


def test_global_lighting_is_removed():
    seq = make_sequence(T=2, height=64, width=80, num_layers=0, seed=4, background_motion=False)
    frames = torch.from_numpy(seq.frames.astype(np.float32) / 255.0 * 0.8).permute(0, 3, 1, 2)
    brighter = frames[1:] * 1.15 + 0.03  # static scene, gain and offset change only (no clipping)
    for mode in ("local", "affine"):
        terms = reynolds_flow(frames[:1], brighter, lighting=mode)
        assert terms.v_r.abs().max() < 0.05, mode
        assert terms.v_o.abs().mean() < 0.05, mode
    uncorrected = reynolds_flow(frames[:1], brighter, lighting="none")
    assert uncorrected.v_r.abs().max() > 0.2
    affine = reynolds_flow(frames[:1], brighter, lighting="affine")
    assert abs(float(affine.lighting[0, 1]) - 2 * 0.15 / 2.15) < 0.02  # f_t = 2(g-1)/(g+1) f + offset term


def test_vr_is_curl_free_and_solves_the_continuity_equation():
    seq, frames = _bright_movers(5)
    for solver in ("dct", "pcg"):
        terms = reynolds_flow(frames[:1].double(), frames[1:2].double(), solver=solver, pcg_tolerance=1e-8, pcg_iterations=100)
        u, v = terms.v_r[0, 0].numpy(), terms.v_r[0, 1].numpy()
        curl = (v[1:-1, 2:] - v[1:-1, :-2]) / 2 - (u[2:, 1:-1] - u[:-2, 1:-1]) / 2
        assert np.abs(curl[1:-1, 1:-1]).max() < 1e-9, solver
        assert float(terms.residual.max()) < 1e-6


def test_solver_and_filter_backends_agree():
    seq, frames = _bright_movers(6)
    a, b = frames[:2], frames[1:3]
    base = reynolds_flow(a, b)  # float32 on CPU: OpenCV filters + scipy DCT
    torch_dct = reynolds_flow(a, b, dct_backend="torch")
    kornia_path = reynolds_flow(a.double(), b.double(), dct_backend="torch")  # float64: kornia filters
    assert torch.allclose(base.v_r, torch_dct.v_r, atol=1e-4)
    assert torch.allclose(base.v_r.double(), kornia_path.v_r, atol=1e-4)
    assert torch.allclose(base.v_o.double(), kornia_path.v_o, atol=1e-4)


@pytest.mark.cuda
def test_reynolds_on_cuda_matches_cpu():
    seq, frames = _bright_movers(7)
    cpu = reynolds_flow(frames[:-1], frames[1:])
    gpu = reynolds_flow(frames[:-1].cuda(), frames[1:].cuda())
    assert torch.allclose(cpu.v_r, gpu.v_r.cpu(), atol=1e-3)
    pcg_gpu = reynolds_flow(frames[:-1].cuda(), frames[1:].cuda(), solver="pcg")
    assert pcg_gpu.v_r.is_cuda and torch.isfinite(pcg_gpu.v_r).all()


# ---------------------------------------------------------------- the model


def test_model_shapes_backward_and_options():
    seq = make_sequence(T=4, height=40, width=48, seed=1)
    frames = seq.frames_tensor().repeat(2, 1, 1, 1, 1)
    model = motion.create("reynolds", device="cpu", backward=True)
    out = model(frames)
    assert out.forward.shape == (2, 3, 2, 40, 48) and out.backward.shape == (2, 3, 2, 40, 48)
    assert out.extras["v_o"].shape == (2, 3, 2, 40, 48) and out.extras["intensity"].shape == (2, 3, 40, 48)
    assert torch.allclose(out.forward, out.extras["v_o"] + out.extras["v_r"])
    # the backward flow is Reynolds flow of the reversed pairs
    reverse = reynolds_flow(frames[0, 1:], frames[0, :-1]).total
    assert torch.allclose(out.backward[0], reverse, atol=1e-6)
    for vo in ("dis", "farneback"):
        flow = motion.create("reynolds", device="cpu", vo=vo, solver="pcg", output="v_o")(frames[:1]).forward
        assert flow.shape == (1, 3, 2, 40, 48) and torch.isfinite(flow).all()
    with pytest.raises(InvalidArgumentError):
        motion.create("reynolds", vo="raft")
    with pytest.raises(InvalidArgumentError):
        motion.create("reynolds", not_an_option=1)
    with pytest.raises(InvalidArgumentError):
        motion.create("reynolds", weights="x.pth")


def test_bad_frames_raise():
    a = torch.rand(1, 3, 16, 16)
    bad = a.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(NonFiniteError):
        reynolds_flow(a, bad)
    with pytest.raises(InvalidArgumentError):
        reynolds_flow(a, torch.rand(1, 3, 16, 17))
    with pytest.raises(motion.ShapeError):
        motion.create("reynolds")(torch.rand(1, 1, 3, 16, 16))


# ---------------------------------------------------------------- encodings


def test_hsv_follows_opencv_convention():
    flow = np.zeros((2, 4, 6), np.float32)
    flow[0, :, :3] = 2.0  # right, full magnitude
    image = flow_to_hsv(flow, max_magnitude=2.0)
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == (255, 0, 0)  # hue 0 = red
    assert tuple(image[0, 5]) == (0, 0, 0)  # no motion = black
    down = flow_to_hsv(np.stack([np.zeros((2, 2)), np.ones((2, 2))]).astype(np.float32), 1.0)
    assert down[0, 0, 1] == 255 and down[0, 0, 2] == 0  # 90 degrees: between yellow and green
    terms = reynolds_flow(torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12, 12))
    images = reynolds_hsv(terms, max_magnitude=1.0)
    assert set(images) == {"v_o", "v_r", "sum"} and images["sum"].shape == (2, 12, 12, 3)


def test_rgb_encoding_channels_and_normalisers():
    v_o = torch.zeros(2, 2, 4, 4)
    v_o[:, 0, 0, 0] = 4.0  # |v_o| = 4 at one pixel
    v_r = torch.zeros(2, 2, 4, 4)
    v_r[:, 1, 1, 1] = -1.0  # |v_r| = 1 at another
    intensity = torch.full((2, 4, 4), 0.5)
    fixed = ReynoldsEncoder(normalize="fixed", bounds=(8.0, 2.0))(v_o, v_r, intensity)
    assert fixed.shape == (2, 4, 4, 3) and fixed.dtype == np.uint8
    assert fixed[0, 0, 0, 0] == 128 and fixed[0, 1, 1, 1] == 128 and fixed[0, 2, 2, 2] == 128
    assert fixed[0, 2, 2, 0] == 0 and fixed[0, 2, 2, 1] == 0
    bgr = ReynoldsEncoder(normalize="fixed", order="BGR")(v_o, v_r, intensity)
    assert np.array_equal(bgr, fixed[..., ::-1])
    minmax = ReynoldsEncoder(normalize="minmax")(v_o, v_r, intensity)
    assert minmax[0, 0, 0, 0] == 255 and minmax[0, 1, 1, 1] == 255
    # percentile mode is a running normaliser: a sudden 10x frame is not rescaled to full range at once
    encoder = ReynoldsEncoder(normalize="percentile", percentile=100.0, momentum=0.9)
    steady = encoder(v_o[:1], v_r[:1], intensity[:1])
    jump = encoder(10 * v_o[:1], v_r[:1], intensity[:1])
    assert steady[0, 0, 0, 0] == 255 and jump[0, 0, 0, 0] == 255
    encoder.reset()
    frames = [encoder(v_o[:1] * s, v_r[:1], intensity[:1])[0, 0, 0, 0] for s in (1.0, 1.0, 0.5)]
    assert frames[0] == frames[1] == 255 and 120 < frames[2] < 140  # the scale did not follow the dip at once
    with pytest.raises(InvalidArgumentError):
        ReynoldsEncoder(normalize="sometimes")


def test_encoder_opencv_and_torch_paths_agree():
    gen = torch.Generator().manual_seed(3)
    v_o, v_r = torch.randn(3, 2, 20, 24, generator=gen) * 3, torch.randn(3, 2, 20, 24, generator=gen)
    intensity = torch.rand(3, 20, 24, generator=gen)
    for mode in ("minmax", "fixed", "percentile"):
        fast = ReynoldsEncoder(normalize=mode)(v_o, v_r, intensity)  # float32 CPU: OpenCV
        reference = ReynoldsEncoder(normalize=mode)(v_o.double(), v_r.double(), intensity.double())  # torch
        assert np.abs(fast.astype(int) - reference.astype(int)).max() <= 1, mode
