"""StreamFlow: official keys, parity with the official code, group schedule, checkpoints, training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import motion
from motion.models.checkpoints import save_checkpoint
from motion.models.streamflow import StreamFlow, encode_stacked, group_plan, group_size_of, streamflow_loss
from motion.registry import named_weights_url
from motion4d.errors import CheckpointError, InvalidArgumentError, Motion4DError, ShapeError

from .seeded_weights import seeded_state
from .test_splatflow import frames_of, read_manifest

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def model() -> StreamFlow:
    m = motion.create("streamflow", device="cpu", iters=1)
    m.load_state_dict(seeded_state(m.state_dict(), 3))
    return m


# ------------------------------------------------------------------------------ weights layout


def test_state_dict_equals_official_manifest():
    manifest = read_manifest("keys_streamflow.txt")
    m = StreamFlow()
    ours = [(f"module.{k}", tuple(v.shape)) for k, v in m.state_dict().items()]
    assert ours == list(manifest.items())  # same keys, shapes and order as the DataParallel checkpoint
    assert sum(p.numel() for p in m.parameters()) == 14_250_753
    # the temporal block starts as the identity
    assert all((p == 0).all() for p in m.update_block.transformer_block.parameters())
    x = torch.randn(6, 128, 3, 4)
    torch.testing.assert_close(m.update_block.transformer_block(x, pairs=3), x)


def test_matches_official_implementation():
    """``streamflow_official_outputs.npz`` holds the official StreamFlow code's outputs (``SKFlow_MF8`` +
    ``Twins_CSC`` + ``SKUpdateBlock_TAM_v3``, HEAD 6d8713d, timm 1.0.31, CPU fp32) for ``seeded_state``
    weights (the zero-initialised temporal block randomised too) on 6 seeded random frames of 124x130
    ("sintel" padding), 3 iterations, T = 4, every 3rd pixel: the 3 flows of group 0-3 followed by the
    last 2 flows of the end-aligned group 2-5."""
    ref = np.load(DATA / "streamflow_official_outputs.npz")
    h, w, iters, n, seed = (int(ref[k]) for k in ("height", "width", "iters", "frames", "seed"))
    m = motion.create("streamflow", device="cpu", iters=iters, group_size=int(ref["group_size"]))
    m.load_state_dict(seeded_state(m.state_dict(), seed))
    frames = torch.rand(1, n, 3, h, w, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64).float()
    with torch.no_grad():
        got = m(frames).forward[0][..., ::3, ::3]
    expected = torch.from_numpy(ref["forward"])
    scale = expected.abs().max().item()
    assert scale > 1.0
    torch.testing.assert_close(got, expected, atol=1e-5 * scale, rtol=0)


# ------------------------------------------------------------------------------ schedule


@pytest.mark.parametrize("n,t,plan", [
    (4, 4, [(0, 3)]),
    (7, 4, [(0, 3), (3, 3)]),
    (6, 4, [(0, 3), (2, 2)]),
    (9, 4, [(0, 3), (3, 3), (5, 2)]),
    (2, 4, [(-2, 1)]),
    (5, 3, [(0, 2), (2, 2)]),
])
def test_group_plan_covers_every_pair_once(n, t, plan):
    assert group_plan(n, t) == plan
    covered = [s + t - 1 - keep + j for s, keep in plan for j in range(keep)]
    assert covered == list(range(n - 1))


def test_stream_equals_window_by_window(model):
    frames = frames_of(6, seed=1)
    calls = []
    estimate = model.estimate_group
    model.estimate_group = lambda images, **kw: calls.append(images.shape[0]) or estimate(images, **kw)
    try:
        chunks = list(model.stream(iter(frames[0])))
    finally:
        del model.estimate_group
    assert calls == [1, 1]  # two groups of 4 frames for 5 flows
    assert [c.first_pair for c in chunks] == [0, 3]
    streamed = torch.cat([c.forward for c in chunks], dim=1)
    with torch.no_grad():
        first = model(frames[:, 0:4]).forward
        last = model(frames[:, 2:6]).forward
    # model(clip) batches the same groups: test_matches_official_implementation checks it window by window
    torch.testing.assert_close(streamed, torch.cat([first, last[:, 1:]], dim=1), atol=1e-5, rtol=1e-5)


def test_short_clips_are_completed_with_the_first_frame(model):
    frames = frames_of(2, seed=2)
    with torch.no_grad():
        short = model(frames).forward
        padded = model(torch.cat([frames[:, :1], frames[:, :1], frames], dim=1)).forward
        streamed = torch.cat([c.forward for c in model.stream(iter(frames[0]))], dim=1)
    assert short.shape == (1, 1, 2, 64, 72)
    torch.testing.assert_close(short, padded[:, -1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(streamed, short, atol=1e-5, rtol=1e-5)


def test_frames_are_stacked_along_height_in_the_encoder(model):
    """ISC: a frame's features depend on the other frames of its group (joint attention)."""
    frames = 2 * frames_of(3, seed=3) - 1
    with torch.no_grad():
        joint = encode_stacked(model.fnet, frames)
        alone = encode_stacked(model.fnet, frames[:, :1])
        changed = encode_stacked(model.fnet, torch.cat([frames[:, :1], frames[:, 2:], frames[:, 1:2]], dim=1))
    assert joint.shape == (1, 3, 256, 8, 9)
    assert (joint[:, 0] - alone[:, 0]).abs().max() > 1e-3
    assert (joint[:, 0] - changed[:, 0]).abs().max() > 1e-4
    # with a single frame, ISC is the plain per-frame Twins encoder
    torch.testing.assert_close(alone[:, 0], model.fnet(frames[:, 0]), atol=1e-5, rtol=1e-5)


