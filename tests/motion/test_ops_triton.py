"""The Triton backend against the float64 reference: on CPU through Triton's interpreter, on a GPU compiled.

The interpreter runs the very kernels a GPU runs (numpy does the arithmetic), so CI checks their
indexing, masks, borders and gradients without a GPU; the same kernels are also compiled for
sm_80/sm_90 here (no GPU needed) to catch what only the compiler rejects. The shapes and edge cases
are those of the C++ tests (tests/motion/test_ops_corr.py, test_ops_softsplat.py).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

# Before triton is first imported: CPU tensors then run through Triton's interpreter. Not on a GPU
# machine, where the @cuda tests below must run the compiled kernels (bench/gpu_check.sh).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from motion.ops import CorrelationVolume, _backend, _reference, _triton, softsplat
from motion4d import errors
from tests.motion.test_ops_corr import (
    CASES,
    assert_parity,
    features,
    lookup_coords,
    reference_case,
    run_case,
)
from tests.motion.test_ops_softsplat import make_inputs

CUDA = pytest.mark.cuda
SPLAT_MODES = ["sum", "average", "linear", "softmax"]
SPLAT_SHAPES = [(1, 3, 5, 7), (2, 16, 12, 9), (1, 33, 1, 11)]


@pytest.fixture(scope="module")
def interpreted() -> None:
    """Triton's interpreter on CPU tensors; Triton is a test dependency on Linux x86-64 (setup.py dev extra)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("triton is a test dependency on Linux x86-64 only")
    if torch.cuda.is_available() and not _triton.interpreting():
        pytest.skip("GPU machine: the @cuda tests check the compiled Triton kernels; the interpreted ones run in CI")
    reason = _triton.unavailable_reason(torch.device("cpu"))
    assert reason is None, f"Triton interpreter unavailable: {reason}"
    assert _triton.interpreting()


@pytest.fixture(scope="module")
def compiled() -> None:
    assert _backend.load(), _backend.status()


# ------------------------------------------------------------------ correlation, interpreted

@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}D{}_{}x{}_to_{}x{}_L{}r{}".format(*c))
def test_triton_matches_reference(interpreted, case, mode: str, dtype: torch.dtype) -> None:
    want = reference_case(case, mode)
    got = run_case(case, mode, "triton", dtype, "cpu")
    assert_parity(got, want, dtype)


@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_triton_maximum_radius(interpreted, mode: str) -> None:
    # r = 16 (the largest the kernels accept): the 34-entry patch columns fill a 64-wide tile.
    case = (1, 3, 2, 3, 4, 5, 1, _backend.MAX_COMPILED_RADIUS)
    assert_parity(run_case(case, mode, "triton", torch.float64, "cpu"), reference_case(case, mode), torch.float64)


@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_triton_gradcheck(interpreted, mode: str) -> None:
    f1 = features(1, 3, 3, 4, 0, torch.float64).requires_grad_()
    f2 = features(1, 3, 4, 5, 1, torch.float64).requires_grad_()
    coords = lookup_coords(1, 3, 4, 4, 5, 2, torch.float64).requires_grad_()

    def fn(a, b, c):
        return CorrelationVolume(a, b, num_levels=2, radius=1, mode=mode, backend="triton")(c)

    assert torch.autograd.gradcheck(fn, (f1, f2, coords), eps=1e-6, atol=1e-7, fast_mode=True)


@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_triton_non_finite_coords_match_cpp(interpreted, compiled, mode: str) -> None:
    # Non-finite centres see only zero padding in both kernel families (the reference's grid_sample does not).
    f1, f2 = features(1, 6, 4, 5, 0, torch.float64), features(1, 6, 6, 7, 1, torch.float64)
    coords = lookup_coords(1, 4, 5, 6, 7, 2, torch.float64)
    coords[0, 0, 1, 1], coords[0, 1, 2, 3], coords[0, 0, 3, 4] = float("nan"), float("inf"), -float("inf")
    outs = [CorrelationVolume(f1, f2, num_levels=2, radius=2, mode=mode, backend=b)(coords) for b in ("cpp", "triton")]
    assert torch.isfinite(outs[1]).all()
    assert (outs[1][0, :, 1, 1] == 0).all()
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)


