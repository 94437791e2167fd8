"""Flow data-set readers on miniature trees in the real layouts, compared exactly with the truth written."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from motion.data import (
    HD1K,
    FlowSample,
    FlyingChairs,
    FlyingThings3D,
    Kitti2015,
    MpiSintel,
    SampleIndexError,
    collate_flow_samples,
    open_dataset,
)
from motion4d.errors import InputFileError, InvalidArgumentError, MissingFileError, ShapeError
from tests.motion.fake_datasets import (
    encode_image,
    write_chairs,
    write_hd1k,
    write_kitti,
    write_sintel,
    write_things,
)


def _check_structure(sample: FlowSample, length: int) -> None:
    t, h, w = length, *sample.size
    assert sample.frames.shape == (t, h, w, 3) and sample.frames.dtype == np.uint8
    assert sample.flow.shape == (t - 1, h, w, 2) and sample.flow.dtype == np.float32
    assert sample.valid.shape == (t - 1, h, w) and sample.valid.dtype == np.bool_
    assert sample.has_flow.shape == (t - 1,) and sample.has_flow.dtype == np.bool_
    assert len(sample.frame_ids) == t and len(sample.image_paths) == t
    assert np.all(sample.flow[~sample.valid] == 0)
    assert not sample.valid[~sample.has_flow].any()


# ---- MPI-Sintel ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sintel(tmp_path_factory):
    root = tmp_path_factory.mktemp("sintel") / "MPI-Sintel-complete"
    return root, write_sintel(root, scenes={"alley_1": 5, "cave_2": 3}, test_scenes={"ambush_1": 3})


def _expected_sintel(gt, pass_name, sample):
    """Independent expectation for one sample from the written truth and its frame ids."""
    frames = gt["frames"]["training"][pass_name][sample.sequence]
    for j, fid in enumerate(sample.frame_ids):
        np.testing.assert_array_equal(sample.frames[j], frames[fid - 1])
    for t in range(len(sample.frame_ids) - 1):
        a, b = sample.frame_ids[t], sample.frame_ids[t + 1]
        assert sample.has_flow[t] == (b == a + 1)
        if b == a + 1:
            np.testing.assert_array_equal(sample.flow[t], gt["flow"][sample.sequence][a - 1])
            assert sample.valid[t].all()
            np.testing.assert_array_equal(sample.occlusion[t], gt["occlusion"][sample.sequence][a - 1])
            np.testing.assert_array_equal(sample.extras["invalid"][t], gt["invalid"][sample.sequence][a - 1])
        else:
            assert not sample.occlusion[t].any()


def test_sintel_pairs_match_ground_truth(sintel):
    root, gt = sintel
    ds = MpiSintel(root, "training", "final")
    assert len(ds) == 4 + 2 and ds.sequences == ["alley_1", "cave_2"]
    for k in range(len(ds)):
        sample = ds[k]
        _check_structure(sample, 2)
        assert sample.target == 0 and sample.dataset == "sintel" and sample.has_flow.all()
        _expected_sintel(gt, "final", sample)
    assert ds[0].frame_ids == (1, 2) and ds[3].frame_ids == (4, 5) and ds[4].sequence == "cave_2"
    assert ds[-1].frame_ids == (2, 3)
    assert ds[0].image_paths[0].endswith("final/alley_1/frame_0001.png")
    assert "sintel training/final: 2 sequences, 8 frames, 6 pairs with ground truth, 6 samples" in ds.summary()


@pytest.mark.parametrize("boundary", ["replicate", "shift", "drop"])
@pytest.mark.parametrize("length", [3, 4, 6])
def test_sintel_clips_every_target_and_boundary(sintel, boundary, length):
    root, gt = sintel
    for target in range(length - 1):
        try:
            ds = MpiSintel(root, "training", "clean", clip_length=length, target=target, boundary=boundary)
        except InvalidArgumentError:
            assert boundary == "drop" and length == 6  # no window of 6 fits in 5 frames
            continue
        anchors = []
        for sample in ds:
            _check_structure(sample, length)
            _expected_sintel(gt, "clean", sample)
            t = sample.target
            assert sample.has_flow[t] and sample.frame_ids[t + 1] == sample.frame_ids[t] + 1
            anchors.append((sample.sequence, sample.frame_ids[t]))
            if boundary == "replicate":
                assert t == target
            n = 5 if sample.sequence == "alley_1" else 3
            if boundary in ("shift", "drop") and n >= length:
                assert list(sample.frame_ids) == list(range(sample.frame_ids[0], sample.frame_ids[0] + length))
        every = [("alley_1", i) for i in range(1, 5)] + [("cave_2", i) for i in range(1, 3)]
        if boundary == "drop":
            expected = [(s, i) for s, i in every if i - target >= 1 and i - target + length - 1 <= (5 if s == "alley_1" else 3)]
            assert anchors == expected
        else:
            assert anchors == every


def test_sintel_replicate_repeats_the_first_frame_like_videoflow(sintel):
    root, _ = sintel
    ds = MpiSintel(root, clip_length=5, target=2)
    first = ds[0]
    assert first.frame_ids == (1, 1, 1, 2, 3) and first.has_flow.tolist() == [False, False, True, True]
    shifted = MpiSintel(root, clip_length=4, target=2, boundary="shift")[3]  # alley_1 pair 4 -> 5
    assert shifted.frame_ids == (2, 3, 4, 5) and shifted.target == 2
    shifted = MpiSintel(root, clip_length=4, target=0, boundary="shift")[3]
    assert shifted.frame_ids == (2, 3, 4, 5) and shifted.target == 2


def test_sintel_test_split_has_no_ground_truth(sintel):
    root, gt = sintel
    ds = MpiSintel(root, "test", "clean", clip_length=3)
    assert len(ds) == 2 and ds.sequences == ["ambush_1"]
    assert ds[0].frame_ids == (1, 1, 2)
    sample = ds[1]
    assert sample.frame_ids == (1, 2, 3) and not sample.has_flow.any() and sample.occlusion is None
    np.testing.assert_array_equal(sample.frames, gt["frames"]["test"]["clean"]["ambush_1"])


def test_sintel_sequence_api(sintel):
    root, gt = sintel
    ds = MpiSintel(root, sequences="cave_2")
    assert ds.sequences == ["cave_2"] and len(ds) == 2 and ds.num_frames("cave_2") == 3
    whole = ds.read_sequence("cave_2")
    assert whole.target is None and whole.frames.shape[0] == 3 and whole.has_flow.all()
    np.testing.assert_array_equal(whole.flow, gt["flow"]["cave_2"])
    clip = ds.read_clip("cave_2", [2, 1], target=0)
    assert not clip.has_flow.any()  # 3 -> 2 is not a forward pair
    with pytest.raises(InvalidArgumentError, match="unknown sequences"):
        MpiSintel(root, sequences=["market_9"])
    with pytest.raises(InvalidArgumentError, match="positions"):
        ds.read_clip("cave_2", [0, 3])
    with pytest.raises(InvalidArgumentError, match="unknown sequence"):
        ds.read_sequence("alley_1")


def test_sintel_broken_layouts(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        MpiSintel(tmp_path / "nowhere")
    with pytest.raises(MissingFileError, match=r"(?s)training/clean does not exist.*expected layout"):
        MpiSintel(tmp_path)
    with pytest.raises(MissingFileError, match=f"(?s){tmp_path}/training/flow/<scene>/frame_0001.flo"):
        MpiSintel(tmp_path)
    root = tmp_path / "S"
    write_sintel(root, scenes={"alley_1": 3}, test_scenes={}, passes=("clean",))
    (root / "training" / "flow" / "alley_1" / "frame_0002.flo").unlink()
    with pytest.raises(MissingFileError, match="frame_0002.flo"):
        MpiSintel(root)
    write_sintel(root, scenes={"alley_1": 3}, test_scenes={}, passes=("clean",))
    (root / "training" / "clean" / "alley_1" / "frame_0002.png").unlink()
    with pytest.raises(InputFileError, match="not consecutive"):
        MpiSintel(root)
    with pytest.raises(InvalidArgumentError, match="split"):
        MpiSintel(root, split="val")
    with pytest.raises(InvalidArgumentError, match="clip_length"):
        MpiSintel(root, clip_length=1)
    with pytest.raises(InvalidArgumentError, match="target"):
        MpiSintel(root, clip_length=3, target=2)
    with pytest.raises(InvalidArgumentError, match="boundary"):
        MpiSintel(root, boundary="wrap")


def test_sintel_size_mismatch_is_reported_at_read(tmp_path):
    root = tmp_path / "S"
    write_sintel(root, scenes={"alley_1": 3}, test_scenes={}, passes=("clean",), size=(6, 8))
    encode_image(root / "training" / "clean" / "alley_1" / "frame_0002.png", np.zeros((6, 9, 3), np.uint8))
    ds = MpiSintel(root)
    with pytest.raises(InputFileError, match="differ in size"):
        ds[0]
    encode_image(root / "training" / "clean" / "alley_1" / "frame_0002.png", np.zeros((6, 8, 3), np.uint8))
    encode_image(root / "training" / "clean" / "alley_1" / "frame_0003.png", np.zeros((6, 8, 3), np.uint8))
    encode_image(root / "training" / "clean" / "alley_1" / "frame_0001.png", np.zeros((6, 8, 3), np.uint8))
    (root / "training" / "occlusions" / "alley_1" / "frame_0001.png").write_bytes(b"junk")
    with pytest.raises(InputFileError, match="mask"):
        ds[0]


# ---- tensors and batching -----------------------------------------------------------------------


def test_to_tensors_and_collate_follow_the_model_layout(sintel):
    root, gt = sintel
    ds = MpiSintel(root, clip_length=3)
    batch = collate_flow_samples([ds[1], ds[2]])
    h, w = ds[0].size
    assert batch["frames"].shape == (2, 3, 3, h, w) and batch["frames"].dtype == torch.float32
    assert batch["flow"].shape == (2, 2, 2, h, w) and batch["valid"].shape == (2, 2, h, w)
    assert batch["occlusion"].dtype == torch.bool and batch["target"].tolist() == [1, 1]
    assert batch["sequence"] == ["alley_1", "alley_1"] and batch["frame_ids"].tolist() == [[1, 2, 3], [2, 3, 4]]
    frames = gt["frames"]["training"]["clean"]["alley_1"]
    torch.testing.assert_close(batch["frames"][0, 2], torch.from_numpy(frames[2]).permute(2, 0, 1).float() / 255)
    flow = gt["flow"]["alley_1"][1]  # pair 2 -> 3, flow index 1 of the first clip
    assert torch.equal(batch["flow"][0, 1, 0], torch.from_numpy(flow[..., 0]))
    assert torch.equal(batch["flow"][0, 1, 1], torch.from_numpy(flow[..., 1]))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_flow_samples)
    assert [b["frames"].shape[0] for b in loader] == [3, 3]
    with pytest.raises(InvalidArgumentError):
        collate_flow_samples([])


def test_index_errors(sintel):
    root, _ = sintel
    ds = MpiSintel(root)
    with pytest.raises(SampleIndexError):
        ds[len(ds)]
    with pytest.raises(IndexError):
        ds[-len(ds) - 1]
    with pytest.raises(InvalidArgumentError, match="integer"):
        ds["0"]
    assert len(list(ds)) == len(ds)


# ---- KITTI 2015 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    base = tmp_path_factory.mktemp("kitti")
    gt = write_kitti(base / "data_scene_flow", multiview_frames=range(21), multiview_root=base / "multiview")
    return base, gt


def test_kitti_training_pairs_with_occlusion_from_noc(kitti):
    base, gt = kitti
    ds = Kitti2015(base / "data_scene_flow")
    assert len(ds) == 3 and ds.sequences == ["000000", "000001", "000002"]
    sizes = set()
    for sample in ds:
        _check_structure(sample, 2)
        scene = sample.sequence
        assert sample.frame_ids == (10, 11) and sample.target == 0 and sample.has_flow.all()
        np.testing.assert_array_equal(sample.frames[0], gt["frames"]["training"][scene][10])
        np.testing.assert_array_equal(sample.frames[1], gt["frames"]["training"][scene][11])
        np.testing.assert_array_equal(sample.valid[0], gt["valid"][scene])
        np.testing.assert_array_equal(sample.flow[0], gt["flow"][scene])
        np.testing.assert_array_equal(sample.occlusion[0], gt["valid"][scene] & ~gt["valid_noc"][scene])
        sizes.add(sample.size)
    assert len(sizes) == 3  # scenes differ in size, like the real data
    with pytest.raises(ShapeError, match="crop or resize"):
        collate_flow_samples([ds[0], ds[1]])


@pytest.mark.parametrize(
    "length, target, ids",
    [(5, 2, range(8, 13)), (3, 1, range(9, 12)), (4, 2, range(8, 12)), (2, 0, range(10, 12))],
)
def test_kitti_multiview_clips(kitti, length, target, ids):
    base, gt = kitti
    ds = Kitti2015(base / "data_scene_flow", multiview_root=base / "multiview", clip_length=length, target=target)
    sample = ds[1]
    _check_structure(sample, length)
    assert sample.frame_ids == tuple(ids) and sample.target == target
    assert sample.has_flow.tolist() == [t == target for t in range(length - 1)]
    for j, fid in enumerate(ids):
        np.testing.assert_array_equal(sample.frames[j], gt["frames"]["training"]["000001"][fid])
    np.testing.assert_array_equal(sample.flow[target], gt["flow"]["000001"])


def test_kitti_multiview_in_root_and_replicate_beyond_frame_zero(tmp_path):
    gt = write_kitti(tmp_path, scenes=1, splits=("testing",), multiview_frames=range(21))
    ds = Kitti2015(tmp_path, "testing", clip_length=13, target=11)
    sample = ds[0]
    assert sample.frame_ids == (0, 0, *range(1, 12)) and not sample.has_flow.any() and sample.occlusion is None
    np.testing.assert_array_equal(sample.frames[0], gt["frames"]["testing"]["000000"][0])
    assert ds.num_frames("000000") == 21
    with pytest.raises(InvalidArgumentError, match="no sample fits"):
        Kitti2015(tmp_path, "testing", clip_length=13, target=11, boundary="drop")


def test_kitti_missing_multiview_or_ground_truth(tmp_path):
    write_kitti(tmp_path, scenes=2)
    with pytest.raises(MissingFileError, match="multi-view"):
        Kitti2015(tmp_path, clip_length=3)
    with pytest.raises(MissingFileError, match="multiview_root"):
        Kitti2015(tmp_path, multiview_root=tmp_path / "absent")
    (tmp_path / "training" / "flow_noc" / "000001_10.png").unlink()
    with pytest.raises(MissingFileError, match="000001_10.png"):
        Kitti2015(tmp_path)
    shutil.rmtree(tmp_path / "training" / "flow_noc")
    assert Kitti2015(tmp_path)[0].occlusion is None  # flow_noc is optional
    shutil.rmtree(tmp_path / "training" / "flow_occ")
    with pytest.raises(MissingFileError, match="flow_occ"):
        Kitti2015(tmp_path)


# ---- FlyingThings3D -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def things(tmp_path_factory):
    root = tmp_path_factory.mktemp("things")
    gt = write_things(root, "TRAIN", letters=("A", "B"))
    gt_test = write_things(root, "TEST", letters=("C",), cameras=("left",), passes=("clean",), seed=1)
    return root, gt, gt_test


def _expected_things(gt, pass_name, sample, first=6):
    frames = gt["frames"][pass_name][sample.sequence]
    for j, fid in enumerate(sample.frame_ids):
        np.testing.assert_array_equal(sample.frames[j], frames[fid - first])
    for t in range(len(sample.frame_ids) - 1):
        a, b = sample.frame_ids[t], sample.frame_ids[t + 1]
        if b == a + 1:  # forward pair: flow = into_future[a], backward = into_past[b]
            np.testing.assert_array_equal(sample.flow[t], gt["future"][sample.sequence][a - first])
            np.testing.assert_array_equal(sample.flow_backward[t], gt["past"][sample.sequence][b - first])
        elif b == a - 1:  # reversed clip: flow = into_past[a], backward = into_future[b]
            np.testing.assert_array_equal(sample.flow[t], gt["past"][sample.sequence][a - first])
            np.testing.assert_array_equal(sample.flow_backward[t], gt["future"][sample.sequence][b - first])
        else:
            assert not sample.has_flow[t] and not sample.has_flow_backward[t]
            continue
        assert sample.has_flow[t] and sample.valid[t].all() and sample.valid_backward[t].all()


def test_things_forward_and_backward_samples(things):
    root, gt, _ = things
    ds = FlyingThings3D(root, "training", "final", directions=("forward", "backward"), clip_length=3)
    assert ds.sequences == ["TRAIN/A/0000/left", "TRAIN/B/0000/left"]
    assert len(ds) == 2 * 2 * 3
    for k, sample in enumerate(ds):
        _check_structure(sample, 3)
        _expected_things(gt, "final", sample)
        t = sample.target
        assert t == 1
        step = sample.frame_ids[t + 1] - sample.frame_ids[t]
        assert step == (1 if k < 6 else -1)
    backward = ds[6]  # reversed clip anchored on 7 -> 6 of sequence A
    assert backward.frame_ids == (8, 7, 6) and backward.target == 1


def test_things_cameras_test_split_and_options(things):
    root, gt, gt_test = things
    both = FlyingThings3D(root, cameras=("left", "right"))
    assert both.sequences == ["TRAIN/A/0000/left", "TRAIN/A/0000/right", "TRAIN/B/0000/left", "TRAIN/B/0000/right"]
    _expected_things(gt, "clean", both[4])
    test = FlyingThings3D(root, "test", clip_length=4, target=1, boundary="shift")
    assert test.sequences == ["TEST/C/0000/left"] and len(test) == 3
    for sample in test:
        _expected_things(gt_test, "clean", sample)
    forward_only = FlyingThings3D(root, backward_flow=False)
    assert forward_only[0].flow_backward is None
    with pytest.raises(InvalidArgumentError, match="backward_flow"):
        FlyingThings3D(root, directions="backward", backward_flow=False)
    with pytest.raises(InvalidArgumentError, match="cameras"):
        FlyingThings3D(root, cameras=("center",))


def test_things_missing_flow_and_reverse_without_backward(tmp_path):
    write_things(tmp_path, letters=("A",), cameras=("left",), passes=("clean",))
    (tmp_path / "optical_flow/TRAIN/A/0000/into_past/left/OpticalFlowIntoPast_0008_L.pfm").unlink()
    with pytest.raises(MissingFileError, match="OpticalFlowIntoPast_0008_L.pfm"):
        FlyingThings3D(tmp_path)
    ds = FlyingThings3D(tmp_path, backward_flow=False)
    with pytest.raises(InvalidArgumentError, match="backward"):
        ds[0].reversed()
    with pytest.raises(MissingFileError, match="frames_finalpass"):
        FlyingThings3D(tmp_path, pass_name="final")


# ---- FlyingChairs -------------------------------------------------------------------------------


def test_chairs_splits_and_values(tmp_path):
    gt = write_chairs(tmp_path / "FlyingChairs_release", split_codes=(1, 2, 1, 1, 2))
    root = tmp_path / "FlyingChairs_release"
    train, val, every = FlyingChairs(root), FlyingChairs(root, "validation"), FlyingChairs(root / "data", "all")
    assert train.sequences == ["00001", "00003", "00004"] and val.sequences == ["00002", "00005"]
    assert len(every) == 5
    for sample in every:
        k = int(sample.sequence) - 1
        _check_structure(sample, 2)
        np.testing.assert_array_equal(sample.frames[0], gt["img1"][k])
        np.testing.assert_array_equal(sample.frames[1], gt["img2"][k])
        np.testing.assert_array_equal(sample.flow[0], gt["flow"][k])
        assert sample.valid.all() and sample.frame_ids == (1, 2)
    assert FlyingChairs(root, clip_length=3)[0].frame_ids == (1, 1, 2)
    with pytest.raises(InvalidArgumentError, match="no sample fits"):
        FlyingChairs(root, clip_length=3, boundary="drop")


def test_chairs_broken_layouts(tmp_path):
    write_chairs(tmp_path, split_codes=(1, 2, 1), split_file=False)
    with pytest.raises(MissingFileError, match="FlyingChairs_train_val.txt"):
        FlyingChairs(tmp_path)
    assert len(FlyingChairs(tmp_path, "all")) == 3
    (tmp_path / "FlyingChairs_train_val.txt").write_text("1\n3\n1\n")
    with pytest.raises(InputFileError, match="entry 2"):
        FlyingChairs(tmp_path)
    (tmp_path / "FlyingChairs_train_val.txt").write_text("1\n2\n")
    with pytest.raises(InputFileError, match="2 lines"):
        FlyingChairs(tmp_path)
    (tmp_path / "data" / "00002_flow.flo").unlink()
    with pytest.raises(MissingFileError, match="00002_flow.flo"):
        FlyingChairs(tmp_path, "all")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match=r"no \*_img1\.ppm files"):
        FlyingChairs(tmp_path / "empty", "all")


# ---- HD1K ---------------------------------------------------------------------------------------


def test_hd1k_sequences_and_sparse_ground_truth(tmp_path):
    gt = write_hd1k(tmp_path, sequences={0: 4, 3: 3})
    ds = HD1K(tmp_path, clip_length=3)
    assert ds.sequences == ["000000", "000003"] and len(ds) == 3 + 2
    for sample in ds:
        _check_structure(sample, 3)
        frames = gt["frames"][sample.sequence]
        for j, fid in enumerate(sample.frame_ids):
            np.testing.assert_array_equal(sample.frames[j], frames[fid])
        t = sample.target
        a = sample.frame_ids[t]
        np.testing.assert_array_equal(sample.valid[t], gt["valid"][sample.sequence][a])
        np.testing.assert_array_equal(sample.flow[t], gt["flow"][sample.sequence][a])
    (tmp_path / "hd1k_flow_gt" / "flow_occ" / "000000_0001.png").unlink()
    fewer = HD1K(tmp_path)
    assert len(fewer) == 4 and not fewer.read_sequence("000000").has_flow[1]
    shutil.rmtree(tmp_path / "hd1k_flow_gt")
    with pytest.raises(MissingFileError, match="hd1k_flow_gt"):
        HD1K(tmp_path)


# ---- factory ------------------------------------------------------------------------------------


def test_open_dataset_by_name(sintel):
    root, _ = sintel
    ds = open_dataset("sintel", root, pass_name="final", clip_length=3)
    assert isinstance(ds, MpiSintel) and ds.pass_name == "final" and ds.clip_length == 3
    assert "MpiSintel" in repr(ds)
    with pytest.raises(InvalidArgumentError, match="dataset must be one of"):
        open_dataset("middlebury", root)
