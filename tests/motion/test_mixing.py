"""motion.data.mixing: weighted mixtures, seeded per-sample crops, sparse-aware resizing."""
from __future__ import annotations

import numpy as np
import pytest

from motion.data import MpiSintel
from motion.data.mixing import (
    MixedDataset,
    RandomCrop,
    build_mixture,
    parse_mixture,
    resize_sample,
)
from motion4d.errors import InvalidArgumentError
from tests.motion.fake_datasets import write_hd1k, write_sintel, write_things


def test_parse_mixture():
    parts = parse_mixture("100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things")
    assert [(p.name, p.weight) for p in parts] == [("sintel_clean", 100), ("sintel_final", 100), ("kitti", 200),
                                                   ("hd1k", 5), ("things", 1)]
    for bad in ("", "3*nope", "2x*things", "things+things", "0*things"):
        with pytest.raises(InvalidArgumentError):
            parse_mixture(bad)


def test_weights_repeat_components_and_index_mapping(tmp_path):
    write_sintel(tmp_path / "Sintel", scenes={"alley_1": 4, "cave_2": 3})  # 5 pairs
    write_hd1k(tmp_path / "HD1K")  # 3 + 2 = 5 pairs
    mix = build_mixture("3*sintel_clean+2*hd1k", {"sintel": tmp_path / "Sintel", "hd1k": tmp_path / "HD1K"}, clip_length=2)
    assert len(mix) == 3 * 5 + 2 * 5
    sintel = MpiSintel(tmp_path / "Sintel", "training", "clean")
    for i in range(15):
        assert mix.locate(i) == (0, i % 5)
        np.testing.assert_array_equal(mix[i].frames, sintel[i % 5].frames)
    assert mix.locate(15) == (1, 0) and mix.locate(24) == (1, 4)
    assert mix[24].dataset == "hd1k"
    with pytest.raises(InvalidArgumentError, match="needs the things root"):
        build_mixture("things", {"sintel": tmp_path / "Sintel"})


def test_random_crop_is_consistent_and_seeded(tmp_path):
    gt = write_things(tmp_path / "Things", letters=("A",), cameras=("left",), size=(9, 13))
    mix = build_mixture("things", {"things": tmp_path / "Things"}, clip_length=3, transform=RandomCrop((5, 7)), seed=3)
    plain = build_mixture("things", {"things": tmp_path / "Things"}, clip_length=3)
    offsets = set()
    for i in range(len(mix)):
        crop, full = mix[i], plain[i]
        assert crop.frames.shape == (3, 5, 7, 3) and crop.flow.shape == (2, 5, 7, 2)
        assert crop.flow_backward.shape == (2, 5, 7, 2)
        # find the window in the first frame; every frame and flow must be cut at the same place
        hits = [(y, x) for y in range(5) for x in range(7)
                if np.array_equal(full.frames[0, y:y + 5, x:x + 7], crop.frames[0])]
        assert len(hits) == 1
        y, x = hits[0]
        offsets.add(hits[0])
        np.testing.assert_array_equal(full.frames[:, y:y + 5, x:x + 7], crop.frames)
        np.testing.assert_array_equal(full.flow[:, y:y + 5, x:x + 7], crop.flow)
        np.testing.assert_array_equal(full.flow_backward[:, y:y + 5, x:x + 7], crop.flow_backward)
        np.testing.assert_array_equal(mix[i].frames, crop.frames)  # same epoch -> same crop
    assert len(offsets) > 1
    before = [mix[i].frames for i in range(len(mix))]
    mix.set_epoch(1)
    assert any(not np.array_equal(a, mix[i].frames) for i, a in enumerate(before))
    assert gt["future"]  # the writer's ground truth exists


def test_resize_dense_and_sparse(tmp_path):
    write_sintel(tmp_path / "Sintel", scenes={"alley_1": 2}, size=(8, 10))
    sample = MpiSintel(tmp_path / "Sintel", "training", "clean")[0]
    sample.flow[:] = np.array([2.0, -1.0], np.float32)  # constant field: resizing only scales it
    big = resize_sample(sample, (16, 30))
    assert big.frames.shape == (2, 16, 30, 3)
    np.testing.assert_allclose(big.flow[0], np.broadcast_to(np.array([6.0, -2.0]), (16, 30, 2)), rtol=1e-6)
    assert big.valid.all() and big.occlusion.shape == (1, 16, 30)
    # sparse: a few valid pixels move to the nearest pixel of the new grid with scaled vectors
    sample.valid[:] = False
    sample.valid[0, 1, 2] = sample.valid[0, 5, 7] = True
    sample.flow[0, 1, 2] = (1.0, 1.0)
    sample.flow[0, 5, 7] = (-2.0, 4.0)
    sparse = resize_sample(sample, (16, 30))
    assert sparse.valid[0].sum() == 2
    np.testing.assert_allclose(sparse.flow[0, 2, 6], [3.0, 2.0])
    np.testing.assert_allclose(sparse.flow[0, 10, 21], [-6.0, 8.0])
    # a crop larger than the clip enlarges it first
    out = RandomCrop((12, 12))(sample, np.random.default_rng(0))
    assert out.frames.shape == (2, 12, 12, 3)


def test_mixture_rejects_different_clip_lengths(tmp_path):
    write_sintel(tmp_path / "Sintel", scenes={"alley_1": 4})
    a = MpiSintel(tmp_path / "Sintel", "training", "clean", clip_length=2)
    b = MpiSintel(tmp_path / "Sintel", "training", "final", clip_length=3)
    with pytest.raises(InvalidArgumentError, match="one length"):
        MixedDataset([("a", a, 1), ("b", b, 1)])
