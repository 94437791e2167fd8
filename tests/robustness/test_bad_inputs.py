"""The bad-input battery (issue #16): every case ends in a clear motion4d error and nothing else.

See :mod:`tests.robustness.cases` for the cases. Run alone: ``pytest tests/robustness -q``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from motion4d.errors import Motion4DError
from motion4d.limits import MAX_ARRAY_BYTES_ENV

from .cases import CASES, Case, Sources

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT_MB = 1024


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Sources:
    return Sources(tmp_path_factory.mktemp("sources"))


def check_outcome(case: Case, error: BaseException, tmp: Path) -> None:
    """The error is the expected motion4d error, names what it should, and nothing ran or was left."""
    assert isinstance(error, case.expect) and isinstance(error, Motion4DError), f"{type(error).__name__}: {error}"
    message = str(error)
    if case.names == "file":
        created = {p.name for p in tmp.rglob("*")}
        assert tmp.name in message or any(name in message for name in created), message
    elif case.names is not None:
        assert case.names in message, message
    assert not (tmp / "EXECUTED").exists(), "a file ran code while being loaded"
    leftovers = [p for p in tmp.rglob(".*.tmp*")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


@pytest.mark.parametrize("case", [c for c in CASES if not c.bomb], ids=lambda c: f"{c.category}: {c.name}")
def test_bad_input_ends_in_a_clear_error(case: Case, sources: Sources, tmp_path: Path) -> None:
    with pytest.raises(Motion4DError) as info:
        case.run(sources, tmp_path)
    check_outcome(case, info.value, tmp_path)


_CHILD = """
import json, resource, sys, tempfile
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.robustness.cases import CASES, Sources
from tests.robustness.test_bad_inputs import check_outcome
work = Path(tempfile.mkdtemp())
sources = Sources(work / "sources")
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
results = []
for i, case in enumerate(c for c in CASES if c.bomb):
    tmp = work / f"case{{i}}"
    tmp.mkdir()
    try:
        case.run(sources, tmp)
        outcome = "no error"
    except BaseException as error:
        try:
            check_outcome(case, error, tmp)
            outcome = "ok"
        except AssertionError as failure:
            outcome = f"{{type(error).__name__}}: {{error}} ({{failure}})"
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    results.append({{"case": case.name, "outcome": outcome, "peak_mb": peak}})
print(json.dumps(results))
"""


def test_declared_sizes_never_allocate(tmp_path: Path) -> None:
    """Files whose headers declare gigabytes are refused before allocating: the whole group of such
    cases raises the child process's peak memory by less than 1 GB (default limits in force)."""
    env = {k: v for k, v in __import__("os").environ.items() if k != MAX_ARRAY_BYTES_ENV}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(ROOT))], capture_output=True, text=True,
                         timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(results) == sum(c.bomb for c in CASES) >= 10
    failed = [r for r in results if r["outcome"] != "ok"]
    assert not failed, failed
    assert max(r["peak_mb"] for r in results) < MEMORY_LIMIT_MB, results


def test_the_battery_is_large_and_covers_every_category() -> None:
    categories = {c.category for c in CASES}
    assert {"video", "image", "flow", "cloud", "splats", "cameras", "checkpoint"} <= categories
    assert len(CASES) >= 120 - 20  # the run-level cases live in test_runs.py (20 more)
