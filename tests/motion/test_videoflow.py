"""VideoFlow BOF / MOF: official key layout, parity with the official code, shapes, protocols."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import motion
from motion.models.videoflow import VideoFlowBOF, VideoFlowMOF
from motion4d.errors import InvalidArgumentError, NonFiniteError, ShapeError

DATA = Path(__file__).resolve().parents[1] / "data"


def read_manifest(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """Keys, shapes and dtypes dumped from the official models (``module.`` prefix removed)."""
    entries = {}
    for line in (DATA / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        entries[key.removeprefix("module.")] = (tuple(int(s) for s in shape.strip("()").split(",") if s.strip()), dtype)
    return entries


@pytest.fixture(scope="module")
def bof() -> VideoFlowBOF:
    torch.manual_seed(0)
    return motion.create("videoflow-bof", device="cpu", iters=1)


@pytest.fixture(scope="module")
def mof() -> VideoFlowMOF:
    torch.manual_seed(0)
    return motion.create("videoflow-mof", device="cpu", iters=1)


@pytest.mark.parametrize("variant, manifest, params", [
    ("bof", "keys_videoflow_bof.txt", 12_659_389),
    ("mof", "keys_videoflow_mof.txt", 13_453_240),
])
def test_state_dict_equals_official_manifest(variant, manifest, params, bof, mof):
    model = bof if variant == "bof" else mof
    expected = read_manifest(manifest)
    got = {k: (tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()}
    assert sorted(got) == sorted(expected)
    assert got == expected
    assert sum(p.numel() for p in model.parameters()) == params


# --------------------------------------------------------------------------- parity with the official code

def seeded_state(reference_state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic random weights for every float tensor (the recipe used to make the fixture)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(reference_state):
        ref = reference_state[name]
        if not ref.is_floating_point():
            out[name] = ref.clone()
            continue
        t = torch.randn(ref.shape, generator=g, dtype=torch.float64)
        if name.endswith("gamma"):
            t = 0.5 + 0.1 * t
        elif ref.dim() >= 2:
            t = t / math.sqrt(max(1, int(np.prod(ref.shape[1:]))))
        elif name.endswith(".weight"):
            t = 1.0 + 0.1 * t
        else:
            t = 0.1 * t
        if "flow_head.ffn2.2" in name:
            t = 0.003 * t
        if "update_block.mask.2" in name:
            t = 0.01 * t
        out[name] = t.float()
    return out


@pytest.mark.parametrize("variant", ["bof", "mof"])
def test_matches_official_implementation(variant):
    """``videoflow_official_outputs.npz`` holds the outputs of the official VideoFlow code (HEAD 5148930,
    fp32, no autocast) for seeded random weights (every tensor randomised, GMA gamma != 0) on seeded
    random frames of an odd size (124x130, "sintel" padding), 3 iterations, subsampled every 3rd pixel."""
    ref = np.load(DATA / "videoflow_official_outputs.npz")
    n, seed = int(ref[f"{variant}_frames"]), int(ref[f"{variant}_seed"])
    h, w, iters = int(ref["height"]), int(ref["width"]), int(ref["iters"])
    model = motion.create(f"videoflow-{variant}", device="cpu", iters=iters, mixed_precision=False)
    model.load_state_dict(seeded_state(model.state_dict(), seed))
    frames = torch.rand(1, n, 3, h, w, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64).float()
    with torch.no_grad():
        out = model.interior_flows(frames)
    for name, got in (("forward", out.forward[0]), ("backward", out.backward[0])):
        expected = torch.from_numpy(ref[f"{variant}_{name}"])
        got = got[..., ::3, ::3]
        assert got.shape == expected.shape
        err = (got - expected).abs().max().item()
        # MOF's mask logits are scaled by 100, which amplifies float rounding in the convex upsampler
        assert err < (1e-4 if variant == "mof" else 2e-5) * max(1.0, expected.abs().max().item()), (name, err)


# --------------------------------------------------------------------------- shapes and protocols

@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_mof_interior_shapes_for_any_clip_length(mof, n):
    frames = torch.rand(1, n, 3, 65, 71)
    with torch.no_grad():
        out = mof.interior_flows(frames, iters=1)
    assert out.forward.shape == out.backward.shape == (1, n - 2, 2, 65, 71)
    assert out.forward_low.shape == (1, n - 2, 2, 9, 9)
    assert torch.isfinite(out.forward).all() and torch.isfinite(out.backward).all()


def test_flow_output_shapes_batch_and_odd_size(mof, bof):
    frames = torch.rand(2, 3, 3, 61, 59)
    for model in (mof, bof):
        with torch.no_grad():
            out = model(frames)
        assert out.forward.shape == (2, 2, 2, 61, 59)
        assert out.backward is None
        assert out.forward.dtype == torch.float32


def test_batch_items_are_independent(mof):
    frames = torch.rand(2, 3, 3, 64, 64)
    with torch.no_grad():
        both = mof.interior_flows(frames, iters=1).forward
        single = mof.interior_flows(frames[1:], iters=1).forward
    torch.testing.assert_close(both[1:], single, atol=1e-4, rtol=1e-4)


def test_mof_forward_is_official_first_frame_repetition(mof):
    """``forward[:, t]`` is the forward flow of interior frame t of ``[I0, I0, I1, ..., I_{T-1}]``."""
    frames = torch.rand(1, 4, 3, 64, 72)
    clip = torch.cat([frames[:, :1], frames], dim=1)
    with torch.no_grad():
        out = mof(frames)
        raw = mof.interior_flows(clip)
    torch.testing.assert_close(out.forward, raw.forward, atol=1e-5, rtol=1e-5)


def test_backward_flows_repeat_last_frame():
    torch.manual_seed(1)
    model = motion.create("videoflow-mof", device="cpu", iters=1, backward=True)
    frames = torch.rand(1, 3, 3, 64, 72)
    clip = torch.cat([frames[:, :1], frames, frames[:, -1:]], dim=1)
    with torch.no_grad():
        out = model(frames)
        raw = model.interior_flows(clip)
    assert out.backward.shape == out.forward.shape == (1, 2, 2, 64, 72)
    torch.testing.assert_close(out.forward, raw.forward[:, :2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.backward, raw.backward[:, 1:3], atol=1e-5, rtol=1e-5)


def test_bof_pairs_are_official_triplets(bof):
    """Pair t uses the triplet (t-1, t, t+1), the first frame standing in for its own predecessor."""
    frames = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        out = bof(frames)
        for t in range(2):
            triplet = frames[:, [max(t - 1, 0), t, t + 1]]
            torch.testing.assert_close(out.forward[:, t], bof.interior_flows(triplet).forward[:, 0], atol=1e-5, rtol=1e-5)


def official_windows(num_frames: int, size: int) -> list[tuple[int, int, list[int]]]:
    """VideoFlow's ``MpiSintel_submission`` clips over ``[I0, I0, I1, ...]``: (start, stop, kept positions)."""
    length = num_frames + 1
    windows = [(s, s + size, list(range(s + 1, s + size - 1))) for s in range(0, length - size + 1, size - 2)]
    remainder = (length - 2) % (size - 2)
    if remainder > 0:
        windows.append((max(0, length - size), length, list(range(length - remainder - 1, length - 1))))
    return windows


