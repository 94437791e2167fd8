"""Scene-flow metrics as the literature computes them (FlowNet3D / HPLFlowNet / FLOT / SCOOP / NSFP).

Per point, with prediction ``p`` and ground truth ``g`` (metres):
``e = |p - g|`` (end-point error) and ``r = e / (|g| + eps)`` (relative error).

=============== =============================================================================
``epe3d``       mean ``e`` (m)
``acc_strict``  fraction with ``e < 0.05`` **or** ``r < 0.05``   (AccS, Acc3DS, Acc_5)
``acc_relax``   fraction with ``e < 0.1`` **or** ``r < 0.1``     (AccR, Acc3DR, Acc_10)
``outliers``    fraction with ``e > 0.3`` **or** ``r > 0.1``     (note: 10 %, not 30 %)
``angle``       mean angle error in radians, see below
=============== =============================================================================

The thresholds above are the literature's, made for street lidar (preset ``"lidar"``). They are
parameters (``thresholds=``): a preset name of :data:`THRESHOLD_PRESETS` or a :class:`Thresholds`
with an (absolute metres, relative) pair per test. The ``"object"`` preset divides the absolute
ones by ten (5 mm / 1 cm / 3 cm) for table-top objects and scans: a 15 cm object moved by 16 mm
gives zero flow an AccS of 1.0 under ``"lidar"`` (16 mm < 5 cm) and 0.0 under ``"object"``.
:meth:`Thresholds.scaled` scales the absolute ones to any other scene size.

Angle error (``angle=`` option):

* ``"3d"`` (default, NSFP's ``utils.py``): ``acos(<p/|p|, g/|g|>)`` with the dot product clamped
  to ``±(1 - 1e-7)``; a zero-length vector makes the dot NaN, which NSFP maps to 0, i.e. an angle
  of pi/2.
* ``"spacetime"`` (Argoverse 2 scene-flow challenge): the angle between the 4-D vectors
  ``(p, dt)`` and ``(g, dt)`` with ``dt = 0.1`` s (one lidar sweep); well defined for zero flow.

``eps`` defaults to 1e-4 (HPLFlowNet / FLOT / SCOOP); NSFP and Fast NSF use 1e-20, AV2 1e-10.
Datasets are reported as the mean of per-scene values (scene-averaged, as all the above do);
:class:`SceneFlowMetricAccumulator` also gives the point-weighted pooling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from motion4d.checks import check_choice, check_finite, check_shape
from motion4d.errors import InvalidArgumentError, ShapeError

METRIC_KEYS = ("epe3d", "acc_strict", "acc_relax", "outliers", "angle")
ANGLE_MODES = ("3d", "spacetime")
SWEEP_TIME_DELTA = 0.1  # seconds between two lidar sweeps at 10 Hz (AV2's space-time angle)
_DOT_CLAMP = 1.0 - 1e-7


@dataclass(frozen=True)
class Thresholds:
    """(absolute metres, relative) pairs of the three tests: ``acc_strict`` counts points with ``e < abs``
    or ``r < rel`` of ``strict``, ``acc_relax`` likewise with ``relax``, ``outliers`` those with
    ``e > abs`` or ``r > rel`` of ``outlier``."""

    strict: tuple[float, float] = (0.05, 0.05)
    relax: tuple[float, float] = (0.1, 0.1)
    outlier: tuple[float, float] = (0.3, 0.1)

    def validate(self) -> "Thresholds":
        for name in ("strict", "relax", "outlier"):
            pair = getattr(self, name)
            try:
                values = tuple(float(v) for v in pair)
            except (TypeError, ValueError):
                values = ()
            if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
                raise InvalidArgumentError(f"thresholds.{name} must be two positive numbers (absolute metres, "
                                           f"relative), got {pair!r}")
        return self

    def scaled(self, factor: float) -> "Thresholds":
        """The same tests with every absolute threshold multiplied by ``factor`` (relative ones unchanged)."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise InvalidArgumentError(f"factor must be a positive number, got {factor!r}")
        return replace(self, **{k: (getattr(self, k)[0] * factor, getattr(self, k)[1])
                                for k in ("strict", "relax", "outlier")})

    def as_dict(self) -> dict[str, list[float]]:
        return {"strict": list(self.strict), "relax": list(self.relax), "outlier": list(self.outlier)}


