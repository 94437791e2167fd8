"""SplatFlow: official keys, parity with the official code, streaming cost, checkpoints, training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import motion
from motion.models.checkpoints import save_checkpoint
from motion.models.splatflow import SP_BRANCH, SplatFlow, load_splatflow_weights, splatflow_loss
from motion.registry import named_weights_url
from motion4d.errors import CheckpointError, InvalidArgumentError, ShapeError

from .seeded_weights import seeded_state

DATA = Path(__file__).resolve().parents[1] / "data"


def read_manifest(name: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in (DATA / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _ = line.split("\t")
        out[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


@pytest.fixture(scope="module")
def model() -> SplatFlow:
    torch.manual_seed(0)
    m = motion.create("splatflow", device="cpu", iters=2)
    m.load_state_dict(seeded_state(m.state_dict(), 3))
    return m


def frames_of(n: int, h: int = 64, w: int = 72, seed: int = 0) -> torch.Tensor:
    from motion.synthetic import make_sequence

    seq = make_sequence(T=n, height=h, width=w, seed=seed)
    return torch.from_numpy(seq.frames).permute(0, 3, 1, 2).float().div(255.0)[None]


# ------------------------------------------------------------------------------ weights layout


def test_state_dict_equals_official_manifest(model):
    manifest = read_manifest("keys_splatflow.txt")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == manifest
    assert sum(p.numel() for p in model.parameters()) == 8_999_555
    # norm3 and downsample.1 are one module, as in RAFT
    assert model.cnet.layer2[0].norm3 is model.cnet.layer2[0].downsample[1]


@pytest.mark.parametrize("carry", ["stream", pytest.param("triplet", marks=pytest.mark.slow)])
def test_matches_official_implementation(carry):
    """``splatflow_official_outputs.npz`` holds the official SplatFlow code's outputs (HEAD 41c53ff, CPU,
    its CuPy splatting replaced by ``motion.ops.softsplat`` "average", torch backend) for
    ``seeded_state`` weights on seeded random frames of 124x130 ("sintel" padding), 3 iterations,
    every 3rd pixel: ``stream`` = pair 0 in two-frame mode, then each pair fed with the previous pair's
    splatted feature; ``triplet`` = its ``infer`` on (t-1, t, t+1) for t = 1, 2."""
    ref = np.load(DATA / "splatflow_official_outputs.npz")
    h, w, iters, n, seed = (int(ref[k]) for k in ("height", "width", "iters", "frames", "seed"))
    m = motion.create("splatflow", device="cpu", iters=iters, carry=carry, splat_backend="torch")
    m.load_state_dict(seeded_state(m.state_dict(), seed))
    frames = torch.rand(1, n, 3, h, w, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64).float()
    with torch.no_grad():
        got = m(frames).forward[0][..., ::3, ::3]
    stream = torch.from_numpy(ref["stream"])
    scale = stream.abs().max().item()
    assert scale > 0.5  # flows of a few pixels: the comparison is not trivially satisfied
    torch.testing.assert_close(got[0], stream[0], atol=2e-5 * scale, rtol=0)
    expected = stream[1:] if carry == "stream" else torch.from_numpy(ref["triplet"])
    torch.testing.assert_close(got[1:], expected, atol=2e-5 * scale, rtol=0)


# ------------------------------------------------------------------------------ protocols


def counting(model, monkeypatch):
    calls = {"pairs": 0, "features": 0, "temporal": 0}
    estimate, fnet_forward = model.estimate_pair, model.fnet.forward

    def count_pairs(*args, **kwargs):
        calls["pairs"] += 1
        temporal = kwargs.get("temporal", args[3] if len(args) > 3 else None)
        calls["temporal"] += temporal is not None
        return estimate(*args, **kwargs)

    def count_features(x):
        calls["features"] += x.shape[0]
        return fnet_forward(x)

    monkeypatch.setattr(model, "estimate_pair", count_pairs)
    monkeypatch.setattr(model.fnet, "forward", count_features)
    return calls


def test_stream_costs_one_estimation_per_pair_and_equals_clip(model, monkeypatch):
    frames = frames_of(5)
    with torch.no_grad():
        clip = model(frames).forward
    calls = counting(model, monkeypatch)
    chunks = list(model.stream(iter(frames[0])))
    assert calls == {"pairs": 4, "features": 5, "temporal": 3}  # N-1 pairs, each frame encoded once
    assert [c.first_pair for c in chunks] == [0, 1, 2, 3]
    streamed = torch.cat([c.forward for c in chunks], dim=1)
    assert streamed.shape == clip.shape == (1, 4, 2, 64, 72)
    torch.testing.assert_close(streamed, clip, atol=1e-5, rtol=1e-5)


def test_triplet_carry_reestimates_previous_pair_in_two_frame_mode(monkeypatch):
    m = motion.create("splatflow", device="cpu", iters=1, carry="triplet")
    m.load_state_dict(seeded_state(m.state_dict(), 5))
    frames = frames_of(4, seed=1)
    calls = counting(m, monkeypatch)
    with torch.no_grad():
        out = m(frames).forward
    n = frames.shape[1]
    assert calls["pairs"] == (n - 1) + (n - 3) and calls["temporal"] == n - 2  # pair 0 is already two-frame
    # every flow equals an explicit triplet (t-1, t, t+1) run on its own
    for t in (1, 2):
        with torch.no_grad():
            triplet = m(frames[:, t - 1:t + 2]).forward[:, 1]
        torch.testing.assert_close(out[:, t], triplet, atol=1e-5, rtol=1e-5)


def test_first_pair_is_two_frame_mode_and_temporal_feature_matters(model):
    frames = frames_of(3, seed=2)
    with torch.no_grad():
        pair = model(frames[:, :2]).forward
        both = model(frames).forward
        alone = model(frames[:, 1:]).forward  # pair 1 -> 2 without the feature of pair 0 -> 1
    torch.testing.assert_close(both[:, :1], pair, atol=1e-5, rtol=1e-5)
    assert (both[:, 1] - alone[:, 0]).abs().max() > 1e-3


def test_estimate_flow_uses_the_stream(model):
    from motion.synthetic import make_sequence

    seq = make_sequence(T=4, height=64, width=64, seed=4)
    result = motion.estimate_flow(seq.frames, model=model, device="cpu")
    with torch.no_grad():
        clip = model(torch.from_numpy(seq.frames).permute(0, 3, 1, 2).float().div(255.0)[None]).forward[0]
    assert result.forward.shape == (3, 2, 64, 64)
    torch.testing.assert_close(torch.as_tensor(result.forward), clip, atol=1e-4, rtol=1e-4)


def test_on_the_fly_correlation_and_fused_attention_match(model):
    frames = frames_of(3, seed=5)
    other = motion.create("splatflow", device="cpu", iters=2, corr_mode="on_the_fly", attention="fused")
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(other(frames).forward, model(frames).forward, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_formats_load_strictly(model, tmp_path):
    state = model.state_dict()
    files = {
        "official.pth": dict(state),  # released kitti file: no prefix, both duplicate names
        "ddp.pth": {f"module.{k}": v for k, v in state.items()},  # run_train.py checkpoints
        "ptlflow.ckpt": {"state_dict": dict(state), "hyper_parameters": {"iters": 32}},
        "one_name.pth": {k: v for k, v in state.items() if ".norm3." not in k},  # deduplicated copy
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
        loaded = motion.create("splatflow", weights=str(tmp_path / name), device="cpu")
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, state[key]), (name, key)
    save_checkpoint(model, tmp_path / "ours.pt", "splatflow")
    ours = motion.create("splatflow", weights=str(tmp_path / "ours.pt"), device="cpu")
    assert torch.equal(ours.update.gru_sp.convq2.weight, model.update.gru_sp.convq2.weight)


def test_gma_checkpoint_initialises_the_backbone(model, tmp_path):
    gma = {}
    for k, v in model.state_dict().items():
        if k.startswith(SP_BRANCH):
            continue
        gma["module." + k.replace("update.", "update_block.")] = v
    gma["module.att.pos_emb.rel_height.weight"] = torch.zeros(319, 128)  # GMA's position tables
    torch.save(gma, tmp_path / "gma-things.pth")
    fresh = SplatFlow()
    sp_before = fresh.update.flow_head_sp.conv2.weight.clone()
    assert load_splatflow_weights(fresh, str(tmp_path / "gma-things.pth")) == "backbone"
    assert torch.equal(fresh.update.gru.convz1.weight, model.update.gru.convz1.weight)
    assert torch.equal(fresh.cnet.layer3[0].norm3.running_var, model.cnet.layer3[0].norm3.running_var)
    assert torch.equal(fresh.update.flow_head_sp.conv2.weight, sp_before)
    # legacy "_tf" names of the temporal branch are renamed
    legacy = {k.replace("gru_sp", "gru_tf"): v for k, v in model.state_dict().items()}
    assert load_splatflow_weights(SplatFlow(), legacy) == "full"


def test_bad_checkpoints_raise_with_a_report(model, tmp_path):
    state = dict(model.state_dict())
    broken = {k: v for k, v in state.items() if not k.startswith("update.flow_head.")}
    with pytest.raises(CheckpointError, match="update.flow_head.conv1.weight"):
        load_splatflow_weights(SplatFlow(), broken)
    wrong = dict(state)
    wrong["att.to_qk.weight"] = torch.zeros(128, 128, 1, 1)
    with pytest.raises(CheckpointError, match="att.to_qk.weight"):
        load_splatflow_weights(SplatFlow(), wrong)
    with pytest.raises(CheckpointError, match="kitti"):
        motion.create("splatflow", weights="sintel", device="cpu")
    assert named_weights_url("splatflow", "kitti").endswith("/weights1/splatflow-kitti-2aa8e145.ckpt")


# ------------------------------------------------------------------------------ training


def test_loss_is_splatflows_normalisation():
    torch.manual_seed(0)
    target = torch.randn(2, 2, 2, 8, 9)
    valid = torch.rand(2, 2, 8, 9) > 0.3
    preds = [torch.randn(2, 2, 2, 8, 9) for _ in range(3)]
    loss, metrics = splatflow_loss(preds, target, valid, gamma=0.8)
    expected = 0.0
    for i, p in enumerate(preds):  # L1 summed over channels, mean over the valid pixels of both pairs
        errors = [float((p[b, q, :, y, x] - target[b, q, :, y, x]).abs().sum())
                  for b in range(2) for q in range(2) for y in range(8) for x in range(9) if valid[b, q, y, x]]
        expected += 0.8 ** (2 - i) * sum(errors) / len(errors)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    last = (preds[-1][:, 1] - target[:, 1]).norm(dim=1)[valid[:, 1]]
    assert metrics["epe"] == pytest.approx(last.mean().item(), rel=1e-5)


def test_part_stage_trains_only_the_temporal_branch():
    m = motion.create("splatflow", device="cpu", stage="part", train_iters=1)
    trainable = {k for k, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(k.startswith(SP_BRANCH) for k in trainable)
    assert sum(p.numel() for k, p in m.named_parameters() if k in trainable) == 2_458_368 + 299_778 + 443_200
    m.train()
    assert not m.cnet.training  # frozen backbone keeps its BatchNorm statistics
    stats = m.cnet.norm1.running_mean.clone()
    frames = frames_of(3, seed=6)
    predictions = m.training_predictions(frames)
    loss, _ = m.loss(predictions, {"flow_forward": torch.zeros_like(predictions[-1])})
    loss.backward()
    assert torch.equal(m.cnet.norm1.running_mean, stats)
    assert m.update.gru_sp.convz1.weight.grad is not None and m.update.gru_sp.convz1.weight.grad.abs().sum() > 0
    assert m.update.gru.convz1.weight.grad is None and m.fnet.conv1.weight.grad is None
    m.set_stage("full")
    assert all(p.requires_grad for p in m.parameters())


def test_training_output_holds_every_iteration():
    m = motion.create("splatflow", device="cpu", train_iters=2).train()
    out = m(frames_of(3, seed=7))
    its = out.forward_iterations
    assert len(its) == 2 and its[-1].shape == (1, 2, 2, 64, 72)
    torch.testing.assert_close(its[-1], out.forward)


@pytest.mark.slow
def test_toy_training_lowers_epe():
    from tests.motion.toy_training import toy_fit_epe

    before, after = toy_fit_epe(lambda: motion.create("splatflow", device="cpu", train_iters=3, iters=3), steps=15)
    assert after < 0.7 * before


# ------------------------------------------------------------------------------ errors


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ShapeError, match="too small"):
        model(torch.rand(1, 2, 3, 40, 80))
    with pytest.raises(ShapeError):
        model(torch.rand(1, 1, 3, 64, 64))
    with pytest.raises(ShapeError, match="frames\\[1\\]"):
        list(model.stream(iter([torch.rand(3, 64, 64), torch.rand(3, 64, 72)])))
    with pytest.raises(InvalidArgumentError, match="carry"):
        motion.create("splatflow", device="cpu", carry="pairs")
    with pytest.raises(InvalidArgumentError, match="unknown option"):
        motion.create("splatflow", device="cpu", T=4)
    with pytest.raises(InvalidArgumentError, match="training mode"):
        model.eval().training_predictions(frames_of(2, seed=8))  # no per-iteration predictions in eval mode
