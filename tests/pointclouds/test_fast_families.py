"""nsfp-fast against NSFP and the baselines on reporting scenes of every geometry family (slow).

The targets of issue #21 per family: EPE3D no worse than the better of NN / ICP, within 10 % of NSFP's
(or better), and at least 10x less network work than NSFP (points pushed through a network times
its parameters, summed over steps: a deterministic stand-in for time; the timings themselves are
measured side by side by bench/scene_flow.py).
"""
from __future__ import annotations

import functools

import pytest

from pointclouds import estimate_scene_flow, scene_flow_metrics
from pointclouds.benchmark import REPORTING_SET, make_benchmark_scene

pytest.importorskip("open3d")

FAMILY_SCENES = {  # reporting scenes at 2,048 points: one per geometry, with movers and ego motion
    "street": 1,  # street, ego + non-rigid movers, lidar, rotated frame, 90 % overlap
    "room": 4,  # room, ego + non-rigid person, depth camera, OpenCV frame
    "real_depth": 7,  # Middlebury depth, ego + rigid mover, depth camera, OpenCV frame
}


@functools.lru_cache(maxsize=None)
def _run(index: int) -> dict:
    import dataclasses

    spec = dataclasses.replace(REPORTING_SET[index], num_points=2048)
    s = make_benchmark_scene(spec)
    out = {}
    for method in ("nn", "icp", "nsfp", "nsfp-fast"):
        options = {"device": "cpu"} if method.startswith("nsfp") else {}
        result = estimate_scene_flow(s.source, s.target, method=method, **options)
        work = result.extras.get("point_steps", 0) * result.extras.get("network_parameters", 0)
        out[method] = (scene_flow_metrics(result.flow, s.flow, s.mask)["epe3d"], work)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILY_SCENES))
def test_fast_mode_holds_on_every_family(family: str) -> None:
    r = _run(FAMILY_SCENES[family])
    epe = {m: v[0] for m, v in r.items()}
    assert epe["nsfp-fast"] <= min(epe["nn"], epe["icp"]) + 1e-4, (family, epe)
    assert epe["nsfp-fast"] <= 1.1 * epe["nsfp"], (family, epe)
    assert r["nsfp"][1] >= 10 * r["nsfp-fast"][1], (family, r["nsfp"][1], r["nsfp-fast"][1])


EGO_CAMERA_DRAWS = [  # (REPORTING_SET index, draw): ego + movers seen by a depth camera, fresh seeds (tuning draws >= 10)
    (2, 10),  # street, 30 m, 6,000 points: ICP locks onto a car driving along with the camera
    (2, 22),  # street: the ground left behind by the forward motion voted for standing still
    (7, 18),  # Middlebury depth: the true ego motion put too few points next to a target sample
]


@pytest.mark.slow
@pytest.mark.parametrize(("index", "draw"), EGO_CAMERA_DRAWS)
def test_fast_mode_finds_the_ego_motion_of_a_moving_camera(index: int, draw: int) -> None:
    """Issue #21's draw-1 failures (nsfp-fast worse than ICP on "ego+movers" camera scenes): the rigid start
    must recover the camera's motion (the static points' error near zero), the movers' own starts must not
    slide a car driving ahead of the camera along its sides (movers no worse than NN's flow on them; before:
    1.09 m against NN's 0.29 on draw 10), and the result beat NN and ICP."""
    import numpy as np

    from pointclouds.benchmark import benchmark_set

    s = make_benchmark_scene(benchmark_set("reporting", draw=draw)[index])
    dynamic = np.asarray(s.point_data["dynamic"], bool)
    static, movers = s.mask & ~dynamic, s.mask & dynamic
    epe, static_epe, mover_epe = {}, {}, {}
    for method in ("nn", "icp", "nsfp-fast"):
        options = {"device": "cpu"} if method == "nsfp-fast" else {}
        flow = np.asarray(estimate_scene_flow(s.source, s.target, method=method, **options).flow)
        epe[method] = scene_flow_metrics(flow, s.flow, s.mask)["epe3d"]
        static_epe[method] = float(np.linalg.norm(flow[static] - s.flow[static], axis=1).mean())
        mover_epe[method] = float(np.linalg.norm(flow[movers] - s.flow[movers], axis=1).mean())
    assert epe["nsfp-fast"] <= min(epe["nn"], epe["icp"]), (s.name, epe)
    assert static_epe["nsfp-fast"] <= 2.5 * s.meta["spacing"], (s.name, static_epe)
    assert mover_epe["nsfp-fast"] <= mover_epe["nn"], (s.name, mover_epe)