#: ``lidar``: FlowNet3D / HPLFlowNet / FLOT / SCOOP / NSFP values (street scenes, metres);
#: ``object``: absolute thresholds a tenth of those (table-top objects and scans)
THRESHOLD_PRESETS: dict[str, Thresholds] = {
    "lidar": Thresholds(),
    "object": Thresholds(strict=(0.005, 0.05), relax=(0.01, 0.1), outlier=(0.03, 0.1)),
}


def resolve_thresholds(thresholds: Any = "lidar") -> Thresholds:
    """A validated :class:`Thresholds` from a preset name, a :class:`Thresholds` or a dict of its fields."""
    if isinstance(thresholds, Thresholds):
        return thresholds.validate()
    if isinstance(thresholds, str):
        check_choice(thresholds, "thresholds", tuple(THRESHOLD_PRESETS))
        return THRESHOLD_PRESETS[thresholds]
    if isinstance(thresholds, dict):
        unknown = sorted(set(thresholds) - {"strict", "relax", "outlier"})
        if unknown:
            raise InvalidArgumentError(f"thresholds has unknown keys {unknown}; known: strict, relax, outlier")
        return Thresholds(**{k: tuple(v) for k, v in thresholds.items()}).validate()
    raise InvalidArgumentError(f"thresholds must be a preset name {sorted(THRESHOLD_PRESETS)}, a Thresholds or a "
                               f"dict, got {type(thresholds).__name__}")


