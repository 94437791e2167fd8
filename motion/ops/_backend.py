"""Lazy loader of the compiled ops and backend selection.

The C++/CUDA extension (``motion/ops/csrc``) registers the ops ``torch.ops.motion4d.*`` through
``TORCH_LIBRARY``. It is found, in order:

1. prebuilt at install time: ``MOTION4D_BUILD_OPS=1 pip install .`` puts ``motion/ops/_C*.so`` in
   the package (with CUDA kernels when nvcc and a CUDA torch are present);
2. compiled on first use with ``torch.utils.cpp_extension.load`` into torch's extension cache
   (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``). The CUDA kernels are included
   when torch sees a GPU and finds nvcc, so a single library serves CPU and CUDA tensors.

A failed build is reported once (warning with the compiler's message) and not retried in the same
process. ``MOTION4D_NO_EXTENSION=1`` disables the C++ extension (``auto`` then uses the reference
on CPU without a warning).

``backend="auto"`` picks, for CPU tensors, the C++ kernels, else the reference; for CUDA tensors,
the CUDA C++ kernels when the extension is built or buildable (a prebuilt library, or nvcc and a
CUDA torch for the JIT build), else the Triton kernels (``_triton``: compiled at run time, no
nvcc), else the reference (with a warning). The choice and its reason are logged once per device
type (logger ``motion4d.ops``) and shown by ``motion4d info`` (:func:`selection_report`).

Nothing here compiles at import time: :func:`status` and :func:`selection_report` only report,
:func:`load` builds.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from motion4d.checks import check_choice
from motion4d.errors import BackendUnavailableError, InvalidArgumentError

from . import _triton
from ._limits import MAX_COMPILED_RADIUS  # noqa: F401  (part of this module's interface)

BACKENDS = ("auto", "torch", "cpp", "cuda", "triton")
CSRC = Path(__file__).resolve().parent / "csrc"
CPU_SOURCES = ("ops.cpp",)
CUDA_SOURCES = ("ops_cuda.cu",)
EXTRA_CFLAGS = ["-O3", "-fopenmp"]

_lock = threading.Lock()
_state: dict[str, Any] = {"loaded": False, "error": None, "origin": None, "cuda": False}
_warned: set[str] = set()
_announced: dict[str, str] = {}  # device type -> "backend: reason" of backend="auto", logged once
logger = logging.getLogger("motion4d.ops")


def _disabled() -> bool:
    return os.environ.get("MOTION4D_NO_EXTENSION", "0") not in ("", "0")


def _cuda_build_blocker() -> str | None:
    """Why the JIT build would leave out the CUDA kernels (None when it includes them)."""
    if os.environ.get("MOTION4D_OPS_CUDA") == "0":
        return "MOTION4D_OPS_CUDA=0"
    if not torch.cuda.is_available():
        return "no CUDA device is visible"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is not a CUDA build"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return "nvcc not found (no CUDA toolkit: set CUDA_HOME or install one)"
    return None


def _want_cuda() -> bool:
    """Build the CUDA kernels into the JIT extension: a GPU is visible and nvcc is found."""
    return _cuda_build_blocker() is None


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
    """Turn ``backend`` into ``"torch"``, ``"compiled"`` (C++/CUDA) or ``"triton"`` for tensors on ``device``.

    ``auto`` picks as the module docs say (warning once when it ends on the reference because
    kernels could not be built). ``cpp``, ``cuda`` and ``triton`` insist: they raise
    BackendUnavailableError when their kernels are missing, InvalidArgumentError for a wrong device.
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
    if backend == "triton":
        if device.type not in ("cpu", "cuda"):
            raise InvalidArgumentError(f"backend='triton' runs on CUDA tensors, got tensors on {device}")
        why = _triton.unavailable_reason(device)
        if why is not None:
            raise BackendUnavailableError(f"backend='triton' is unavailable for {device.type} tensors: {why}")
        return "triton"
    if device.type == "cuda":
        choice, why = _choose_cuda(device)
    elif device.type == "cpu" and not _disabled():
        choice, why = ("compiled", f"C++ kernels ({_state['origin']})") if load() else ("torch", _reason())
    else:
        choice, why = "torch", ("the C++ extension is disabled (MOTION4D_NO_EXTENSION)" if _disabled()
                                else f"no kernels for {device.type} tensors")
    _announce(device.type, choice, why)
    return choice


