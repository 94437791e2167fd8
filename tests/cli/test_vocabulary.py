"""One command-line vocabulary: the same flags and metavars on every subcommand, ``--version``."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from motion4d.cli import SUBCOMMANDS, main

ROOT = Path(__file__).resolve().parents[2]


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _usage(text: str) -> str:
    """The usage lines of a help text, joined."""
    return " ".join(text.split("\n\n")[0].split())


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "motion4d 0.1.0"


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_takes_no_progress_and_quiet(command, capsys):
    text = _help(command, capsys)
    assert "--no-progress" in text and "--quiet" in text


@pytest.mark.parametrize(("command", "metavars"), [
    ("flow", ["VIDEO"]), ("encode", ["VIDEO"]), ("track", ["VIDEO"]),
    ("sceneflow", ["[SOURCE_CLOUD]", "[TARGET_CLOUD]"]), ("reconstruct", ["VIDEO|DNERF_DIR"]),
    ("corpus", ["CORPUS_DIR|LIST_FILE"]),
])
def test_positionals_say_what_they_take(command, metavars, capsys):
    usage = _usage(_help(command, capsys))
    for metavar in metavars:
        assert re.search(rf"(?<![\w|]){re.escape(metavar)}(?![\w|])", usage), usage
    assert not re.search(r" (video|input|source|target|data|DATA_DIR)( |$)", usage), usage


def test_track_writes_formats_and_export_is_a_hidden_deprecated_alias(small_clip, tmp_path, capsys):
    import motion

    out = tmp_path / "tracks"
    assert main(["track", str(small_clip), "--out", str(out), "--grid", "16", "--format", "csv,json", "--no-progress"]) == 0
    assert motion.Tracks.load(out / "tracks.json").num_tracks == motion.Tracks.load(out / "tracks.csv").num_tracks == 6
    assert json.loads((out / "track_config.json").read_text())["format"] == "csv,json"
    assert "deprecated" not in capsys.readouterr().err
    old = tmp_path / "old"
    assert main(["track", str(small_clip), "--out", str(old), "--grid", "16", "--export", "cotracker", "--no-progress"]) == 0
    assert (old / "tracks.npz").is_file() and not (old / "tracks.csv").exists()
    assert "--export is deprecated" in capsys.readouterr().err
    assert main(["track", str(small_clip), "--out", str(old), "--format", "csv", "--export", "csv"]) == 2
    assert "--export" not in _help("track", capsys)


def test_quiet_hides_the_summary_and_progress(small_clip, tmp_path, capsys):
    assert main(["flow", str(small_clip), "--out", str(tmp_path / "loud"), "--no-progress"]) == 0
    loud = capsys.readouterr()
    assert "4 pairs computed" in loud.out
    assert main(["flow", str(small_clip), "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""  # no summary, no progress bar
    assert len(list((tmp_path / "quiet" / "forward").glob("*.flo"))) == 4


def test_top_level_help_imports_no_subcommand(tmp_path):
    code = ("import sys; from motion4d.cli import main; main(['--help']); "
            "print(sorted(m for m in sys.modules if m.startswith(('motion.', 'pointclouds', 'splats', 'motion4d.cli.'))))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "['motion4d.cli.arguments', 'motion4d.cli.messages']"
