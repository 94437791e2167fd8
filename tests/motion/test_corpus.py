"""motion.corpus: every video once across shards, idempotent reruns, failures recorded."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from motion import corpus as rc
from motion4d.errors import InvalidArgumentError, MissingDependencyError


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "corpus"
    for name in ("cam_a/seq1", "cam_a/seq2", "cam_b/seq3", "seq4"):
        base = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
        folder = root / name
        folder.mkdir(parents=True)
        for t in range(3):
            cv2.imwrite(str(folder / f"{t:04d}.png"), np.roll(base, t, axis=1))
    (root / "cam_b" / "broken.mp4").write_bytes(b"\x00\x01 definitely not a video" * 10)
    return root


def _records(out):
    lines = []
    for path in sorted((out / "manifest").glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def test_shards_cover_every_video_once_and_failures_are_recorded(corpus, tmp_path):
    out = tmp_path / "out"
    videos = rc.list_corpus(corpus)
    assert len(videos) == 5 and len({v.id for v in videos}) == 5
    options = ["--model", "dis", "--format", "flo"]
    reports = [rc.run_corpus(corpus, "flow", out, options, shard_index=i, num_shards=2, progress=False) for i in range(2)]
    assert sum(r.assigned for r in reports) == 5
    records = _records(out)
    assert sorted(r["video"] for r in records) == sorted(v.path for v in videos)  # each exactly once
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["video"] for r in failed] == [str(corpus / "cam_b" / "broken.mp4")]
    assert "broken.mp4" in failed[0]["error"]
    for video in videos:
        if video.path.endswith("broken.mp4"):
            continue
        assert sorted(p.name for p in (out / video.id / "forward").iterdir()) == ["000000.flo", "000001.flo"]
        assert (out / video.id / rc.DONE_NAME).is_file()
    # a rerun skips the finished videos and retries only the failed one
    again = [rc.run_corpus(corpus, "flow", out, options, shard_index=i, num_shards=2, progress=False) for i in range(2)]
    assert sum(r.skipped for r in again) == 4 and sum(len(r.failed) for r in again) == 1
    assert len(_records(out)) == len(records) + 1
    latest = rc.read_manifest(out)
    assert sum(r["status"] == "done" for r in latest.values()) == 4
    # other task options: the finished marker no longer matches, so the videos are redone
    third = rc.run_corpus(corpus, "flow", tmp_path / "out2", ["--model", "farneback"], shard_index=0, num_shards=1,
                          progress=False)
    assert third.done == 4 and third.skipped == 0


def test_shard_defaults_from_environment(monkeypatch):
    from motion.distributed import shard_from_env, shard_items

    assert shard_from_env({}) == (0, 1)
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "4"}) == (2, 4)
    assert shard_from_env({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}) == (1, 2)
    with pytest.raises(InvalidArgumentError):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    items = list(range(11))
    parts = [shard_items(items, i, 3) for i in range(3)]
    assert sorted(x for p in parts for x in p) == items


def test_env_shard_cli_and_ray(corpus, tmp_path, monkeypatch):
    from motion4d.cli import main

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["corpus", str(corpus), "--task", "flow", "--out", str(tmp_path / "out"), "--no-progress",
                 "--task-options", "--model", "dis"])
    records = _records(tmp_path / "out")
    assert [r["shard"] for r in records] == [[1, 2]] * 2
    videos = rc.list_corpus(corpus)
    assert sorted(r["video"] for r in records) == sorted(v.path for v in videos[1::2])
    assert code == (1 if any(r["status"] == "failed" for r in records) else 0)
    with pytest.raises(InvalidArgumentError, match="bad options"):
        rc.run_corpus(corpus, "flow", tmp_path / "o", ["--no-such-option"], shard_index=0, num_shards=1, progress=False)
    with pytest.raises(MissingDependencyError, match="ray"):
        rc.run_corpus(corpus, "flow", tmp_path / "o", ["--model", "dis"], shard_index=0, num_shards=1, engine="ray",
                      progress=False)
