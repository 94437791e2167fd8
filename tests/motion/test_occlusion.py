"""Occlusion masks and confidence maps from the forward-backward check (issue #19): one definition for
dense maps, model outputs, written files and point tracks, checked against exact occlusion masks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

import motion
from motion.estimate import estimate_flow
from motion.flow_geometry import FB_ALPHA, FB_BETA, forward_backward_occlusion
from motion.image_io import read_image
from motion.synthetic import make_sequence
from motion.tracking import ChainOptions, chain_flows, grid_queries
from motion4d.errors import ShapeError


def _reference(forward: np.ndarray, backward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The check written out with scipy's bilinear sampling (edge values outside): ``[2, H, W]`` flows."""
    h, w = forward.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    tx, ty = xs + forward[0], ys + forward[1]
    sampled = np.stack([map_coordinates(backward[c].astype(np.float64), [ty, tx], order=1, mode="nearest")
                        for c in range(2)])
    error = ((forward + sampled) ** 2).sum(0)
    tolerance = FB_ALPHA * ((forward ** 2).sum(0) + (sampled ** 2).sum(0)) + FB_BETA
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return ~((error <= tolerance) & inside), np.where(inside, np.exp(-0.5 * error / tolerance), 0.0)


def _f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    tp, fp, fn = (predicted & truth).sum(), (predicted & ~truth).sum(), (~predicted & truth).sum()
    return 2 * tp / max(2 * tp + fp + fn, 1)


def test_dense_check_matches_an_independent_reference():
    rng = np.random.default_rng(3)
    h, w = 40, 56
    smooth = lambda s: cv2.GaussianBlur(rng.normal(0, s, (h, w)).astype(np.float32), (0, 0), 4) * 6  # noqa: E731
    forward = np.stack([smooth(2.0) + 1.5, smooth(2.0) - 0.5])
    backward = -forward + np.stack([smooth(0.6), smooth(0.6)])  # a near-inverse with errors of about a pixel
    occluded, confidence = forward_backward_occlusion(torch.from_numpy(forward), torch.from_numpy(backward))
    ref_occ, ref_conf = _reference(forward, backward)
    assert occluded.shape == (h, w) and occluded.dtype == torch.bool
    assert 0.05 < ref_occ.mean() < 0.95  # both verdicts occur
    assert (occluded.numpy() != ref_occ).mean() < 1e-3  # float32 vs float64 at the threshold only
    assert np.allclose(confidence.numpy(), ref_conf, atol=1e-4)
    batched = forward_backward_occlusion(torch.from_numpy(forward)[None, None].repeat(2, 3, 1, 1, 1),
                                         torch.from_numpy(backward)[None, None].repeat(2, 3, 1, 1, 1))
    assert batched[0].shape == (2, 3, h, w) and torch.equal(batched[0][1, 2], occluded)
    with pytest.raises(ShapeError):
        forward_backward_occlusion(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))


def test_exact_flows_find_the_exact_occlusions():
    """On exact flows the check finds make_sequence's analytic masks (bilinear sampling blurs layer edges)."""
    seq = make_sequence(T=4, height=96, width=128, num_layers=2, seed=21)
    occluded, confidence = forward_backward_occlusion(torch.from_numpy(seq.flow_forward),
                                                      torch.from_numpy(seq.flow_backward))
    assert _f1(occluded.numpy(), seq.occlusion) > 0.85
    assert confidence[~occluded].mean() > 0.95 and confidence[torch.from_numpy(seq.occlusion)].mean() < 0.4


@pytest.mark.parametrize("model, minimum", [("dis", 0.5), ("farneback", 0.4)])
def test_estimated_occlusion_beats_chance_on_exact_masks(model, minimum):
    """Synthetic layers and real photographs with pasted real patches (exact masks); the F1 the
    bench reports comes from other seeds."""
    from motion.sample_data import photograph

    sequences = [make_sequence(T=3, height=120, width=160, num_layers=2, seed=31, max_speed=4.0),
                 make_sequence(T=3, height=120, width=160, num_layers=2, seed=32, max_speed=4.0,
                               textures=[photograph("chelsea"), photograph("coffee"), photograph("rocket")])]
    for seq in sequences:
        result = estimate_flow(seq.frames, model, occlusion=True, progress=False)
        chance = 2 * seq.occlusion.mean() / (1 + seq.occlusion.mean())
        assert _f1(result.occlusion.numpy(), seq.occlusion) > max(minimum, 3 * chance)


