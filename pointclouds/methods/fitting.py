"""Pieces every per-pair flow-field fit shares: early stopping, its forecast for progress bars, the
cosine learning rate, and nearest-neighbour indices of fixed clouds built once per pair."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from pointclouds.neighbors import knn


class EarlyStopping:
    """NSFP's rule: stop after ``patience`` steps whose loss is not ``min_delta`` below the best."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.bad_steps = 0

    def step(self, loss: float) -> bool:
        """Record ``loss``; True when the optimisation should stop."""
        if not math.isfinite(loss):
            return True
        if self.best is None or self.best - loss > self.min_delta:
            self.best, self.bad_steps = loss, 0
            return False
        self.bad_steps += 1
        return self.bad_steps >= self.patience


class StopForecast:
    """Forecast of the iteration at which :class:`EarlyStopping` will stop, for a progress bar's ETA.

    A bar whose total is ``max_iterations`` (5,000) shows ETAs of hours for fits that stop after a
    few hundred steps. Early stopping fires once the best loss no longer drops by ``min_delta``
    within ``patience`` steps. With ``D1`` the best loss's drop over the last ``patience`` steps and
    ``D0`` its drop over the ``patience`` steps before, a loss curve that settles geometrically drops
    by ``D1 q^k`` in the k-th window ahead (``q = D1 / D0``), so the fit stops about
    ``log(min_delta / D1) / log(q) + 1`` windows from now. Until two windows have been seen, or
    while the drop does not shrink, there is no forecast (None); it is never below the steps that
    early stopping needs at the least, nor above ``max_iterations``.
    """

    def __init__(self, patience: int, min_delta: float, max_iterations: int) -> None:
        self.patience, self.min_delta, self.max_iterations = patience, min_delta, max_iterations
        self.best: list[float] = []
        self.bad_steps = 0

    def update(self, iteration: int, loss: float) -> int | None:
        """Record the loss of step ``iteration``; the forecast final iteration (or None)."""
        best = min(self.best[-1], loss) if self.best else loss
        improved = not self.best or self.best[-1] - loss > self.min_delta
        self.bad_steps = 0 if improved else self.bad_steps + 1
        self.best.append(best if math.isfinite(best) else (self.best[-1] if self.best else math.inf))
        p = self.patience
        if len(self.best) <= 2 * p:
            return None
        d1 = self.best[-1 - p] - self.best[-1]
        d0 = self.best[-1 - 2 * p] - self.best[-1 - p]
        least = iteration + p - self.bad_steps
        if d1 <= self.min_delta:
            ahead = 0.0
        elif d0 <= d1:  # not settling (yet): no estimate
            return None
        else:
            ahead = (math.log(self.min_delta / d1) / math.log(d1 / d0) + 1.0) * p
        return int(min(self.max_iterations, max(least, iteration + ahead)))


class NearestIndex:
    """Nearest-neighbour search in a fixed cloud ``points [M, 3]`` whose index is built once.

    NSFP's chamfer terms query two clouds that never change (the target, for the warped source;
    the source, for the cycle's back-warped points): building their KD-trees once per pair instead
    of once per iteration gives the very same indices. open3d's index when installed (scipy's
    otherwise) on the CPU; exact brute force (:func:`~pointclouds.neighbors.knn`) on other devices.
    """

    def __init__(self, points: torch.Tensor, backend: str = "auto") -> None:
        from pointclouds.neighbors import resolve_backend

        self.points = points
        self.backend = resolve_backend(backend, points.device)
        ref = np.ascontiguousarray(points.detach().cpu().numpy())
        if self.backend == "open3d":
            import open3d.core as o3c

            self._index = o3c.nns.NearestNeighborSearch(o3c.Tensor(ref))
            self._index.knn_index()
        elif self.backend == "scipy":
            from scipy.spatial import cKDTree

            self._index = cKDTree(ref)

    @torch.no_grad()
    def query(self, query: torch.Tensor) -> torch.Tensor:
        """``int64 [N]`` index of the nearest point of every ``query [N, 3]`` (same device)."""
        if self.backend == "torch":
            return knn(query, self.points, 1, backend="torch").idx[:, 0]
        q = np.ascontiguousarray(query.detach().cpu().numpy())
        if self.backend == "open3d":
            import open3d.core as o3c

            idx = self._index.knn_search(o3c.Tensor(q), 1)[0].numpy().reshape(-1)
        else:
            idx = self._index.query(q, k=1, workers=-1)[1]
        return torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(query.device)


def cosine_lr(cfg: Any, iteration: int) -> float:
    """Learning rate of step ``iteration`` (1-based): ``lr`` at the first, ``lr * lr_min_factor`` at
    ``max_iterations``, half a cosine in between."""
    t = (iteration - 1) / max(1, cfg.max_iterations - 1)
    return cfg.lr * (cfg.lr_min_factor + (1.0 - cfg.lr_min_factor) * 0.5 * (1.0 + math.cos(math.pi * t)))


__all__ = ["EarlyStopping", "StopForecast", "NearestIndex", "cosine_lr"]
