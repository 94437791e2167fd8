"""Correlation volume and softmax splatting, with PyTorch, C++ (CPU), CUDA and Triton backends.

* :class:`CorrelationVolume` — RAFT's all-pairs pyramid or the memory-efficient on-the-fly lookup.
* :func:`softsplat` — forward warping in the modes sum / average / linear / softmax.

Every op takes ``backend="auto" | "torch" | "cpp" | "cuda" | "triton"``. ``torch`` is the pure-PyTorch
reference (always available, the oracle of the tests). ``cpp`` and ``cuda`` are the compiled kernels
(``motion/ops/csrc``), registered as ``torch.ops.motion4d.*`` custom ops with fake kernels and
autograd formulas (``torch.compile`` traces them). The extension compiles on first use (about 30 s
on CPU; the CUDA kernels need nvcc) or at install time with ``MOTION4D_BUILD_OPS=1``. ``triton``
runs the same ops as Triton kernels (``torch.ops.motion4d.triton_*``), compiled at run time without
nvcc; on CPU tensors only through Triton's interpreter (``TRITON_INTERPRET=1``, for tests).

``auto``: CPU tensors use the C++ kernels, else the reference; CUDA tensors use the CUDA C++ kernels
when the extension is built or buildable, else Triton, else the reference. The choice and its
reason are logged once (logger ``motion4d.ops``) and listed by ``motion4d info``; ending on the
reference because kernels are missing also warns once.

Precision: the kernels compute in float32 or float64. float16/bfloat16 inputs, and calls inside
``torch.autocast`` regions, are computed in float32 and return float32 (the ops are registered with
an autocast policy that casts to float32, like softmax-splatting's ``custom_fwd(cast_inputs=float32)``).

Determinism: CPU kernels are deterministic (every output element has one writer). The CUDA and
Triton kernels use atomic adds for the splatting forward and the on-the-fly correlation's fmap2
gradient, so those may differ in the last bits between runs (gradcheck them with ``nondet_tol``).
"""
from __future__ import annotations

import torch

from . import _backend, _triton
from .corr import CorrelationVolume, correlation_lookup
from .softsplat import softsplat


def has_cpp_ops() -> bool:
    """True when the C++ CPU kernels are usable (compiles them on the first call)."""
    return _backend.has_cpp()


def has_cuda_ops() -> bool:
    """True when the CUDA kernels are built and a GPU is visible (compiles on the first call)."""
    return _backend.has_cuda()


def has_triton_ops(device: str = "cuda") -> bool:
    """True when the Triton kernels can run on tensors of ``device`` ("cuda", or "cpu" when interpreting)."""
    return _triton.available(torch.device(device))


def available_backends() -> list[str]:
    """Backends usable on this machine, e.g. ``["torch", "cpp"]`` (compiles on the first call)."""
    names = ["torch"]
    if has_cpp_ops():
        names.append("cpp")
    if has_cuda_ops():
        names.append("cuda")
    if has_triton_ops("cuda" if torch.cuda.is_available() else "cpu"):
        names.append("triton")
    return names


__all__ = [
    "CorrelationVolume",
    "available_backends",
    "correlation_lookup",
    "has_cpp_ops",
    "has_cuda_ops",
    "has_triton_ops",
    "softsplat",
]
