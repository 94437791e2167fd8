"""Lazy loader of the compiled ops and backend selection.

The C++/CUDA extension (``motion/ops/csrc``) registers the ops ``torch.ops.motion4d.*`` through
``TORCH_LIBRARY``. It is found, in order:

1. prebuilt at install time: ``MOTION4D_BUILD_OPS=1 pip install .`` puts ``motion/ops/_C*.so`` in
   the package (with CUDA kernels when nvcc and a CUDA torch are present);
2. compiled on first use with ``torch.utils.cpp_extension.load`` into torch's extension cache
   (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``). The CUDA kernels are included
   when torch sees a GPU and finds nvcc, so a single library serves CPU and CUDA tensors.

A failed build is reported once (warning with the compiler's message) and not retried in the same
process; ``backend="auto"`` then falls back to the PyTorch reference. ``MOTION4D_NO_EXTENSION=1``
disables compiling altogether (``auto`` uses the reference without a warning).

Nothing here compiles at import time: :func:`status` only reports, :func:`load` builds.
"""
from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from motion4d.checks import check_choice
from motion4d.errors import BackendUnavailableError, InvalidArgumentError

BACKENDS = ("auto", "torch", "cpp", "cuda")
CSRC = Path(__file__).resolve().parent / "csrc"
CPU_SOURCES = ("ops.cpp",)
CUDA_SOURCES = ("ops_cuda.cu",)
EXTRA_CFLAGS = ["-O3", "-fopenmp"]
MAX_COMPILED_RADIUS = 16  # kMaxRadius in csrc/ops.cpp

_lock = threading.Lock()
_state: dict[str, Any] = {"loaded": False, "error": None, "origin": None, "cuda": False}
_warned: set[str] = set()


def _disabled() -> bool:
    return os.environ.get("MOTION4D_NO_EXTENSION", "0") not in ("", "0")


def _want_cuda() -> bool:
    """Build the CUDA kernels into the JIT extension: a GPU is visible and nvcc is found."""
    if os.environ.get("MOTION4D_OPS_CUDA") == "0":
        return False
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.cuda.is_available() and torch.version.cuda is not None and CUDA_HOME is not None


def extension_name(with_cuda: bool) -> str:
    return "motion4d_ops_cuda" if with_cuda else "motion4d_ops_cpu"


def _prebuilt_library() -> str | None:
    spec = importlib.util.find_spec("motion.ops._C")
    return spec.origin if spec is not None and spec.origin and spec.origin.endswith((".so", ".pyd")) else None


def _jit_build(with_cuda: bool, verbose: bool = False) -> str:
    from torch.utils.cpp_extension import load

    sources = [str(CSRC / s) for s in CPU_SOURCES]
    kwargs: dict[str, Any] = {}
    if with_cuda:
        sources += [str(CSRC / s) for s in CUDA_SOURCES]
        kwargs["extra_cuda_cflags"] = ["-O3", "-DWITH_CUDA", "-lineinfo"]
    load(
        name=extension_name(with_cuda),
        sources=sources,
        extra_cflags=EXTRA_CFLAGS + (["-DWITH_CUDA"] if with_cuda else []),
        extra_ldflags=["-fopenmp"],
        extra_include_paths=[str(CSRC)],
        is_python_module=False,
        verbose=verbose,
        **kwargs,
    )
    return f"jit:{extension_name(with_cuda)}"