def _to_float64(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ShapeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _mask(mask: Any, n: int) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = np.asarray(mask)
    if m.ndim == 2 and m.shape[1] == 1:  # FLOT/SCOOP store masks as [N, 1]
        m = m[:, 0]
    check_shape(m, "mask", (n,))
    if m.dtype != bool:
        if not np.all((m == 0) | (m == 1)):
            raise InvalidArgumentError("mask must be bool or hold only 0/1 values")
        m = m.astype(bool)
    return m


def angle_error(pred: np.ndarray, gt: np.ndarray, mode: str = "3d", time_delta: float = SWEEP_TIME_DELTA) -> np.ndarray:
    """Per-point angle error in radians between ``pred [N, 3]`` and ``gt [N, 3]`` (see module doc)."""
    check_choice(mode, "angle", ANGLE_MODES)
    if mode == "spacetime":
        pad = np.full((len(pred), 1), float(time_delta))
        pred, gt = np.concatenate([pred, pad], 1), np.concatenate([gt, pad], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit_p = pred / np.linalg.norm(pred, axis=1, keepdims=True)
        unit_g = gt / np.linalg.norm(gt, axis=1, keepdims=True)
        dot = np.sum(unit_p * unit_g, axis=1)
    dot = np.nan_to_num(np.clip(dot, -_DOT_CLAMP, _DOT_CLAMP), nan=0.0)
    return np.arccos(dot)


def per_point_errors(
    pred: Any,
    gt: Any,
    mask: Any = None,
    *,
    eps: float = 1e-4,
    angle: str = "3d",
    time_delta: float = SWEEP_TIME_DELTA,
    thresholds: Any = "lidar",
) -> dict[str, np.ndarray]:
    """Per-point ``epe``, ``relative``, ``angle`` and the three boolean tests, over the masked points."""
    limits = resolve_thresholds(thresholds)
    p = _to_float64(pred, "pred")
    g = _to_float64(gt, "gt")
    dims = check_shape(p, "pred", ("N", 3))
    check_shape(g, "gt", (dims["N"], 3))
    if mask is not None:
        m = _mask(mask, dims["N"])
        p, g = p[m], g[m]
    if len(p) == 0:
        raise InvalidArgumentError("no points to evaluate (empty input or mask selects nothing)")
    check_finite(p, "pred")
    check_finite(g, "gt")
    if not eps > 0:
        raise InvalidArgumentError(f"eps must be > 0, got {eps!r}")
    epe = np.linalg.norm(p - g, axis=1)
    rel = epe / (np.linalg.norm(g, axis=1) + eps)
    return {
        "epe": epe,
        "relative": rel,
        "angle": angle_error(p, g, angle, time_delta),
        "acc_strict": (epe < limits.strict[0]) | (rel < limits.strict[1]),
        "acc_relax": (epe < limits.relax[0]) | (rel < limits.relax[1]),
        "outliers": (epe > limits.outlier[0]) | (rel > limits.outlier[1]),
    }


def _summaries(errors: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        "epe3d": float(errors["epe"].mean()),
        "acc_strict": float(errors["acc_strict"].mean()),
        "acc_relax": float(errors["acc_relax"].mean()),
        "outliers": float(errors["outliers"].mean()),
        "angle": float(errors["angle"].mean()),
    }


def scene_flow_metrics(
    pred: Any,
    gt: Any,
    mask: Any = None,
    *,
    eps: float = 1e-4,
    angle: str = "3d",
    time_delta: float = SWEEP_TIME_DELTA,
    thresholds: Any = "lidar",
) -> dict[str, float]:
    """EPE3D, AccS, AccR, Outliers and angle error of one scene.

    Args:
        pred: ``[N, 3]`` predicted flow of the source points (numpy or torch), metres.
        gt: ``[N, 3]`` ground-truth flow.
        mask: optional ``bool [N]`` (or ``[N, 1]`` / 0-1 values) of points to evaluate, e.g.
            FlowNet3D's ``valid_mask1``; the others are ignored.
        eps: denominator guard of the relative error (1e-4 as HPLFlowNet/FLOT/SCOOP).
        angle: ``"3d"`` (NSFP) or ``"spacetime"`` (AV2); see the module docstring.
        time_delta: seconds used by the space-time angle.
        thresholds: the accuracy / outlier tests: ``"lidar"`` (the literature's 5 / 10 / 30 cm),
            ``"object"`` (5 mm / 1 cm / 3 cm), or a :class:`Thresholds`.

    Returns:
        ``{"epe3d", "acc_strict", "acc_relax", "outliers", "angle"}`` as Python floats
        (fractions in [0, 1], angle in radians).
    """
    return _summaries(per_point_errors(pred, gt, mask, eps=eps, angle=angle, time_delta=time_delta,
                                       thresholds=thresholds))


class SceneFlowMetricAccumulator:
    """Accumulates scene-flow metrics over a data set, one scene per :meth:`update`.

    ``compute()`` returns the scene-averaged values (the convention of FlowNet3D, HPLFlowNet,
    FLOT, SCOOP and NSFP) plus ``num_scenes`` and ``num_points``; ``compute(pooled=True)``
    weights every point equally instead (AV2-style pooling).
    """

    def __init__(self, *, eps: float = 1e-4, angle: str = "3d", time_delta: float = SWEEP_TIME_DELTA,
                 thresholds: Any = "lidar") -> None:
        check_choice(angle, "angle", ANGLE_MODES)
        self.eps, self.angle, self.time_delta = eps, angle, time_delta
        self.thresholds = resolve_thresholds(thresholds)
        self.reset()

    def reset(self) -> None:
        self._scene_values: list[dict[str, float]] = []
        self._sums = dict.fromkeys(METRIC_KEYS, 0.0)
        self._points = 0

    def update(self, pred: Any, gt: Any, mask: Any = None) -> dict[str, float]:
        """Add one scene; returns that scene's metrics."""
        errors = per_point_errors(pred, gt, mask, eps=self.eps, angle=self.angle, time_delta=self.time_delta,
                                  thresholds=self.thresholds)
        scene = _summaries(errors)
        n = len(errors["epe"])
        self._scene_values.append(scene)
        for key in METRIC_KEYS:
            self._sums[key] += scene[key] * n
        self._points += n
        return scene

    def __len__(self) -> int:
        return len(self._scene_values)

    def compute(self, pooled: bool = False) -> dict[str, float]:
        if not self._scene_values:
            return {**{k: math.nan for k in METRIC_KEYS}, "num_scenes": 0, "num_points": 0}
        if pooled:
            values = {k: self._sums[k] / self._points for k in METRIC_KEYS}
        else:
            values = {k: float(np.mean([s[k] for s in self._scene_values])) for k in METRIC_KEYS}
        return {**values, "num_scenes": len(self._scene_values), "num_points": self._points}

    @property
    def scenes(self) -> list[dict[str, float]]:
        """Per-scene metric dicts in update order."""
        return list(self._scene_values)


__all__ = [
    "scene_flow_metrics",
    "SceneFlowMetricAccumulator",
    "per_point_errors",
    "angle_error",
    "METRIC_KEYS",
    "SWEEP_TIME_DELTA",
    "Thresholds",
    "THRESHOLD_PRESETS",
    "resolve_thresholds",
]