@pytest.mark.parametrize("num_frames", [2, 6])  # 6: a regular window and an end-aligned one
def test_stream_reproduces_official_sliding_windows(mof, num_frames):
    frames = torch.rand(num_frames, 3, 64, 64)
    chunks = list(mof.stream(iter(frames)))
    got = torch.cat([c.forward for c in chunks], dim=1)[0]
    assert got.shape == (num_frames - 1, 2, 64, 64)
    starts = [c.first_pair for c in chunks]
    assert starts == [sum(c.forward.shape[1] for c in chunks[:i]) for i in range(len(chunks))]
    sequence = torch.cat([frames[:1], frames])  # position p holds frame p - 1
    expected = torch.full_like(got, float("nan"))
    with torch.no_grad():
        for start, stop, kept in official_windows(num_frames, 5):
            out = mof.interior_flows(sequence[start:stop][None]).forward[0]
            for p in kept:
                expected[p - 1] = out[p - start - 1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_stream_backward_matches_clip_protocol(bof):
    """BOF triplets are independent, so streamed flows equal the whole-clip call, backward included."""
    frames = torch.rand(4, 3, 64, 64)
    chunks = list(bof.stream(iter(frames), backward=True))
    fwd = torch.cat([c.forward for c in chunks], dim=1)
    bwd = torch.cat([c.backward for c in chunks], dim=1)
    model = motion.create("videoflow-bof", device="cpu", iters=1, backward=True)
    model.load_state_dict(bof.state_dict())
    with torch.no_grad():
        whole = model(frames[None])
    torch.testing.assert_close(fwd, whole.forward, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bwd, whole.backward, atol=1e-5, rtol=1e-5)


def test_on_the_fly_correlation_and_fused_attention_match_all_pairs(mof):
    frames = torch.rand(1, 3, 3, 64, 72)
    state = mof.state_dict()
    state["update_block.aggregator.gamma"] = torch.tensor([0.5])  # make the GMA branch count
    outputs = []
    for mode in ("all_pairs", "on_the_fly"):
        model = motion.create("videoflow-mof", device="cpu", iters=2, corr_mode=mode)
        model.load_state_dict(state)
        with torch.no_grad():
            outputs.append(model.interior_flows(frames))
    dense, light = outputs
    torch.testing.assert_close(light.forward, dense.forward, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(light.backward, dense.backward, atol=1e-3, rtol=1e-4)


def test_training_mode_returns_every_iteration():
    torch.manual_seed(0)
    model = motion.create("videoflow-mof", device="cpu", train_iters=3, encoder="basic").train()
    frames = torch.rand(1, 3, 3, 64, 64)
    out = model(frames)
    preds = out.forward_iterations
    assert len(preds) == 3 and preds[-1].shape == out.forward.shape
    torch.testing.assert_close(preds[-1], out.forward)
    preds[-1].abs().mean().backward()
    assert model.fnet.conv1.weight.grad is not None


# --------------------------------------------------------------------------- errors

def test_bad_inputs_raise_clear_errors(mof):
    with pytest.raises(ShapeError, match="at least 2 frames"):
        mof(torch.rand(1, 1, 3, 64, 64))
    with pytest.raises(ShapeError, match="at least 57x57"):
        mof(torch.rand(1, 3, 3, 56, 64))
    with pytest.raises(ShapeError, match=r"\[B, T, 3, H, W\]"):
        mof(torch.rand(3, 3, 64, 64))
    with pytest.raises(ShapeError, match="uint8 .* or floating point"):
        mof(torch.zeros(1, 3, 3, 64, 64, dtype=torch.int32))
    with pytest.raises(InvalidArgumentError, match="value_range=255"):
        mof(torch.rand(1, 3, 3, 64, 64) * 255)
    bad = torch.rand(1, 3, 3, 64, 64)
    bad[0, 1, 0, 3, 3] = float("nan")
    with pytest.raises(NonFiniteError):
        mof(bad)
    with pytest.raises(ShapeError, match="at least 3 frames"):
        mof.interior_flows(torch.rand(1, 2, 3, 64, 64))


def test_bad_options_raise():
    with pytest.raises(InvalidArgumentError, match="unknown option"):
        motion.create("videoflow-mof", device="cpu", iterations=3)
    with pytest.raises(InvalidArgumentError, match="corr_mode"):
        motion.create("videoflow-bof", device="cpu", corr_mode="sparse")
    with pytest.raises(InvalidArgumentError, match="iters"):
        motion.create("videoflow-bof", device="cpu", iters=0)


# --------------------------------------------------------------------------- end to end

def test_estimate_flow_on_synthetic_clip_streams_every_pair(mof):
    from motion.synthetic import make_sequence

    seq = make_sequence(T=5, height=64, width=72, seed=3)
    result = motion.estimate_flow(seq.frames, model=mof, device="cpu")
    assert result.forward.shape == (4, 2, 64, 72)
    with torch.no_grad():
        direct = torch.cat([c.forward for c in mof.stream(iter(seq.frames_tensor()[0]))], dim=1)[0]
    torch.testing.assert_close(torch.as_tensor(result.forward), direct, atol=1e-4, rtol=1e-4)