def load(verbose: bool = False) -> bool:
    """Load (building on first use) the compiled ops; True when ``torch.ops.motion4d`` is usable."""
    if _state["loaded"]:
        return True
    if _state["error"] is not None or _disabled():
        return False
    with _lock:
        if _state["loaded"] or _state["error"] is not None:
            return bool(_state["loaded"])
        try:
            prebuilt = _prebuilt_library()
            if prebuilt is not None:
                torch.ops.load_library(prebuilt)
                origin = prebuilt
            else:
                origin = _jit_build(_want_cuda(), verbose=verbose)
            _register_python_side()
            _state["cuda"] = bool(torch.ops.motion4d.compiled_with_cuda())
            _state["origin"] = origin
            _state["loaded"] = True
        except Exception as exc:  # a compiler error, a missing toolchain, an ABI mismatch: fall back
            message = str(exc).strip()
            if len(message) > 4000:
                message = "...\n" + message[-4000:]
            _state["error"] = f"{type(exc).__name__}: {message}"
            warnings.warn(
                "motion4d: the compiled correlation/splatting ops could not be built or loaded; "
                "using the PyTorch reference instead (set MOTION4D_NO_EXTENSION=1 to silence).\n"
                + _state["error"],
                RuntimeWarning,
                stacklevel=3,
            )
    return bool(_state["loaded"])


def has_cpp() -> bool:
    """True when the C++ CPU kernels are usable (builds them on first call)."""
    return load()


def has_cuda() -> bool:
    """True when CUDA kernels are built and a GPU is visible (builds on first call)."""
    return torch.cuda.is_available() and load() and bool(_state["cuda"])


