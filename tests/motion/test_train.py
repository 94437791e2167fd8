"""Training recipe: augmentation geometry, temporal reversal, schedule, a run that learns, resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import motion
from motion.models.blocks import coords_grid, sample_bilinear
from motion.train import (
    AugmentConfig,
    ClipAugmentor,
    SyntheticClips,
    TrainConfig,
    clip_from_item,
    make_optimizer,
    reverse_clip,
    train,
)

NO_COLOR = (0.0, 0.0, 0.0, 0.0)


def synthetic_clip(seed: int = 0, frames: int = 3, height: int = 72, width: int = 88) -> dict[str, torch.Tensor]:
    return clip_from_item(SyntheticClips(1, frames, height, width, seed=seed, num_layers=1, max_speed=3.0)[0])


def warp_error(clip: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Mean |I_t - I_{t+1}(x + flow)| over pixels that stay inside, and the same without the flow."""
    frames, flow = clip["frames"], clip["flow_forward"]
    t, _, h, w = frames.shape
    coords = coords_grid(t - 1, h, w) + flow
    warped = sample_bilinear(frames[1:], coords)
    inside = ((coords[:, 0] >= 0) & (coords[:, 0] <= w - 1) & (coords[:, 1] >= 0) & (coords[:, 1] <= h - 1))[:, None]
    inside = inside & (clip["valid_forward"][:, None] > 0.5)
    with_flow = (warped - frames[:-1]).abs()[inside.expand_as(warped)].mean().item()
    without = (frames[1:] - frames[:-1]).abs()[inside.expand_as(warped)].mean().item()
    return with_flow, without


def test_augmentation_keeps_frames_and_flow_consistent():
    clip = synthetic_clip()
    base_error, _ = warp_error(clip)
    augmentor = ClipAugmentor(AugmentConfig(crop=(56, 64), color=NO_COLOR, min_scale=0.2, max_scale=0.5,
                                            h_flip_prob=0.5, v_flip_prob=0.5), seed=3)
    for _ in range(4):
        out = augmentor({k: v.clone() for k, v in clip.items()})
        assert out["frames"].shape == (3, 3, 56, 64) and out["flow_forward"].shape == (2, 2, 56, 64)
        with_flow, without = warp_error(out)
        assert with_flow < 0.35 * without  # the flow still explains the motion after zoom/stretch/flip/crop
        assert with_flow < base_error + 0.03


def test_horizontal_flip_negates_u_exactly():
    clip = synthetic_clip()
    # crop + 8 fits the 72x88 clip, so there is no zoom: only the flip and a random crop
    config = AugmentConfig(crop=(64, 80), color=NO_COLOR, spatial_prob=0.0, stretch_prob=0.0, min_scale=0.0,
                           max_scale=0.0, h_flip_prob=1.0, v_flip_prob=0.0)
    out = ClipAugmentor(config, seed=0)({k: v.clone() for k, v in clip.items()})
    flipped_frames, flipped_flow = clip["frames"].flip(-1), clip["flow_forward"].flip(-1)
    offsets = [(y, x) for y in range(9) for x in range(9)
               if torch.equal(out["frames"], flipped_frames[..., y:y + 64, x:x + 80])]
    assert len(offsets) == 1
    y, x = offsets[0]
    torch.testing.assert_close(out["flow_forward"][:, 0], -flipped_flow[:, 0, y:y + 64, x:x + 80])
    torch.testing.assert_close(out["flow_forward"][:, 1], flipped_flow[:, 1, y:y + 64, x:x + 80])


def test_shared_color_jitter_is_identical_on_every_frame():
    frames = torch.rand(1, 3, 16, 16).expand(4, 3, 16, 16).contiguous()
    clip = {"frames": frames, "flow_forward": torch.zeros(3, 2, 16, 16), "valid_forward": torch.ones(3, 16, 16)}
    config = AugmentConfig(crop=(16, 16), spatial_prob=0.0, stretch_prob=0.0, min_scale=0.0, max_scale=0.0,
                           h_flip_prob=0.0, v_flip_prob=0.0, asymmetric_color_prob=0.0)
    out = ClipAugmentor(config, seed=1)(clip)["frames"]
    assert not torch.allclose(out[0], frames[0])
    for t in range(1, 4):
        torch.testing.assert_close(out[t], out[0])


