"""motion.evaluation on miniature Sintel / KITTI / Things trees with known flows."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from motion import evaluation as ev
from motion.protocols import ClipProtocol, SequenceProtocol, default_protocol
from motion4d.errors import InvalidArgumentError
from tests.motion.fake_datasets import write_kitti, write_sintel, write_things
from tests.motion.oracles import (
    OracleFlow,
    OracleFlow3,
    build_table,
    error_pattern,
    kitti_pairs,
    sintel_pairs,
    things_pairs,
)


def _hand_metrics(images: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Explicit per-pixel loops: (pred, gt, valid) -> pooled / per-image EPE and Fl."""
    all_err, all_out, per_image_epe, per_image_fl = [], [], [], []
    for pred, gt, valid in images:
        errs, outs = [], []
        for y in range(gt.shape[0]):
            for x in range(gt.shape[1]):
                if not valid[y, x]:
                    continue
                du, dv = float(pred[y, x, 0] - gt[y, x, 0]), float(pred[y, x, 1] - gt[y, x, 1])
                err = math.sqrt(du * du + dv * dv)
                mag = math.sqrt(float(gt[y, x, 0]) ** 2 + float(gt[y, x, 1]) ** 2)
                errs.append(err)
                outs.append(err > 3.0 and (mag == 0 or err / mag > 0.05))
        all_err += errs
        all_out += outs
        per_image_epe.append(sum(errs) / len(errs))
        per_image_fl.append(100.0 * sum(outs) / len(outs))
    return {
        "epe_pooled": sum(all_err) / len(all_err),
        "fl_pooled": 100.0 * sum(all_out) / len(all_out),
        "epe_per_image": sum(per_image_epe) / len(per_image_epe),
        "fl_per_image": sum(per_image_fl) / len(per_image_fl),
    }


def test_kitti_hand_computed_epe_and_fl(tmp_path):
    gt = write_kitti(tmp_path / "KITTI", scenes=3)
    model = OracleFlow(build_table(kitti_pairs(gt)), with_error=True)
    summary = ev.evaluate(model, "kitti", tmp_path / "KITTI", tmp_path / "out", progress=False, device="cpu")
    result = summary["subsets"]["kitti"]
    images, images_noc = [], []
    for scene, flow in gt["flow"].items():
        pred = flow + error_pattern(*flow.shape[:2])
        images.append((pred, flow, gt["valid"][scene]))
        images_noc.append((pred, flow, gt["valid_noc"][scene]))
    hand, hand_noc = _hand_metrics(images), _hand_metrics(images_noc)
    assert result["pooled"]["epe"] == pytest.approx(hand["epe_pooled"], rel=1e-9)
    assert result["pooled"]["fl_all"] == pytest.approx(hand["fl_pooled"], rel=1e-9)
    assert result["per_image"]["epe"] == pytest.approx(hand["epe_per_image"], rel=1e-9)
    assert result["per_image"]["fl_all"] == pytest.approx(hand["fl_per_image"], rel=1e-9)
    assert result["pooled"]["fl_noc"] == pytest.approx(hand_noc["fl_pooled"], rel=1e-9)
    # the papers' numbers: per-image EPE, pooled Fl
    assert result["headline"]["EPE"] == pytest.approx(hand["epe_per_image"], rel=1e-9)
    assert result["headline"]["Fl-all"] == pytest.approx(hand["fl_pooled"], rel=1e-9)
    assert hand["epe_pooled"] != pytest.approx(hand["epe_per_image"])  # scenes differ in size: the two differ
    # outputs next to each other
    out = tmp_path / "out"
    for name in ("metrics.json", "metrics.csv", "metrics.md", "eval_config.json", "kitti/results.jsonl"):
        assert (out / name).is_file()
    assert len(list((out / "kitti" / "pictures").glob("*.png"))) == 3
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert {(r["subset"], r["reduction"]) for r in rows} == {("kitti", "pooled"), ("kitti", "per_image")}
    pooled = next(r for r in rows if r["reduction"] == "pooled")
    assert float(pooled["fl_all"]) == pytest.approx(hand["fl_pooled"], rel=1e-5)
    md = (out / "metrics.md").read_text()
    assert "| kitti | 3 |" in md and f"{hand['fl_pooled']:.2f}%" in md


def test_sintel_oracle_is_zero_and_sequence_protocol_routes_pairs(tmp_path):
    gt = write_sintel(tmp_path / "Sintel", scenes={"alley_1": 5, "cave_2": 3})
    table = build_table(sintel_pairs(gt, "clean") + sintel_pairs(gt, "final"))
    for model in (OracleFlow(table), OracleFlow3(table)):
        summary = ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / f"out{model.frames_per_window}",
                              progress=False, device="cpu", pictures=0)
        for name in ("sintel-clean", "sintel-final"):
            info = summary["subsets"][name]
            assert info["pairs"] == 6
            for key in ("epe", "epe_noc", "epe_occ", "fl_all"):
                assert info["pooled"][key] == 0.0
    assert isinstance(default_protocol("oracle3-test", OracleFlow3(table), "sintel"), SequenceProtocol)


