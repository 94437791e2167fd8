"""Reference baselines: zero flow, nearest-neighbour flow and rigid ICP (KD-tree + Kabsch).

* ``zero``: ``flow = 0`` (the "nothing moves" floor of every benchmark table).
* ``nn``: ``flow_i = q_nn(p_i) - p_i`` with ``q_nn`` the nearest target point.
* ``icp``: one rigid transform for the whole scene, point-to-point ICP with correspondences
  farther than ``max_correspondence_distance`` rejected; ``flow_i = R p_i + t - p_i``. It captures
  ego motion exactly and nothing that moves on its own.
"""
from __future__ import annotations

from typing import Any

import torch

from motion4d.checks import check_choice, check_finite, check_float, check_int, check_shape
from motion4d.device import resolve_device
from pointclouds.neighbors import knn

from .common import SceneFlowOutput, Timer, check_pair
from .cards import ICP_CARD, NN_CARD, ZERO_CARD
from .registry import register_method, run_method


@register_method("zero", "zero flow", options=("device",), card=ZERO_CARD)
def zero_flow(source: Any, target: Any, *, device: Any = "cpu") -> SceneFlowOutput:
    """``flow = 0`` for every source point (target validated all the same)."""
    src, _ = check_pair(source, target, resolve_device(device))
    return SceneFlowOutput(torch.zeros_like(src).cpu(), "zero")


@register_method("nn", "nearest-neighbour flow (q_nn(p) - p)", options=("device", "backend"), card=NN_CARD)
def nearest_neighbor_flow(source: Any, target: Any, *, device: Any = "cpu", backend: str = "auto") -> SceneFlowOutput:
    """``flow_i = nearest target point - p_i`` (KD-tree on the CPU, exact brute force on GPU)."""
    dev = resolve_device(device)
    src, tgt = check_pair(source, target, dev)
    with Timer(dev) as timer:
        idx = knn(src, tgt, 1, backend=backend).idx[:, 0]
        flow = tgt[idx] - src
        loss = flow.square().sum(-1).mean().item()
    return SceneFlowOutput(flow.cpu(), "nn", time_s=timer.seconds, loss=loss)


def kabsch(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Least-squares rigid transform ``T [4, 4]`` (float64) with ``T a ~ b``.

    Args:
        a, b: ``[K, 3]`` corresponding points (K >= 3, not all collinear for a unique answer).
        weights: optional ``[K]`` non-negative weights.
    """
    a64, b64 = a.double(), b.double()
    w = torch.ones(len(a64), dtype=torch.float64, device=a.device) if weights is None else weights.double()
    w = w / w.sum().clamp_min(1e-12)
    ca, cb = (w[:, None] * a64).sum(0), (w[:, None] * b64).sum(0)
    H = ((a64 - ca) * w[:, None]).T @ (b64 - cb)
    U, _, Vh = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(Vh.T @ U.T))
    D = torch.diag(torch.tensor([1.0, 1.0, 1.0 if d >= 0 else -1.0], dtype=torch.float64, device=a.device))
    R = Vh.T @ D @ U.T
    T = torch.eye(4, dtype=torch.float64, device=a.device)
    T[:3, :3] = R
    T[:3, 3] = cb - R @ ca
    return T


def _apply(T: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return (p.double() @ T[:3, :3].T + T[:3, 3]).to(p.dtype)


@register_method(
    "icp",
    "one rigid transform (point-to-point ICP, KD-tree + Kabsch)",
    options=("device", "max_iterations", "max_correspondence_distance", "tolerance", "init", "backend"),
    card=ICP_CARD,
)
def icp_flow(
    source: Any,
    target: Any,
    *,
    device: Any = "cpu",
    max_iterations: int = 50,
    max_correspondence_distance: float = 1.0,
    tolerance: float = 1e-6,
    init: Any = None,
    backend: str = "auto",
) -> SceneFlowOutput:
    """Rigid point-to-point ICP; the flow is that of the fitted transform.

    Args:
        max_iterations: ICP iterations at most.
        max_correspondence_distance: pairs farther apart (m) are ignored (1.0 m as NSFP's pseudo-GT
            refinement uses); when no pair is that close the nearest 50 % are used instead.
        tolerance: stop when the mean inlier distance improves by less than this (m).
        init: optional ``[4, 4]`` initial source-to-target transform.

    ``extras``: ``transform`` (``float64 [4, 4]``), ``fitness`` (inlier fraction), ``rmse``.
    """
    dev = resolve_device(device)
    src, tgt = check_pair(source, target, dev, min_points=3)
    iters = check_int(max_iterations, "max_iterations", 1)
    max_dist = check_float(max_correspondence_distance, "max_correspondence_distance")
    tol = check_float(tolerance, "tolerance", strict=False)
    T = torch.eye(4, dtype=torch.float64, device=dev)
    if init is not None:
        T0 = torch.as_tensor(init, dtype=torch.float64, device=dev)
        check_shape(T0, "init", (4, 4))
        check_finite(T0, "init")
        T = T0.clone()
    previous = float("inf")
    rmse, fitness, done = float("nan"), 0.0, 0
    with Timer(dev) as timer:
        for done in range(1, iters + 1):
            moved = _apply(T, src)
            res = knn(moved, tgt, 1, backend=backend)
            d2 = res.sqdist[:, 0]
            inliers = d2 < max_dist**2
            if int(inliers.sum()) < 3:
                inliers = d2 <= d2.median()
            fitness = float(inliers.float().mean())
            rmse = float(d2[inliers].mean().sqrt())
            step = kabsch(moved[inliers], tgt[res.idx[inliers, 0]])
            T = step @ T
            if previous - rmse < tol:
                break
            previous = rmse
    flow = _apply(T, src) - src
    return SceneFlowOutput(
        flow.cpu(),
        "icp",
        time_s=timer.seconds,
        iterations=done,
        loss=rmse,
        extras={"transform": T.cpu(), "fitness": fitness, "rmse": rmse},
    )


BASELINES = ("zero", "nn", "icp")


def run_baseline(method: str, source: Any, target: Any, **options: Any) -> SceneFlowOutput:
    """Run ``zero`` / ``nn`` / ``icp`` with option checking."""
    check_choice(method, "method", BASELINES)
    return run_method(method, source, target, **options)


__all__ = ["zero_flow", "nearest_neighbor_flow", "icp_flow", "kabsch", "run_baseline"]
