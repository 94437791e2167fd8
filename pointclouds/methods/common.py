"""What every scene-flow method shares: input conversion, the output container, devices.

Inputs may be :class:`~pointclouds.cloud.PointCloud`, torch tensors or numpy arrays ``[N, 3]``;
they become ``float32 [N, 3]`` tensors on the compute device after validation (non-empty,
finite, three columns). Every method returns :class:`SceneFlowOutput` whose ``flow`` is the
``float32 [N, 3]`` motion of the *source* points (``source + flow`` lies on the target).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from motion4d.checks import check_finite, check_shape
from motion4d.errors import InvalidArgumentError, ShapeError


@dataclass
class SceneFlowOutput:
    """Result of :func:`pointclouds.estimate_scene_flow`.

    Attributes:
        flow: ``float32 [N, 3]`` flow of the source points (metres), on the CPU.
        method: name of the method that produced it.
        time_s: wall-clock seconds spent by the method (inputs already validated).
        iterations: optimisation steps taken (0 for closed-form methods).
        loss: final (or best, for NSFP) value of the method's objective, NaN if it has none.
        confidence: optional ``float32 [N]`` per-point confidence (SCOOP).
        extras: anything else the method reports (e.g. the rigid transform of ICP).
    """

    flow: torch.Tensor
    method: str
    time_s: float = 0.0
    iterations: int = 0
    loss: float = float("nan")
    confidence: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def numpy(self) -> np.ndarray:
        """The flow as a ``float32 [N, 3]`` numpy array."""
        return self.flow.detach().cpu().numpy()

    def warp(self, source: Any) -> torch.Tensor:
        """``source + flow`` as ``float32 [N, 3]`` (the source moved to the target time)."""
        points = as_points(source, "source", device=self.flow.device)
        check_shape(points, "source", (self.flow.shape[0], 3))
        return points + self.flow

    def summary(self) -> dict[str, Any]:
        """JSON-friendly scalars: method, time_s, iterations, loss."""
        return {"method": self.method, "time_s": self.time_s, "iterations": self.iterations, "loss": self.loss}


def as_points(x: Any, name: str, device: torch.device | str | None = None, min_points: int = 1) -> torch.Tensor:
    """Validate and convert a cloud to ``float32 [N, 3]`` on ``device``.

    Raises:
        ShapeError: not ``[N, 3]``, not real-valued, or fewer than ``min_points`` points.
        NonFiniteError: NaN or inf coordinates.
    """
    from pointclouds.cloud import PointCloud

    if isinstance(x, PointCloud):
        t = torch.from_numpy(x.points)
    elif isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ShapeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x))
    elif isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise ShapeError(f"{name} must hold real numbers, got dtype {x.dtype}")
        t = x.detach()
    else:
        raise ShapeError(f"{name} must be a PointCloud, torch.Tensor or numpy array [N, 3], got {type(x).__name__}")
    check_shape(t, name, ("N", 3))
    if t.shape[0] < min_points:
        raise ShapeError(f"{name} must hold at least {min_points} point(s), got {t.shape[0]}")
    t = t.to(device=device if device is not None else t.device, dtype=torch.float32)
    check_finite(t, name)
    return t.contiguous()


def check_pair(source: Any, target: Any, device: torch.device, min_points: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Both clouds of a pair as validated ``float32`` tensors on ``device``."""
    return (
        as_points(source, "source", device, min_points),
        as_points(target, "target", device, min_points),
    )


def split_options(options: dict[str, Any], allowed: set[str], method: str) -> None:
    """Raise an InvalidArgumentError naming options the method does not know."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidArgumentError(f"method {method!r} got unknown options {unknown}; it accepts {sorted(allowed)}")


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds`` (synchronises CUDA when used)."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device, self.seconds = device, 0.0

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> "Timer":
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (weight init independent of the global RNG)."""
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


MethodFn = Callable[..., SceneFlowOutput]