def _cached_build() -> str | None:
    """Folder of a finished JIT build for this machine's configuration, if there is one."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        name = extension_name(_want_cuda())
        folder = Path(_get_build_directory(name, verbose=False))
    except Exception:  # a private helper of torch: treat any change of it as "unknown"
        return None
    return str(folder) if (folder / f"{name}.so").exists() else None


def status() -> dict[str, Any]:
    """Short report for ``motion4d info``; never compiles anything."""
    if _state["loaded"]:
        state = "loaded"
    elif _state["error"] is not None:
        state = "failed: " + _state["error"].splitlines()[0][:200]
    elif _disabled():
        state = "disabled (MOTION4D_NO_EXTENSION)"
    elif _prebuilt_library() is not None:
        state = "prebuilt, not loaded yet"
    elif _cached_build() is not None:
        state = f"built (cached in {_cached_build()}), not loaded yet"
    else:
        state = "builds on first use (torch.utils.cpp_extension)"
    return {"state": state, "origin": _state["origin"], "cuda_kernels": bool(_state["cuda"]),
            "jit_cuda": _want_cuda()}


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def resolve(backend: str, device: torch.device) -> str:
    """Turn ``backend`` into ``"torch"`` or ``"compiled"`` for tensors on ``device``.

    ``auto`` picks the compiled kernels for CPU and CUDA tensors when they are available and the
    reference otherwise (warning once when the kernels could not be built). ``cpp`` and ``cuda``
    insist: they raise BackendUnavailableError when the kernels are missing or the device differs.
    """
    check_choice(backend, "backend", BACKENDS)
    if backend == "torch":
        return "torch"
    if backend == "cpp":
        if device.type != "cpu":
            raise InvalidArgumentError(f"backend='cpp' runs on CPU tensors, got tensors on {device}")
        if not load():
            raise BackendUnavailableError(f"backend='cpp' is unavailable: {_reason()}")
        return "compiled"
    if backend == "cuda":
        if device.type != "cuda":
            raise InvalidArgumentError(f"backend='cuda' runs on CUDA tensors, got tensors on {device}")
        if not (load() and _state["cuda"]):
            raise BackendUnavailableError(f"backend='cuda' is unavailable: {_reason(cuda=True)}")
        return "compiled"
    if device.type not in ("cpu", "cuda") or _disabled():
        return "torch"
    if load() and (device.type == "cpu" or _state["cuda"]):
        return "compiled"
    if _state["error"] is None:  # a failed build was already reported, with the compiler's message, by load()
        _warn_once(device.type, f"motion4d: no compiled {device.type} kernels ({_reason(device.type == 'cuda')}); "
                                "using the PyTorch reference")
    return "torch"


def _reason(cuda: bool = False) -> str:
    if _disabled():
        return "disabled by MOTION4D_NO_EXTENSION"
    if _state["error"] is not None:
        return _state["error"].splitlines()[0][:300]
    if cuda and not _state["cuda"]:
        return ("the extension was built without CUDA kernels (needs a CUDA build of torch, a visible GPU "
                "and nvcc at build time)")
    return "not built"


# ---------------------------------------------------------------- torch.library registration

def _register_python_side() -> None:
    """Fake (meta) kernels, autograd formulas and autocast policy of the compiled ops."""
    ops = torch.ops.motion4d

    def window(radius: int) -> int:
        return (2 * radius + 1) ** 2

    @torch.library.register_fake("motion4d::corr_lookup")
    def _(volume, coords, radius, scale):
        torch._check(volume.dim() == 3 and coords.dim() == 4 and coords.shape[1] == 2)
        return volume.new_empty(coords.shape[0], window(radius), coords.shape[2], coords.shape[3])

    @torch.library.register_fake("motion4d::corr_lookup_backward")
    def _(grad_out, volume, coords, radius, scale):
        return torch.empty_like(volume), torch.empty_like(coords)

    @torch.library.register_fake("motion4d::corr_local")
    def _(fmap1, fmap2, coords, radius, scale):
        torch._check(fmap1.dim() == 4 and fmap2.dim() == 4 and coords.dim() == 4)
        return fmap1.new_empty(fmap1.shape[0], window(radius), fmap1.shape[1], fmap1.shape[2])

    @torch.library.register_fake("motion4d::corr_local_backward")
    def _(grad_out, fmap1, fmap2, coords, radius, scale, coords_grad):
        return torch.empty_like(fmap1), torch.empty_like(fmap2), torch.empty_like(coords)

    @torch.library.register_fake("motion4d::splat")
    def _(input, flow):
        torch._check(input.dim() == 4 and flow.dim() == 4 and flow.shape[1] == 2)
        return torch.empty_like(input)

    @torch.library.register_fake("motion4d::splat_backward")
    def _(grad_out, input, flow):
        return torch.empty_like(input), torch.empty_like(flow)

    def lookup_setup(ctx, inputs, output):
        volume, coords, radius, scale = inputs
        ctx.save_for_backward(volume, coords)
        ctx.radius, ctx.scale = radius, scale

    def lookup_backward(ctx, grad):
        volume, coords = ctx.saved_tensors
        grad_volume, grad_coords = ops.corr_lookup_backward(grad.contiguous(), volume, coords, ctx.radius,
                                                            ctx.scale)
        return grad_volume, grad_coords, None, None

    def local_setup(ctx, inputs, output):
        fmap1, fmap2, coords, radius, scale = inputs
        ctx.save_for_backward(fmap1, fmap2, coords)
        ctx.radius, ctx.scale = radius, scale

    def local_backward(ctx, grad):
        fmap1, fmap2, coords = ctx.saved_tensors
        grad_f1, grad_f2, grad_coords = ops.corr_local_backward(
            grad.contiguous(), fmap1, fmap2, coords, ctx.radius, ctx.scale, bool(ctx.needs_input_grad[2]))
        return grad_f1, grad_f2, grad_coords, None, None

    def splat_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def splat_backward(ctx, grad):
        features, flow = ctx.saved_tensors
        return ops.splat_backward(grad.contiguous(), features, flow)

    torch.library.register_autograd("motion4d::corr_lookup", lookup_backward, setup_context=lookup_setup)
    torch.library.register_autograd("motion4d::corr_local", local_backward, setup_context=local_setup)
    torch.library.register_autograd("motion4d::splat", splat_backward, setup_context=splat_setup)
    # The kernels compute in float32/float64: under autocast, half inputs are cast to float32.
    for name in ("corr_lookup", "corr_local", "splat"):
        for device_type in ("cuda", "cpu"):
            torch.library.register_autocast(f"motion4d::{name}", device_type, torch.float32)
