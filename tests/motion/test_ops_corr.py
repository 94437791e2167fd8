"""Correlation volume: RAFT semantics against an explicit loop, every backend against the reference."""
from __future__ import annotations

import functools
import math
import shutil
import warnings

import numpy as np
import pytest
import torch

from motion.ops import CorrelationVolume, _backend, _reference
from motion4d import errors

CUDA = pytest.mark.cuda


@pytest.fixture(scope="module")
def compiled() -> None:
    """The compiled extension: built on first use; a build failure fails the test (no silent skip)."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine")
    assert _backend.load(), _backend.status()


def grid(b: int, h: int, w: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys])[None].repeat(b, 1, 1, 1)


def lookup_coords(b: int, h: int, w: int, h2: int, w2: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Random centres inside, near and outside the second frame's borders."""
    g = torch.Generator().manual_seed(seed)
    coords = grid(b, h, w, torch.float64) * torch.tensor([w2 / w, h2 / h], dtype=torch.float64).view(1, 2, 1, 1)
    coords = coords + 6 * torch.rand(b, 2, h, w, generator=g, dtype=torch.float64) - 3
    flat = coords.view(b, 2, -1)
    flat[:, 0, 0] = -2.5  # just outside the left border: only part of the window sees the map
    flat[:, 1, 1] = h2 - 0.3
    flat[:, 0, 2] = w2 + 40.25  # far outside: the whole window is zero padding
    # just inside the last pixel (exact integers are kinks where one-sided coordinate gradients differ)
    flat[:, :, 3] = torch.tensor([w2 - 1.001, h2 - 1.002], dtype=torch.float64)
    return coords.to(dtype)


def features(b: int, d: int, h: int, w: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, h, w, generator=g, dtype=torch.float64).to(dtype)


# ------------------------------------------------------------------ RAFT semantics, explicit loop

def explicit_lookup(f1: np.ndarray, f2: np.ndarray, coords: np.ndarray, num_levels: int, radius: int) -> np.ndarray:
    """RAFT's lookup written out: dot products, 2x2 means, bilinear taps with zero padding."""
    b, d, h, w = f1.shape
    volume = np.zeros((b, h, w) + f2.shape[2:])
    for yy in range(f2.shape[2]):
        for xx in range(f2.shape[3]):
            volume[:, :, :, yy, xx] = (f1 * f2[:, :, yy:yy + 1, xx:xx + 1]).sum(1) / math.sqrt(d)
    levels = [volume]
    for _ in range(num_levels - 1):
        prev = levels[-1]
        hh, ww = prev.shape[-2] // 2, prev.shape[-1] // 2
        pooled = np.zeros(prev.shape[:3] + (hh, ww))
        for yy in range(hh):
            for xx in range(ww):
                pooled[..., yy, xx] = prev[..., 2 * yy:2 * yy + 2, 2 * xx:2 * xx + 2].mean(axis=(-1, -2))
        levels.append(pooled)

    def tap(img: np.ndarray, x: float, y: float) -> float:
        x0, y0 = math.floor(x), math.floor(y)
        total = 0.0
        for cx, cy, wgt in ((x0, y0, (x0 + 1 - x) * (y0 + 1 - y)), (x0 + 1, y0, (x - x0) * (y0 + 1 - y)),
                            (x0, y0 + 1, (x0 + 1 - x) * (y - y0)), (x0 + 1, y0 + 1, (x - x0) * (y - y0))):
            if 0 <= cx < img.shape[1] and 0 <= cy < img.shape[0]:
                total += wgt * img[cy, cx]
        return total

    k = 2 * radius + 1
    out = np.zeros((b, num_levels * k * k, h, w))
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                for lvl, vol in enumerate(levels):
                    cx, cy = coords[bi, 0, y, x] / 2 ** lvl, coords[bi, 1, y, x] / 2 ** lvl
                    for i in range(k):  # x-offset: slowest inside a level (RAFT's channel order)
                        for j in range(k):
                            channel = lvl * k * k + i * k + j
                            out[bi, channel, y, x] = tap(vol[bi, y, x], cx + i - radius, cy + j - radius)
    return out


