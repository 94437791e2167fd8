"""Scene-flow estimation between two point clouds behind one interface.

>>> out = estimate_scene_flow(source, target, method="nsfp")   # doctest: +SKIP
>>> out.flow.shape                                              # [N, 3], metres

============== ===========================================================================
``zero``       zero flow
``nn``         nearest-neighbour flow (``q_nn(p) - p``)
``icp``        one rigid transform (point-to-point ICP, KD-tree + Kabsch)
``nsfp``       Neural Scene Flow Prior (per-pair MLP fit, truncated chamfer, cycle network)
``nsfp-fast``  NSFP with Fast NSF's lookup-grid loss (forward net only; mini-batch warm-up)
``scoop``      SCOOP correspondence network + test-time refinement (needs ``weights=``)
============== ===========================================================================
"""
from __future__ import annotations

from typing import Any

from motion4d.checks import check_choice

from .common import SceneFlowOutput

METHODS = ("zero", "nn", "icp", "nsfp", "nsfp-fast", "scoop")


def estimate_scene_flow(source: Any, target: Any, method: str = "nsfp", **options: Any) -> SceneFlowOutput:
    """Scene flow of the ``source`` points towards ``target``.

    Args:
        source: ``[N, 3]`` cloud (PointCloud, torch tensor or numpy array), metres.
        target: ``[M, 3]`` cloud of the next time step.
        method: one of :data:`METHODS`.
        **options: method options: ``device`` for all; NSFP fields of
            :class:`~pointclouds.methods.nsfp.NSFPConfig` (``lr``, ``patience``, ``max_iterations``,
            ``backward_flow``...) and ``progress``; SCOOP ``weights`` (checkpoint path, a loaded
            :class:`~pointclouds.methods.scoop.SCOOP`, or ``"untrained"``) and the
            :class:`~pointclouds.methods.scoop.RefineConfig` fields; ICP ``max_iterations``,
            ``max_correspondence_distance``, ``tolerance``, ``init``.

    Returns:
        :class:`SceneFlowOutput` with ``flow float32 [N, 3]`` (CPU) plus time, iterations, loss.

    Raises:
        Motion4DError subclasses for empty / non-finite / mis-shaped clouds and unknown options.
    """
    check_choice(method, "method", METHODS)
    if method in ("zero", "nn", "icp"):
        from .baselines import run_baseline

        return run_baseline(method, source, target, **options)
    if method in ("nsfp", "nsfp-fast"):
        from .nsfp import nsfp_flow

        return nsfp_flow(source, target, preset=method, **options)
    from .scoop import scoop_flow

    return scoop_flow(source, target, **options)


__all__ = ["estimate_scene_flow", "SceneFlowOutput", "METHODS"]
