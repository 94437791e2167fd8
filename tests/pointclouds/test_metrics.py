"""Scene-flow metrics against values computed by hand on small arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from motion4d.errors import InvalidArgumentError, NonFiniteError, ShapeError
from pointclouds.metrics import SceneFlowMetricAccumulator, angle_error, scene_flow_metrics

# Four points, GT flow along x; the errors are chosen to sit on either side of every threshold.
GT = np.array([[1.0, 0, 0], [1.0, 0, 0], [0.2, 0, 0], [2.0, 0, 0]])
PRED = np.array(
    [
        [1.0, 0.04, 0],  # e = 0.04            -> strict, relax, not outlier
        [1.0, 0.0, 0.08],  # e = 0.08 (r = 0.08) -> not strict, relax, not outlier
        [0.2, 0.0, 0.06],  # e = 0.06, r = 0.3   -> not strict, relax (e), outlier (r > 0.1)
        [2.0, 0.35, 0.0],  # e = 0.35, r = 0.175 -> neither, outlier
    ]
)


def test_hand_computed_values():
    m = scene_flow_metrics(PRED, GT)
    assert m["epe3d"] == pytest.approx((0.04 + 0.08 + 0.06 + 0.35) / 4)
    assert m["acc_strict"] == pytest.approx(0.25)
    assert m["acc_relax"] == pytest.approx(0.75)
    assert m["outliers"] == pytest.approx(0.5)
    angles = [math.atan2(0.04, 1.0), math.atan2(0.08, 1.0), math.atan2(0.06, 0.2), math.atan2(0.35, 2.0)]
    assert m["angle"] == pytest.approx(np.mean(angles), rel=1e-6)
    assert set(m) == {"epe3d", "acc_strict", "acc_relax", "outliers", "angle"}


def test_relative_criterion_alone_counts():
    """A 0.3 m error on a 10 m flow is 3 %: strict and relaxed by the relative test only."""
    m = scene_flow_metrics(np.array([[10.0, 0.3, 0.0]]), np.array([[10.0, 0.0, 0.0]]))
    assert m["acc_strict"] == 1.0 and m["acc_relax"] == 1.0
    assert m["outliers"] == 0.0  # e = 0.3 is not > 0.3 and r = 0.03 < 0.1


def test_mask_and_torch_input():
    mask = np.array([True, False, True, False])
    m = scene_flow_metrics(torch.from_numpy(PRED).float(), torch.from_numpy(GT).float(), torch.from_numpy(mask))
    assert m["epe3d"] == pytest.approx((0.04 + 0.06) / 2, rel=1e-5)
    m01 = scene_flow_metrics(PRED, GT, mask.astype(np.float32)[:, None])  # FLOT-style [N, 1] 0/1 mask
    assert m01["epe3d"] == pytest.approx(m["epe3d"], rel=1e-5)


def test_angle_definitions():
    # perpendicular vectors: pi/2 in 3-D
    assert angle_error(np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))[0] == pytest.approx(math.pi / 2)
    # zero prediction: NSFP maps the NaN dot product to 0 -> pi/2
    assert angle_error(np.zeros((1, 3)), np.array([[0, 1.0, 0]]))[0] == pytest.approx(math.pi / 2)
    # identical vectors: the clamp at 1 - 1e-7 leaves acos(1 - 1e-7) ~ 4.5e-4 rad, as NSFP
    assert angle_error(np.array([[0, 0, 3.0]]), np.array([[0, 0, 3.0]]))[0] == pytest.approx(math.acos(1 - 1e-7))
    # space-time (AV2): (0.1, 0, 0, 0.1) vs (0, 0, 0, 0.1) -> 45 degrees
    st = angle_error(np.array([[0.1, 0, 0]]), np.zeros((1, 3)), mode="spacetime")[0]
    assert st == pytest.approx(math.pi / 4, rel=1e-6)
    m = scene_flow_metrics(np.array([[0.1, 0, 0]]), np.zeros((1, 3)), angle="spacetime")
    assert m["angle"] == pytest.approx(math.pi / 4, rel=1e-6)


def test_eps_changes_relative_error_of_tiny_flows():
    pred, gt = np.array([[0.0, 0.0, 0.0]]), np.array([[1e-5, 0.0, 0.0]])
    # e = 1e-5 < 0.05 -> accurate either way; the outlier test depends on r = e / (|g| + eps)
    assert scene_flow_metrics(pred, gt, eps=1e-4)["outliers"] == 0.0  # r = 1e-5 / 1.1e-4 < 0.1
    assert scene_flow_metrics(pred, gt, eps=1e-20)["outliers"] == 1.0  # r = 1 > 0.1


def test_accumulator_scene_and_point_averages():
    acc = SceneFlowMetricAccumulator()
    first = acc.update(PRED, GT)  # 4 points, epe mean 0.1325
    acc.update(np.zeros((1, 3)), np.array([[0.0, 0.0, 0.5]]))  # 1 point, epe 0.5
    scene = acc.compute()
    assert first["epe3d"] == pytest.approx(0.1325)
    assert scene["epe3d"] == pytest.approx((0.1325 + 0.5) / 2)
    assert scene["num_scenes"] == 2 and scene["num_points"] == 5
    pooled = acc.compute(pooled=True)
    assert pooled["epe3d"] == pytest.approx((0.04 + 0.08 + 0.06 + 0.35 + 0.5) / 5)
    assert pooled["outliers"] == pytest.approx(3 / 5)
    acc.reset()
    assert math.isnan(acc.compute()["epe3d"]) and len(acc) == 0


def test_bad_inputs():
    with pytest.raises(ShapeError):
        scene_flow_metrics(PRED[:, :2], GT[:, :2])
    with pytest.raises(ShapeError):
        scene_flow_metrics(PRED, GT[:3])
    with pytest.raises(InvalidArgumentError, match="no points"):
        scene_flow_metrics(PRED, GT, np.zeros(4, bool))
    with pytest.raises(InvalidArgumentError, match="no points"):
        scene_flow_metrics(np.zeros((0, 3)), np.zeros((0, 3)))
    bad = PRED.copy()
    bad[0, 0] = np.inf
    with pytest.raises(NonFiniteError, match="pred"):
        scene_flow_metrics(bad, GT)
    with pytest.raises(InvalidArgumentError):
        scene_flow_metrics(PRED, GT, np.array([0, 2, 1, 0]))
    with pytest.raises(InvalidArgumentError, match="angle"):
        scene_flow_metrics(PRED, GT, angle="2d")


def _small_object_moved(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 15 cm object (points in a 15 cm cube) moved by 16 mm: the issue's scanned-object case."""
    points = rng.uniform(-0.075, 0.075, size=(500, 3))
    return points, np.tile([0.016, 0.0, 0.0], (len(points), 1))