def test_temporal_reversal_swaps_directions():
    seq = SyntheticClips(1, 4, 64, 64, seed=2)[0]
    clip = clip_from_item(seq)
    rev = reverse_clip(clip)
    torch.testing.assert_close(rev["frames"], clip["frames"].flip(0))
    # forward flow t -> t+1 of the reversed clip is the backward flow of original frames (T-1-t) -> (T-2-t)
    torch.testing.assert_close(rev["flow_forward"][0], torch.as_tensor(seq["flow_backward"][2]))
    torch.testing.assert_close(rev["flow_backward"][0], torch.as_tensor(seq["flow_forward"][2]))


def test_one_cycle_schedule_matches_recipe():
    model = torch.nn.Linear(2, 2)
    optimizer, scheduler = make_optimizer(model, TrainConfig(steps=900, lr=1e-3))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 1e-4
    lrs = []
    for _ in range(900):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert int(np.argmax(lrs)) == pytest.approx(0.05 * 1000, abs=1)  # peak after 5 % of steps + 100
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-3 * 100 / 950, rel=0.05)  # linear anneal, 100 steps short of the end


def test_overfitting_one_clip_lowers_the_loss_and_resumes(tmp_path):
    torch.manual_seed(0)
    model = motion.create("videoflow-mof", device="cpu", encoder="basic")
    clip = SyntheticClips(1, 3, 64, 64, seed=5, num_layers=1, max_speed=3.0)
    config = TrainConfig(steps=8, batch_size=1, lr=5e-4, iters=2, crop=(64, 64), augment=False,
                         reverse_prob=0.0, log_every=1, checkpoint_every=4, progress=False)
    result = train(model, clip, config, out_dir=tmp_path, model_name="videoflow-mof")
    losses = [h["loss"] for h in result.history]
    epes = [h["epe"] for h in result.history]
    print("loss", losses, "epe", epes)
    assert len(losses) == 8 and np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2])
    assert np.mean(epes[-2:]) < np.mean(epes[:2])
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["model"] == "videoflow-mof" and saved["step"] == 8
    assert len(json.loads((tmp_path / "history.json").read_text())) == 8
    # resuming continues the schedule from step 8 instead of starting over
    config.steps = 9
    again = train(motion.create("videoflow-mof", device="cpu", encoder="basic"), clip, config, out_dir=tmp_path)
    assert again.steps == 9 and [h["step"] for h in again.history] == list(range(1, 10))


def test_clip_loss_uses_the_models_own_loss_when_it_has_one():
    """SplatFlow / StreamFlow define ``loss``; the trainer must use it instead of the generic one."""
    from motion.models.tiny import TinyFlow
    from motion.train import SupervisedStep, TrainConfig, clip_loss

    calls = []

    class TinyWithLoss(TinyFlow):
        def loss(self, output, target, valid=None, gamma=0.8, max_flow=400.0):
            calls.append((len(output.extras["forward_iterations"]), tuple(target.shape), gamma))
            return (output.forward - target).abs().mean() * 0 + 7.0, {"own": 1.0}

    torch.manual_seed(0)
    model = TinyWithLoss().train()
    b, t, h, w = 2, 3, 16, 24
    batch = {
        "frames": torch.rand(b, t, 3, h, w),
        "flow_forward": torch.zeros(b, t - 1, 2, h, w), "flow_backward": torch.zeros(b, t - 1, 2, h, w),
        "valid_forward": torch.ones(b, t - 1, h, w, dtype=torch.bool),
        "valid_backward": torch.ones(b, t - 1, h, w, dtype=torch.bool),
    }
    loss, info = clip_loss(SupervisedStep(model, iters=2), batch, TrainConfig(gamma=0.85))
    assert loss.item() == 7.0 and info == {"own": 1.0}
    assert calls and calls[0][1] == (b, t - 1, 2, h, w) and calls[0][2] == 0.85
    # without a model loss the generic sequence loss is used
    plain, _ = clip_loss(SupervisedStep(TinyFlow().train(), iters=2), batch, TrainConfig(gamma=0.85))
    assert plain.item() != 7.0