@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_reference_matches_explicit_raft_lookup(mode: str) -> None:
    # fmap2 5x9 with 3 levels: the coarsest level is 1 pixel high (RAFT would produce NaN there).
    f1, f2 = features(2, 5, 4, 6, 0, torch.float64), features(2, 5, 5, 9, 1, torch.float64)
    coords = lookup_coords(2, 4, 6, 5, 9, 2, torch.float64)
    expected = explicit_lookup(f1.numpy(), f2.numpy(), coords.numpy(), num_levels=3, radius=2)
    out = CorrelationVolume(f1, f2, num_levels=3, radius=2, mode=mode, backend="torch")(coords)
    assert out.shape == (2, 3 * 25, 4, 6)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_channel_order_is_x_offset_slowest() -> None:
    # A volume equal to the second frame's x coordinate: channel i*(2r+1)+j must read x + (i - r).
    d, h, w = 1, 6, 8
    f1 = torch.ones(1, d, h, w, dtype=torch.float64)
    xs = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w).expand(1, d, h, w)
    ys = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1).expand(1, d, h, w)
    coords = torch.zeros(1, 2, h, w, dtype=torch.float64)
    coords[:, 0], coords[:, 1] = 3.0, 2.0
    r, k = 1, 3
    for value, axis in ((xs, 0), (ys, 1)):
        out = CorrelationVolume(f1, value.contiguous(), num_levels=1, radius=r, backend="torch")(coords)
        for i in range(k):
            for j in range(k):
                offset = (i - r) if axis == 0 else (j - r)
                assert torch.allclose(out[0, i * k + j], torch.full((h, w), float(coords[0, axis, 0, 0]) + offset,
                                                                    dtype=torch.float64))


# ------------------------------------------------------------------ backends against the reference

CASES = [  # (B, D, h, w, h2, w2, levels, radius); D = 37 leaves a remainder in the CUDA warp loops
    (1, 7, 5, 7, 5, 7, 1, 3),
    (2, 37, 9, 11, 10, 13, 2, 4),
    (1, 16, 8, 9, 17, 19, 4, 3),
    (2, 8, 16, 15, 16, 15, 4, 4),
    (1, 5, 3, 4, 9, 8, 4, 2),  # coarsest level 1 pixel wide
]


def run_case(case, mode: str, backend: str, dtype: torch.dtype, device: str, seed: int = 0):
    b, d, h, w, h2, w2, levels, radius = case
    f1 = features(b, d, h, w, seed, dtype).to(device).requires_grad_()
    f2 = features(b, d, h2, w2, seed + 1, dtype).to(device).requires_grad_()
    coords = lookup_coords(b, h, w, h2, w2, seed + 2, dtype).to(device).requires_grad_()
    out = CorrelationVolume(f1, f2, num_levels=levels, radius=radius, mode=mode, backend=backend)(coords)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64)
    out.backward(upstream.to(device=device, dtype=dtype))
    return [t.detach().cpu().double() for t in (out, f1.grad, f2.grad, coords.grad)]


@functools.lru_cache(maxsize=None)
def reference_case(case, mode: str):
    """float64 reference results, shared by the float32 and float64 parity tests of every backend."""
    return run_case(case, mode, "torch", torch.float64, "cpu")


def assert_parity(got, want, dtype: torch.dtype) -> None:
    names = ("output", "grad fmap1", "grad fmap2", "grad coords")
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    for name, g, w in zip(names, got, want):
        scale = max(1.0, w.abs().max().item())
        assert torch.allclose(g, w, rtol=tol, atol=tol * scale), f"{name}: max error {(g - w).abs().max().item():.3g}"


@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}D{}_{}x{}_to_{}x{}_L{}r{}".format(*c))
def test_cpp_matches_reference(compiled, case, mode: str, dtype: torch.dtype) -> None:
    want = reference_case(case, mode)
    got = run_case(case, mode, "cpp", dtype, "cpu")
    assert_parity(got, want, dtype)


def test_on_the_fly_equals_all_pairs_reference() -> None:
    case = (2, 12, 9, 10, 11, 12, 3, 4)
    assert_parity(reference_case(case, "on_the_fly"), reference_case(case, "all_pairs"), torch.float64)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_gradcheck(request, backend: str, mode: str) -> None:
    if backend == "cpp":
        request.getfixturevalue("compiled")
    f1 = features(1, 3, 3, 4, 0, torch.float64).requires_grad_()
    f2 = features(1, 3, 4, 5, 1, torch.float64).requires_grad_()
    coords = lookup_coords(1, 3, 4, 4, 5, 2, torch.float64).requires_grad_()

    def fn(a, b, c):
        return CorrelationVolume(a, b, num_levels=2, radius=1, mode=mode, backend=backend)(c)

    assert torch.autograd.gradcheck(fn, (f1, f2, coords), eps=1e-6, atol=1e-7, fast_mode=True)


