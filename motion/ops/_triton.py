"""The Triton backend: availability, launchers and the ``torch.ops.motion4d.triton_*`` ops.

Triton compiles its kernels at run time (no nvcc, no C++ toolchain): CUDA builds of torch ship it.
The ops have the schemas of the C++/CUDA ops of ``csrc/ops.cpp`` and live in the same
``motion4d`` namespace under a ``triton_`` prefix (one dispatch key holds one kernel per op, and
both backends must be selectable on one machine), with the same fake kernels, autograd formulas
and autocast policy, so ``opcheck`` and ``torch.compile(fullgraph=True)`` treat them alike.

Devices: CUDA (and ROCm) tensors run compiled kernels. CPU tensors run through Triton's
interpreter, which needs ``TRITON_INTERPRET=1`` in the environment before Triton is first imported;
it is slow and exists for tests (CI checks the kernels that way). ``MOTION4D_NO_TRITON=1`` turns
the backend off.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Any

import torch

from motion4d.errors import InvalidArgumentError, ShapeError

from ._limits import MAX_COMPILED_RADIUS

_lock = threading.Lock()
_state: dict[str, Any] = {"kernels": None, "error": None}
CAN_REGISTER = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_autograd")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() not in ("", "0", "false", "no", "off")


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def interpreting() -> bool:
    """True when Triton runs kernels through its interpreter (CPU tensors)."""
    kernels = _state["kernels"]
    if kernels is not None:
        from triton.runtime.interpreter import InterpretedFunction

        return isinstance(kernels.splat_forward_kernel, InterpretedFunction)
    return _truthy("TRITON_INTERPRET")


def _import_kernels() -> ModuleType:
    """Import the kernel module once; raises with the reason when Triton is unusable."""
    if _state["kernels"] is not None:
        return _state["kernels"]
    with _lock:
        if _state["kernels"] is None:
            if _state["error"] is not None:
                raise RuntimeError(_state["error"])
            try:
                interpret_wanted = _truthy("TRITON_INTERPRET")
                imported_before = "triton" in sys.modules
                import triton.language as tl
                from triton.runtime.interpreter import InterpretedFunction

                from . import _triton_kernels

                library_interpreted = isinstance(tl.zeros, InterpretedFunction)
                if interpret_wanted and not library_interpreted:
                    raise RuntimeError("TRITON_INTERPRET=1 was set after triton had been imported"
                                       + (" (it must be set before the first import)" if imported_before else ""))
                _state["kernels"] = _triton_kernels
            except Exception as exc:  # an ImportError, a broken install, a Triton too old for the kernels
                _state["error"] = f"{type(exc).__name__}: {exc}".strip()
                raise RuntimeError(_state["error"]) from exc
    return _state["kernels"]


def unavailable_reason(device: torch.device) -> str | None:
    """Why the Triton backend cannot run on ``device`` (None when it can). Imports Triton, compiles nothing."""
    if _truthy("MOTION4D_NO_TRITON"):
        return "disabled by MOTION4D_NO_TRITON"
    if not CAN_REGISTER:
        return f"needs torch >= 2.4 (torch.library.custom_op), found {torch.__version__}"
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install triton)"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA device is visible"
        if torch.version.hip is None:
            major, minor = torch.cuda.get_device_capability(device)
            if major < 7:
                return f"Triton needs compute capability >= 7.0, the GPU has {major}.{minor}"
    elif device.type == "cpu":
        if not _truthy("TRITON_INTERPRET"):
            return "CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before triton is imported"
    else:
        return f"Triton kernels run on CUDA tensors, got {device.type}"
    try:
        _import_kernels()
    except RuntimeError as exc:
        return str(exc)
    return None


def available(device: torch.device) -> bool:
    return unavailable_reason(device) is None


# ---------------------------------------------------------------- launchers

def _check_float(name: str, *tensors: torch.Tensor) -> None:
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64):
        raise InvalidArgumentError(f"{name}: the Triton kernels compute in float32/float64, got {dtype}")
    for t in tensors:
        if t.dtype != dtype or t.device != tensors[0].device:
            raise InvalidArgumentError(f"{name}: tensors must share one dtype and device, got "
                                       f"{[(x.dtype, str(x.device)) for x in tensors]}")


def _check_radius(name: str, radius: int) -> None:
    if not 0 <= radius <= MAX_COMPILED_RADIUS:
        raise InvalidArgumentError(f"{name}: radius must be in [0, {MAX_COMPILED_RADIUS}], got {radius}")


def _check_lookup(volume: torch.Tensor, coords: torch.Tensor, radius: int) -> None:
    _check_radius("triton_corr_lookup", radius)
    if coords.dim() != 4 or coords.shape[1] != 2:
        raise ShapeError(f"triton_corr_lookup: coords must be [B, 2, h, w], got {tuple(coords.shape)}")
    if volume.dim() != 3 or volume.shape[0] != coords.shape[0] * coords.shape[2] * coords.shape[3]:
        raise ShapeError(f"triton_corr_lookup: volume must be [B*h*w, H, W], got {tuple(volume.shape)}")
    _check_float("triton_corr_lookup", volume, coords)


def _check_local(fmap1: torch.Tensor, fmap2: torch.Tensor, coords: torch.Tensor, radius: int) -> None:
    _check_radius("triton_corr_local", radius)
    ok = (fmap1.dim() == 4 and fmap2.dim() == 4 and coords.dim() == 4 and coords.shape[1] == 2
          and fmap1.shape[0] == coords.shape[0] and tuple(fmap1.shape[1:3]) == tuple(coords.shape[2:])
          and fmap2.shape[0] == fmap1.shape[0] and fmap2.shape[3] == fmap1.shape[3])
    if not ok:
        raise ShapeError("triton_corr_local: expected fmap1 [B, h, w, D], fmap2 [B, H, W, D], coords [B, 2, h, w], "
                         f"got {tuple(fmap1.shape)}, {tuple(fmap2.shape)}, {tuple(coords.shape)}")
    _check_float("triton_corr_local", fmap1, fmap2, coords)


def _check_splat(features: torch.Tensor, flow: torch.Tensor) -> None:
    ok = (features.dim() == 4 and flow.dim() == 4 and flow.shape[1] == 2 and flow.shape[0] == features.shape[0]
          and tuple(flow.shape[2:]) == tuple(features.shape[2:]))
    if not ok:
        raise ShapeError("triton_splat: expected input [B, C, H, W] and flow [B, 2, H, W], got "
                         f"{tuple(features.shape)}, {tuple(flow.shape)}")
    _check_float("triton_splat", features, flow)


def _floor_pow2(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def _pixel_block(columns: int, interpret: bool) -> int:
    """Pixels per program for [pixels, columns] tiles: ~512 elements on a GPU (about 100 registers
    per thread on sm_90 by cuobjdump), more when interpreted (fewer, larger numpy steps)."""
    budget, cap = (16384, 256) if interpret else (512, 128)
    return max(16, min(cap, _floor_pow2(budget // columns)))


def _patch_columns(radius: int, interpret: bool) -> int:
    """CP, the tile width that holds a patch column of 2r + 2 entries.

    On a GPU at least 16, so that radii 0-7 share one compiled kernel (each distinct block size is a
    compilation of about a second); interpreted, the smallest power of two (smaller numpy arrays).
    """
    cp = _next_pow2(2 * radius + 2)
    return cp if interpret else max(16, cp)


def _local_blocks(channels: int, cp: int, interpret: bool) -> tuple[int, int]:
    """(BLOCK_P, BLOCK_D) for the on-the-fly kernels' [pixels, CP, channels] tiles.

    On a GPU ~1k elements with 32 channels (one compiled variant for every D): the tiles of gathered
    rows, their 64-bit addresses and masks already take 110-220 registers per thread at that size
    (float32-float64, sm_90, by cuobjdump).
    """
    block_d = min(_next_pow2(channels), 32) if interpret else 32
    budget, cap = (131072, 256) if interpret else (1024, 32)
    return max(1, min(cap, _floor_pow2(budget // (cp * block_d)))), block_d


def _splat_blocks(channels: int, interpret: bool) -> tuple[int, int]:
    """(BLOCK_P, BLOCK_C) for the splatting kernels' [pixels, channels] tiles."""
    if interpret:
        block_c = min(_next_pow2(channels), 64)
        return min(1024, max(16, 4096 // block_c)), block_c
    return 128, 4


def lookup_forward(volume: torch.Tensor, coords: torch.Tensor, radius: int, scale: float) -> torch.Tensor:
    kernels = _import_kernels()
    volume, coords = volume.contiguous(), coords.contiguous()
    b, _, h, w = coords.shape
    k = 2 * radius + 1
    out = torch.empty(b, k * k, h, w, dtype=volume.dtype, device=volume.device)
    if out.numel() == 0:
        return out.zero_()
    cp = _patch_columns(radius, interpreting())
    block = _pixel_block(cp, interpreting())
    grid = (triton_cdiv(h * w, block), b)
    kernels.lookup_forward_kernel[grid](volume, coords, out, h * w, volume.shape[1], volume.shape[2], radius,
                                        float(scale), CP=cp, BLOCK_P=block)
    return out


def lookup_backward(grad: torch.Tensor, volume: torch.Tensor, coords: torch.Tensor, radius: int,
                    scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    kernels = _import_kernels()
    grad, volume, coords = grad.contiguous(), volume.contiguous(), coords.contiguous()
    b, _, h, w = coords.shape
    grad_volume = torch.zeros_like(volume)
    grad_coords = torch.zeros_like(coords)
    if b * h * w == 0:
        return grad_volume, grad_coords
    cp = _patch_columns(radius, interpreting())
    block = _pixel_block(cp, interpreting())
    grid = (triton_cdiv(h * w, block), b)
    kernels.lookup_backward_kernel[grid](grad, volume, coords, grad_volume, grad_coords, h * w, volume.shape[1],
                                         volume.shape[2], radius, float(scale), CP=cp, BLOCK_P=block)
    return grad_volume, grad_coords


def local_forward(fmap1: torch.Tensor, fmap2: torch.Tensor, coords: torch.Tensor, radius: int,
                  scale: float) -> torch.Tensor:
    kernels = _import_kernels()
    fmap1, fmap2, coords = fmap1.contiguous(), fmap2.contiguous(), coords.contiguous()
    b, h, w, d = fmap1.shape
    k = 2 * radius + 1
    out = torch.empty(b, k * k, h, w, dtype=fmap1.dtype, device=fmap1.device)
    if out.numel() == 0:
        return out.zero_()
    cp = _patch_columns(radius, interpreting())
    block_p, block_d = _local_blocks(d, cp, interpreting())
    grid = (triton_cdiv(h * w, block_p), b)
    kernels.local_forward_kernel[grid](fmap1, fmap2, coords, out, h * w, fmap2.shape[1], fmap2.shape[2], d, radius,
                                       float(scale), CP=cp, BLOCK_P=block_p, BLOCK_D=block_d)
    return out


def local_backward(grad: torch.Tensor, fmap1: torch.Tensor, fmap2: torch.Tensor, coords: torch.Tensor, radius: int,
                   scale: float, coords_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    kernels = _import_kernels()
    grad, fmap1, fmap2, coords = (t.contiguous() for t in (grad, fmap1, fmap2, coords))
    b, h, w, d = fmap1.shape
    grad_f1 = torch.zeros_like(fmap1)
    grad_f2 = torch.zeros_like(fmap2)
    grad_coords = torch.zeros_like(coords)
    if b * h * w == 0 or d == 0:
        return grad_f1, grad_f2, grad_coords
    cp = _patch_columns(radius, interpreting())
    block_p, block_d = _local_blocks(d, cp, interpreting())
    grid = (triton_cdiv(h * w, block_p), b)
    kernels.local_backward_kernel[grid](grad, fmap1, fmap2, coords, grad_f1, grad_f2, grad_coords, h * w,
                                        fmap2.shape[1], fmap2.shape[2], d, radius, float(scale),
                                        COORDS_GRAD=bool(coords_grad), CP=cp, BLOCK_P=block_p, BLOCK_D=block_d)
    return grad_f1, grad_f2, grad_coords


def splat_forward(features: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    kernels = _import_kernels()
    features, flow = features.contiguous(), flow.contiguous()
    b, c, h, w = features.shape
    out = torch.zeros_like(features)
    if out.numel() == 0:
        return out
    block_p, block_c = _splat_blocks(c, interpreting())
    grid = (triton_cdiv(h * w, block_p), b)
    kernels.splat_forward_kernel[grid](features, flow, out, c, h, w, BLOCK_P=block_p, BLOCK_C=block_c)
    return out


def splat_backward(grad: torch.Tensor, features: torch.Tensor,
                   flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kernels = _import_kernels()
    grad, features, flow = grad.contiguous(), features.contiguous(), flow.contiguous()
    b, c, h, w = features.shape
    grad_features = torch.zeros_like(features)
    grad_flow = torch.zeros_like(flow)
    if b * h * w == 0:
        return grad_features, grad_flow
    block_p, block_c = _splat_blocks(c, interpreting())
    grid = (triton_cdiv(h * w, block_p), b)
    kernels.splat_backward_kernel[grid](grad, features, flow, grad_features, grad_flow, c, h, w, BLOCK_P=block_p,
                                        BLOCK_C=block_c)
    return grad_features, grad_flow


def triton_cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


# ---------------------------------------------------------------- torch.library registration

def _register() -> None:
    """The ``motion4d::triton_*`` ops: forward and backward kernels, fakes, autograd, autocast."""
    lib = torch.library
    window = lambda radius: (2 * radius + 1) ** 2

    @lib.custom_op("motion4d::triton_corr_lookup", mutates_args=())
    def corr_lookup(volume: torch.Tensor, coords: torch.Tensor, radius: int, scale: float) -> torch.Tensor:
        _check_lookup(volume, coords, radius)
        return lookup_forward(volume, coords, radius, scale)

    @corr_lookup.register_fake
    def _(volume, coords, radius, scale):
        _check_lookup(volume, coords, radius)
        return volume.new_empty(coords.shape[0], window(radius), coords.shape[2], coords.shape[3])

    @lib.custom_op("motion4d::triton_corr_lookup_backward", mutates_args=())
    def corr_lookup_backward(grad_out: torch.Tensor, volume: torch.Tensor, coords: torch.Tensor, radius: int,
                             scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        _check_lookup(volume, coords, radius)
        return lookup_backward(grad_out, volume, coords, radius, scale)

    @corr_lookup_backward.register_fake
    def _(grad_out, volume, coords, radius, scale):
        return torch.empty_like(volume), torch.empty_like(coords)

    @lib.custom_op("motion4d::triton_corr_local", mutates_args=())
    def corr_local(fmap1: torch.Tensor, fmap2: torch.Tensor, coords: torch.Tensor, radius: int,
                   scale: float) -> torch.Tensor:
        _check_local(fmap1, fmap2, coords, radius)
        return local_forward(fmap1, fmap2, coords, radius, scale)

    @corr_local.register_fake
    def _(fmap1, fmap2, coords, radius, scale):
        _check_local(fmap1, fmap2, coords, radius)
        return fmap1.new_empty(fmap1.shape[0], window(radius), fmap1.shape[1], fmap1.shape[2])

    @lib.custom_op("motion4d::triton_corr_local_backward", mutates_args=())
    def corr_local_backward(grad_out: torch.Tensor, fmap1: torch.Tensor, fmap2: torch.Tensor, coords: torch.Tensor,
                            radius: int, scale: float,
                            coords_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_local(fmap1, fmap2, coords, radius)
        return local_backward(grad_out, fmap1, fmap2, coords, radius, scale, coords_grad)

    @corr_local_backward.register_fake
    def _(grad_out, fmap1, fmap2, coords, radius, scale, coords_grad):
        return torch.empty_like(fmap1), torch.empty_like(fmap2), torch.empty_like(coords)

    @lib.custom_op("motion4d::triton_splat", mutates_args=())
    def splat(input: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        _check_splat(input, flow)
        return splat_forward(input, flow)

    @splat.register_fake
    def _(input, flow):
        _check_splat(input, flow)
        return torch.empty_like(input)

    @lib.custom_op("motion4d::triton_splat_backward", mutates_args=())
    def splat_backward_op(grad_out: torch.Tensor, input: torch.Tensor,
                          flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_splat(input, flow)
        return splat_backward(grad_out, input, flow)

    @splat_backward_op.register_fake
    def _(grad_out, input, flow):
        return torch.empty_like(input), torch.empty_like(flow)

    def lookup_setup(ctx, inputs, output):
        volume, coords, radius, scale = inputs
        ctx.save_for_backward(volume, coords)
        ctx.radius, ctx.scale = radius, scale

    def lookup_grad(ctx, grad):
        volume, coords = ctx.saved_tensors
        grad_volume, grad_coords = corr_lookup_backward(grad, volume, coords, ctx.radius, ctx.scale)
        return grad_volume, grad_coords, None, None

    def local_setup(ctx, inputs, output):
        fmap1, fmap2, coords, radius, scale = inputs
        ctx.save_for_backward(fmap1, fmap2, coords)
        ctx.radius, ctx.scale = radius, scale

    def local_grad(ctx, grad):
        fmap1, fmap2, coords = ctx.saved_tensors
        grad_f1, grad_f2, grad_coords = corr_local_backward(grad, fmap1, fmap2, coords, ctx.radius, ctx.scale,
                                                            bool(ctx.needs_input_grad[2]))
        return grad_f1, grad_f2, grad_coords, None, None

    def splat_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def splat_grad(ctx, grad):
        features, flow = ctx.saved_tensors
        return splat_backward_op(grad, features, flow)

    corr_lookup.register_autograd(lookup_grad, setup_context=lookup_setup)
    corr_local.register_autograd(local_grad, setup_context=local_setup)
    splat.register_autograd(splat_grad, setup_context=splat_setup)
    if hasattr(lib, "register_autocast"):  # half inputs under autocast are computed in float32, as with C++/CUDA
        for name in ("triton_corr_lookup", "triton_corr_local", "triton_splat"):
            for device_type in ("cuda", "cpu"):
                lib.register_autocast(f"motion4d::{name}", device_type, torch.float32)


if CAN_REGISTER:
    _register()
