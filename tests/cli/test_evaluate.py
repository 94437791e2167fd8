"""`motion4d evaluate` on a miniature Sintel tree."""
from __future__ import annotations

import json

import numpy as np

from tests.motion.fake_datasets import write_sintel


def test_cli_with_registered_model(tmp_path, capsys):
    from motion4d.cli import main

    write_sintel(tmp_path / "Sintel", scenes={"alley_1": 3})
    code = main(["evaluate", "--model", "dis", "--dataset", "sintel", "--root", str(tmp_path / "Sintel"),
                 "--out", str(tmp_path / "out"), "--passes", "final", "--max-samples", "1", "--no-progress"])
    assert code == 0
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    epe = data["subsets"]["sintel-final"]["pooled"]["epe"]
    assert np.isfinite(epe) and epe > 0
    assert "sintel-final" in capsys.readouterr().out
    assert main(["evaluate", "--model", "nope", "--dataset", "kitti", "--root", str(tmp_path), "--out",
                 str(tmp_path / "o2"), "--no-progress"]) == 2


def test_evaluate_prints_the_papers_number_next_to_ours(tmp_path, capsys, monkeypatch):
    """Named weights (here through ptlflow's alias): metrics.md and stdout show the card's numbers."""
    import torch

    import motion
    from motion4d.cli import main

    torch.manual_seed(0)
    source = motion.create("videoflow-bof", device="cpu", encoder="basic")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # a cached asset: no network
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": {"cnet": "basicencoder", "fnet": "basicencoder"}},
               tmp_path / "hub" / "checkpoints" / "videoflow_bof-things_288960noise-d581490a.ckpt")
    write_sintel(tmp_path / "Sintel", scenes={"alley_1": 3}, size=(64, 72))
    code = main(["evaluate", "--model", "videoflow-bof", "--weights", "things_288960", "--option", "encoder=basic",
                 "--option", "iters=1", "--dataset", "sintel", "--root", str(tmp_path / "Sintel"),
                 "--out", str(tmp_path / "out"), "--max-samples", "1", "--pictures", "0", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for subset, paper in (("sintel-clean", 1.03), ("sintel-final", 2.19)):
        info = data["subsets"][subset]
        assert info["paper"]["EPE"]["value"] == paper and info["paper"]["EPE"]["weights"] == "things"
        assert "StreamFlow paper" in info["paper"]["EPE"]["source"]
        ours = info["headline"]["EPE"]
        assert f"- {subset} EPE (things weights): ours {ours:.3f}, paper {paper:g} px ({ours - paper:+.3f})" in out
    assert "## Paper vs ours (videoflow-bof, the 'things_288960' weights)" in out


def test_evaluate_without_named_weights_says_so(tmp_path, capsys):
    from motion4d.cli import main

    write_sintel(tmp_path / "Sintel", scenes={"alley_1": 3})
    assert main(["evaluate", "--model", "farneback", "--dataset", "sintel", "--root", str(tmp_path / "Sintel"),
                 "--out", str(tmp_path / "out"), "--passes", "clean", "--max-samples", "1", "--no-progress"]) == 0
    assert "- sintel-clean: the model card lists no number for no weights on this subset" in capsys.readouterr().out
