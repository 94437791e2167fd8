"""motion.submission: official Sintel / KITTI test trees, read back bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest

from motion import submission as submit
from motion.flow_io import read_flow
from motion4d.errors import InputFileError
from tests.motion.fake_datasets import write_kitti, write_sintel
from tests.motion.oracles import OracleFlow, OracleFlow3, build_table


def _random_table(frame_lists, rng, scale=30.0):
    pairs, truth = [], {}
    for key, frames in frame_lists.items():
        for i in range(len(frames) - 1):
            flow = (rng.standard_normal((*frames[i].shape[:2], 2)) * scale).astype(np.float32)
            pairs.append((frames[i], frames[i + 1], flow))
            truth[(*key, i)] = flow
    return build_table(pairs), truth


@pytest.mark.parametrize("model_cls", [OracleFlow, OracleFlow3])
def test_sintel_tree_reads_back_bit_exactly(tmp_path, model_cls):
    gt = write_sintel(tmp_path / "Sintel", scenes={"alley_1": 2}, test_scenes={"ambush_1": 4, "bamboo_3": 3})
    frames = {(p, s): f for p, scenes in gt["frames"]["test"].items() for s, f in scenes.items()}
    table, truth = _random_table(frames, np.random.default_rng(1))
    report = submit.write_submission(model_cls(table), "oracle", "sintel", tmp_path / "Sintel", tmp_path / "sub",
                                     progress=False)
    assert report.files == 2 * (3 + 2) and report.computed == report.files
    written = sorted(p.relative_to(tmp_path / "sub").as_posix() for p in (tmp_path / "sub").rglob("*.flo"))
    assert written == sorted(f"{p}/{s}/frame_{i:04d}.flo" for p in ("clean", "final")
                             for s, n in (("ambush_1", 4), ("bamboo_3", 3)) for i in range(1, n))
    for (pass_name, scene, i), flow in truth.items():
        back, valid = read_flow(submit.sintel_flow_path(tmp_path / "sub", pass_name, scene, i + 1))
        assert valid.all() and np.array_equal(back, flow)
    again = submit.write_submission(model_cls(table), "oracle", "sintel", tmp_path / "Sintel", tmp_path / "sub",
                                    progress=False)
    assert again.computed == 0 and again.skipped == 10


def test_kitti_tree_and_verification(tmp_path):
    gt = write_kitti(tmp_path / "KITTI", scenes=3)
    test_frames = gt["frames"]["testing"]
    rng = np.random.default_rng(2)
    pairs, truth = [], {}
    for scene, frames in test_frames.items():
        flow = (rng.integers(-200 * 64, 200 * 64, size=(*frames[10].shape[:2], 2)) / 64.0).astype(np.float32)
        pairs.append((frames[10], frames[11], flow))
        truth[scene] = flow
    report = submit.write_submission(OracleFlow(build_table(pairs)), "oracle", "kitti", tmp_path / "KITTI",
                                     tmp_path / "sub", progress=False)
    assert report.files == 3
    assert sorted(p.name for p in (tmp_path / "sub" / "flow").iterdir()) == [f"{i:06d}_10.png" for i in range(3)]
    for scene, flow in truth.items():
        back, valid = read_flow(tmp_path / "sub" / "flow" / f"{scene}_10.png")
        assert valid.all() and np.array_equal(back, flow)  # exactly representable at 1/64 px
    (tmp_path / "sub" / "flow" / "000001_10.png").unlink()
    with pytest.raises(InputFileError, match="1 of 3 files missing"):
        submit.verify_submission(tmp_path / "sub", "kitti", tmp_path / "KITTI")
    (tmp_path / "sub" / "flow" / "000001_10.png").write_bytes(b"not a png")
    with pytest.raises(InputFileError):
        submit.verify_submission(tmp_path / "sub", "kitti", tmp_path / "KITTI")
