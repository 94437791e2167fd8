"""``motion4d sceneflow``: pair mode, data-set mode (resumable), errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from motion4d.cli import main
from pointclouds import scene_flow_metrics
from tests.pointclouds.fake_datasets import write_kitti_s


def test_pair_mode_writes_flow_pictures_and_metrics(tmp_path, rng: np.random.Generator) -> None:  # noqa: ANN001
    src = rng.uniform(-5, 5, size=(300, 3)).astype(np.float32)
    tgt = (src + np.array([0.2, 0.0, -0.1], np.float32))[rng.permutation(300)]
    gt = np.tile(np.array([0.2, 0.0, -0.1], np.float32), (300, 1))
    np.save(tmp_path / "a.npy", src)
    np.save(tmp_path / "b.npy", tgt)
    np.save(tmp_path / "gt.npy", gt)
    out = tmp_path / "out"
    assert main(["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(out),
                 "--method", "icp", "--gt", str(tmp_path / "gt.npy"), "--no-progress"]) == 0
    flow = np.load(out / "flow.npy")
    assert flow.shape == (300, 3) and flow.dtype == np.float32
    report = json.loads((out / "metrics.json").read_text())
    assert report["metrics"]["epe3d"] == pytest.approx(scene_flow_metrics(flow, gt)["epe3d"])
    assert report["metrics"]["epe3d"] < 0.01  # a pure translation: ICP is exact
    assert (out / "flow.png").stat().st_size > 5000
    from pointclouds import read_cloud

    ply = read_cloud(out / "flow.ply")
    assert len(ply) == 900 and ply.colors is not None
    np.testing.assert_allclose(ply.points[600:], src + flow, atol=1e-5)
    config = json.loads((out / "sceneflow_config.json").read_text())
    assert config["method"] == "icp" and config["mode"] == "pair"


def test_dataset_mode_is_resumable(tmp_path) -> None:  # noqa: ANN001
    root = write_kitti_s(tmp_path / "KITTI_processed_occ_final", num_scenes=6, n=200)
    out = tmp_path / "eval"
    args = ["sceneflow", "--dataset", "kitti_s", "--root", str(root), "--out", str(out), "--method", "nn",
            "--num-points", "128", "--visualize", "1", "--no-progress"]
    assert main(args) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["num_scenes"] == 3  # the mapping file keeps scenes 0, 2, 4
    per_scene = sorted((out / "scenes").glob("*.json"))
    assert len(per_scene) == 3 and len(list((out / "flows").glob("*.npy"))) == 3
    mean_epe = np.mean([json.loads(p.read_text())["metrics"]["epe3d"] for p in per_scene])
    assert summary["scene_averaged"]["epe3d"] == pytest.approx(mean_epe)
    assert "| per scene |" in (out / "metrics.md").read_text()
    assert len(list((out / "vis").glob("*.png"))) == 1
    stamps = [p.stat().st_mtime_ns for p in per_scene]
    assert main(args) == 0  # resumes: nothing recomputed
    assert [p.stat().st_mtime_ns for p in per_scene] == stamps
    assert json.loads((out / "metrics.json").read_text())["scene_averaged"] == summary["scene_averaged"]


def test_resumed_scenes_are_rescored_with_the_new_thresholds(tmp_path) -> None:  # noqa: ANN001
    root = write_kitti_s(tmp_path / "KITTI_processed_occ_final", num_scenes=6, n=200)
    out = tmp_path / "eval"
    args = ["sceneflow", "--dataset", "kitti_s", "--root", str(root), "--out", str(out), "--method", "zero",
            "--num-points", "128", "--no-progress"]
    relaxed = {}
    for thresholds in ("lidar", "object"):
        assert main(args + ["--thresholds", thresholds]) == 0
        summary = json.loads((out / "metrics.json").read_text())["scene_averaged"]["acc_relax"]
        records = [json.loads(p.read_text())["metrics"]["acc_relax"] for p in sorted((out / "scenes").glob("*.json"))]
        assert np.mean(records) == pytest.approx(summary)  # the scene files agree with the summary
        relaxed[thresholds] = summary
    assert relaxed["lidar"] > 0 and relaxed["object"] == 0  # zero flow misses every 1 cm test


def test_synthetic_dataset_mode(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "syn"
    assert main(["sceneflow", "--dataset", "synthetic", "--limit", "2", "--num-points", "256", "--out", str(out),
                 "--method", "zero", "--visualize", "0", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["num_scenes"] == 2


def test_errors_exit_with_code_2(tmp_path, rng: np.random.Generator, capsys) -> None:  # noqa: ANN001
    src = rng.normal(size=(50, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", src)
    np.save(tmp_path / "gt.npy", np.zeros((49, 3), np.float32))
    out = str(tmp_path / "o")
    assert main(["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "a.npy"), "--out", out, "--method", "zero",
                 "--gt", str(tmp_path / "gt.npy")]) == 2
    assert "gt" in capsys.readouterr().err
    assert main(["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "missing.npy"), "--out", out]) == 2
    assert main(["sceneflow", "--out", out, "--method", "zero"]) == 2
    assert main(["sceneflow", "--dataset", "kitti_s", "--out", out]) == 2
    assert main(["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "a.npy"), "--out", out, "--method", "scoop",
                 "--weights", str(tmp_path / "missing.pt")]) == 2


def test_train_scoop_tool_writes_a_loadable_checkpoint(tmp_path) -> None:  # noqa: ANN001
    from pointclouds.methods.scoop import load_scoop
    out = tmp_path / "scoop"
    assert main(["train-scoop", "--out", str(out), "--steps", "1", "--batch-size", "1", "--num-points", "64",
                       "--val-scenes", "1", "--eval-every", "1", "--device", "cpu", "--no-progress"]) == 0
    model = load_scoop(out / "model.pt")
    assert model.nb_iter == 1 and (out / "last.pt").exists() and (out / "log.jsonl").exists()
    assert main(["train-scoop", "--out", str(tmp_path / "x"), "--dataset", "kitti_s", "--steps", "1"]) == 2


def test_train_scoop_opens_training_splits_by_name(tmp_path) -> None:  # noqa: ANN001
    import argparse

    from motion4d.cli.train_scoop import build_parser, training_set
    from tests.pointclouds.fake_datasets import write_generic, write_kitti_o

    parser = argparse.ArgumentParser()
    build_parser(parser)
    kitti = write_kitti_o(tmp_path / "kitti_o", indices=(0, 1, 2, 5))
    ds = training_set(parser.parse_args(["--out", "x", "--dataset", "kitti_o", "--root", str(kitti), "--num-points", "8"]))
    assert ds.split == "train" and [f.stem for f in ds.files] == ["000000", "000002"]
    assert ds.sampling == "random" and ds.fewer == "pad" and ds.num_points == 8
    generic = write_generic(tmp_path / "npz", with_mask=False)
    ds = training_set(parser.parse_args(["--out", "x", "--dataset", "npz", "--root", str(generic),
                                     "--keys", "pc1,pc2,flow", "--num-points", "64"]))
    assert len(ds) == 3 and ds.keys["source"] == "pc1" and len(ds[0].source) == 64


def test_metric_thresholds_are_flags(tmp_path, rng: np.random.Generator) -> None:  # noqa: ANN001
    """A 15 cm object moved 16 mm: zero flow passes the lidar preset's 5 cm test, not the object preset's."""
    src = rng.uniform(-0.075, 0.075, size=(200, 3)).astype(np.float32)
    shift = np.array([0.016, 0.0, 0.0], np.float32)
    np.save(tmp_path / "a.npy", src)
    np.save(tmp_path / "b.npy", src + shift)
    np.save(tmp_path / "gt.npy", np.tile(shift, (200, 1)))
    base = ["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--method", "zero",
            "--gt", str(tmp_path / "gt.npy"), "--no-progress"]
    assert main(base + ["--out", str(tmp_path / "lidar")]) == 0
    assert json.loads((tmp_path / "lidar" / "metrics.json").read_text())["metrics"]["acc_strict"] == 1.0
    assert main(base + ["--out", str(tmp_path / "object"), "--thresholds", "object"]) == 0
    report = json.loads((tmp_path / "object" / "metrics.json").read_text())
    assert report["metrics"]["acc_strict"] == 0.0 and report["thresholds"]["strict"] == [0.005, 0.05]
    # an explicit pair replaces the preset's: 2 cm passes a 16 mm error
    assert main(base + ["--out", str(tmp_path / "own"), "--thresholds", "object", "--acc-strict", "0.02", "0.05"]) == 0
    report = json.loads((tmp_path / "own" / "metrics.json").read_text())
    assert report["metrics"]["acc_strict"] == 1.0 and report["metrics"]["acc_relax"] == 0.0
    assert main(base + ["--out", str(tmp_path / "bad"), "--outlier", "-1", "0.1"]) == 2


def test_scoop_without_weights_uses_the_packaged_checkpoint(tmp_path, rng: np.random.Generator) -> None:  # noqa: ANN001
    """Before issue #21 ``--method scoop`` without ``--weights`` stopped with an error."""
    src = rng.uniform(-3, 3, size=(200, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", src)
    np.save(tmp_path / "b.npy", src + np.array([0.1, 0.0, 0.0], np.float32))
    with pytest.warns(UserWarning, match="not the paper's weights"):
        assert main(["sceneflow", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(tmp_path / "o"),
                     "--method", "scoop", "--option", "steps=5", "--device", "cpu", "--no-progress"]) == 0
    assert np.load(tmp_path / "o" / "flow.npy").shape == (200, 3)


def test_train_scoop_normalised_and_rotated(tmp_path) -> None:  # noqa: ANN001
    """The flags the packaged checkpoint was trained with: a scene-normalised network on rotated pairs."""
    from pointclouds.methods.scoop import load_scoop
    from pointclouds.methods.scoop_train import SyntheticPairs

    out = tmp_path / "scoop"
    assert main(["train-scoop", "--out", str(out), "--steps", "1", "--batch-size", "1", "--num-points", "64",
                 "--val-scenes", "1", "--eval-every", "1", "--device", "cpu", "--no-progress", "--normalize",
                 "--rotate"]) == 0
    assert load_scoop(out / "model.pt").normalize
    plain, turned = SyntheticPairs(64, seed=3)[0], SyntheticPairs(64, seed=3, rotate=True)[0]
    R = np.linalg.lstsq(plain.source.astype(np.float64), turned.source.astype(np.float64), rcond=None)[0].T
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-4)  # the same pair, turned
    np.testing.assert_allclose(turned.flow, plain.flow @ R.T, atol=1e-4)
    assert main(["train-scoop", "--out", str(tmp_path / "y"), "--dataset", "kitti_s", "--root", str(tmp_path),
                 "--rotate"]) == 2
