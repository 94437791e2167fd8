"""bench/gpu_check.sh rehearsed on CPU: every step up to the first CUDA call must work before a GPU is lent."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parents[2]


def run_dry(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = dict(os.environ, PYTHON=sys.executable, **env)
    # The extension built by the other tests: the dry run loads it instead of compiling it again.
    environ.setdefault("TORCH_EXTENSIONS_DIR", os.environ.get("TORCH_EXTENSIONS_DIR")
                       or cpp_extension.get_default_build_root())
    environ.pop("TORCH_CUDA_ARCH_LIST", None)
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_gpu_check_dry_run_passes_every_step(tmp_path: Path) -> None:
    proc = run_dry(tmp_path, MOTION4D_DRY_CAPABILITY="8.6")
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    summary = out[out.index("==== summary"):]
    for step in ("environment", "build", "parity tests", "bench"):
        assert re.search(rf"^{step}\s+PASS\s", summary, re.MULTILINE), summary
    # The architecture list comes from the device's capability, with PTX for newer GPUs.
    assert "TORCH_CUDA_ARCH_LIST=8.6+PTX" in out
    # The GPU tests are collected (a selection that matched nothing would make the real run test nothing) ...
    collected = int(re.search(r"^parity tests\s+PASS\s+\d+\s+(\d+)/\d+ tests collected", summary, re.MULTILINE).group(1))
    assert collected >= 80
    # ... and the benchmark measured every backend usable on CPU, Triton through its interpreter.
    assert "backends torch, cpp, triton" in summary
    assert re.search(r"^time on-the-fly corr\s+tiny\s+torch [\d.]+ ms\s+cpp [\d.]+ ms\s+triton [\d.]+ ms", summary, re.MULTILINE)
    assert "target on-the-fly triton vs reference tiny" in summary
    assert "gpu_check: 0 failed step(s)" in out


def test_gpu_check_without_torch_stops_at_once(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    environ = dict(os.environ, PYTHON=str(fake), PATH=f"{tmp_path}:/usr/bin:/bin")
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], cwd=tmp_path, env=environ,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 90
    assert "no Python with a CUDA-enabled torch" in proc.stderr
