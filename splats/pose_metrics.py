"""Camera-trajectory metrics: Umeyama Sim(3) / SE(3) alignment, ATE and RPE (as ``evo`` computes them).

Monocular reconstructions recover poses up to a similarity, so trajectories are compared after the
least-squares similarity (Umeyama 1991) that maps the estimated camera centres onto the reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from motion4d.checks import check_finite, check_shape
from motion4d.errors import InvalidArgumentError


@dataclass
class Similarity:
    """``y = scale * rotation @ x + translation``."""

    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity (or rigid transform) mapping ``source [N, 3]`` onto ``target [N, 3]``."""
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    n = check_shape(source, "source", ("N", 3))["N"]
    check_shape(target, "target", (n, 3))
    check_finite(source, "source")
    check_finite(target, "target")
    if n < 3:
        raise InvalidArgumentError(f"alignment needs at least 3 points, got {n}")
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    cov = xt.T @ xs / n
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2, 2] = -1
    rotation = u @ s @ vt
    var = (xs**2).sum() / n
    scale = float(np.trace(np.diag(d) @ s) / var) if with_scale and var > 0 else 1.0
    return Similarity(scale, rotation, mu_t - scale * rotation @ mu_s)


def _centres(world_to_cam: np.ndarray | torch.Tensor) -> np.ndarray:
    w2c = world_to_cam.detach().cpu().double().numpy() if isinstance(world_to_cam, torch.Tensor) else np.asarray(world_to_cam, np.float64)
    check_shape(w2c, "world_to_cam", ("T", 4, 4))
    r, t = w2c[:, :3, :3], w2c[:, :3, 3]
    return -np.einsum("tji,tj->ti", r, t)


def absolute_trajectory_error(estimate: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor,
                              with_scale: bool = True) -> dict[str, float]:
    """ATE of world-to-camera poses ``[T, 4, 4]`` after Sim(3) (or SE(3)) alignment of the centres.

    Returns ``ate_rmse``, ``ate_mean``, ``ate_max``, the alignment ``scale`` and the reference
    ``trajectory_length`` (sum of consecutive centre distances), all in reference units.
    """
    est, ref = _centres(estimate), _centres(reference)
    if len(est) != len(ref):
        raise InvalidArgumentError(f"estimate has {len(est)} poses but reference has {len(ref)}")
    sim = umeyama(est, ref, with_scale)
    err = np.linalg.norm(sim.apply(est) - ref, axis=1)
    return {"ate_rmse": float(np.sqrt((err**2).mean())), "ate_mean": float(err.mean()), "ate_max": float(err.max()),
            "scale": sim.scale, "trajectory_length": float(np.linalg.norm(np.diff(ref, axis=0), axis=1).sum())}


def relative_pose_error(estimate: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor) -> dict[str, float]:
    """RPE between consecutive frames: translation RMSE (after the ATE scale) and rotation RMSE (degrees)."""
    est = estimate.detach().cpu().double().numpy() if isinstance(estimate, torch.Tensor) else np.asarray(estimate, np.float64)
    ref = reference.detach().cpu().double().numpy() if isinstance(reference, torch.Tensor) else np.asarray(reference, np.float64)
    scale = absolute_trajectory_error(est, ref)["scale"]
    est = est.copy()
    est[:, :3, 3] *= scale
    trans, rot = [], []
    for i in range(len(ref) - 1):
        d_est = est[i + 1] @ np.linalg.inv(est[i])
        d_ref = ref[i + 1] @ np.linalg.inv(ref[i])
        e = np.linalg.inv(d_ref) @ d_est
        trans.append(np.linalg.norm(e[:3, 3]))
        rot.append(np.degrees(np.arccos(np.clip((np.trace(e[:3, :3]) - 1) / 2, -1.0, 1.0))))
    return {"rpe_trans": float(np.sqrt(np.mean(np.square(trans)))), "rpe_rot_deg": float(np.sqrt(np.mean(np.square(rot))))}
