"""Softmax splatting: forward warping with bilinear weights (Niklaus & Liu, CVPR 2020)."""
from __future__ import annotations

import torch

from motion4d.checks import check_choice, check_floating, check_shape
from motion4d.errors import InvalidArgumentError

from . import _backend, _reference

MODES = ("sum", "average", "linear", "softmax")


def _splat_sum(features: torch.Tensor, flow: torch.Tensor, backend: str) -> torch.Tensor:
    if backend == "torch":
        return _reference.splat(features, flow)
    op = torch.ops.motion4d.splat if backend == "compiled" else torch.ops.motion4d.triton_splat
    return op(features.contiguous(), flow.contiguous())


def softsplat(features: torch.Tensor, flow: torch.Tensor, metric: torch.Tensor | None = None,
              mode: str = "sum", backend: str = "auto") -> torch.Tensor:
    """Forward-warp ``features`` to the next frame along ``flow``.

    Every source pixel ``p`` moves to ``p + flow[p]`` and is distributed over the four surrounding
    pixels with bilinear weights ``w``; targets outside the image (and non-finite flow) are dropped.

    * ``sum``:      ``out[q] = Σ w·f``
    * ``average``:  ``out[q] = Σ w·f / Σ w``
    * ``linear``:   ``out[q] = Σ w·m·f / Σ w·m``       (``m = metric``)
    * ``softmax``:  ``out[q] = Σ w·exp(m)·f / Σ w·exp(m)``

    Normalisation follows the CVPR 2020 release, which SplatFlow uses: a normaliser that is exactly
    zero is replaced by one, so pixels nothing lands on are 0 (no epsilon is added elsewhere).
    For ``softmax`` the per-sample maximum of ``metric`` is subtracted before ``exp``; with this
    normalisation the result is mathematically unchanged and ``exp`` cannot overflow (metrics more
    than ~87 below the maximum underflow to weight 0 in float32).

    Gradients flow to ``features``, ``flow`` and ``metric`` (one-sided at integer target positions).
    float16/bfloat16 inputs are computed and returned in float32.

    Args:
        features: ``[B, C, H, W]``.
        flow: ``[B, 2, H, W]`` in pixels (u right, v down), anchored at the source frame.
        metric: ``[B, 1, H, W]`` importance, required by ``linear`` and ``softmax`` only.
        mode: ``"sum"``, ``"average"``, ``"linear"`` or ``"softmax"``.
        backend: ``"auto"``, ``"torch"``, ``"cpp"``, ``"cuda"`` or ``"triton"`` (see :mod:`motion.ops`).

    Returns:
        ``[B, C, H, W]`` splatted features.
    """
    check_choice(mode, "mode", MODES)
    size = check_shape(features, "features", ("B", "C", "H", "W"))
    check_shape(flow, "flow", (size["B"], 2, size["H"], size["W"]))
    check_floating(features, "features")
    check_floating(flow, "flow")
    if mode in ("linear", "softmax"):
        if metric is None:
            raise InvalidArgumentError(f"mode={mode!r} needs a metric [B, 1, H, W]")
        check_shape(metric, "metric", (size["B"], 1, size["H"], size["W"]))
        check_floating(metric, "metric")
    elif metric is not None:
        raise InvalidArgumentError(f"metric is only used by modes 'linear' and 'softmax', not {mode!r}")
    if flow.device != features.device or (metric is not None and metric.device != features.device):
        raise InvalidArgumentError("features, flow and metric must be on one device")
    resolved = _backend.resolve(backend, features.device)

    dtype = features.dtype if features.dtype in (torch.float32, torch.float64) else torch.float32
    features = features.to(dtype)
    flow = flow.to(dtype)
    with torch.autocast(features.device.type, enabled=False):
        if mode == "sum":
            return _splat_sum(features, flow, resolved)
        if mode == "average":
            weight = features.new_ones(size["B"], 1, size["H"], size["W"])
            numerator = _splat_sum(features, flow, resolved)
        else:
            if mode == "linear":
                weight = metric.to(dtype)
            else:
                metric = metric.to(dtype)
                weight = torch.exp(metric - metric.detach().amax(dim=(1, 2, 3), keepdim=True))
            numerator = _splat_sum(features * weight, flow, resolved)
        normaliser = _splat_sum(weight, flow, resolved)
        normaliser = torch.where(normaliser == 0, torch.ones_like(normaliser), normaliser)
        return numerator / normaliser
