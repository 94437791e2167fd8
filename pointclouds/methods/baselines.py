"""Reference baselines: zero flow, nearest-neighbour flow and rigid ICP (KD-tree + Kabsch).

* ``zero``: ``flow = 0`` (the "nothing moves" floor of every benchmark table).
* ``nn``: ``flow_i = q_nn(p_i) - p_i`` with ``q_nn`` the nearest target point.
* ``icp``: one rigid transform for the whole scene, point-to-point ICP with correspondences
  farther than ``max_correspondence_distance`` rejected; ``flow_i = R p_i + t - p_i``. It captures
  ego motion exactly and nothing that moves on its own. It runs open3d's
  ``registration_icp`` when open3d is installed (``backend="auto"``); the KD-tree + Kabsch loop
  of this module is the fallback without open3d (and ``backend="scipy"`` / ``"torch"`` select it
  explicitly). Side by side (``bench/scene_flow.py``, section "ICP") open3d is many times faster
  for the same transform.
"""
from __future__ import annotations

from typing import Any

import torch

from motion4d.checks import check_choice, check_finite, check_float, check_int, check_shape
from motion4d.device import resolve_device
from motion4d.errors import BackendUnavailableError
from pointclouds.neighbors import _open3d_available, knn

from .cards import ICP_CARD, NN_CARD, ZERO_CARD
from .common import SceneFlowOutput, Timer, check_pair
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
        tolerance: convergence: open3d's relative fitness and relative RMSE change; the fallback
            stops when the mean inlier distance improves by less than this (m).
        init: optional ``[4, 4]`` initial source-to-target transform.
        backend: ``"auto"`` (open3d's ``registration_icp`` when installed, else the fallback),
            ``"open3d"`` (raise without it), or a :func:`~pointclouds.neighbors.knn` back-end
            (``"kdtree"``, ``"scipy"``, ``"torch"``) for the fallback (KD-tree + Kabsch, any device).

    ``extras``: ``transform`` (``float64 [4, 4]``), ``fitness`` (inlier fraction), ``rmse``,
    ``backend`` (``"open3d"`` or ``"kabsch"``).
    """
    dev = resolve_device(device)
    src, tgt = check_pair(source, target, dev, min_points=3)
    iters = check_int(max_iterations, "max_iterations", 1)
    max_dist = check_float(max_correspondence_distance, "max_correspondence_distance")
    tol = check_float(tolerance, "tolerance", strict=False)
    check_choice(backend, "backend", ("auto", "open3d", "kdtree", "scipy", "torch"))
    T = torch.eye(4, dtype=torch.float64, device=dev)
    if init is not None:
        T0 = torch.as_tensor(init, dtype=torch.float64, device=dev)
        check_shape(T0, "init", (4, 4))
        check_finite(T0, "init")
        T = T0.clone()
    if backend == "open3d" and not _open3d_available():
        raise BackendUnavailableError("backend='open3d' needs the open3d package (pip install open3d)")
    result = None
    with Timer(dev) as timer:
        if backend in ("auto", "open3d") and _open3d_available():
            result = _icp_open3d(src, tgt, T, iters, max_dist, tol)
        if result is None:  # no open3d, another back-end asked for, or no pair within max_dist
            result = _icp_kabsch(src, tgt, T, iters, max_dist, tol, "auto" if backend == "open3d" else backend)
    T, done, fitness, rmse, used = result
    flow = _apply(T, src) - src
    return SceneFlowOutput(
        flow.cpu(),
        "icp",
        time_s=timer.seconds,
        iterations=done,
        loss=rmse,
        extras={"transform": T.cpu(), "fitness": fitness, "rmse": rmse, "backend": used},
    )


def _icp_open3d(src: torch.Tensor, tgt: torch.Tensor, T: torch.Tensor, iters: int, max_dist: float,
                tol: float) -> tuple[torch.Tensor, int, float, float, str] | None:
    """open3d's point-to-point ``registration_icp``; None when no pair lies within ``max_dist``."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    clouds = []
    for points in (src, tgt):
        cloud = o3d.geometry.PointCloud()
        cloud.points = o3d.utility.Vector3dVector(points.detach().cpu().double().numpy())
        clouds.append(cloud)
    criteria = reg.ICPConvergenceCriteria(relative_fitness=tol, relative_rmse=tol, max_iteration=iters)
    out = reg.registration_icp(clouds[0], clouds[1], max_dist, T.cpu().numpy(),
                               reg.TransformationEstimationPointToPoint(), criteria)
    if out.fitness <= 0 or len(out.correspondence_set) < 3:
        return None
    # open3d does not report its iteration count
    return (torch.from_numpy(out.transformation.copy()).to(T.device), 0, float(out.fitness),
            float(out.inlier_rmse), "open3d")


def _icp_kabsch(src: torch.Tensor, tgt: torch.Tensor, T: torch.Tensor, iters: int, max_dist: float, tol: float,
                backend: str) -> tuple[torch.Tensor, int, float, float, str]:
    """The fallback: nearest neighbours (KD-tree or brute force) + Kabsch, until the RMSE settles."""
    previous = float("inf")
    rmse, fitness, done = float("nan"), 0.0, 0
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
    return T, done, fitness, rmse, "kabsch"


BASELINES = ("zero", "nn", "icp")


def run_baseline(method: str, source: Any, target: Any, **options: Any) -> SceneFlowOutput:
    """Run ``zero`` / ``nn`` / ``icp`` with option checking."""
    check_choice(method, "method", BASELINES)
    return run_method(method, source, target, **options)


__all__ = ["zero_flow", "nearest_neighbor_flow", "icp_flow", "kabsch", "run_baseline"]
