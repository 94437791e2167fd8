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