def _choose_cuda(device: torch.device) -> tuple[str, str]:
    """(backend, reason) of ``auto`` for CUDA tensors: CUDA C++, else Triton, else the reference."""
    if _disabled():
        cpp_why = "the C++ extension is disabled (MOTION4D_NO_EXTENSION)"
    elif _state["loaded"] and not _state["cuda"]:
        cpp_why = "the loaded C++ extension has no CUDA kernels"
    elif _prebuilt_library() is not None or _want_cuda():
        if load() and _state["cuda"]:
            return "compiled", f"CUDA C++ kernels ({_state['origin']})"
        cpp_why = _reason(cuda=True)
    else:
        cpp_why = f"the CUDA C++ extension cannot be built: {_cuda_build_blocker()}"
    triton_why = _triton.unavailable_reason(device)
    if triton_why is None:
        return "triton", f"Triton kernels; {cpp_why}"
    return "torch", f"{cpp_why}; Triton is unavailable: {triton_why}"


def _announce(device_type: str, choice: str, why: str) -> None:
    """The one-time log line of what ``auto`` runs on a device type; a warning when it is the reference."""
    name = {"compiled": "cpp" if device_type == "cpu" else "cuda"}.get(choice, choice)
    line = f"{name}: {why}"
    if _announced.get(device_type) != line:
        _announced[device_type] = line
        logger.info("motion4d.ops: backend='auto' runs %s tensors on %s", device_type, line)
    # The reference is the slow path: say so loudly, unless the user disabled the kernels or load() already warned.
    quiet = device_type == "cpu" and (_disabled() or _state["error"] is not None)
    if choice == "torch" and not quiet:
        _warn_once(device_type, f"motion4d: no compiled {device_type} kernels ({why}); using the PyTorch reference")


def selection_report() -> dict[str, str]:
    """What ``backend="auto"`` runs for CPU and CUDA tensors and why (``motion4d info``); compiles nothing."""
    report = {}
    if "cpu" in _announced:
        report["cpu"] = _announced["cpu"]
    elif _disabled():
        report["cpu"] = "torch: the C++ extension is disabled (MOTION4D_NO_EXTENSION)"
    elif _state["error"] is not None:
        report["cpu"] = f"torch: the C++ extension failed to build ({_reason()})"
    else:
        report["cpu"] = f"cpp: C++ kernels, {status()['state']}"
    if "cuda" in _announced:
        report["cuda"] = _announced["cuda"]
    elif not torch.cuda.is_available():
        report["cuda"] = "none: no CUDA device is visible"
    elif not _disabled() and _state["loaded"] and _state["cuda"]:
        report["cuda"] = f"cuda: CUDA C++ kernels ({_state['origin']})"
    elif not _disabled() and _state["error"] is None and not _state["loaded"] and (
            _prebuilt_library() is not None or _want_cuda()):
        report["cuda"] = f"cuda: CUDA C++ kernels, {status()['state']}"
    else:
        device = torch.device("cuda")
        blocker = ("the C++ extension is disabled (MOTION4D_NO_EXTENSION)" if _disabled()
                   else _reason(cuda=True) if _state["loaded"] or _state["error"] is not None
                   else f"the CUDA C++ extension cannot be built: {_cuda_build_blocker()}")
        triton_why = _triton.unavailable_reason(device)
        report["cuda"] = (f"triton: Triton kernels; {blocker}" if triton_why is None
                          else f"torch: {blocker}; Triton is unavailable: {triton_why}")
    return report


def cuda_launch_plan(radius: int, dtype: torch.dtype, shared_budget: int = 48 * 1024) -> dict[str, int]:
    """Shared memory the CUDA on-the-fly kernels use for ``radius`` (csrc/launch_plan.h; needs the extension).

    ``forward_tile`` pixels per block of the forward (0: one pixel's patch exceeds ``shared_budget``
    bytes, the kernel then refuses the radius), ``forward_bytes`` and ``backward_bytes`` of shared
    memory per block, ``backward_box_cells`` of the backward's accumulation box. Every CUDA GPU
    grants 48 KB per block without opting in, the default budget.
    """
    if not load():
        raise BackendUnavailableError(f"the C++ extension is unavailable: {_reason()}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    tile, forward, backward, cells = torch.ops.motion4d.cuda_launch_plan(radius, itemsize, shared_budget)
    return {"forward_tile": tile, "forward_bytes": forward, "backward_bytes": backward, "backward_box_cells": cells}


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
