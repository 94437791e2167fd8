"""Scene-flow readers on miniature trees in the exact layouts of the real releases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from motion4d.errors import InputFileError, InvalidArgumentError, MissingFileError, NonFiniteError, ShapeError
from pointclouds.data import (
    DATASETS,
    FT3DSubset,
    KITTIFlowNet3D,
    KITTISubset,
    NpzSceneFlow,
    SceneFlowSample,
    collate,
    dataset_splits,
    flot_validation_indices,
    open_dataset,
)

from .fake_datasets import write_ft3d_s, write_generic, write_kitti_o, write_kitti_s


# ------------------------------------------------------------------------------------ FT3D_s
def test_ft3d_s_axes_depth_cut_and_flow(tmp_path):
    root = write_ft3d_s(tmp_path / "ft3d", num_train=12, num_test=3)
    ds = FT3DSubset(root, "test", num_points=None)
    assert len(ds) == 3
    sample = ds[0]
    stored1 = np.load(root / "val" / "0000000" / "pc1.npy")
    stored2 = np.load(root / "val" / "0000000" / "pc2.npy")
    opencv1, opencv2 = stored1 * [-1, 1, -1], stored2 * [-1, 1, -1]
    near = (opencv1[:, 2] < 35) & (opencv2[:, 2] < 35)
    assert 0 < near.sum() < len(near)
    np.testing.assert_allclose(sample.source, opencv1[near], atol=1e-6)
    np.testing.assert_allclose(sample.target, opencv2[near], atol=1e-6)
    np.testing.assert_allclose(sample.flow, (opencv2 - opencv1)[near], atol=1e-5)
    assert sample.mask.all() and sample.name == "val/0000000"


def test_ft3d_s_splits(tmp_path):
    root = write_ft3d_s(tmp_path / "ft3d", num_train=12, num_test=2, n=40)
    train, val = FT3DSubset(root, "train"), FT3DSubset(root, "val")
    full = FT3DSubset(root, "train_all")
    assert len(full) == 12 and len(train) + len(val) == 12
    assert {s.name for s in train.scenes}.isdisjoint({s.name for s in val.scenes})
    assert flot_validation_indices(19640).tolist() == np.linspace(0, 19639, 2000).astype(int).tolist()
    with pytest.raises(InputFileError, match="expected 3824"):
        FT3DSubset(root, "test", strict=True)
    with pytest.raises(InvalidArgumentError):
        FT3DSubset(root, "validation")


def test_subsampling_is_independent_and_deterministic(tmp_path):
    root = write_ft3d_s(tmp_path / "ft3d", num_train=1, num_test=1, n=500)
    full = FT3DSubset(root, "test", num_points=None)[0]
    ds = FT3DSubset(root, "test", num_points=64, sampling="deterministic", seed=3)
    a, b = ds[0], ds[0]
    assert len(a.source) == 64 and len(a.target) == 64
    np.testing.assert_array_equal(a.source, b.source)
    np.testing.assert_array_equal(a.target, b.target)
    # the flow still belongs to the sampled source points
    lookup = {tuple(p): f for p, f in zip(full.source, full.flow)}
    for p, f in zip(a.source, a.flow):
        np.testing.assert_array_equal(lookup[tuple(p)], f)
    # target drawn independently: it is not simply source + flow
    assert not np.allclose(a.source + a.flow, a.target)
    rnd = FT3DSubset(root, "test", num_points=64, sampling="random")
    assert not np.array_equal(rnd[0].source, rnd[0].source)
    few = FT3DSubset(root, "test", num_points=5000, fewer="keep")[0]
    assert len(few.source) == len(full.source)
    padded = FT3DSubset(root, "test", num_points=5000, fewer="pad")[0]
    assert len(padded.source) == 5000 and len(padded.target) == 5000


# ------------------------------------------------------------------------------------ KITTI_s
def test_kitti_s_mapping_ground_depth_and_axes(tmp_path):
    root = write_kitti_s(tmp_path / "kitti", num_scenes=6)
    ds = KITTISubset(root, num_points=None)
    assert [s.name for s in ds.scenes] == ["000000", "000002", "000004"]
    sample = ds[1]
    pc1 = np.load(root / "000002" / "pc1.npy")
    pc2 = np.load(root / "000002" / "pc2.npy")
    keep = ~((pc1[:, 1] < -1.4) & (pc2[:, 1] < -1.4))
    keep &= (pc1[:, 2] < 35) & (pc2[:, 2] < 35)
    np.testing.assert_allclose(sample.source, pc1[keep])
    np.testing.assert_allclose(sample.flow, (pc2 - pc1)[keep], atol=1e-6)
    assert (sample.source[:, 1] >= -1.4).any() and len(sample.source) < len(pc1)
    cv = KITTISubset(root, num_points=None, opencv_axes=True)[1]
    np.testing.assert_allclose(cv.source, sample.source * [-1, -1, 1])
    np.testing.assert_allclose(cv.flow, sample.flow * [-1, -1, 1], atol=1e-6)
    no_ground = KITTISubset(root, num_points=None, remove_ground=False, max_depth=None)[1]
    assert len(no_ground.source) == len(pc1)


def test_kitti_s_without_mapping_uses_all_and_bad_mapping(tmp_path):
    root = write_kitti_s(tmp_path / "kitti", num_scenes=4, mapping=False)
    assert len(KITTISubset(root)) == 4
    with pytest.raises(InputFileError, match="mapping_file"):
        KITTISubset(root, mapping_file=tmp_path / "nope.txt")


# ------------------------------------------------------------------------------------ KITTI_o
def test_kitti_o_axes_order_and_independent_depth_cuts(tmp_path):
    root = write_kitti_o(tmp_path / "kitti_rm_ground", indices=(0, 1, 2, 5))
    ds = KITTIFlowNet3D(root, "all", num_points=None)
    assert len(ds) == 4
    with np.load(root / "000001.npz") as raw:
        pos1, pos2, gt = raw["pos1"][:, (1, 2, 0)], raw["pos2"][:, (1, 2, 0)], raw["gt"][:, (1, 2, 0)]
    sample = ds[1]
    np.testing.assert_array_equal(sample.source, pos1[pos1[:, 2] < 35])
    np.testing.assert_array_equal(sample.flow, gt[pos1[:, 2] < 35])
    np.testing.assert_array_equal(sample.target, pos2[pos2[:, 2] < 35])
    assert len(sample.target) != len(sample.source)
    assert [f.stem for f in KITTIFlowNet3D(root, "test").files] == ["000001", "000005"]  # KITTI_t
    assert [f.stem for f in KITTIFlowNet3D(root, "train").files] == ["000000", "000002"]
    raw_ds = KITTIFlowNet3D(root, reorder_axes=False, max_depth=None, num_points=None)
    with np.load(root / "000001.npz") as raw:
        np.testing.assert_array_equal(raw_ds[1].source, raw["pos1"])


def test_kitti_o_bad_files(tmp_path):
    root = tmp_path / "k"
    root.mkdir()
    np.savez(root / "000000.npz", pos1=np.zeros((4, 3)), pos2=np.zeros((4, 3)))
    with pytest.raises(InputFileError, match="gt"):
        KITTIFlowNet3D(root)[0]
    np.savez(root / "000000.npz", pos1=np.zeros((4, 3)), pos2=np.zeros((4, 3)), gt=np.zeros((3, 3)))
    with pytest.raises(InputFileError, match="rows"):
        KITTIFlowNet3D(root)[0]
    (root / "000000.npz").write_bytes(b"garbage")
    with pytest.raises(InputFileError, match="000000.npz"):
        KITTIFlowNet3D(root)[0]
    with pytest.raises(MissingFileError):
        KITTIFlowNet3D(tmp_path / "missing")
    with pytest.raises(InputFileError, match="no .npz"):
        KITTIFlowNet3D(tmp_path)


# ------------------------------------------------------------------------------------ generic
def test_generic_npz_with_mask_keys_and_file_list(tmp_path):
    root = write_generic(tmp_path / "gen", count=3, n=200)
    ds = NpzSceneFlow(root, num_points=None)
    assert len(ds) == 3
    with np.load(root / "scene_001.npz") as raw:
        s = ds[1]
        np.testing.assert_array_equal(s.source, raw["pc1"])
        np.testing.assert_array_equal(s.mask, raw["mask"])
        assert len(s.target) == 205
    sub = NpzSceneFlow(sorted(root.glob("*.npz")), num_points=50)[0]
    assert len(sub.source) == 50 and sub.mask.shape == (50,)
    nomask = write_generic(tmp_path / "nomask", count=1, with_mask=False)
    assert NpzSceneFlow(nomask)[0].mask.all()
    renamed = tmp_path / "ft3d_o"
    renamed.mkdir()
    np.savez(
        renamed / "TEST_A_0000.npz",
        points1=np.ones((10, 3)),
        points2=np.ones((10, 3)),
        flow=np.zeros((10, 3)),
        valid_mask1=np.arange(10) % 2 == 0,
    )
    keys = {"source": "points1", "target": "points2", "mask": "valid_mask1"}
    assert NpzSceneFlow(renamed, keys=keys, pattern="TEST_*.npz")[0].mask.sum() == 5
    with pytest.raises(InvalidArgumentError):
        NpzSceneFlow(renamed, keys={"colour": "x"})
    with pytest.raises(MissingFileError):
        NpzSceneFlow([tmp_path / "absent.npz"])


def test_generic_rejects_non_finite_and_bad_shapes(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    pc = np.zeros((5, 3))
    pc[2, 2] = np.nan
    np.savez(root / "a.npz", pc1=pc, pc2=np.zeros((5, 3)), flow=np.zeros((5, 3)))
    with pytest.raises(NonFiniteError, match="a.npz"):
        NpzSceneFlow(root)[0]
    np.savez(root / "a.npz", pc1=np.zeros((5, 2)), pc2=np.zeros((5, 3)), flow=np.zeros((5, 3)))
    with pytest.raises(ShapeError, match="a.npz"):
        NpzSceneFlow(root)[0]


def test_sample_validation_and_torch():
    with pytest.raises(ShapeError):
        SceneFlowSample(np.zeros((4, 3)), np.zeros((2, 3)), np.zeros((3, 3)))
    s = SceneFlowSample(np.zeros((4, 3)), np.zeros((2, 3)), np.zeros((4, 3)), point_data={"labels": np.arange(4)})
    t = s.to_torch()
    assert t["source"].shape == (4, 3) and t["mask"].dtype.is_floating_point is False
    sub = s.subsample(2, np.random.default_rng(0))
    assert sub.point_data["labels"].shape == (2,)
    with pytest.raises(ShapeError):
        SceneFlowSample(np.zeros((4, 3)), np.zeros((2, 3)), np.zeros((4, 3)), point_data={"x": np.arange(3)})


def test_collate_pads_with_lengths(tmp_path):
    root = write_generic(tmp_path / "gen", count=2, n=30)
    ds = NpzSceneFlow(root, num_points=None)
    a = ds[0].subsample(20, np.random.default_rng(0))
    b = ds[1]
    batch = collate([a, b])
    assert batch["source"].shape == (2, 30, 3) and batch["target"].shape == (2, 35, 3)
    assert batch["source_lengths"].tolist() == [20, 30] and batch["target_lengths"].tolist() == [20, 35]
    np.testing.assert_array_equal(batch["flow"][0, :20].numpy(), a.flow)
    assert not batch["mask"][0, 20:].any() and batch["mask"].dtype == torch.bool
    np.testing.assert_array_equal(batch["mask"][1].numpy(), b.mask)
    with pytest.raises(InvalidArgumentError):
        collate([])


# ------------------------------------------------------------------------------------ by name
@pytest.mark.parametrize("name, write, reader, options", [
    ("ft3d_s", write_ft3d_s, FT3DSubset, {"split": "train", "num_points": 32, "seed": 5}),
    ("kitti_s", write_kitti_s, KITTISubset, {"num_points": 32, "sampling": "random", "fewer": "pad"}),
    ("kitti_o", write_kitti_o, KITTIFlowNet3D, {"split": "test", "num_points": None}),
    ("npz", write_generic, NpzSceneFlow, {"pattern": "*.npz", "num_points": 16}),
])
def test_open_dataset_by_name_equals_the_reader(tmp_path, name, write, reader, options):
    root = write(tmp_path / name)
    opened = open_dataset(name, root, **options)
    direct = reader(root, **options)
    assert type(opened) is reader and len(opened) == len(direct) > 0
    for i in range(len(direct)):
        a, b = opened[i], direct[i]
        np.testing.assert_array_equal(a.source, b.source)
        np.testing.assert_array_equal(a.target, b.target)
        np.testing.assert_array_equal(a.flow, b.flow)
    assert set(DATASETS) == {"ft3d_s", "kitti_s", "kitti_o", "npz"}


def test_open_dataset_rejects_unknown_names_and_options(tmp_path):
    root = write_kitti_s(tmp_path / "kitti_s")
    assert dataset_splits("ft3d_s") == FT3DSubset.SPLITS and dataset_splits("kitti_s") == ()
    with pytest.raises(InvalidArgumentError, match="dataset"):
        open_dataset("sintel", root)
    with pytest.raises(InvalidArgumentError, match="takes no option split"):
        open_dataset("kitti_s", root, split="test")
    with pytest.raises(MissingFileError):
        open_dataset("kitti_o", tmp_path / "missing")
