"""Training recipe and loop: augmentation geometry (dense and sparse), seeding, temporal reversal,
schedule, a run that learns, its outputs and resume."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import motion
from motion.models.blocks import coords_grid, sample_bilinear
from motion.training import (
    AugmentConfig,
    ClipAugmentor,
    ClipDataset,
    SyntheticClips,
    TrainConfig,
    adjust_hue,
    clip_from_item,
    color_jitter,
    erase_rectangles,
    eraser_targets,
    is_sparse,
    make_optimizer,
    resize_flow,
    reverse_clip,
    sync_batchnorm,
    train,
)
from motion4d.errors import CheckpointError, InvalidArgumentError

NO_COLOR = (0.0, 0.0, 0.0, 0.0)


def synthetic_clip(seed: int = 0, frames: int = 3, height: int = 72, width: int = 88, **scene) -> dict[str, torch.Tensor]:
    scene = {"num_layers": 1, "max_speed": 3.0, **scene}
    return clip_from_item(SyntheticClips(1, frames, height, width, seed=seed, **scene)[0])


def warp_error(clip: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Mean |I_t - I_{t+1}(x + flow)| over valid pixels that stay inside, and the same without the flow."""
    frames, flow = clip["frames"], clip["flow_forward"]
    t, _, h, w = frames.shape
    coords = coords_grid(t - 1, h, w) + flow
    warped = sample_bilinear(frames[1:], coords)
    inside = ((coords[:, 0] >= 0) & (coords[:, 0] <= w - 1) & (coords[:, 1] >= 0) & (coords[:, 1] <= h - 1))[:, None]
    inside = inside & (clip["valid_forward"][:, None] > 0.5)
    with_flow = (warped - frames[:-1]).abs()[inside.expand_as(warped)].mean().item()
    without = (frames[1:] - frames[:-1]).abs()[inside.expand_as(warped)].mean().item()
    return with_flow, without


def copy(clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in clip.items()}


# --------------------------------------------------------------------------- augmentation


def test_augmentation_keeps_frames_and_flow_consistent():
    clip = synthetic_clip()
    base_error, _ = warp_error(clip)
    augmentor = ClipAugmentor(AugmentConfig(crop=(56, 64), color=NO_COLOR, min_scale=0.2, max_scale=0.5,
                                            h_flip_prob=0.5, v_flip_prob=0.5), seed=3)
    for _ in range(4):
        out = augmentor(copy(clip))
        assert out["frames"].shape == (3, 3, 56, 64) and out["flow_forward"].shape == (2, 2, 56, 64)
        with_flow, without = warp_error(out)
        assert with_flow < 0.35 * without  # the flow still explains the motion after zoom/stretch/flip/crop
        assert with_flow < base_error + 0.03


def test_horizontal_flip_negates_u_exactly():
    clip = synthetic_clip()
    # crop + 8 fits the 72x88 clip, so there is no zoom: only the flip and a random crop
    config = AugmentConfig(crop=(64, 80), color=NO_COLOR, spatial_prob=0.0, stretch_prob=0.0, min_scale=0.0,
                           max_scale=0.0, h_flip_prob=1.0, v_flip_prob=0.0)
    out = ClipAugmentor(config, seed=0)(copy(clip))
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
    # asymmetric jitter: each frame its own draw
    per_frame = ClipAugmentor(replace_config(config, asymmetric_color_prob=1.0), seed=1)(clip)["frames"]
    assert not torch.allclose(per_frame[0], per_frame[1], atol=1e-3)


def replace_config(config: AugmentConfig, **changes) -> AugmentConfig:
    from dataclasses import replace

    return replace(config, **changes)


