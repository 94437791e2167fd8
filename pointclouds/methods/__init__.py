"""Scene-flow estimation between two point clouds behind one interface.

>>> out = estimate_scene_flow(source, target, method="nsfp")   # doctest: +SKIP
>>> out.flow.shape                                              # [N, 3], metres

============== ===========================================================================
``zero``       zero flow
``nn``         nearest-neighbour flow (``q_nn(p) - p``)
``icp``        one rigid transform (open3d's point-to-point ICP; KD-tree + Kabsch without open3d)
``nsfp``       Neural Scene Flow Prior (per-pair MLP fit, truncated chamfer, cycle network)
``nsfp-fast``  scale-free fast NSFP: rigid start, residual field in point-spacing units, rigid-or-field
               choice (:mod:`~pointclouds.methods.nsfp_fast`; Fast NSF's grid loss stays as ``loss="dt"``)
``scoop``      SCOOP correspondence network + test-time refinement (packaged synthetic checkpoint
               unless ``weights=``)
============== ===========================================================================

Each method module registers its run function (:func:`register_method`, a
:class:`~motion4d.registry.Registry` of :class:`SceneFlowMethod` entries); :func:`list_methods`
names them all.
"""
from __future__ import annotations

from typing import Any

from .common import SceneFlowOutput
from .registry import SceneFlowMethod, list_methods, method_entries, register_method, run_method


def __getattr__(name: str) -> Any:
    if name == "METHODS":  # computed on use: listing the methods imports their modules
        return tuple(list_methods())
    raise AttributeError(f"module 'pointclouds.methods' has no attribute {name!r}")


def estimate_scene_flow(source: Any, target: Any, method: str = "nsfp", **options: Any) -> SceneFlowOutput:
    """Scene flow of the ``source`` points towards ``target``.

    Args:
        source: ``[N, 3]`` cloud (PointCloud, torch tensor or numpy array), metres.
        target: ``[M, 3]`` cloud of the next time step.
        method: a registered method (:func:`list_methods`; :data:`METHODS` is the same as a tuple).
        **options: method options: ``device`` for all; NSFP fields of
            :class:`~pointclouds.methods.nsfp.NSFPConfig` (``lr``, ``patience``, ``max_iterations``,
            ``backward_flow``...) and ``progress``; SCOOP ``weights`` (checkpoint path, a loaded
            :class:`~pointclouds.methods.scoop.SCOOP`, ``"synthetic"`` (the default) or ``"untrained"``) and the
            :class:`~pointclouds.methods.scoop.RefineConfig` fields; ICP ``max_iterations``,
            ``max_correspondence_distance``, ``tolerance``, ``init``.

    Returns:
        :class:`SceneFlowOutput` with ``flow float32 [N, 3]`` (CPU) plus time, iterations, loss.

    Raises:
        Motion4DError subclasses for empty / non-finite / mis-shaped clouds, unknown methods and
        unknown options.
    """
    return run_method(method, source, target, **options)


__all__ = [
    "estimate_scene_flow",
    "SceneFlowOutput",
    "METHODS",
    "SceneFlowMethod",
    "list_methods",
    "method_entries",
    "register_method",
]
