"""Limits shared by the compiled kernels (C++, CUDA, Triton) and their Python wrappers."""

MAX_COMPILED_RADIUS = 16
"""Largest correlation radius the compiled kernels accept (``kMaxRadius`` in ``csrc/ops.cpp``)."""
