"""Every command-line path ends in a message and an exit status: flags named as typed, no tracebacks."""
from __future__ import annotations

import pytest

from motion4d.cli import main
from motion4d.errors import InvalidArgumentError


def test_rerun_with_other_settings_names_the_overwrite_flag(small_clip, tmp_path, capsys):
    out = str(tmp_path / "flow")
    assert main(["flow", str(small_clip), "--out", out, "--no-progress"]) == 0
    assert main(["flow", str(small_clip), "--out", out, "--model", "farneback", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("motion4d flow: error: ") and "--overwrite" in err and "overwrite=True" not in err
    assert main(["flow", str(small_clip), "--out", out, "--model", "farneback", "--overwrite", "--no-progress"]) == 0


@pytest.mark.parametrize("command", ["flow", "track", "encode"])
def test_absent_cuda_device_is_a_clean_error(command, small_clip, tmp_path, capsys):
    assert main([command, str(small_clip), "--out", str(tmp_path / "o"), "--device", "cuda:99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"motion4d {command}: error: --device cuda:99 requested but ")
    assert not (tmp_path / "o").exists()  # checked before any work


def test_unknown_device_name_is_a_clean_error_before_training(tmp_path, capsys):
    code = main(["train", "--model", "tiny-flow", "--mixture", "sintel_final", "--out", str(tmp_path / "t"),
                 "--device", "gpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "motion4d train: error: --device must be" in err and "'gpu'" in err


def test_unknown_model_option_is_a_clean_error(small_clip, tmp_path, capsys):
    assert main(["flow", str(small_clip), "--out", str(tmp_path / "o"), "--option", "colour=1", "--no-progress"]) == 2
    assert "takes no option 'colour'" in capsys.readouterr().err
    assert main(["track", str(small_clip), "--out", str(tmp_path / "t"), "--model", "farneback", "--option", "colour=1",
                 "--no-progress"]) == 2
    assert "takes no option 'colour'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "submit"])
def test_missing_data_is_reported_before_a_model_is_built(command, tmp_path, monkeypatch, capsys):
    import motion.registry

    built = []
    monkeypatch.setattr(motion.registry, "create", lambda *a, **k: built.append(a) or pytest.fail("model built"))
    missing = tmp_path / "no_such_folder"
    code = main([command, "--model", "videoflow-mof", "--weights", "sintel", "--dataset", "kitti", "--root", str(missing),
                 "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2 and built == []
    assert str(missing) in capsys.readouterr().err


def test_interrupt_is_a_message_and_status_130(small_clip, tmp_path, monkeypatch, capsys):
    from motion.models.opencv_flow import DISEngine

    def interrupted(self, a, b):
        raise KeyboardInterrupt

    monkeypatch.setattr(DISEngine, "flow", interrupted)
    assert main(["flow", str(small_clip), "--out", str(tmp_path / "o"), "--no-progress"]) == 130
    assert capsys.readouterr().err.strip() == "motion4d flow: interrupted, rerun to resume"


def test_a_refused_output_path_is_a_clean_error(small_clip, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["flow", str(small_clip), "--out", str(blocker / "flow"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("motion4d flow: error: ") and "Traceback" not in err


def test_demo_names_its_flags(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--frames", "1"]) == 2
    assert "--frames must be an integer >= 2, got 1" in capsys.readouterr().err


def test_corpus_checks_the_task_device_before_any_video(tmp_path):
    from motion import corpus

    folder = tmp_path / "videos" / "seq"
    folder.mkdir(parents=True)
    import cv2
    import numpy as np

    for t in range(2):
        cv2.imwrite(str(folder / f"{t:04d}.png"), np.full((16, 16, 3), 40 * t, np.uint8))
    with pytest.raises(InvalidArgumentError, match="--device"):
        corpus.run_corpus(tmp_path / "videos", "flow", tmp_path / "out", ["--device", "gpu"], shard_index=0,
                          num_shards=1, progress=False)
    assert not (tmp_path / "out" / "manifest").exists()