def test_estimate_flow_uses_group_streaming(model):
    from motion.synthetic import make_sequence

    seq = make_sequence(T=5, height=64, width=64, seed=4)
    result = motion.estimate_flow(seq.frames, model=model, device="cpu")
    with torch.no_grad():
        clip = model(torch.from_numpy(seq.frames).permute(0, 3, 1, 2).float().div(255.0)[None]).forward[0]
    assert result.forward.shape == (4, 2, 64, 64)
    torch.testing.assert_close(torch.as_tensor(result.forward), clip, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_formats_load_strictly(model, tmp_path):
    state = model.state_dict()
    files = {
        "official.pth": {"model": {f"module.{k}": v for k, v in state.items()}, "total_steps": 10},
        "raw.pth": dict(state),
        "ptlflow.ckpt": {"state_dict": dict(state), "hyper_parameters": {"T": 4}},
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
        loaded = motion.create("streamflow", weights=str(tmp_path / name), device="cpu")
        assert loaded.group_size == 4
        for key, value in loaded.state_dict().items():
            assert torch.equal(value, state[key]), (name, key)
    save_checkpoint(model, tmp_path / "ours.pt", "streamflow")
    assert motion.create("streamflow", weights=str(tmp_path / "ours.pt"), device="cpu").group_size == 4
    for name in ("things", "sintel", "kitti", "spring"):
        assert "/weights1/streamflow-" + name in named_weights_url("streamflow", name)


def test_group_size_is_read_from_the_weights_and_mismatch_is_explained(tmp_path):
    m3 = StreamFlow(group_size=3)
    assert m3.update_block.flow_head.ffn2[2].out_channels == 4
    torch.save({"model": m3.state_dict()}, tmp_path / "t3.pth")
    assert group_size_of(m3.state_dict()) == 3
    loaded = motion.create("streamflow", weights=str(tmp_path / "t3.pth"), device="cpu")
    assert loaded.group_size == 3 and loaded.frames_per_window == 3
    with pytest.raises(Motion4DError, match="T=3"):
        motion.create("streamflow", weights=str(tmp_path / "t3.pth"), group_size=4, device="cpu")


def test_bad_checkpoints_raise(model, tmp_path):
    state = {k: v for k, v in model.state_dict().items() if "transformer_block" not in k}
    with pytest.raises(CheckpointError, match="transformer_block"):
        motion.create("streamflow", weights=state, device="cpu")
    with pytest.raises(CheckpointError, match="spring"):
        motion.create("streamflow", weights="chairs", device="cpu")
    save_checkpoint(model, tmp_path / "other.pt", "splatflow")
    with pytest.raises(CheckpointError, match="splatflow"):
        motion.create("streamflow", weights=str(tmp_path / "other.pt"), device="cpu")


# ------------------------------------------------------------------------------ training


def test_loss_sums_the_sequence_loss_of_every_flow():
    torch.manual_seed(0)
    target = torch.randn(2, 3, 2, 6, 7)
    valid = torch.rand(2, 3, 6, 7) > 0.3
    preds = [torch.randn(2, 3, 2, 6, 7) for _ in range(2)]
    loss, metrics = streamflow_loss(preds, target, valid, gamma=0.85)
    expected = 0.0
    for p in range(3):
        for i, pred in enumerate(preds):
            masked = (pred[:, p] - target[:, p]).abs() * valid[:, p, None]
            expected += 0.85 ** (1 - i) * masked.sum().item() / masked.numel()  # RAFT: mean over all pixels
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    last, _ = streamflow_loss(preds, target, valid, gamma=0.85, last_only=True)
    assert last.item() < loss.item()
    assert 0 < metrics["epe"] and 0 <= metrics["1px"] <= 1


def test_training_mode_gives_every_iteration_and_gradients():
    m = motion.create("streamflow", device="cpu", train_iters=2, group_size=3).train()
    frames = frames_of(3, seed=5)
    out = m(frames)
    its = out.forward_iterations
    assert len(its) == 2 and its[-1].shape == (1, 2, 2, 64, 72)
    loss, _ = m.loss(its, {"flow_forward": torch.zeros_like(out.forward)})
    loss.backward()
    assert m.update_block.flow_head.ffn2[2].weight.grad.abs().sum() > 0
    assert m.fnet.svt.patch_embeds[0].proj.weight.grad.abs().sum() > 0
    with pytest.raises(ShapeError, match="group_size=3"):
        m(frames_of(4, seed=5))


@pytest.mark.slow
def test_toy_training_lowers_epe():
    from tests.motion.toy_training import toy_fit_epe

    before, after = toy_fit_epe(lambda: motion.create("streamflow", device="cpu", group_size=3, train_iters=3, iters=3), steps=20)
    assert after < 0.7 * before


# ------------------------------------------------------------------------------ errors


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ShapeError, match="too small"):
        model(torch.rand(1, 4, 3, 48, 80))
    with pytest.raises(ShapeError, match="frames\\[2\\]"):
        list(model.stream(iter([torch.rand(3, 64, 64)] * 2 + [torch.rand(3, 64, 72)])))
    with pytest.raises(InvalidArgumentError, match="group_size"):
        motion.create("streamflow", device="cpu", group_size=1)
    with pytest.raises(InvalidArgumentError, match="supervise"):
        motion.create("streamflow", device="cpu", supervise="first")