def test_color_jitter_matches_reference_operations():
    kornia = pytest.importorskip("kornia")
    torch.manual_seed(0)
    img = torch.rand(2, 3, 12, 14)
    for shift in (-0.4, -0.1, 0.05, 0.3):
        # kornia's hue is an angle in radians: an independent implementation of the same rotation
        torch.testing.assert_close(adjust_hue(img, shift), kornia.enhance.adjust_hue(img, shift * 2 * np.pi),
                                   atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(adjust_hue(img, 0.0), img, atol=2e-6, rtol=0)
    # brightness only: every pixel scaled by one factor in [0.7, 1.3] (then clipped)
    out = color_jitter(img * 0.5, (0.3, 0.0, 0.0, 0.0), torch.Generator().manual_seed(4))
    ratio = out / (img * 0.5)
    assert 0.7 <= ratio.min() and ratio.max() <= 1.3 and (ratio.max() - ratio.min()) < 1e-5


def test_augmentation_is_reproducible_from_its_generator():
    clip = synthetic_clip(seed=4)
    config = AugmentConfig(crop=(48, 56), min_scale=-0.2, max_scale=0.4)
    a = ClipAugmentor(config, seed=11)(copy(clip))
    torch.manual_seed(123)  # the global generator must not matter
    torch.rand(7)
    b = ClipAugmentor(config, seed=11)(copy(clip))
    c = ClipAugmentor(config)(copy(clip), generator=torch.Generator().manual_seed(11))
    d = ClipAugmentor(config, seed=12)(copy(clip))
    for key in a:
        assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key]), key
    assert not torch.equal(a["frames"], d["frames"])
    with pytest.raises(InvalidArgumentError, match="seed or a generator"):
        ClipAugmentor(config, seed=1, generator=torch.Generator())
    with pytest.raises(InvalidArgumentError, match="crop"):
        ClipAugmentor(AugmentConfig(crop=(0, 8)))


def test_resize_flow_scatters_sparse_pixels():
    flow = torch.zeros(1, 2, 4, 5)
    valid = torch.zeros(1, 4, 5)
    flow[0, :, 1, 2] = torch.tensor([1.5, -2.0])
    valid[0, 1, 2] = 1
    flow[0, :, 3, 3] = 1000.0  # an invalid pixel with garbage must not leak into its neighbours
    out_flow, out_valid = resize_flow(flow, valid, (8, 10))
    # pixel centre (x + 0.5) * 2 - 0.5 = (4.5, 2.5) rounds (half to even) to (4, 2)
    assert out_valid.sum() == 1 and out_valid[0, 2, 4] == 1
    torch.testing.assert_close(out_flow[0, :, 2, 4], torch.tensor([3.0, -4.0]))
    assert out_flow.abs().max() == 4.0
    # a fully valid frame is resized bilinearly (every output pixel valid, vectors scaled)
    dense, dense_valid = resize_flow(torch.ones(1, 2, 4, 5), torch.ones(1, 4, 5), (8, 15))
    assert dense_valid.all()
    torch.testing.assert_close(dense[0, 0], torch.full((8, 15), 3.0))
    torch.testing.assert_close(dense[0, 1], torch.full((8, 15), 2.0))


def test_sparse_flow_is_augmented_by_scattering():
    """KITTI-style ground truth: the augmented valid vectors are the zoomed original vectors at the
    zoomed positions (compared with the dense field under the same draw), never blends with invalid."""
    clip = synthetic_clip(seed=3, num_layers=0, max_speed=4.0)  # a smooth field: nearest ~ bilinear
    rng = np.random.default_rng(0)
    keep = torch.from_numpy(rng.random(clip["valid_forward"].shape) < 0.3).float()
    sparse = copy(clip)
    sparse["valid_forward"] = keep
    sparse["flow_forward"] = torch.where(keep[:, None] > 0, clip["flow_forward"], torch.full_like(clip["flow_forward"], 300.0))
    assert is_sparse(sparse) and not is_sparse(clip)
    config = AugmentConfig(crop=(64, 80), color=NO_COLOR, min_scale=0.5, max_scale=0.5, spatial_prob=1.0,
                           stretch_prob=1.0, max_stretch=0.2, h_flip_prob=0.5, v_flip_prob=0.5)
    for seed in range(3):
        dense_out = ClipAugmentor(config, seed=seed)(copy(clip))
        sparse_out = ClipAugmentor(config, seed=seed)(copy(sparse))
        torch.testing.assert_close(sparse_out["frames"], dense_out["frames"])
        valid = sparse_out["valid_forward"] > 0.5
        density = valid.float().mean().item()
        assert 0.3 / 2.0**1.4 * 0.7 < density < 0.3 / 2.0**0.6 * 1.3  # ~30 % spread over a 2^(1 +- 0.2)-times larger area
        diff = (sparse_out["flow_forward"] - dense_out["flow_forward"]).norm(dim=1)[valid]
        assert diff.max() < 0.1  # zoomed, flipped, cropped consistently; no 300-px garbage anywhere
        assert (sparse_out["flow_forward"].norm(dim=1)[~valid] == 0).all()
        with_flow, without = warp_error(sparse_out)
        assert with_flow < 0.35 * without


