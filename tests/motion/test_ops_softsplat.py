"""Softmax splatting: the reference against an explicit loop, every backend against the reference."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from motion.ops import _backend, softsplat
from motion4d import errors

MODES = ["sum", "average", "linear", "softmax"]
CUDA = pytest.mark.cuda


@pytest.fixture(scope="module")
def compiled() -> None:
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine")
    assert _backend.load(), _backend.status()


def make_inputs(b: int, c: int, h: int, w: int, seed: int, dtype: torch.dtype = torch.float64,
                spread: float = 3.0):
    """Features, a flow that pushes some pixels out of the image, and a metric."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    flow = spread * torch.randn(b, 2, h, w, generator=g, dtype=torch.float64)
    flow[:, 0, 0, :] += w  # the first row leaves the image to the right
    metric = torch.rand(b, 1, h, w, generator=g, dtype=torch.float64) + 0.1  # positive: linear mode
    return feats.to(dtype), flow.to(dtype), metric.to(dtype)


def explicit_splat(feats: np.ndarray, flow: np.ndarray, metric: np.ndarray | None, mode: str) -> np.ndarray:
    """Niklaus & Liu forward warping written out pixel by pixel."""
    b, c, h, w = feats.shape
    num = np.zeros((b, c, h, w))
    den = np.zeros((b, h, w))
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                tx, ty = x + flow[bi, 0, y, x], y + flow[bi, 1, y, x]
                if not (math.isfinite(tx) and math.isfinite(ty)):
                    continue
                weight = {"sum": 1.0, "average": 1.0, "linear": None, "softmax": None}[mode]
                if mode == "linear":
                    weight = metric[bi, 0, y, x]
                elif mode == "softmax":
                    weight = math.exp(metric[bi, 0, y, x])
                x0, y0 = math.floor(tx), math.floor(ty)
                for cx, cy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                    if 0 <= cx < w and 0 <= cy < h:
                        bil = (1 - abs(tx - cx)) * (1 - abs(ty - cy))
                        num[bi, :, cy, cx] += bil * weight * feats[bi, :, y, x]
                        den[bi, cy, cx] += bil * weight
    if mode == "sum":
        return num
    den[den == 0] = 1.0  # CVPR 2020 release: empty targets stay 0
    return num / den[:, None]


@pytest.mark.parametrize("mode", MODES)
def test_reference_matches_explicit_loop(mode: str) -> None:
    feats, flow, metric = make_inputs(2, 3, 7, 9, 0)
    flow[0, :, 2, 3] = float("nan")  # non-finite targets are dropped
    m = metric if mode in ("linear", "softmax") else None
    out = softsplat(feats, flow, m, mode=mode, backend="torch")
    expected = explicit_splat(feats.numpy(), flow.numpy(), None if m is None else m.numpy(), mode)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_integer_translation_moves_the_image() -> None:
    feats = torch.arange(2 * 5 * 6, dtype=torch.float64).view(1, 2, 5, 6)
    flow = torch.zeros(1, 2, 5, 6, dtype=torch.float64)
    flow[:, 0], flow[:, 1] = 2.0, 1.0
    out = softsplat(feats, flow, mode="average", backend="torch")
    assert torch.equal(out[:, :, 1:, 2:], feats[:, :, :-1, :-2])
    assert (out[:, :, :1] == 0).all() and (out[:, :, :, :2] == 0).all()  # nothing lands there


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 16, 12, 9), (1, 33, 1, 11)], ids=str)
def test_cpp_matches_reference(compiled, shape, mode: str, dtype: torch.dtype) -> None:
    results = {}
    for backend, dt in (("torch", torch.float64), ("cpp", dtype)):
        feats, flow, metric = (t.to(dt).requires_grad_() for t in make_inputs(*shape, seed=1))
        out = softsplat(feats, flow, metric if mode in ("linear", "softmax") else None, mode=mode, backend=backend)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        out.backward(upstream.to(dt))
        grads = [feats.grad, flow.grad] + ([metric.grad] if mode in ("linear", "softmax") else [])
        results[backend] = [t.detach().double() for t in [out] + grads]
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    for name, got, want in zip(("output", "grad features", "grad flow", "grad metric"), results["cpp"],
                               results["torch"]):
        scale = max(1.0, want.abs().max().item())
        assert torch.allclose(got, want, rtol=tol, atol=tol * scale), f"{name}: {(got - want).abs().max().item():.3g}"


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck(request, backend: str, mode: str) -> None:
    if backend == "cpp":
        request.getfixturevalue("compiled")
    feats, flow, metric = (t.requires_grad_() for t in make_inputs(1, 2, 4, 5, seed=2, spread=1.5))
    if mode in ("linear", "softmax"):
        fn, args = (lambda f, u, m: softsplat(f, u, m, mode=mode, backend=backend)), (feats, flow, metric)
    else:
        fn, args = (lambda f, u: softsplat(f, u, mode=mode, backend=backend)), (feats, flow)
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7, fast_mode=True)


