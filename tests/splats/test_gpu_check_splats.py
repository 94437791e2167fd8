"""bench/gpu_check_splats.py on a CPU-only machine: the dry run rehearses every part up to its first
CUDA call, run as documented (from another directory, without PYTHONPATH), and the time box holds."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check_splats.py"
PARTS = ["torch-cuda", "gsplat-load", "gsplat-parity", "gsplat-speed", "gaussian-flow"]


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, tuple[str, str]]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("part ") and "status" in line)
    # fixed columns: part (14), status (8), seconds (8), detail
    rows = {line[:14].strip(): (line[15:23].strip(), line[34:]) for line in lines[header + 1:]}
    return proc, rows


def test_dry_run_rehearses_every_part_on_the_cpu(tmp_path):
    proc, rows = _run(tmp_path, "--dry-run", "--timeout", "240")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(rows) == PARTS
    has_gsplat = importlib.util.find_spec("gsplat") is not None
    for name, (status, detail) in rows.items():
        if name.startswith("gsplat") or name == "gaussian-flow":
            assert status == ("DRY" if has_gsplat else "SKIP"), (name, status, detail)
        else:
            assert status == "DRY", (name, status, detail)
        if status == "DRY":
            assert "stopped before" in detail
    if has_gsplat:  # the bridge's arguments were built on the CPU and checked against gsplat's signature
        assert "arguments bind to gsplat.rasterization" in rows["gsplat-parity"][1]
    assert "ALL REHEARSED" in proc.stdout


def test_time_box_stops_the_check_and_fails_it(tmp_path):
    start = time.monotonic()
    proc, rows = _run(tmp_path, "--dry-run", "--timeout", "0.5")
    assert time.monotonic() - start < 60
    assert proc.returncode == 1, proc.stdout + proc.stderr
    statuses = [status for status, _ in rows.values()]
    assert statuses.count("TIMEOUT") == 1 and "FAIL" not in statuses
    assert all(s == "NOT RUN" for s in statuses[statuses.index("TIMEOUT") + 1:])
