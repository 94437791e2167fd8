"""Checkpoint formats, strict loading with readable reports, named weights through the hub cache."""
from __future__ import annotations

import hashlib

import pytest
import torch

import motion
from motion.models.checkpoints import WeightSet, load_weights, read_checkpoint, save_checkpoint
from motion.registry import download_named_weights, model_entry, named_weights_url
from motion4d.errors import CheckpointError, MissingFileError


def small_model(variant: str = "mof", seed: int = 0):
    torch.manual_seed(seed)
    return motion.create(f"videoflow-{variant}", device="cpu", encoder="basic", iters=1)


@pytest.fixture(scope="module")
def source():
    model = small_model(seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def official_dataparallel(state):
    return {"module." + k: v for k, v in state.items()}


@pytest.mark.parametrize("fmt, wrap", [
    ("state_dict", official_dataparallel),                                   # VideoFlow *.pth as released
    ("ptlflow", lambda s: {"state_dict": dict(s), "hyper_parameters": {"decoder_depth": 32}}),
    ("wrapped", lambda s: {"model": official_dataparallel(s), "optimizer": {}}),  # StreamFlow style
    ("state_dict", dict),
])
def test_official_formats_load_exactly(tmp_path, source, fmt, wrap):
    path = tmp_path / "weights.pth"
    torch.save(wrap(source.state_dict()), path)
    target = small_model(seed=2)
    report = load_weights(target, path, model_name="videoflow-mof")
    assert report.ok and report.format == fmt
    assert_same_weights(source, target)


def test_own_format_round_trip_via_create(tmp_path, source):
    path = save_checkpoint(source, tmp_path / "ours.pt", "videoflow-mof", source.config, step=7)
    raw = torch.load(path, weights_only=True)
    assert raw["model"] == "videoflow-mof" and raw["config"]["encoder"] == "basic" and raw["step"] == 7
    loaded = motion.create("videoflow-mof", weights=path, device="cpu", encoder="basic")
    assert_same_weights(source, loaded)
    with pytest.raises(CheckpointError, match="saved for model 'videoflow-mof'"):
        motion.create("videoflow-bof", weights=path, device="cpu", encoder="basic")


def test_wrong_model_lists_every_kind_of_mismatch(tmp_path, source):
    state = source.state_dict()
    state["extra.weight"] = torch.zeros(3)
    state["update_block.mask.2.bias"] = torch.zeros(5)
    del state["att.to_qk.weight"]
    path = tmp_path / "bad.pth"
    torch.save(official_dataparallel(state), path)
    with pytest.raises(CheckpointError) as info:
        load_weights(small_model(), path)
    text = str(info.value)
    assert "1 missing keys" in text and "att.to_qk.weight" in text
    assert "1 unexpected keys" in text and "extra.weight" in text
    assert "update_block.mask.2.bias: [5] vs [1152]" in text
    report = load_weights(small_model(), path, strict=False)
    assert report.missing == ["att.to_qk.weight"] and report.unexpected == ["extra.weight"]


def test_bof_file_into_mof_model_is_refused(tmp_path):
    path = tmp_path / "BOF_sintel.pth"
    torch.save(official_dataparallel(small_model("bof").state_dict()), path)
    with pytest.raises(CheckpointError, match="velocity_update_block"):
        motion.create("videoflow-mof", weights=path, device="cpu", encoder="basic")


def test_unreadable_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(garbage)
    with pytest.raises(MissingFileError):
        read_checkpoint(tmp_path / "absent.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a state_dict"):
        read_checkpoint(tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="named weight set of videoflow-mof"):
        motion.create("videoflow-mof", weights="sintell", device="cpu")


def test_named_weights_download_once_with_hash_check(tmp_path, monkeypatch, source):
    served = tmp_path / "served"
    served.mkdir()
    blob = served / "payload.ckpt"
    torch.save({"state_dict": source.state_dict()}, blob)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    published = served / f"videoflow_mof-test-{digest[:8]}.ckpt"
    blob.rename(published)
    monkeypatch.setitem(model_entry("videoflow-mof").weights, "test", WeightSet(published.as_uri()))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    loaded = motion.create("videoflow-mof", weights="test", device="cpu", encoder="basic")
    assert_same_weights(source, loaded)
    cached = tmp_path / "hub" / "checkpoints" / published.name
    assert cached.is_file()
    published.unlink()  # a second use must come from the cache, without the network
    assert_same_weights(source, motion.create("videoflow-mof", weights="test", device="cpu", encoder="basic"))


def test_named_weights_corrupt_or_offline(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    bad = served / "videoflow_mof-test-00000000.ckpt"
    bad.write_bytes(b"tampered")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setitem(model_entry("videoflow-mof").weights, "tampered", WeightSet(bad.as_uri()))
    monkeypatch.setitem(model_entry("videoflow-mof").weights, "offline",
                        WeightSet((served / "videoflow_mof-gone-12345678.ckpt").as_uri()))
    with pytest.raises(CheckpointError, match="integrity"):
        download_named_weights("videoflow-mof", "tampered", progress=False)
    assert not (tmp_path / "hub" / "checkpoints" / bad.name).exists()
    with pytest.raises(CheckpointError, match="pass weights=PATH"):
        download_named_weights("videoflow-mof", "offline", progress=False)


def test_release_table_points_at_ptlflow_assets():
    url = named_weights_url("videoflow-mof", "sintel")
    assert url == "https://github.com/hmorimitsu/ptlflow/releases/download/weights1/videoflow_mof-sintel-739e4d3a.ckpt"
    assert set(model_entry("videoflow-bof").weights) >= {"things", "sintel", "kitti"}
    with pytest.raises(CheckpointError, match="known"):
        named_weights_url("videoflow-bof", "spring")
