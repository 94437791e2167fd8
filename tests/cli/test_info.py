"""The console script and `motion4d info`."""
from __future__ import annotations

import json
import subprocess
import sys

from motion4d.cli import main


def test_info_json_lists_versions_and_backends(capsys) -> None:
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["torch"]
    for key in ("cuda", "pyav", "open3d", "gsplat", "compiled_ops"):
        assert key in info["backends"]
    assert info["backends"]["pyav"] is True


def test_help_lists_subcommands(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "info" in out


def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "motion4d", "info"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "torch" in result.stdout


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "motion4d", "frobnicate"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