def test_sparse_preset_is_rafts():
    cfg = AugmentConfig.sparse((32, 48), -0.3, 0.5, flips=True)
    assert cfg.stretch_prob == 0 and cfg.v_flip_prob == 0 and cfg.h_flip_prob == 0.5
    assert cfg.crop_margin == (20, 50) and cfg.color[0] == 0.3
    assert AugmentConfig.sparse((32, 48)).h_flip_prob == 0


def test_eraser_fills_rectangles_of_target_frames_with_their_mean_colour():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 3, 40, 50)
    for _ in range(20):
        out = erase_rectangles(frames, (0, 2), 1.0, (5, 10), g)
        assert torch.equal(out[1], frames[1]) and not torch.equal(out[0], frames[0])
        for t in (0, 2):
            changed = (out[t] != frames[t]).any(0)
            mean = frames[t].mean(dim=(1, 2))
            # every changed pixel holds the frame's mean colour; 1-2 rectangles of sides 5..9
            torch.testing.assert_close(out[t][:, changed], mean[:, None].expand(3, int(changed.sum())))
            assert 0 < int(changed.sum()) <= 2 * 9 * 9
            rows, cols = changed.any(1).nonzero()[:, 0], changed.any(0).nonzero()[:, 0]
            assert rows.max() - rows.min() < 40 and cols.max() - cols.min() < 50
    assert torch.equal(erase_rectangles(frames, (0, 2), 0.0, (5, 10), g), frames)
    assert eraser_targets(2) == (1,) and eraser_targets(3) == (0, 2) and eraser_targets(5) == (0, 4)


def test_augmentor_eraser_leaves_the_reference_frame_and_the_flow_alone():
    clip = synthetic_clip(frames=3, height=72, width=88)
    config = AugmentConfig(**{**AugmentConfig.crop_only((64, 80)).__dict__, "eraser_prob": 1.0, "eraser_bounds": (20, 30)})
    erased = ClipAugmentor(config, seed=4)(copy(clip))
    # locate the crop through the (untouched) flow, then compare frame by frame
    origins = [(y, x) for y in range(9) for x in range(9)
               if torch.equal(erased["flow_forward"], clip["flow_forward"][..., y:y + 64, x:x + 80])]
    assert len(origins) == 1
    y, x = origins[0]
    crop = clip["frames"][..., y:y + 64, x:x + 80]
    assert torch.equal(erased["frames"][1], crop[1])  # the reference frame is never erased
    touched = 0
    for t in (0, 2):
        changed = (erased["frames"][t] != crop[t]).any(0)
        mean = clip["frames"][t].mean(dim=(1, 2))  # the mean colour of the whole frame, before cropping
        torch.testing.assert_close(erased["frames"][t][:, changed], mean[:, None].expand(3, int(changed.sum())))
        touched += int(changed.sum())
    assert touched >= 20 * 20 // 4
    with pytest.raises(InvalidArgumentError, match="eraser_bounds"):
        AugmentConfig(crop=(8, 8), eraser_bounds=(10, 5)).validate()
    with pytest.raises(InvalidArgumentError, match="eraser_prob"):
        AugmentConfig(crop=(8, 8), eraser_prob=1.5).validate()


