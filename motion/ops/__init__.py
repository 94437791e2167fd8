"""Correlation volume and softmax splatting, with PyTorch, C++ (CPU) and CUDA backends.

* :class:`CorrelationVolume` — RAFT's all-pairs pyramid or the memory-efficient on-the-fly lookup.
* :func:`softsplat` — forward warping in the modes sum / average / linear / softmax.

Every op takes ``backend="auto" | "torch" | "cpp" | "cuda"``. ``torch`` is the pure-PyTorch
reference (always available, the oracle of the tests). ``cpp`` and ``cuda`` are the compiled kernels
(``motion/ops/csrc``), registered as ``torch.ops.motion4d.*`` custom ops with fake kernels and
autograd formulas (``torch.compile`` traces them). The extension compiles on first use (about 30 s
on CPU) or at install time with ``MOTION4D_BUILD_OPS=1``; ``auto`` uses it when it is there and falls
back to the reference with a one-time warning when it cannot be built.

Precision: the kernels compute in float32 or float64. float16/bfloat16 inputs, and calls inside
``torch.autocast`` regions, are computed in float32 and return float32 (the ops are registered with
an autocast policy that casts to float32, like softmax-splatting's ``custom_fwd(cast_inputs=float32)``).

Determinism: CPU kernels are deterministic (every output element has one writer). The CUDA
kernels use atomicAdd for the splatting forward and the on-the-fly correlation's fmap2 gradient,
so those may differ in the last bits between runs.
"""
from __future__ import annotations

from . import _backend
from .corr import CorrelationVolume, correlation_lookup
from .softsplat import softsplat


def has_cpp_ops() -> bool:
    """True when the C++ CPU kernels are usable (compiles them on the first call)."""
    return _backend.has_cpp()


def has_cuda_ops() -> bool:
    """True when the CUDA kernels are built and a GPU is visible (compiles on the first call)."""
    return _backend.has_cuda()


def available_backends() -> list[str]:
    """Backends usable on this machine, e.g. ``["torch", "cpp"]`` (compiles on the first call)."""
    names = ["torch"]
    if has_cpp_ops():
        names.append("cpp")
    if has_cuda_ops():
        names.append("cuda")
    return names


__all__ = ["CorrelationVolume", "correlation_lookup", "softsplat", "has_cpp_ops", "has_cuda_ops",
           "available_backends"]