def test_triton_non_contiguous_inputs(interpreted) -> None:
    # Channels-last feature maps, a transposed coordinate grid, a strided volume: each op takes any strides.
    b, d, h, w = 1, 6, 5, 6
    f1 = features(b, d, w, h, 0, torch.float64).transpose(2, 3)  # [B, D, h, w], not contiguous
    f2 = features(b, d, h, w, 1, torch.float64).to(memory_format=torch.channels_last)
    coords = lookup_coords(b, w, h, h, w, 2, torch.float64).flip(1).transpose(2, 3) * 0.9
    assert not (f1.is_contiguous() or f2.is_contiguous() or coords.is_contiguous())
    for mode in ("all_pairs", "on_the_fly"):
        want = CorrelationVolume(f1.contiguous(), f2.contiguous(), 2, 2, mode, "torch")(coords.contiguous())
        got = CorrelationVolume(f1, f2, 2, 2, mode, "triton")(coords)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    ops = torch.ops.motion4d
    volume = _reference.all_pairs_pyramid(f1, f2, 1)[0].squeeze(1)
    strided = torch.zeros(volume.shape[0], h, 2 * w, dtype=torch.float64)[..., ::2]
    strided.copy_(volume)
    torch.testing.assert_close(ops.triton_corr_lookup(strided, coords, 2, 1.0),
                               ops.triton_corr_lookup(volume, coords.contiguous(), 2, 1.0), rtol=0, atol=0)
    rows1, rows2 = f1.permute(0, 2, 3, 1), f2.permute(0, 2, 3, 1)  # channels-last views, one of them strided
    torch.testing.assert_close(ops.triton_corr_local(rows1, rows2, coords, 2, 1.0),
                               ops.triton_corr_local(rows1.contiguous(), rows2.contiguous(), coords.contiguous(), 2,
                                                     1.0), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_half_inputs_compute_in_float32(interpreted, dtype: torch.dtype) -> None:
    f1, f2 = features(1, 4, 5, 6, 0, dtype), features(1, 4, 5, 6, 1, dtype)
    coords = lookup_coords(1, 5, 6, 5, 6, 2, torch.float32)
    for mode in ("all_pairs", "on_the_fly"):
        out = CorrelationVolume(f1, f2, num_levels=2, radius=1, mode=mode, backend="triton")(coords)
        ref = CorrelationVolume(f1.float(), f2.float(), num_levels=2, radius=1, backend="torch")(coords)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_triton_ops_under_autocast_compute_in_float32(interpreted) -> None:
    f1, f2 = features(1, 4, 3, 4, 0, torch.float32), features(1, 4, 3, 4, 1, torch.float32)
    coords = lookup_coords(1, 3, 4, 3, 4, 2, torch.float32)
    rows1, rows2 = f1.permute(0, 2, 3, 1).contiguous(), f2.permute(0, 2, 3, 1).contiguous()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = torch.ops.motion4d.triton_corr_local(rows1.bfloat16(), rows2.bfloat16(), coords, 1, 1.0)
    assert out.dtype == torch.float32
    want = torch.ops.motion4d.triton_corr_local(rows1.bfloat16().float(), rows2.bfloat16().float(), coords, 1, 1.0)
    torch.testing.assert_close(out, want, rtol=0, atol=0)


def test_triton_opcheck(interpreted) -> None:
    ops = torch.ops.motion4d
    f1, f2 = features(1, 6, 3, 4, 0, torch.float32), features(1, 6, 5, 5, 1, torch.float32)
    coords = lookup_coords(1, 3, 4, 5, 5, 2, torch.float32)
    volume = _reference.all_pairs_pyramid(f1, f2, 1)[0].squeeze(1)
    torch.library.opcheck(ops.triton_corr_lookup.default, (volume.requires_grad_(), coords.requires_grad_(), 2, 0.5))
    torch.library.opcheck(ops.triton_corr_local.default, (f1.permute(0, 2, 3, 1).contiguous().requires_grad_(),
                                                          f2.permute(0, 2, 3, 1).contiguous().requires_grad_(),
                                                          coords, 2, 1.0))
    feats, flow, _ = make_inputs(2, 3, 5, 6, seed=3, dtype=torch.float32)
    torch.library.opcheck(ops.triton_splat.default, (feats.requires_grad_(), flow.requires_grad_()))


def test_triton_torch_compile_fullgraph(interpreted) -> None:
    f1, f2 = features(1, 8, 6, 7, 0, torch.float32), features(1, 8, 6, 7, 1, torch.float32)
    coords = lookup_coords(1, 6, 7, 6, 7, 2, torch.float32)
    feats, flow, metric = make_inputs(1, 3, 6, 7, seed=4, dtype=torch.float32)

    def fn(a, b, c, x, u, m):
        corr = CorrelationVolume(a, b, num_levels=2, radius=2, mode="on_the_fly", backend="triton")(c)
        return corr, softsplat(x, u, m, mode="softmax", backend="triton")

    compiled_fn = torch.compile(fn, backend="aot_eager", fullgraph=True)
    for got, want in zip(compiled_fn(f1, f2, coords, feats, flow, metric), fn(f1, f2, coords, feats, flow, metric)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ splatting, interpreted

@pytest.mark.parametrize("mode", SPLAT_MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SPLAT_SHAPES, ids=str)
def test_triton_softsplat_matches_reference(interpreted, shape, mode: str, dtype: torch.dtype) -> None:
    results = {}
    for backend, dt in (("torch", torch.float64), ("triton", dtype)):
        feats, flow, metric = make_inputs(*shape, seed=1)
        flow[0, 0, 0, 1], flow[0, 1, 0, 2] = float("nan"), float("inf")  # dropped targets
        feats, flow, metric = (t.to(dt).requires_grad_() for t in (feats, flow, metric))
        out = softsplat(feats, flow, metric if mode in ("linear", "softmax") else None, mode=mode, backend=backend)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        out.backward(upstream.to(dt))
        grads = [feats.grad, flow.grad] + ([metric.grad] if mode in ("linear", "softmax") else [])
        results[backend] = [t.detach().double() for t in [out] + grads]
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    for name, got, want in zip(("output", "grad features", "grad flow", "grad metric"), results["triton"],
                               results["torch"]):
        want = torch.nan_to_num(want)  # the reference's grad flow at a dropped (non-finite) target is 0 * inf
        got = torch.nan_to_num(got)
        scale = max(1.0, want.abs().max().item())
        assert torch.allclose(got, want, rtol=tol, atol=tol * scale), f"{name}: {(got - want).abs().max().item():.3g}"


@pytest.mark.parametrize("mode", SPLAT_MODES)
def test_triton_softsplat_gradcheck(interpreted, mode: str) -> None:
    feats, flow, metric = (t.requires_grad_() for t in make_inputs(1, 2, 4, 5, seed=2, spread=1.5))
    args = (feats, flow, metric) if mode in ("linear", "softmax") else (feats, flow)
    assert torch.autograd.gradcheck(lambda *a: softsplat(*a, mode=mode, backend="triton"), args, eps=1e-6, atol=1e-7,
                                    fast_mode=True)


def test_triton_softsplat_half_and_non_contiguous(interpreted) -> None:
    feats, flow, _ = make_inputs(1, 4, 6, 5, seed=6, dtype=torch.float32)
    feats_t = feats.transpose(2, 3).contiguous().transpose(2, 3)  # same values, transposed strides
    assert not feats_t.is_contiguous()
    want = softsplat(feats.bfloat16().float(), flow, mode="average", backend="torch")
    out = softsplat(feats_t.bfloat16(), flow, mode="average", backend="triton")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ compiled for a GPU, without one

@pytest.mark.parametrize("arch", [90, pytest.param(80, marks=pytest.mark.slow)])
def test_triton_kernels_compile_for_cuda(interpreted, arch: int) -> None:
    """Every kernel, float32 and float64, at the launchers' GPU block sizes, compiles to a cubin (about 25 s).

    In a subprocess: this process imported Triton in interpreter mode, which cannot compile.
    """
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "motion.ops._triton_compile_check", "--arch", str(arch), "--json"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sizes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(sizes) == 2 * 7 and all(size > 1000 for size in sizes.values()), sizes


# ------------------------------------------------------------------ backend selection

class _FakeCuda:
    """A CUDA machine as seen by the selection logic: a visible GPU, a CUDA torch, optionally no nvcc."""

    def __init__(self, monkeypatch, nvcc: bool, triton: bool = True, build_error: str | None = None):
        from torch.utils import cpp_extension

        self.builds: list[bool] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
        monkeypatch.setattr(torch.version, "cuda", "12.8")
        monkeypatch.setattr(cpp_extension, "CUDA_HOME", "/usr/local/cuda" if nvcc else None)
        monkeypatch.setattr(_backend, "_prebuilt_library", lambda: None)
        monkeypatch.setattr(_backend, "_warned", set())
        monkeypatch.setattr(_backend, "_announced", {})
        monkeypatch.setitem(_backend._state, "loaded", False)
        monkeypatch.setitem(_backend._state, "error", None)
        monkeypatch.setitem(_backend._state, "cuda", False)
        if not triton:
            monkeypatch.setenv("MOTION4D_NO_TRITON", "1")

        def build(with_cuda: bool, verbose: bool = False) -> str:
            self.builds.append(with_cuda)
            raise RuntimeError(build_error or "unexpected build")

        monkeypatch.setattr(_backend, "_jit_build", build)


def test_cuda_machine_without_nvcc_selects_triton(interpreted, monkeypatch, caplog) -> None:
    fake = _FakeCuda(monkeypatch, nvcc=False)
    assert "nvcc not found" in _backend.selection_report()["cuda"]
    assert _backend.selection_report()["cuda"].startswith("triton:")
    with caplog.at_level("INFO", logger="motion4d.ops"):
        assert _backend.resolve("auto", torch.device("cuda")) == "triton"
        assert _backend.resolve("auto", torch.device("cuda")) == "triton"
    lines = [r.getMessage() for r in caplog.records if r.name == "motion4d.ops"]
    assert len(lines) == 1 and "cuda tensors on triton" in lines[0] and "nvcc not found" in lines[0], lines
    assert fake.builds == []  # nothing was compiled to find out
    assert _backend.selection_report()["cuda"].startswith("triton:")


def test_cuda_machine_with_failing_build_selects_triton(interpreted, monkeypatch) -> None:
    fake = _FakeCuda(monkeypatch, nvcc=True, build_error="ops_cuda.cu: error: simulated")
    with pytest.warns(RuntimeWarning, match="simulated"):  # the build failure itself is reported once
        assert _backend.resolve("auto", torch.device("cuda")) == "triton"
    assert fake.builds == [True]
    assert "simulated" in _backend.selection_report()["cuda"]


def test_cuda_machine_without_nvcc_or_triton_warns_and_uses_reference(interpreted, monkeypatch) -> None:
    _FakeCuda(monkeypatch, nvcc=False, triton=False)
    with pytest.warns(RuntimeWarning, match="(?s)nvcc not found.*MOTION4D_NO_TRITON.*PyTorch reference"):
        assert _backend.resolve("auto", torch.device("cuda")) == "torch"
    assert _backend.selection_report()["cuda"].startswith("torch:")
    with pytest.raises(errors.BackendUnavailableError, match="MOTION4D_NO_TRITON"):
        _backend.resolve("triton", torch.device("cuda"))


def test_info_reports_the_backend_of_each_device(interpreted, monkeypatch) -> None:
    from motion4d.cli import info

    _FakeCuda(monkeypatch, nvcc=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    backends = info.collect()["backends"]
    assert backends["ops_cuda"].startswith("triton:") and "nvcc not found" in backends["ops_cuda"]
    assert backends["ops_cpu"].split(":")[0] in ("cpp", "torch")


def test_triton_on_cpu_needs_the_interpreter(monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(errors.BackendUnavailableError, match="TRITON_INTERPRET=1"):
        CorrelationVolume(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), num_levels=1, backend="triton")
    with pytest.raises(errors.BackendUnavailableError, match="TRITON_INTERPRET=1"):
        softsplat(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), backend="triton")


def test_auto_never_picks_the_interpreter_for_cpu_tensors(interpreted) -> None:
    f = features(1, 4, 6, 6, 0, torch.float32)
    assert CorrelationVolume(f, f, num_levels=1).backend in ("compiled", "torch")


# ------------------------------------------------------------------ on a GPU (bench/gpu_check.sh)

@CUDA
@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}D{}_{}x{}_to_{}x{}_L{}r{}".format(*c))
def test_triton_cuda_matches_reference(case, mode: str, dtype: torch.dtype) -> None:
    assert _triton.available(torch.device("cuda")), _triton.unavailable_reason(torch.device("cuda"))
    assert_parity(run_case(case, mode, "triton", dtype, "cuda"), reference_case(case, mode), dtype)


@CUDA
@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_triton_cuda_maximum_radius(mode: str) -> None:
    case = (1, 3, 2, 3, 4, 5, 1, _backend.MAX_COMPILED_RADIUS)
    for dtype in (torch.float32, torch.float64):
        assert_parity(run_case(case, mode, "triton", dtype, "cuda"), reference_case(case, mode), dtype)


@CUDA
@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_triton_cuda_gradcheck(mode: str) -> None:
    f1 = features(1, 3, 3, 4, 0, torch.float64).cuda().requires_grad_()
    f2 = features(1, 3, 4, 5, 1, torch.float64).cuda().requires_grad_()
    coords = lookup_coords(1, 3, 4, 4, 5, 2, torch.float64).cuda().requires_grad_()

    def fn(a, b, c):
        return CorrelationVolume(a, b, num_levels=2, radius=1, mode=mode, backend="triton")(c)

    # The on-the-fly fmap2 gradient adds with atomics: repeated backwards may differ in the last bits.
    assert torch.autograd.gradcheck(fn, (f1, f2, coords), eps=1e-6, atol=1e-7, nondet_tol=1e-12, fast_mode=True)


@CUDA
@pytest.mark.parametrize("mode", SPLAT_MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_cuda_softsplat_matches_reference(mode: str, dtype: torch.dtype) -> None:
    for shape in SPLAT_SHAPES:
        results = {}
        for backend, dt, device in (("torch", torch.float64, "cpu"), ("triton", dtype, "cuda")):
            feats, flow, metric = (t.to(device=device, dtype=dt).requires_grad_() for t in make_inputs(*shape, seed=1))
            out = softsplat(feats, flow, metric if mode in ("linear", "softmax") else None, mode=mode, backend=backend)
            upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
            out.backward(upstream.to(device=device, dtype=dt))
            grads = [feats.grad, flow.grad] + ([metric.grad] if mode in ("linear", "softmax") else [])
            results[backend] = [t.detach().cpu().double() for t in [out] + grads]
        tol = 1e-9 if dtype == torch.float64 else 1e-4
        for got, want in zip(results["triton"], results["torch"]):
            assert torch.allclose(got, want, rtol=tol, atol=tol * max(1.0, want.abs().max().item()))


@CUDA
def test_triton_cuda_opcheck_and_autocast() -> None:
    ops = torch.ops.motion4d
    f1 = features(1, 40, 3, 4, 0, torch.float32).cuda()
    f2 = features(1, 40, 5, 5, 1, torch.float32).cuda()
    coords = lookup_coords(1, 3, 4, 5, 5, 2, torch.float32).cuda()
    volume = _reference.all_pairs_pyramid(f1, f2, 1)[0].squeeze(1).contiguous()
    torch.library.opcheck(ops.triton_corr_lookup.default, (volume.requires_grad_(), coords.requires_grad_(), 2, 0.5))
    torch.library.opcheck(ops.triton_corr_local.default, (f1.permute(0, 2, 3, 1).contiguous().requires_grad_(),
                                                          f2.permute(0, 2, 3, 1).contiguous().requires_grad_(),
                                                          coords, 2, 1.0))
    with torch.autocast("cuda", dtype=torch.float16):
        out = CorrelationVolume(f1.half(), f2.half(), num_levels=1, radius=2, mode="on_the_fly", backend="triton")(coords)
    assert out.dtype == torch.float32
    ref = CorrelationVolume(f1.half().float(), f2.half().float(), num_levels=1, radius=2, backend="torch")(coords)
    assert torch.allclose(out, ref, atol=1e-4)


@CUDA
@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_triton_cuda_matches_cuda_cpp(mode: str) -> None:
    """Both GPU kernel families agree on a RAFT-sized problem (float32, r = 4, 4 levels)."""
    assert _backend.has_cuda(), _backend.status()
    results = [run_case((2, 64, 24, 32, 24, 32, 4, 4), mode, backend, torch.float32, "cuda")
               for backend in ("cuda", "triton")]
    assert_parity(results[1], results[0], torch.float32)

