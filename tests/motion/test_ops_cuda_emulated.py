"""The CUDA kernels (csrc/ops_cuda.cu) run on CPU through csrc/emulation, against the C++ CPU kernels.

The emulation compiles the .cu file unchanged as C++ and runs every CUDA thread as a fiber, with
real barriers and warp shuffles (a divergent barrier or shuffle fails the launch), dynamic shared
memory filled with NaN and outputs pre-filled with NaN (an entry a kernel forgets to write shows).
It checks what only a GPU could otherwise: indexing, pixel tiles, the shared-memory plans, the
accumulation box of the on-the-fly backward and its fallback, warp reductions. Blocks run one
after another, so it says nothing about races or speed (bench/gpu_check.sh measures those).
"""
from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.cpp_extension import load

from motion.ops import _backend, _reference
from tests.motion.test_ops_corr import CASES, features, lookup_coords
from tests.motion.test_ops_softsplat import make_inputs

CSRC = Path(_backend.__file__).resolve().parent / "csrc"


@pytest.fixture(scope="module")
def emulated() -> None:
    """Builds the emulated CUDA kernels (about 10 s) and the C++ CPU kernels they are compared with."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine")
    assert _backend.load(), _backend.status()
    load(name="motion4d_ops_cuda_emulated", sources=[str(CSRC / "emulation" / "emulated_ops.cpp")],
         extra_include_paths=[str(CSRC / "emulation"), str(CSRC)], extra_cflags=["-O2", "-U_FORTIFY_SOURCE"], is_python_module=False)
    yield
    torch.ops.motion4d_emu.set_shared_budget(48 * 1024)


def assert_close(got: torch.Tensor, want: torch.Tensor, name: str, dtype: torch.dtype) -> None:
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    scale = max(1.0, want.abs().max().item())
    assert torch.isfinite(got).all(), f"{name}: entries the kernel did not write (NaN)"
    assert torch.allclose(got, want, rtol=tol, atol=tol * scale), f"{name}: max error {(got - want).abs().max():.3g}"


@functools.lru_cache(maxsize=None)
def level_inputs(case, dtype: torch.dtype, smooth: bool = False):
    """Per-level inputs of the ops as CorrelationVolume feeds them: (volume, fmap2 rows, scale) per level."""
    b, d, h, w, h2, w2, levels, radius = case
    f1, f2 = features(b, d, h, w, 0, dtype), features(b, d, h2, w2, 1, dtype)
    if smooth:  # neighbouring pixels look up neighbouring places: the backward accumulates in shared memory
        ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
        coords = (torch.stack([xs, ys])[None].repeat(b, 1, 1, 1) + 0.3).contiguous()
    else:
        coords = lookup_coords(b, h, w, h2, w2, 2, dtype)
    pyramid = _reference.all_pairs_pyramid(f1, f2, levels)
    pooled = _reference.pool_pyramid(f2, levels)
    rows1 = f1.permute(0, 2, 3, 1).contiguous()
    per_level = [(vol.squeeze(1).contiguous(), f2l.permute(0, 2, 3, 1).contiguous(), 0.5 ** lvl)
                 for lvl, (vol, f2l) in enumerate(zip(pyramid, pooled))]
    return rows1, coords, radius, per_level


def compare_corr(case, dtype: torch.dtype, smooth: bool = False) -> None:
    emu, cpu = torch.ops.motion4d_emu, torch.ops.motion4d
    rows1, coords, radius, per_level = level_inputs(case, dtype, smooth)
    gen = torch.Generator().manual_seed(7)
    for lvl, (volume, rows2, scale) in enumerate(per_level):
        grad = torch.randn(coords.shape[0], (2 * radius + 1) ** 2, *coords.shape[2:], generator=gen,
                           dtype=torch.float64).to(dtype)
        assert_close(emu.corr_lookup(volume, coords, radius, scale), cpu.corr_lookup(volume, coords, radius, scale),
                     f"level {lvl} lookup", dtype)
        for name, got, want in zip(("grad volume", "grad coords"),
                                   emu.corr_lookup_backward(grad, volume, coords, radius, scale),
                                   cpu.corr_lookup_backward(grad, volume, coords, radius, scale)):
            assert_close(got, want, f"level {lvl} lookup {name}", dtype)
        assert_close(emu.corr_local(rows1, rows2, coords, radius, scale),
                     cpu.corr_local(rows1, rows2, coords, radius, scale), f"level {lvl} on-the-fly", dtype)
        for coords_grad in (True, False):
            for name, got, want in zip(("grad fmap1", "grad fmap2", "grad coords"),
                                       emu.corr_local_backward(grad, rows1, rows2, coords, radius, scale, coords_grad),
                                       cpu.corr_local_backward(grad, rows1, rows2, coords, radius, scale, coords_grad)):
                assert_close(got, want, f"level {lvl} on-the-fly {name} (coords_grad={coords_grad})", dtype)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}D{}_{}x{}_to_{}x{}_L{}r{}".format(*c))
def test_emulated_cuda_correlation_matches_cpp(emulated, case) -> None:
    compare_corr(case, torch.float64)


def test_emulated_cuda_correlation_float32_and_shared_accumulation(emulated) -> None:
    compare_corr(CASES[1], torch.float32)
    # Smooth lookups: 8 neighbouring patches fit the backward's shared-memory box (float32 and float64).
    compare_corr((2, 40, 6, 19, 7, 20, 2, 1), torch.float32, smooth=True)
    compare_corr((2, 40, 6, 19, 7, 20, 2, 1), torch.float64, smooth=True)


def test_emulated_cuda_maximum_radius_and_small_shared_memory(emulated) -> None:
    case = (1, 5, 3, 5, 6, 7, 1, _backend.MAX_COMPILED_RADIUS)
    compare_corr(case, torch.float64)  # 4-pixel tiles within the 48 KB every GPU grants
    emu = torch.ops.motion4d_emu
    try:
        emu.set_shared_budget(20 * 1024)  # a GPU with less: 2-pixel tiles, a smaller accumulation box
        compare_corr(case, torch.float64)
        emu.set_shared_budget(8 * 1024)  # not even one r = 16 float64 patch: a clear error, no launch
        rows1, coords, radius, per_level = level_inputs(case, torch.float64)
        with pytest.raises(RuntimeError, match="radius 16 does not fit the shared memory"):
            emu.corr_local(rows1, per_level[0][1], coords, radius, 1.0)
    finally:
        emu.set_shared_budget(48 * 1024)


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 16, 12, 9), (1, 33, 1, 11)], ids=str)
def test_emulated_cuda_splat_matches_cpp(emulated, shape) -> None:
    emu, cpu = torch.ops.motion4d_emu, torch.ops.motion4d
    feats, flow, _ = make_inputs(*shape, seed=1)
    flow[0, 0, 0, 1] = float("nan")
    grad = torch.randn(feats.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert_close(emu.splat(feats, flow), cpu.splat(feats, flow), "splat", torch.float64)
    for name, got, want in zip(("grad input", "grad flow"), emu.splat_backward(grad, feats, flow),
                               cpu.splat_backward(grad, feats, flow)):
        assert_close(got, want, f"splat {name}", torch.float64)