def test_sync_batchnorm_only_for_several_cuda_processes():
    model = motion.create("videoflow-bof", device="cpu", encoder="basic")  # the context encoder uses BatchNorm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # RAFT's residual blocks register their third norm twice (also inside ``downsample``): count paths
    count = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for _, m in model.named_modules(remove_duplicate=False))
    for world_size, device, enabled in ((1, "cuda", True), (2, "cpu", True), (2, "cuda", False)):
        assert sync_batchnorm(model, world_size, torch.device(device), enabled) is model
        assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    converted = sync_batchnorm(model, 2, torch.device("cuda"))
    norms = [m for _, m in converted.named_modules(remove_duplicate=False) if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert count > 0 and len(norms) == count and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    after = converted.state_dict()
    assert list(after) == list(before)  # checkpoints keep their keys
    for key, value in before.items():
        assert torch.equal(after[key], value), key


# --------------------------------------------------------------------------- clips


def test_temporal_reversal_swaps_directions():
    seq = SyntheticClips(1, 4, 64, 64, seed=2)[0]
    clip = clip_from_item(seq)
    rev = reverse_clip(clip)
    torch.testing.assert_close(rev["frames"], clip["frames"].flip(0))
    # forward flow t -> t+1 of the reversed clip is the backward flow of original frames (T-1-t) -> (T-2-t)
    torch.testing.assert_close(rev["flow_forward"][0], torch.as_tensor(seq["flow_backward"][2]))
    torch.testing.assert_close(rev["flow_backward"][0], torch.as_tensor(seq["flow_forward"][2]))


def test_clip_dataset_draws_are_seeded_per_sample_and_epoch():
    base = SyntheticClips(3, 3, 48, 56, seed=0, num_layers=1)
    data = ClipDataset(base, TrainConfig(crop=(32, 40), reverse_prob=0.5, seed=5))
    first = [data[i] for i in range(3)]
    torch.rand(3)  # neither the global generator nor the order of reads matters
    again = [data[i] for i in (2, 1, 0)][::-1]
    for a, b in zip(first, again):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert first[0]["frames"].shape == (3, 3, 32, 40) and first[0]["flow_backward"].shape == (2, 2, 32, 40)
    data.set_epoch(1)
    assert not torch.equal(data[0]["frames"], first[0]["frames"])
    plain = ClipDataset(base, TrainConfig(crop=(32, 40), augment=False, reverse_prob=0.0))[1]
    frames = clip_from_item(base[1])["frames"]
    assert any(torch.equal(plain["frames"], frames[..., y:y + 32, x:x + 40]) for y in range(17) for x in range(17))


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


# --------------------------------------------------------------------------- the loop


def test_overfitting_one_clip_lowers_the_loss_writes_outputs_and_resumes(tmp_path, one_thread):
    torch.manual_seed(0)
    model = motion.create("videoflow-mof", device="cpu", encoder="basic", iters=2)
    clip = SyntheticClips(1, 3, 64, 64, seed=5, num_layers=1, max_speed=3.0)
    config = TrainConfig(steps=8, batch_size=1, lr=5e-4, iters=2, crop=(64, 64), augment=False,
                         reverse_prob=0.0, log_every=1, checkpoint_every=8, progress=False)
    result = train(model, clip, config, out_dir=tmp_path)
    losses = [h["loss"] for h in result.history]
    epes = [h["epe"] for h in result.history]
    assert result.step == 8 and losses == result.losses
    assert len(losses) == 8 and np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2])
    assert np.mean(epes[-2:]) < np.mean(epes[:2])
    # outputs: checkpoints, CSV log, resolved config, a model motion.create loads, preview
    assert result.checkpoint == tmp_path / "checkpoints" / "step_0000008.pt" and result.checkpoint.is_file()
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["step"] == 8
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert json.loads((tmp_path / "train_config.json").read_text())["model"] == "videoflow-mof"
    reloaded = motion.create("videoflow-mof", weights=tmp_path / "model_final.pth", device="cpu", encoder="basic")
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    assert (tmp_path / "preview.png").is_file()
    # a finished run resumes to nothing new; its history comes back from the checkpoint
    again = train(motion.create("videoflow-mof", device="cpu", encoder="basic", iters=2), clip, config, out_dir=tmp_path)
    assert again.step == 8 and again.losses == [] and [h["step"] for h in again.history] == list(range(1, 9))
    for key, value in model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key
    # the schedule depends on steps: a checkpoint of another configuration is refused
    with pytest.raises(CheckpointError, match="other settings"):
        train(motion.create("videoflow-mof", device="cpu", encoder="basic"), clip,
              TrainConfig(**{**config.__dict__, "steps": 9}), out_dir=tmp_path)


def test_loop_rejects_bad_settings():
    model = motion.create("tiny-flow", device="cpu")
    data = SyntheticClips(2, 2, 16, 16)
    with pytest.raises(InvalidArgumentError, match="too few"):
        train(model, data, TrainConfig(steps=1, batch_size=4, crop=(16, 16), progress=False))
    with pytest.raises(InvalidArgumentError, match="gamma"):
        train(model, data, TrainConfig(steps=1, gamma=1.5))
    with pytest.raises(InvalidArgumentError, match="amp needs a CUDA"):
        train(model, data, TrainConfig(steps=1, batch_size=1, crop=(16, 16), amp=True, progress=False), device="cpu")


