"""Flow metrics against hand-computed values and an explicit per-pixel loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from motion.metrics import (
    METRIC_KEYS,
    FlowMetricsAccumulator,
    accuracy,
    endpoint_error,
    epe,
    fl_all,
    flow_metrics,
    merge_accumulators,
    outlier_mask,
    sintel_metrics,
)
from motion4d.errors import InvalidArgumentError, NonFiniteError, ShapeError


def _hand_pair() -> tuple[np.ndarray, np.ndarray]:
    """A 2x3 image whose errors and magnitudes hit every threshold edge.

    pixel  gt        pred      EPE  |gt|  KITTI outlier
    a      (1, 0)    (1, 0)    0    1     no
    b      (0, 0)    (.3, .4)  0.5  0     no
    c      (6, 8)    (9, 8)    3    10    no  (EPE = 3 is not > 3)
    d      (60, 80)  (63, 84)  5    100   no  (EPE / |gt| = 5 % is not > 5 %)
    e      (0, 0)    (3, 4)    5    0     yes (|gt| = 0: any EPE > 3 is relative outlier)
    f      (30, 40)  (30, 44)  4    50    yes (4 > 3 and 8 % > 5 %)
    """
    gt = np.array([[(1, 0), (0, 0), (6, 8)], [(60, 80), (0, 0), (30, 40)]], np.float32)
    pred = np.array([[(1, 0), (0.3, 0.4), (9, 8)], [(63, 84), (3, 4), (30, 44)]], np.float32)
    return pred.transpose(2, 0, 1), gt.transpose(2, 0, 1)


def test_hand_computed_values_and_threshold_edges() -> None:
    pred, gt = _hand_pair()
    np.testing.assert_allclose(endpoint_error(pred, gt), [[0, 0.5, 3], [5, 5, 4]], atol=1e-6)
    np.testing.assert_array_equal(outlier_mask(pred, gt), [[False, False, False], [False, True, True]])
    m = flow_metrics(pred, gt)
    assert m["epe"] == pytest.approx(17.5 / 6)
    assert m["px1"] == pytest.approx(2 / 6)
    assert m["px3"] == pytest.approx(2 / 6)  # EPE = 3 is not < 3
    assert m["px5"] == pytest.approx(4 / 6)  # EPE = 5 is not < 5
    assert m["fl_all"] == pytest.approx(100 * 2 / 6)
    assert m["epe_s0_10"] == pytest.approx((0 + 0.5 + 5) / 3)  # |gt| in {1, 0, 0}
    assert m["epe_s10_40"] == pytest.approx(3.0)  # |gt| = 10 belongs to [10, 40)
    assert m["epe_s40plus"] == pytest.approx((5 + 4) / 2)  # |gt| = 100, 50
    assert m["num_images"] == 1 and m["num_pixels"] == 6
    assert "epe_noc" not in m
    assert epe(pred, gt) == pytest.approx(17.5 / 6)
    assert fl_all(pred, gt) == pytest.approx(100 / 3)
    assert accuracy(pred, gt, 1.0) == pytest.approx(2 / 6)
    assert accuracy(pred, gt, 4.5) == pytest.approx(4 / 6)


def test_occlusion_split_and_valid_mask() -> None:
    pred, gt = _hand_pair()
    occlusion = np.array([[False, False, True], [True, True, False]])
    valid = np.array([[True, True, True], [True, False, True]])  # drop e
    m = flow_metrics(pred, gt, valid=valid, occlusion=occlusion)
    assert m["num_pixels"] == 5
    assert m["epe"] == pytest.approx((0 + 0.5 + 3 + 5 + 4) / 5)
    assert m["epe_noc"] == pytest.approx((0 + 0.5 + 4) / 3)  # a, b, f
    assert m["epe_occ"] == pytest.approx((3 + 5) / 2)  # c, d
    assert m["fl_noc"] == pytest.approx(100 / 3) and m["fl_occ"] == 0.0
    assert m["px1_noc"] == pytest.approx(2 / 3) and m["px5_occ"] == 0.5
    # numeric 0/1 masks work like bool ones
    m2 = flow_metrics(pred, gt, valid=valid.astype(np.float32), occlusion=occlusion.astype(np.uint8))
    assert m2 == m


def test_sintel_matched_unmatched_and_invalid() -> None:
    pred, gt = _hand_pair()
    occlusion = np.array([[False, False, True], [True, True, False]])
    invalid = np.array([[False, True, False], [False, False, False]])  # drop b
    s = sintel_metrics(pred, gt, occlusion=occlusion, invalid=invalid)
    assert s["epe_all"] == pytest.approx((0 + 3 + 5 + 5 + 4) / 5)
    assert s["epe_matched"] == pytest.approx((0 + 4) / 2)
    assert s["epe_unmatched"] == pytest.approx((3 + 5 + 5) / 3)
    assert s["s0_10"] == pytest.approx((0 + 5) / 2)
    assert s["s10_40"] == pytest.approx(3.0) and s["s40plus"] == pytest.approx(4.5)


def test_pooled_versus_per_image() -> None:
    gt = np.zeros((2, 2, 2, 2), np.float32)
    pred = gt.copy()
    pred[0, 0] = 1.0  # image 0: 4 valid pixels, EPE 1 each
    pred[1, 1] = 6.0  # image 1: EPE 6, only one valid pixel
    valid = np.ones((2, 2, 2), bool)
    valid[1] = [[True, False], [False, False]]
    assert epe(pred, gt, valid) == pytest.approx((4 * 1 + 6) / 5)
    assert epe(pred, gt, valid, reduction="per_image") == pytest.approx((1 + 6) / 2)
    assert fl_all(pred, gt, valid) == pytest.approx(100 * 1 / 5)
    assert fl_all(pred, gt, valid, reduction="per_image") == pytest.approx(100 * (0 + 1) / 2)
    assert accuracy(pred, gt, 3.0, valid, reduction="per_image") == pytest.approx(0.5)
    # an image without valid pixels is skipped by per-image averaging, and weighs nothing pooled
    valid3 = np.concatenate([valid, np.zeros((1, 2, 2), bool)])
    pred3, gt3 = np.concatenate([pred, pred[:1] + 9]), np.concatenate([gt, gt[:1]])
    m = flow_metrics(pred3, gt3, valid3, reduction="per_image")
    assert m["epe"] == pytest.approx(3.5) and m["num_images"] == 3
    assert math.isnan(m["epe_s10_40"])


def _loop_reference(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, occ: np.ndarray) -> dict[str, float]:
    """Pooled metrics by an explicit loop over pixels, written from the definitions."""
    acc = {k: [] for k in ("all", "noc", "occ", "s0", "s10", "s40")}
    for n in range(pred.shape[0]):
        for y in range(pred.shape[2]):
            for x in range(pred.shape[3]):
                if not valid[n, y, x]:
                    continue
                du, dv = float(pred[n, 0, y, x]) - float(gt[n, 0, y, x]), float(pred[n, 1, y, x]) - float(gt[n, 1, y, x])
                e = math.sqrt(du * du + dv * dv)
                mag = math.hypot(float(gt[n, 0, y, x]), float(gt[n, 1, y, x]))
                out = e > 3 and (mag == 0 or e / mag > 0.05)
                row = (e, e < 1, e < 3, e < 5, out)
                acc["all"].append(row)
                acc["occ" if occ[n, y, x] else "noc"].append(row)
                acc["s0" if mag < 10 else "s10" if mag < 40 else "s40"].append(row)
    ref = {}
    for region, sfx in (("all", ""), ("noc", "_noc"), ("occ", "_occ")):
        rows = np.array(acc[region], dtype=np.float64)
        ref[f"epe{sfx}"], ref[f"px1{sfx}"], ref[f"px3{sfx}"], ref[f"px5{sfx}"] = rows[:, :4].mean(0)
        ref["fl_all" if region == "all" else f"fl{sfx}"] = 100 * rows[:, 4].mean()
    for key, name in (("s0", "epe_s0_10"), ("s10", "epe_s10_40"), ("s40", "epe_s40plus")):
        ref[name] = float(np.mean([r[0] for r in acc[key]]))
    return ref


@pytest.fixture
def random_set(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    n, h, w = 5, 9, 11
    gt = rng.normal(0, 20, (n, 2, h, w)).astype(np.float32)
    pred = gt + rng.normal(0, 3, gt.shape).astype(np.float32) * (rng.random((n, 1, h, w)) < 0.6)
    valid = rng.random((n, h, w)) < 0.8
    occ = rng.random((n, h, w)) < 0.3
    return pred, gt, valid, occ


def test_against_explicit_loop(random_set: tuple[np.ndarray, ...]) -> None:
    pred, gt, valid, occ = random_set
    ref = _loop_reference(pred, gt, valid, occ)
    got = flow_metrics(pred, gt, valid, occ)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    # torch input, [B, T, 2, H, W] batch layout and float64 give the same numbers
    got_t = flow_metrics(torch.from_numpy(pred).double().reshape(1, 5, 2, 9, 11),
                         torch.from_numpy(gt).reshape(1, 5, 2, 9, 11),
                         torch.from_numpy(valid).reshape(1, 5, 9, 11), torch.from_numpy(occ).reshape(1, 5, 9, 11))
    for key in ref:
        assert got_t[key] == pytest.approx(got[key], rel=1e-6), key


def test_accumulator_equals_one_shot_and_merges(random_set: tuple[np.ndarray, ...]) -> None:
    pred, gt, valid, occ = random_set
    acc = FlowMetricsAccumulator()
    for i in range(5):
        acc.update(pred[i], gt[i], valid[i], occ[i])
    shard_a, shard_b = FlowMetricsAccumulator(), FlowMetricsAccumulator()
    shard_a.update(pred[:2], gt[:2], valid[:2], occ[:2])
    shard_b.update(torch.from_numpy(pred[2:]), torch.from_numpy(gt[2:]), torch.from_numpy(valid[2:]), torch.from_numpy(occ[2:]))
    merged = merge_accumulators([shard_a, shard_b])
    restored = FlowMetricsAccumulator()
    restored.load_state_tensor(merged.state_tensor())
    for reduction in ("pooled", "per_image"):
        one_shot = flow_metrics(pred, gt, valid, occ, reduction=reduction)
        assert set(one_shot) == set(METRIC_KEYS)
        for other in (acc, merged, restored):
            result = other.compute(reduction)
            assert result.keys() == one_shot.keys()
            for key in one_shot:
                assert result[key] == pytest.approx(one_shot[key], rel=1e-9, nan_ok=True), (reduction, key)
    # per-image really is the mean of the images' own metrics
    per_image = np.mean([flow_metrics(pred[i], gt[i], valid[i], occ[i])["epe_occ"] for i in range(5)])
    assert acc.compute("per_image")["epe_occ"] == pytest.approx(per_image)
    assert acc.all_reduce() is acc  # no process group: unchanged
    acc.reset()
    assert acc.compute()["num_images"] == 0 and math.isnan(acc.compute()["epe"])


def test_nonfinite_ground_truth_is_invalid() -> None:
    gt = np.zeros((2, 2, 3), np.float32)
    pred = np.ones_like(gt)
    gt[0, 0, 0] = np.nan
    pred[:, 0, 0] = 100.0
    m = flow_metrics(pred, gt)
    assert m["num_pixels"] == 5 and m["epe"] == pytest.approx(math.sqrt(2))


def test_bad_inputs_raise() -> None:
    gt = np.zeros((2, 4, 5), np.float32)
    with pytest.raises(ShapeError, match="pred"):
        epe(np.zeros((3, 4, 5), np.float32), np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ShapeError, match="same shape"):
        epe(gt, np.zeros((2, 4, 6), np.float32))
    with pytest.raises(ShapeError, match="valid"):
        epe(gt, gt, valid=np.ones((4, 4), bool))
    with pytest.raises(NonFiniteError, match="pred"):
        epe(np.full_like(gt, np.nan), gt)
    with pytest.raises(ShapeError, match="floating"):
        epe(gt.astype(np.int32), gt)
    with pytest.raises(InvalidArgumentError, match="reduction"):
        epe(gt, gt, reduction="mean")
    with pytest.raises(ShapeError, match="pred"):
        epe([[0.0]], gt)


def _all_reduce_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        rng = np.random.default_rng(0)
        gt = rng.normal(0, 10, (4, 2, 6, 7)).astype(np.float32)
        pred = gt + rng.normal(0, 4, gt.shape).astype(np.float32)
        occ = rng.random((4, 6, 7)) < 0.3
        acc = FlowMetricsAccumulator()
        mine = slice(2 * rank, 2 * rank + 2)
        acc.update(pred[mine], gt[mine], occlusion=occ[mine] if rank == 0 else None)
        acc.all_reduce()
        torch.save(acc.state_tensor(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_over_two_gloo_processes(tmp_path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_all_reduce_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    rng = np.random.default_rng(0)
    gt = rng.normal(0, 10, (4, 2, 6, 7)).astype(np.float32)
    pred = gt + rng.normal(0, 4, gt.shape).astype(np.float32)
    occ = rng.random((4, 6, 7)) < 0.3
    single = FlowMetricsAccumulator()
    single.update(pred[:2], gt[:2], occlusion=occ[:2])
    single.update(pred[2:], gt[2:])
    for rank in range(2):
        acc = FlowMetricsAccumulator()
        acc.load_state_tensor(torch.load(tmp_path / f"rank{rank}.pt"))
        for reduction in ("pooled", "per_image"):
            got, want = acc.compute(reduction), single.compute(reduction)
            assert got.keys() == want.keys()
            for key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-9, nan_ok=True), key


def test_all_reduce_in_a_single_process_group_and_state_sums(tmp_path, random_set: tuple[np.ndarray, ...]) -> None:
    import torch.distributed as dist

    pred, gt, valid, occ = random_set
    a, b = FlowMetricsAccumulator(), FlowMetricsAccumulator()
    a.update(pred[:3], gt[:3], valid[:3], occ[:3])
    b.update(pred[3:], gt[3:], valid[3:])
    # all_reduce sums state tensors: the sum of two shards' states is the merged state
    summed = FlowMetricsAccumulator()
    summed.load_state_tensor(a.state_tensor() + b.state_tensor())
    merged = merge_accumulators([a, b])
    assert summed.compute("per_image") == merged.compute("per_image")
    assert summed.with_occlusion and summed.num_images == 5
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        before = merged.compute()
        assert merged.all_reduce() is merged
        assert merged.compute() == before
    finally:
        dist.destroy_process_group()


def test_flow_files_layout_is_accepted(tmp_path):
    """``read_flow`` returns ``[H, W, 2]``; the metrics take it as it is (issue #17: it was refused)."""
    import motion

    rng = np.random.default_rng(3)
    gt = rng.normal(size=(2, 12, 16)).astype(np.float32)
    pred = gt + rng.normal(scale=0.5, size=gt.shape).astype(np.float32)
    motion.write_flow(tmp_path / "gt.flo", torch.from_numpy(gt))
    gt_file, valid = motion.read_flow(tmp_path / "gt.flo")
    reference = motion.flow_metrics(pred, gt)
    assert motion.flow_metrics(pred, gt_file, valid=valid) == pytest.approx(reference, nan_ok=True)
    assert motion.flow_metrics(pred.transpose(1, 2, 0), gt_file) == pytest.approx(reference, nan_ok=True)