def test_opcheck(compiled) -> None:
    feats, flow, _ = make_inputs(2, 3, 5, 6, seed=3, dtype=torch.float32)
    torch.library.opcheck(torch.ops.motion4d.splat.default, (feats.requires_grad_(), flow.requires_grad_()))


def test_softmax_is_stable_for_large_metrics() -> None:
    # exp(1000) overflows even float64; the max subtraction keeps the (shift-invariant) result.
    feats, flow, metric = make_inputs(1, 3, 6, 7, seed=4)
    shifted = softsplat(feats, flow, metric + 1000.0, mode="softmax", backend="torch")
    plain = softsplat(feats, flow, metric, mode="softmax", backend="torch")
    assert torch.isfinite(shifted).all()
    assert torch.allclose(shifted, plain, atol=1e-10)


def test_non_finite_flow_is_dropped(compiled) -> None:
    feats, flow, _ = make_inputs(1, 2, 5, 6, seed=5)
    flow[0, 0, 1, 1] = float("inf")
    flow[0, 1, 3, 2] = float("nan")
    ref = softsplat(feats, flow, mode="average", backend="torch")
    out = softsplat(feats, flow, mode="average", backend="cpp")
    assert torch.isfinite(ref).all() and torch.allclose(out, ref, atol=1e-12)


def test_invalid_arguments_raise_clear_errors() -> None:
    feats, flow, metric = make_inputs(1, 3, 4, 5, seed=0)
    with pytest.raises(errors.InvalidArgumentError, match="needs a metric"):
        softsplat(feats, flow, mode="softmax")
    with pytest.raises(errors.InvalidArgumentError, match="only used by"):
        softsplat(feats, flow, metric, mode="average")
    with pytest.raises(errors.InvalidArgumentError, match="mode"):
        softsplat(feats, flow, mode="max")
    with pytest.raises(errors.ShapeError, match="flow"):
        softsplat(feats, flow[:, :1])
    with pytest.raises(errors.ShapeError, match="metric"):
        softsplat(feats, flow, metric.expand(1, 2, 4, 5), mode="linear")
    with pytest.raises(errors.InvalidArgumentError, match="CUDA tensors"):
        softsplat(feats, flow, backend="cuda")


# ------------------------------------------------------------------ CUDA (run by bench/gpu_check.sh)

@CUDA
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 16, 12, 9), (1, 33, 1, 11)], ids=str)
def test_cuda_matches_reference(shape, mode: str, dtype: torch.dtype) -> None:
    assert _backend.has_cuda(), _backend.status()
    results = {}
    for backend, dt, device in (("torch", torch.float64, "cpu"), ("cuda", dtype, "cuda")):
        feats, flow, metric = (t.to(device=device, dtype=dt).requires_grad_() for t in make_inputs(*shape, seed=1))
        out = softsplat(feats, flow, metric if mode in ("linear", "softmax") else None, mode=mode, backend=backend)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        out.backward(upstream.to(device=device, dtype=dt))
        grads = [feats.grad, flow.grad] + ([metric.grad] if mode in ("linear", "softmax") else [])
        results[backend] = [t.detach().cpu().double() for t in [out] + grads]
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    for got, want in zip(results["cuda"], results["torch"]):
        assert torch.allclose(got, want, rtol=tol, atol=tol * max(1.0, want.abs().max().item()))


@CUDA
@pytest.mark.parametrize("mode", MODES)
def test_cuda_gradcheck(mode: str) -> None:
    assert _backend.has_cuda(), _backend.status()
    feats, flow, metric = (t.cuda().requires_grad_() for t in make_inputs(1, 2, 4, 5, seed=2, spread=1.5))
    args = (feats, flow, metric) if mode in ("linear", "softmax") else (feats, flow)
    # The splatting forward adds with atomics (its output feeds the normalised modes' backward).
    assert torch.autograd.gradcheck(lambda *a: softsplat(*a, mode=mode, backend="cuda"), args, eps=1e-6, atol=1e-7,
                                    nondet_tol=1e-12, fast_mode=True)


@CUDA
def test_cuda_opcheck_and_autocast() -> None:
    assert _backend.has_cuda(), _backend.status()
    feats, flow, _ = make_inputs(2, 3, 5, 6, seed=3, dtype=torch.float32)
    feats, flow = feats.cuda(), flow.cuda()
    torch.library.opcheck(torch.ops.motion4d.splat.default, (feats.requires_grad_(), flow.requires_grad_()))
    with torch.autocast("cuda", dtype=torch.float16):
        out = softsplat(feats.detach().half(), flow.detach(), mode="average", backend="cuda")
    assert out.dtype == torch.float32