def test_opcheck(compiled) -> None:
    ops = torch.ops.motion4d
    f1 = features(1, 6, 3, 4, 0, torch.float32)
    f2 = features(1, 6, 5, 5, 1, torch.float32)
    coords = lookup_coords(1, 3, 4, 5, 5, 2, torch.float32)
    volume = _reference.all_pairs_pyramid(f1, f2, 1)[0].squeeze(1)
    torch.library.opcheck(ops.corr_lookup.default, (volume.requires_grad_(), coords.requires_grad_(), 2, 0.5))
    torch.library.opcheck(ops.corr_local.default, (f1.permute(0, 2, 3, 1).contiguous().requires_grad_(),
                                                   f2.permute(0, 2, 3, 1).contiguous().requires_grad_(),
                                                   coords, 2, 1.0))


def test_torch_compile_traces_custom_ops(compiled) -> None:
    f1, f2 = features(1, 8, 6, 7, 0, torch.float32), features(1, 8, 6, 7, 1, torch.float32)
    coords = lookup_coords(1, 6, 7, 6, 7, 2, torch.float32)

    def fn(a, b, c):
        return CorrelationVolume(a, b, num_levels=2, radius=2, mode="on_the_fly", backend="cpp")(c)

    compiled_fn = torch.compile(fn, backend="aot_eager", fullgraph=True)
    assert torch.allclose(compiled_fn(f1, f2, coords), fn(f1, f2, coords), atol=1e-6)


def test_half_inputs_compute_in_float32() -> None:
    f1, f2 = features(1, 4, 5, 6, 0, torch.float16), features(1, 4, 5, 6, 1, torch.float16)
    coords = lookup_coords(1, 5, 6, 5, 6, 2, torch.float32)
    out = CorrelationVolume(f1, f2, num_levels=2, radius=1, backend="torch")(coords)
    ref = CorrelationVolume(f1.float(), f2.float(), num_levels=2, radius=1, backend="torch")(coords)
    assert out.dtype == torch.float32 and torch.equal(out, ref)


def test_invalid_arguments_raise_clear_errors() -> None:
    f = torch.zeros(1, 4, 8, 8)
    with pytest.raises(errors.InvalidArgumentError, match="mode"):
        CorrelationVolume(f, f, mode="dense")
    with pytest.raises(errors.InvalidArgumentError, match="backend"):
        CorrelationVolume(f, f, backend="tpu")
    with pytest.raises(errors.ShapeError, match="fmap2"):
        CorrelationVolume(f, torch.zeros(1, 5, 8, 8))
    with pytest.raises(errors.ShapeError, match="too small for 4 levels"):
        CorrelationVolume(f, torch.zeros(1, 4, 7, 8))
    with pytest.raises(errors.InvalidArgumentError, match="radius"):
        CorrelationVolume(f, f, radius=-1)
    with pytest.raises(errors.InvalidArgumentError, match="CUDA tensors"):
        CorrelationVolume(f, f, backend="cuda")
    if _backend.load():
        with pytest.raises(errors.InvalidArgumentError, match="radius <= 16"):
            CorrelationVolume(f, f, num_levels=1, radius=17, backend="cpp")
        assert CorrelationVolume(f, f, num_levels=1, radius=17).backend == "torch"
    corr = CorrelationVolume(f, f, backend="torch")
    with pytest.raises(errors.ShapeError, match="coords"):
        corr(torch.zeros(1, 2, 8, 7))


def test_auto_falls_back_to_reference_once_when_build_failed(monkeypatch) -> None:
    def broken_build(with_cuda: bool, verbose: bool = False) -> str:
        raise RuntimeError("Error building extension 'motion4d_ops_cpu': ops.cpp:1: error: simulated")

    monkeypatch.setattr(_backend, "_jit_build", broken_build)
    monkeypatch.setattr(_backend, "_prebuilt_library", lambda: None)
    monkeypatch.setattr(_backend, "_warned", set())
    monkeypatch.setitem(_backend._state, "loaded", False)
    monkeypatch.setitem(_backend._state, "error", None)
    f = features(1, 4, 8, 8, 0, torch.float32)
    with pytest.warns(RuntimeWarning, match="(?s)PyTorch reference.*error: simulated"):
        corr = CorrelationVolume(f, f, num_levels=2)
    assert corr.backend == "torch"
    assert "simulated" in _backend.status()["state"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once: later uses are silent
        CorrelationVolume(f, f, num_levels=2)
    with pytest.raises(errors.BackendUnavailableError, match="simulated"):
        CorrelationVolume(f, f, backend="cpp")


# ------------------------------------------------------------------ CUDA (run by bench/gpu_check.sh)

@CUDA
@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}D{}_{}x{}_to_{}x{}_L{}r{}".format(*c))
def test_cuda_matches_reference(case, mode: str, dtype: torch.dtype) -> None:
    assert _backend.has_cuda(), _backend.status()
    want = reference_case(case, mode)
    got = run_case(case, mode, "cuda", dtype, "cuda")
    assert_parity(got, want, dtype)