def test_clip_loss_uses_the_models_own_loss_when_it_has_one():
    """SplatFlow / StreamFlow define ``loss``; the trainer must use it instead of the generic one."""
    from motion.models.tiny import TinyFlow
    from motion.training import SupervisedStep, clip_loss

    calls = []

    class TinyWithLoss(TinyFlow):
        def loss(self, predictions, batch, gamma=0.8, max_flow=400.0):
            calls.append((len(predictions), tuple(batch["flow_forward"].shape), gamma))
            return (predictions[-1] - batch["flow_forward"]).abs().mean() * 0 + 7.0, {"own": 1.0}

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


# --------------------------------------------------------------------------- model capabilities


def reference_sequence_loss(predictions, target, valid, gamma, max_flow=400.0) -> float:
    """RAFT's loss written out: sum_i gamma^(N-1-i) * mean over all pixels and channels of valid * |p_i - gt|."""
    mask = (valid > 0.5) & (target.norm(dim=-3) < max_flow)
    n = len(predictions)
    return sum(gamma ** (n - 1 - i) * (mask[..., None, :, :] * (p - target).abs()).mean().item()
               for i, p in enumerate(predictions))


def flow_batch(b: int, t: int, h: int, w: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "frames": torch.rand(b, t, 3, h, w, generator=g),
        "flow_forward": 3 * torch.randn(b, t - 1, 2, h, w, generator=g),
        "flow_backward": 3 * torch.randn(b, t - 1, 2, h, w, generator=g),
        "valid_forward": (torch.rand(b, t - 1, h, w, generator=g) > 0.3).float(),
        "valid_backward": (torch.rand(b, t - 1, h, w, generator=g) > 0.3).float(),
    }


def test_default_training_capabilities_score_the_matching_targets():
    from motion.models.tiny import TinyFlow

    torch.manual_seed(0)
    model = TinyFlow().train()
    batch = flow_batch(2, 3, 16, 24)
    predictions = model.training_predictions(batch["frames"], iters=5)  # TinyFlow runs its own 2 iterations
    expected = model(batch["frames"]).forward_iterations
    assert len(predictions) == len(expected) == 2
    for p, e in zip(predictions, expected):
        torch.testing.assert_close(p, e, rtol=0, atol=0)
    loss, metrics = model.loss(predictions, batch, gamma=0.85)
    assert loss.item() == pytest.approx(reference_sequence_loss(predictions, batch["flow_forward"], batch["valid_forward"], 0.85), rel=1e-5)
    assert set(metrics) == {"epe", "1px", "3px", "5px"}
    # predictions of both directions ([B, 2(T-1), ...]) are scored against forward then backward ground truth
    both = [torch.cat([p, -p], dim=1).detach() for p in predictions]
    target = torch.cat([batch["flow_forward"], batch["flow_backward"]], dim=1)
    valid = torch.cat([batch["valid_forward"], batch["valid_backward"]], dim=1)
    assert model.loss(both, batch, gamma=0.8)[0].item() == pytest.approx(reference_sequence_loss(both, target, valid, 0.8), rel=1e-5)
    # no masks: every pixel counts
    plain = {"flow_forward": batch["flow_forward"]}
    ones = torch.ones_like(batch["valid_forward"])
    assert model.loss(predictions, plain)[0].item() == pytest.approx(reference_sequence_loss(predictions, plain["flow_forward"], ones, 0.8), rel=1e-5)


def test_videoflow_trains_on_its_interior_frames():
    torch.manual_seed(0)
    model = motion.create("videoflow-mof", device="cpu", encoder="basic", iters=2).train()
    batch = flow_batch(1, 4, 64, 64, seed=1)
    predictions = model.training_predictions(batch["frames"], iters=2)
    interior = model.interior_flows(batch["frames"], iters=2, all_iterations=True)
    assert len(predictions) == 2 and predictions[-1].shape == (1, 4, 2, 64, 64)  # 2 interior frames x 2 directions
    torch.testing.assert_close(predictions[-1], torch.cat([interior.forward, interior.backward], dim=1))
    # interior frames 1..N-2: forward pairs 1..N-2 and backward pairs 0..N-3 of the clip
    exact = [torch.cat([batch["flow_forward"][:, 1:], batch["flow_backward"][:, :-1]], dim=1)]
    assert model.loss(exact, batch)[0].item() == 0.0
    target = exact[0]
    valid = torch.cat([batch["valid_forward"][:, 1:], batch["valid_backward"][:, :-1]], dim=1)
    loss, _ = model.loss(predictions, batch, gamma=0.85)
    assert loss.item() == pytest.approx(reference_sequence_loss(predictions, target, valid, 0.85), rel=1e-5)