def test_object_preset_does_not_reward_zero_flow_on_a_small_object(rng: np.random.Generator) -> None:
    from pointclouds.metrics import THRESHOLD_PRESETS

    _, gt = _small_object_moved(rng)
    zero = np.zeros_like(gt)
    lidar = scene_flow_metrics(zero, gt)  # the literature's 5 cm: 16 mm of error passes
    assert lidar["acc_strict"] == 1.0 and lidar["acc_relax"] == 1.0
    obj = scene_flow_metrics(zero, gt, thresholds="object")
    assert obj["acc_strict"] == 0.0 and obj["acc_relax"] == 0.0 and obj["outliers"] == 1.0
    assert THRESHOLD_PRESETS["object"].strict == pytest.approx((0.005, 0.05))
    # a prediction 2 mm off passes the object preset's 5 mm test
    near = gt + np.array([0.0, 0.002, 0.0])
    assert scene_flow_metrics(near, gt, thresholds="object")["acc_strict"] == 1.0


def test_thresholds_are_parameters() -> None:
    from pointclouds.metrics import Thresholds

    # PRED's errors 0.04 / 0.08 / 0.06 / 0.35 m; relative 0.04 / 0.08 / 0.3 / 0.175
    tight = Thresholds(strict=(0.05, 0.01), relax=(0.07, 0.01), outlier=(0.07, 0.5))
    m = scene_flow_metrics(PRED, GT, thresholds=tight)
    assert m["acc_strict"] == pytest.approx(0.25)  # only 0.04 < 0.05 (no relative error < 1 %)
    assert m["acc_relax"] == pytest.approx(0.5)  # 0.04 and 0.06 < 0.07
    assert m["outliers"] == pytest.approx(0.5)  # 0.08 and 0.35 > 0.07 (no relative error > 50 %)
    as_dict = scene_flow_metrics(PRED, GT, thresholds=tight.as_dict())
    assert as_dict == m
    scaled = Thresholds().scaled(2.0)
    assert scaled.strict == (0.1, 0.05) and scaled.outlier == (0.6, 0.1)
    acc = SceneFlowMetricAccumulator(thresholds="object")
    acc.update(np.zeros((3, 3)), np.tile([0.016, 0, 0], (3, 1)))
    assert acc.compute()["acc_strict"] == 0.0


@pytest.mark.parametrize("bad", ["metric", {"strict": (0.05,)}, {"strict": (0.05, -1.0)}, {"loose": (1, 1)}, 3.0])
def test_bad_thresholds_raise(bad) -> None:  # noqa: ANN001
    with pytest.raises(InvalidArgumentError):
        scene_flow_metrics(PRED, GT, thresholds=bad)