@CUDA
@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_cuda_gradcheck(mode: str) -> None:
    assert _backend.has_cuda(), _backend.status()
    f1 = features(1, 3, 3, 4, 0, torch.float64).cuda().requires_grad_()
    f2 = features(1, 3, 4, 5, 1, torch.float64).cuda().requires_grad_()
    coords = lookup_coords(1, 3, 4, 4, 5, 2, torch.float64).cuda().requires_grad_()

    def fn(a, b, c):
        return CorrelationVolume(a, b, num_levels=2, radius=1, mode=mode, backend="cuda")(c)

    # The on-the-fly fmap2 gradient adds with atomics, so two backwards may differ in the last bits; with
    # the default nondet_tol=0 gradcheck would call that "not reentrant" at random.
    assert torch.autograd.gradcheck(fn, (f1, f2, coords), eps=1e-6, atol=1e-7, nondet_tol=1e-12, fast_mode=True)


@CUDA
def test_cuda_opcheck_and_autocast() -> None:
    assert _backend.has_cuda(), _backend.status()
    ops = torch.ops.motion4d
    f1 = features(1, 40, 3, 4, 0, torch.float32).cuda()
    f2 = features(1, 40, 5, 5, 1, torch.float32).cuda()
    coords = lookup_coords(1, 3, 4, 5, 5, 2, torch.float32).cuda()
    volume = _reference.all_pairs_pyramid(f1, f2, 1)[0].squeeze(1).contiguous()
    torch.library.opcheck(ops.corr_lookup.default, (volume.requires_grad_(), coords.requires_grad_(), 2, 0.5))
    torch.library.opcheck(ops.corr_local.default, (f1.permute(0, 2, 3, 1).contiguous().requires_grad_(),
                                                   f2.permute(0, 2, 3, 1).contiguous().requires_grad_(),
                                                   coords, 2, 1.0))
    with torch.autocast("cuda", dtype=torch.float16):
        out = CorrelationVolume(f1.half(), f2.half(), num_levels=1, radius=2, mode="on_the_fly", backend="cuda")(coords)
    assert out.dtype == torch.float32
    ref = CorrelationVolume(f1.half().float(), f2.half().float(), num_levels=1, radius=2, backend="torch")(coords)
    assert torch.allclose(out, ref, atol=1e-4)


# ------------------------------------------------------------------ CUDA launch plan (checked on CPU)

def test_cuda_shared_memory_plan_fits_every_radius(compiled) -> None:
    """The CUDA kernels size their shared memory from csrc/launch_plan.h; every GPU grants 48 KB per block."""
    budget = 48 * 1024
    for dtype, itemsize in ((torch.float32, 4), (torch.float64, 8)):
        for radius in range(_backend.MAX_COMPILED_RADIUS + 1):
            plan = _backend.cuda_launch_plan(radius, dtype, budget)
            patch = (2 * radius + 2) ** 2
            tile = plan["forward_tile"]
            assert tile in (1, 2, 4, 8)
            assert plan["forward_bytes"] == tile * ((patch + 2) * itemsize + 12) <= budget
            assert tile == 8 or (2 * tile) * ((patch + 2) * itemsize + 12) > budget  # the largest that fits
            assert plan["backward_bytes"] <= budget  # independent of the radius
            assert plan["backward_box_cells"] * 32 * itemsize == 32 * 1024
    assert _backend.cuda_launch_plan(4, torch.float32)["forward_tile"] == 8  # RAFT: whole 32-byte sectors per entry
    assert _backend.cuda_launch_plan(16, torch.float64)["forward_tile"] == 4
    # A budget below one pixel's patch: the plan says so (the CUDA op then raises a clear error); the
    # backward shrinks its accumulation box instead (to none at all: direct atomics).
    small = _backend.cuda_launch_plan(16, torch.float64, 8 * 1024)
    assert small["forward_tile"] == 0
    assert 0 < small["backward_box_cells"] < 32 and small["backward_bytes"] <= 8 * 1024
    assert _backend.cuda_launch_plan(16, torch.float64, 200)["backward_box_cells"] == 0