def test_training_needs_a_flow_model():
    from motion.training import SupervisedStep

    with pytest.raises(InvalidArgumentError, match="FlowModel"):
        SupervisedStep(torch.nn.Linear(2, 2), iters=1)


def test_recipes_give_each_models_stage_settings():
    from motion.training.recipes import recipe_for, stage_settings

    mof = recipe_for("videoflow-mof", "things")
    assert isinstance(mof, TrainConfig)
    assert (mof.steps, mof.lr, mof.iters, mof.amp, mof.gamma, mof.crop) == (125_000, 2.5e-4, 6, "auto", 0.8, (432, 960))
    splat = recipe_for("splatflow", "sintel")
    assert (splat.batch_size, splat.crop, splat.gamma, splat.weight_decay, splat.lr) == (6, (368, 768), 0.8, 1e-5, 1.25e-4)
    bof = recipe_for("videoflow-bof", "kitti")
    assert (bof.steps, bof.gamma, bof.iters, bof.amp) == (80_000, 0.85, 12, False)  # iters: TrainConfig's default
    assert stage_settings("videoflow-bof", "kitti")["augment_ranges"] == {"kitti": (-0.2, 0.4, False)}
    assert stage_settings("streamflow", "sintel")["mixture"] == "100*sintel_clean+100*sintel_final+50*kitti+5*hd1k+things"
    with pytest.raises(InvalidArgumentError, match="stage"):
        recipe_for("videoflow-bof", "spring")


def test_flow_samples_convert_to_clips_like_their_tensors():
    """The one converter takes a reader's FlowSample: the same numbers as FlowSample.to_tensors, pairs
    without ground truth masked out, missing backward ground truth all invalid; reversing the sample and
    reversing its clip agree."""
    from motion.data.base import FlowSample

    rng = np.random.default_rng(0)
    t, h, w = 4, 6, 7
    valid = rng.random((t - 1, h, w)) < 0.7
    valid[1] = False
    sample = FlowSample(frames=rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
                        flow=rng.normal(size=(t - 1, h, w, 2)).astype(np.float32), valid=valid,
                        has_flow=np.array([True, False, True]), target=1, dataset="fake", sequence="s",
                        frame_ids=tuple(range(t)), image_paths=tuple(f"{i}.png" for i in range(t)))
    clip = clip_from_item(sample)
    tensors = sample.to_tensors()
    torch.testing.assert_close(clip["frames"], tensors["frames"], rtol=0, atol=0)
    torch.testing.assert_close(clip["flow_forward"], tensors["flow"], rtol=0, atol=0)
    assert torch.equal(clip["valid_forward"], (tensors["valid"] & tensors["has_flow"][:, None, None]).float())
    assert clip["valid_backward"].sum() == 0 and clip["flow_backward"].abs().sum() == 0
    with pytest.raises(InvalidArgumentError, match="frames"):
        clip_from_item({"flow_forward": np.zeros((1, 2, 4, 4))})

    backward = rng.normal(size=(t - 1, h, w, 2)).astype(np.float32)
    with_backward = FlowSample(**{**sample.__dict__, "flow_backward": backward, "valid_backward": np.ones((t - 1, h, w), bool),
                                  "has_flow_backward": np.array([True, True, False])})
    reversed_clip = reverse_clip(clip_from_item(with_backward))
    from_reversed = clip_from_item(with_backward.reversed())
    for key in reversed_clip:
        assert torch.equal(reversed_clip[key], from_reversed[key]), key
    torch.testing.assert_close(reversed_clip["flow_forward"][0], torch.from_numpy(backward[2]).permute(2, 0, 1))
    assert reversed_clip["valid_forward"][0].sum() == 0  # original backward pair 2 has no ground truth