def test_models_give_occlusion_from_their_own_backward_flow():
    seq = make_sequence(T=3, height=64, width=80, seed=4)
    out = motion.create("dis-fast", device="cpu")(seq.frames, occlusion=True)
    both = motion.create("dis-fast", device="cpu", backward=True)(seq.frames)
    assert torch.equal(out.backward, both.backward)  # the time-reversed run gives the same backward flow
    occ, conf = forward_backward_occlusion(both.forward, both.backward)
    assert torch.equal(out.occlusion, occ) and torch.equal(out.confidence, conf)
    back_occ, _ = forward_backward_occlusion(both.backward, both.forward)
    assert torch.equal(out.backward_occlusion, back_occ) and out.occlusion.shape == (1, 2, 64, 80)
    net = motion.create("tiny-flow", device="cpu")
    tiny = net(seq.frames, occlusion=True)
    assert tiny.occlusion.shape == (1, 2, 64, 80) and tiny.confidence.dtype == torch.float32
    assert net(seq.frames).occlusion is None


def test_occlusion_and_confidence_files(tmp_path):
    seq = make_sequence(T=5, height=64, width=80, seed=9, num_layers=2)
    held = estimate_flow(seq.frames, "dis", backward=True, occlusion=True, progress=False)
    out = tmp_path / "out"
    stored = estimate_flow(seq.frames, "dis", backward=True, out_dir=out, formats=("flo", "occ", "conf"),
                           progress=False)
    assert stored.config["occlusion"] is True
    for k, index in enumerate(stored.frame_indices[:-1]):
        mask = cv2.imread(str(out / "forward_occlusion" / f"{index:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == (64, 80) and set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask == 255, held.occlusion[k].numpy())
        assert np.array_equal(np.load(out / "forward_confidence" / f"{index:06d}.npy"), held.confidence[k].numpy())
        assert np.array_equal(read_image(out / "backward_occlusion" / f"{index:06d}.png")[..., 0] == 255,
                              held.backward_occlusion[k].numpy())
    assert torch.equal(stored.occlusion[1], held.occlusion[1]) and torch.equal(stored.confidence[:], held.confidence)
    assert torch.equal(stored.backward_confidence[2], held.backward_confidence[2])
    (out / "forward_confidence" / "000002.npy").unlink()  # a pair to redo; the others are read back
    again = estimate_flow(seq.frames, "dis", backward=True, out_dir=out, formats=("flo", "occ", "conf"),
                          keep_in_memory=True, progress=False)
    assert (again.computed, again.skipped) == (1, 3)
    for name in ("occlusion", "confidence", "backward_occlusion", "backward_confidence"):
        assert torch.equal(getattr(again, name), getattr(held, name)), name


def test_tracks_carry_the_same_check_as_the_maps():
    """A query on a pixel centre is visible after one step exactly where the dense mask says the
    pixel is not occluded, with the map's confidence."""
    seq = make_sequence(T=2, height=64, width=80, seed=12, num_layers=2)
    out = motion.create("dis", device="cpu")(seq.frames, occlusion=True)
    queries = grid_queries(64, 80, 3)
    queries[:, 1:] = np.round(queries[:, 1:])  # pixel centres
    xy, visible, confidence = chain_flows(out.forward[0], out.backward[0], queries,
                                          ChainOptions(max_occluded=10))
    x, y = queries[:, 1].astype(int), queries[:, 2].astype(int)
    assert np.array_equal(visible[1], ~out.occlusion[0, 0].numpy()[y, x])
    assert np.allclose(confidence[1], out.confidence[0, 0].numpy()[y, x], atol=1e-6)
    assert 0 < visible[1].mean() < 1
