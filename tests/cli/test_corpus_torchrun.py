"""``torchrun --nproc_per_node=2 -m motion4d corpus``: both ranks finish their shards whatever fails in them
(a rank exiting 1 would make torchrun kill the other), each video exactly once, a summary per rank."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.motion.test_corpus import OPTIONS, make_corpus, records

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_ranks_finish_their_shards_despite_bad_videos(tmp_path):
    root, out = tmp_path / "corpus", tmp_path / "out"
    expected = make_corpus(root)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "motion4d",
                             "corpus", str(root), "--out", str(out), "--no-progress", "--task-options", *OPTIONS],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    got = {str(Path(r["video"]).relative_to(root.resolve())): r["status"] for r in records(out)}
    assert got == expected and len(records(out)) == len(expected)
    for rank in range(2):
        summary = json.loads((out / "manifest" / f"shard-{rank:05d}-of-00002.summary.json").read_text())
        assert summary["state"] == "finished" and summary["launch"] == f"torchrun rank {rank} of 2"
        assert summary["done"] + len(summary["failed"]) + len(summary["damaged"]) == summary["assigned"] == 3
    assert result.stdout.count("already settled") == 2
