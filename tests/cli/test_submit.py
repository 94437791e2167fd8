"""`motion4d submit` on a miniature KITTI tree."""
from __future__ import annotations

from motion import submission as submit
from tests.motion.fake_datasets import write_kitti


def test_cli_submit_with_dis(tmp_path):
    from motion4d.cli import main

    write_kitti(tmp_path / "KITTI", scenes=2, size=(24, 32))
    assert main(["submit", "--model", "dis", "--dataset", "kitti", "--root", str(tmp_path / "KITTI"),
                 "--out", str(tmp_path / "sub"), "--no-progress"]) == 0
    assert (tmp_path / "sub" / "submission_config.json").is_file()
    assert submit.verify_submission(tmp_path / "sub", "kitti", tmp_path / "KITTI") == 2