def test_sintel_error_buckets_match_hand_computation(tmp_path):
    gt = write_sintel(tmp_path / "Sintel", scenes={"alley_1": 3})
    model = OracleFlow(build_table(sintel_pairs(gt, "clean")), with_error=True)
    summary = ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / "out", passes=("clean",), progress=False,
                          device="cpu", pictures=0)
    pooled = summary["subsets"]["sintel-clean"]["pooled"]
    err = np.stack([np.linalg.norm(error_pattern(*f.shape[:2]), axis=-1) for f in gt["flow"]["alley_1"]])
    occ = gt["occlusion"]["alley_1"]
    speed = np.linalg.norm(gt["flow"]["alley_1"], axis=-1)
    assert pooled["epe"] == pytest.approx(err.mean())
    assert pooled["epe_noc"] == pytest.approx(err[~occ].mean())
    assert pooled["epe_occ"] == pytest.approx(err[occ].mean())
    assert pooled["epe_s10_40"] == pytest.approx(err[(speed >= 10) & (speed < 40)].mean())


def test_things_both_directions_and_multiframe_kitti_protocol(tmp_path):
    gt = write_things(tmp_path / "Things", split="TEST", letters=("A",), frames=(6, 7, 8, 9), cameras=("left",))
    table = build_table(things_pairs(gt, "clean"))
    summary = ev.evaluate(OracleFlow3(table), "things", tmp_path / "Things", tmp_path / "out", passes=("clean",),
                          progress=False, device="cpu", pictures=0)
    info = summary["subsets"]["things-clean"]
    assert info["pairs"] == 6  # 3 forward + 3 backward
    assert info["pooled"]["epe"] == 0.0

    kgt = write_kitti(tmp_path / "KITTI", scenes=2, multiview_frames=range(8, 13))
    OracleFlow.calls.clear()
    model = OracleFlow3(build_table(kitti_pairs(kgt)))
    protocol = default_protocol("oracle3-test", model, "kitti")
    assert protocol == ClipProtocol(3, 1, 1, description=protocol.description)
    summary = ev.evaluate(model, "kitti", tmp_path / "KITTI", tmp_path / "kout", progress=False, device="cpu", pictures=0)
    assert summary["subsets"]["kitti"]["pooled"]["epe"] == 0.0
    assert OracleFlow.calls == [3, 3]  # _09, _10, _11 per scene


def test_resume_skips_finished_pairs_and_max_samples(tmp_path):
    gt = write_sintel(tmp_path / "Sintel", scenes={"alley_1": 4, "cave_2": 3})
    model = OracleFlow(build_table(sintel_pairs(gt, "clean")), with_error=True)
    kwargs = dict(passes=("clean",), progress=False, device="cpu", pictures=0)
    OracleFlow.calls.clear()
    first = ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / "out", max_samples=2, **kwargs)
    assert first["subsets"]["sintel-clean"]["pairs"] == 2 and len(OracleFlow.calls) == 2
    # simulate an interruption: a torn last line is ignored and that pair recomputed
    results = tmp_path / "out" / "sintel-clean" / ev.RESULTS_NAME
    lines = results.read_text().splitlines()
    results.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    OracleFlow.calls.clear()
    full = ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / "out", **kwargs)
    info = full["subsets"]["sintel-clean"]
    assert info["pairs"] == 5 and info["skipped"] == 1 and info["computed"] == 4
    assert len(OracleFlow.calls) == 4
    fresh = ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / "fresh", **kwargs)
    assert info["pooled"] == fresh["subsets"]["sintel-clean"]["pooled"]
    OracleFlow.calls.clear()
    ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / "out", **kwargs)
    assert OracleFlow.calls == []
    with pytest.raises(InvalidArgumentError, match="another configuration"):
        ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / "out", exclude_invalid=True, **kwargs)


def test_sequence_results_of_a_shorter_cut_are_not_reused(tmp_path):
    gt = write_sintel(tmp_path / "Sintel", scenes={"alley_1": 4, "cave_2": 3})
    model = OracleFlow3(build_table(sintel_pairs(gt, "clean")))
    kwargs = dict(passes=("clean",), progress=False, device="cpu", pictures=0)
    quick = ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / "out", max_samples=2, **kwargs)
    assert quick["subsets"]["sintel-clean"]["computed"] == 2
    full = ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / "out", **kwargs)["subsets"]["sintel-clean"]
    assert full["pairs"] == 5 and full["skipped"] == 0 and full["computed"] == 5  # alley_1 redone on all its frames
    again = ev.evaluate(model, "sintel", tmp_path / "Sintel", tmp_path / "out", **kwargs)["subsets"]["sintel-clean"]
    assert again["skipped"] == 5 and again["pooled"]["epe"] == 0.0
