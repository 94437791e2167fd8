"""The packages' modules import each other without cycles (function-level imports included)."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("motion4d", "motion", "pointclouds", "splats")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports, at any depth, except under ``if TYPE_CHECKING:``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            # ``from pkg import sub`` depends on the submodule; ``from mod import name`` on the module.
            found.update(f"{source}.{alias.name}" for alias in node.names)
            found.add(source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _import_graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imported_names(path):
            if target not in modules:
                target = target.rpartition(".")[0]  # a name defined in that module
            # A module's own packages are being imported already (``from . import sibling``).
            if target in modules and target != name and not name.startswith(target + "."):
                edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_graph_sees_function_level_imports():
    graph = _import_graph()
    assert "motion.track_formats" in graph["motion.tracks"]  # Tracks.save / Tracks.load
    assert "motion.estimate" in graph["motion.tracking"]  # imported inside track_points
    assert "motion.tracks" not in graph["motion.track_formats"]  # only under TYPE_CHECKING


def test_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_a_cycle_is_reported():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# motion's 2-D features that the 3-D and Gaussian packages may use; the shared core (errors, checks,
# atomic writes, devices, registries) comes from motion4d, never through motion
TWO_D_FEATURES = {"motion.flow_geometry", "motion.estimate", "motion.flow_io", "motion.frames", "motion.models.base",
                  "motion.tracks", "motion.tracking", "motion.image_io", "motion.video_writer", "motion.visualize",
                  "motion.sample_data"}


def test_pointclouds_and_splats_use_motion_only_for_2d_features():
    graph = _import_graph()
    borrowed = {(module, dep) for module, deps in graph.items() if module.startswith(("splats", "pointclouds"))
                for dep in deps if dep == "motion" or dep.startswith("motion.")}
    assert {dep for _, dep in borrowed} <= TWO_D_FEATURES, sorted(borrowed)


def test_importing_splats_and_pointclouds_loads_no_flow_model():
    code = ("import sys, splats, pointclouds; "
            "print(sorted(m for m in sys.modules if m.startswith('motion')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert "motion.models" not in run.stdout, run.stdout
