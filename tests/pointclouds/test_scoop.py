"""SCOOP: layout of the released checkpoints, correspondence against a dense reference, losses,
refinement, checkpoints and resumable training."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from motion.errors import CheckpointError, InvalidArgumentError, MissingFileError
from pointclouds import estimate_scene_flow, scene_flow_metrics
from pointclouds.methods.scoop import (
    SCOOP,
    RefineConfig,
    load_scoop,
    refine_flow,
    save_scoop,
    smoothness_loss,
    untrained_scoop,
)
from pointclouds.methods.scoop_train import SyntheticPairs, TrainConfig, evaluate_network, train_scoop


def _released_keys() -> set[str]:
    keys = {"epsilon", "gamma"}
    for layer in (1, 2, 3):
        for i in (1, 2, 3):
            keys.add(f"feat_conv{layer}.fc{i}.weight")
            keys.add(f"feat_conv{layer}.bn{i}.weight")
            keys.add(f"feat_conv{layer}.bn{i}.bias")
    return keys


def test_state_dict_has_the_released_layout() -> None:
    model = SCOOP()
    state = model.state_dict()
    assert set(state) == _released_keys()
    assert state["feat_conv1.fc1.weight"].shape == (32, 6, 1, 1)
    assert state["feat_conv2.fc1.weight"].shape == (64, 35, 1, 1)
    assert state["feat_conv3.fc3.weight"].shape == (128, 128, 1, 1)
    assert state["epsilon"].shape == (1,)


def test_features_shape_and_graph(rng: np.random.Generator) -> None:
    pts = torch.from_numpy(rng.normal(size=(2, 50, 3)).astype(np.float32))
    feats, graph = untrained_scoop(0).features(pts)
    assert feats.shape == (2, 50, 128)
    assert graph.idx.shape == (2, 50, 32)
    assert torch.equal(graph.idx[:, :, 0], torch.arange(50).expand(2, 50))  # the point itself first
    torch.testing.assert_close(graph.edges[0, 7, 3], pts[0, graph.idx[0, 7, 3]] - pts[0, 7])


def _reference_correspondence(src, tgt, fs, ft, eps, gamma, top):  # noqa: ANN001, ANN202
    """Dense float64 transcription of the formulas in the research note (one Sinkhorn iteration)."""
    src, tgt, fs, ft = (np.asarray(x, np.float64) for x in (src, tgt, fs, ft))
    N, M = len(src), len(tgt)
    fs = fs / np.sqrt((fs**2).sum(1, keepdims=True) + 1e-8)
    ft = ft / np.sqrt((ft**2).sum(1, keepdims=True) + 1e-8)
    S = fs @ ft.T
    d2 = ((src[:, None] - tgt[None]) ** 2).sum(-1)
    K = np.exp(-(1 - S) / eps) * (d2 < 100.0)
    power = gamma / (gamma + eps)
    a = np.full((N, 1), 1.0 / N)
    b = ((1.0 / M) / (K.T @ a + 1e-8)) ** power
    a = ((1.0 / N) / (K @ b + 1e-8)) ** power
    T = a * K * b.T
    recon, conf = np.zeros((N, 3)), np.zeros(N)
    for i in range(N):
        idx = np.argsort(-T[i])[:top]
        w = T[i, idx] / (T[i, idx].sum() + 1e-8)
        recon[i] = (w[:, None] * tgt[idx]).sum(0)
        conf[i] = max(0.0, (w * S[i, idx]).sum())
    return recon, conf


@pytest.mark.parametrize("rows", [7, 4096])
def test_correspondence_matches_dense_reference(rows: int, rng: np.random.Generator) -> None:
    model = SCOOP(rows_per_chunk=rows).double()
    with torch.no_grad():
        model.epsilon.fill_(-1.5)
        model.gamma.fill_(0.4)
    src = rng.uniform(-8, 8, size=(40, 3))
    tgt = rng.uniform(-8, 8, size=(90, 3))
    fs, ft = rng.normal(size=(40, 16)), rng.normal(size=(90, 16))
    with torch.no_grad():
        recon, conf = model.correspond(*(torch.from_numpy(x)[None] for x in (src, tgt, fs, ft)))
    eps = np.exp(-1.5) + 0.03
    ref_recon, ref_conf = _reference_correspondence(src, tgt, fs, ft, eps, np.exp(0.4), 64)
    np.testing.assert_allclose(recon[0].numpy(), ref_recon, atol=1e-9)
    np.testing.assert_allclose(conf[0].numpy(), ref_conf, atol=1e-9)


def test_smoothness_loss_matches_explicit_loop(rng: np.random.Generator) -> None:
    flow = torch.from_numpy(rng.normal(size=(1, 12, 3)))
    idx = torch.from_numpy(np.stack([np.concatenate([[i], rng.choice(12, 4)]) for i in range(12)]))[None]
    expected = np.mean([np.mean([np.abs(flow[0, i] - flow[0, j]).sum() for j in idx[0, i, 1:3]]) for i in range(12)])
    assert smoothness_loss(flow, idx, k=2).item() == pytest.approx(float(expected))


def test_refinement_lowers_the_error_of_a_noisy_flow(rng: np.random.Generator) -> None:
    src = rng.uniform(-3, 3, size=(300, 3)).astype(np.float32)
    shift = np.array([0.4, 0.1, -0.2], np.float32)
    tgt = (src + shift)[rng.permutation(300)]
    gt = np.tile(shift, (300, 1))
    noisy = torch.from_numpy(gt + rng.normal(0, 0.15, size=gt.shape).astype(np.float32))
    flow, loss = refine_flow(torch.from_numpy(src), torch.from_numpy(tgt), noisy, torch.ones(300),
                             RefineConfig(steps=100, lr=0.02, smooth_k=8))
    before = scene_flow_metrics(noisy, gt)["epe3d"]
    after = scene_flow_metrics(flow, gt)["epe3d"]
    assert after < 0.5 * before and np.isfinite(loss)
    same, _ = refine_flow(torch.from_numpy(src), torch.from_numpy(tgt), noisy, torch.ones(300), RefineConfig(steps=0))
    assert torch.equal(same, noisy)


def test_checkpoints_reload_identically(tmp_path, rng: np.random.Generator) -> None:  # noqa: ANN001
    model = untrained_scoop(3)
    with torch.no_grad():
        model.epsilon.fill_(-2.0)
    src = torch.from_numpy(rng.uniform(-4, 4, size=(1, 120, 3)).astype(np.float32))
    tgt = src + 0.3
    with torch.no_grad():
        expected = model.eval()(src, tgt)
    ours = save_scoop(tmp_path / "ours.pt", model, step=7)
    # the authors' archive layout: {"args": Namespace, "model": state_dict (maybe DataParallel), ...}
    released = tmp_path / "model_e100.tar"
    args = argparse.Namespace(nb_iter=1, nb_neigh_cross_recon=64, linear_corr_conf=0, lr=1e-3)
    torch.save({"args": args, "model": {f"module.{k}": v for k, v in model.state_dict().items()},
                "optimizer": {}, "scheduler": None}, released)
    for path in (ours, released):
        loaded = load_scoop(path)
        with torch.no_grad():
            got = loaded(src, tgt)
        assert torch.equal(got.flow, expected.flow) and torch.equal(got.confidence, expected.confidence)
    out = estimate_scene_flow(src[0], tgt[0], method="scoop", weights=str(ours), device="cpu", steps=0)
    torch.testing.assert_close(out.flow, expected.flow[0])
    assert out.confidence.shape == (120,)


def test_bad_checkpoints_raise(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(MissingFileError):
        load_scoop(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_scoop(tmp_path / "junk.pt")
    state = SCOOP().state_dict()
    state.pop("epsilon")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="epsilon"):
        load_scoop({"model": state})
    state = SCOOP().state_dict()
    state["feat_conv1.fc1.weight"] = torch.zeros(32, 7, 1, 1)
    with pytest.raises(CheckpointError, match="feat_conv1.fc1.weight"):
        load_scoop(state)


def test_scoop_needs_weights(rng: np.random.Generator) -> None:
    pts = rng.normal(size=(40, 3)).astype(np.float32)
    with pytest.raises(InvalidArgumentError, match="weights"):
        estimate_scene_flow(pts, pts, method="scoop")
    with pytest.raises(InvalidArgumentError):
        estimate_scene_flow(pts, pts, method="scoop", weights="untrained", lr=0.0)


def test_training_runs_resumes_and_reloads(tmp_path) -> None:  # noqa: ANN001
    data = SyntheticPairs(96, seed=5)
    cfg = TrainConfig(steps=2, batch_size=2, checkpoint_every=1, eval_every=1)
    val = [SyntheticPairs(96, seed=6)[0]]
    first = train_scoop(data, tmp_path, cfg, validation=val, device="cpu", progress=False)
    assert first["steps"] == 2 and np.isfinite(first["last_loss"])
    resumed = train_scoop(data, tmp_path, TrainConfig(steps=3, batch_size=2, checkpoint_every=1, eval_every=1),
                          validation=val, device="cpu", progress=False)
    assert resumed["steps"] == 3
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    # an uninterrupted 3-step run ends with the very same weights
    straight = train_scoop(data, tmp_path / "straight", TrainConfig(steps=3, batch_size=2, checkpoint_every=1, eval_every=1),
                           device="cpu", progress=False)
    a, b = load_scoop(resumed["checkpoint"]).state_dict(), load_scoop(straight["checkpoint"]).state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "train_config.json").read_text())["train"]["steps"] == 3


@pytest.mark.slow
def test_training_improves_and_refinement_improves_further(tmp_path) -> None:  # noqa: ANN001
    val = [SyntheticPairs(384, seed=999)[i] for i in range(3)]
    untrained = evaluate_network(untrained_scoop(42), val)["epe3d"]
    result = train_scoop(SyntheticPairs(384), tmp_path, TrainConfig(steps=200, batch_size=2), device="cpu", progress=False)
    model = load_scoop(result["checkpoint"])
    trained = evaluate_network(model, val)["epe3d"]
    assert trained < 0.9 * untrained
    refined = []
    for s in val:
        out = estimate_scene_flow(s.source, s.target, method="scoop", weights=model, device="cpu", steps=300, lr=0.05)
        refined.append(scene_flow_metrics(out.flow, s.flow, s.mask)["epe3d"])
    assert np.mean(refined) < trained
