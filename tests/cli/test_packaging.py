"""The installed distribution: no top-level ``tools`` package, the console script in ``motion4d.cli``."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("setup.py", "README.md", "motion4d", "motion", "pointclouds", "splats", "tools")


def _build_wheel(tmp_path: Path) -> Path:
    """``pip wheel`` of a copy of the checkout (offline, no build isolation: the installed setuptools)."""
    pytest.importorskip("setuptools")
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
        else:
            shutil.copy2(path, source / name)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("motion4d-*.whl")
    return wheel


def test_wheel_holds_the_library_and_no_tools_package(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"motion4d", "motion", "pointclouds", "splats"}
    assert "tools" not in top_level and not any(n.startswith("tools/") for n in names)
    assert "motion4d/cli/__init__.py" in names and "motion4d/__main__.py" in names
    assert "motion/ops/csrc/ops.cpp" in names  # package data still shipped
    assert "motion4d = motion4d.cli:main" in entry_points


def test_console_script_target_is_importable():
    from motion4d.cli import main

    assert callable(main)
