"""Evaluation reports: ``metrics.json``, ``metrics.csv`` (every metric) and ``metrics.md`` (headline table)."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

from motion.protocols import BENCHMARKS
from motion4d.atomic import atomic_write_text

from .paper import PaperNumber, comparison_lines
from .results import SubsetResult

HEADLINES: dict[str, list[tuple[str, str, str]]] = {
    # benchmark -> (column, reduction, metric key)
    "sintel": [("EPE", "pooled", "epe"), ("matched", "pooled", "epe_noc"), ("unmatched", "pooled", "epe_occ"),
               ("s0-10", "pooled", "epe_s0_10"), ("s10-40", "pooled", "epe_s10_40"), ("s40+", "pooled", "epe_s40plus"),
               ("1px", "pooled", "px1")],
    "kitti": [("EPE", "per_image", "epe"), ("Fl-all", "pooled", "fl_all"), ("EPE-noc", "per_image", "epe_noc"),
              ("Fl-noc", "pooled", "fl_noc"), ("EPE pooled", "pooled", "epe")],
    "things": [("EPE", "pooled", "epe"), ("1px", "pooled", "px1"), ("3px", "pooled", "px3"), ("5px", "pooled", "px5")],
}


def jsonable(value: Any) -> Any:
    """``value`` with every key a string and every leaf a JSON scalar (other objects as their ``str``)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def headline(benchmark: str, pooled: dict[str, float], per_image: dict[str, float]) -> dict[str, float]:
    """The numbers the papers report for ``benchmark``, by column name."""
    tables = {"pooled": pooled, "per_image": per_image}
    return {column: tables[reduction].get(key, math.nan) for column, reduction, key in HEADLINES[benchmark]}


def write_reports(out_dir: Path, results: Sequence[SubsetResult], config: dict[str, Any],
                  paper: dict[str, list[PaperNumber]] | None = None) -> dict[str, Any]:
    """``metrics.json``, ``metrics.csv`` (every metric, both reductions) and ``metrics.md``.

    ``paper``: subset name -> the model card's numbers for it (:mod:`motion.evaluation.paper`), or
    None when the model has no card.
    """
    summary = {
        "config": jsonable(config),
        "subsets": {
            r.subset.name: {
                "benchmark": r.subset.benchmark,
                "split": r.subset.split,
                "pass": r.subset.pass_name,
                "protocol": r.protocol.describe(),
                "pairs": r.num_pairs,
                "computed": r.computed,
                "skipped": r.skipped,
                "seconds": r.seconds,
                "headline": r.headline,
                "pooled": r.pooled,
                "per_image": r.per_image,
                "paper": None if paper is None else {n.column: n.as_dict() for n in paper.get(r.subset.name, [])
                                                     if n.same_split},
                "paper_other_splits": None if paper is None else [
                    {"column": n.column, **n.as_dict()} for n in paper.get(r.subset.name, []) if not n.same_split],
            }
            for r in results
        },
    }
    atomic_write_text(out_dir / "metrics.json", json.dumps(jsonable(summary), indent=2, allow_nan=True))
    buffer = io.StringIO()
    keys = sorted({k for r in results for d in (r.pooled, r.per_image) for k in d})
    writer = csv.writer(buffer)
    writer.writerow(["subset", "reduction", *keys])
    for r in results:
        for reduction, values in (("pooled", r.pooled), ("per_image", r.per_image)):
            writer.writerow([r.subset.name, reduction, *[_fmt(values.get(k, math.nan)) for k in keys]])
    atomic_write_text(out_dir / "metrics.csv", buffer.getvalue())
    atomic_write_text(out_dir / "metrics.md", markdown_table(results, config.get("model", ""), paper, config.get("weights")))
    return summary


def _fmt(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def markdown_table(results: Sequence[SubsetResult], model_name: str,
                   paper: dict[str, list[PaperNumber]] | None = None, weights: Any = None) -> str:
    """One table per benchmark: rows = subsets, columns = the papers' headline numbers; then the
    model card's numbers for the evaluated weights next to ours (when ``paper`` is given)."""
    lines = [f"# Flow evaluation: {model_name}", ""]
    for benchmark in BENCHMARKS:
        rows = [r for r in results if r.subset.benchmark == benchmark]
        if not rows:
            continue
        columns = [c for c, _, _ in HEADLINES[benchmark]]
        lines += [f"## {benchmark}", "", "| subset | pairs | " + " | ".join(columns) + " |",
                  "|---|---:|" + "---:|" * len(columns)]
        for r in rows:
            cells = []
            for column in columns:
                value = r.headline[column]
                cells.append("-" if math.isnan(value) else (f"{value:.2f}%" if column.startswith("Fl") else f"{value:.3f}"))
            lines.append(f"| {r.subset.name} | {r.num_pairs} | " + " | ".join(cells) + " |")
        lines += ["", f"Protocol: {rows[0].protocol.describe()}.", ""]
    lines += ["KITTI EPE is the mean of per-image EPEs and Fl is pooled over all valid pixels (as the papers' "
              "scripts); Sintel and Things numbers are pooled over pixels. Full tables: metrics.csv.", ""]
    if paper is not None:
        lines += _paper_section(results, model_name, paper, weights)
    return "\n".join(lines)


def _paper_section(results: Sequence[SubsetResult], model_name: str, paper: dict[str, list[PaperNumber]],
                   weights: Any) -> list[str]:
    label = f"the {weights!r} weights" if isinstance(weights, str) else ("no weights" if weights is None else "these weights")
    lines = [f"## Paper vs ours ({model_name}, {label})", ""]
    ours = {r.subset.name: r.headline for r in results}
    for r in results:
        found = comparison_lines(paper.get(r.subset.name, []), ours)
        lines += found or [f"- {r.subset.name}: the model card lists no number for {label} on this subset "
                           f"(motion4d models {model_name})"]
    return lines + [""]
