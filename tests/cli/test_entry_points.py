"""``python -m motion4d`` and the runnable scripts in ``tools/`` start in a fresh interpreter."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("evaluate", "submit", "train", "corpus", "demo")


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_python_m_motion4d_help_lists_the_subcommands():
    result = _run("-m", "motion4d", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: motion4d")
    for command in ("info", "flow", "track", "evaluate", "submit", "train", "corpus", "sceneflow", "reconstruct"):
        assert command in result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_runnable_script_help_is_the_subcommand_help(script):
    result = _run(f"tools/{script}.py", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: motion4d {script}")


def test_tools_is_not_a_package():
    assert not (ROOT / "tools" / "__init__.py").exists()
    assert sorted(p.stem for p in (ROOT / "tools").glob("*.py")) == sorted(SCRIPTS)


def test_the_core_and_the_command_table_import_no_library_package():
    code = ("import sys, motion4d, motion4d.cli; "
            "print(sorted(m for m in ('motion', 'pointclouds', 'splats') if m in sys.modules))")
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_torchrun_runs_the_train_script_as_two_ranks(tmp_path):
    from tests.motion.fake_datasets import write_sintel

    write_sintel(tmp_path / "Sintel", scenes={"alley_1": 5, "cave_2": 4}, size=(16, 20))
    out = tmp_path / "run"
    result = _run("-m", "torch.distributed.run", "--nproc_per_node=2", "tools/train.py", "--model", "tiny-flow",
                  "--mixture", "sintel_final", "--root", f"sintel={tmp_path / 'Sintel'}", "--out", str(out),
                  "--steps", "2", "--batch-size", "2", "--crop", "8x8", "--device", "cpu", "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "train_config.json").read_text())
    assert config["world_size"] == 2 and config["per_rank_batch"] == 1
    assert (out / "model_final.pth").is_file()
