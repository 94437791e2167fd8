"""The papers' numbers next to ours: the model card's reported metrics for the evaluated weights.

For a registered model evaluated with a named weight set (or an alias of one), each subset's
headline columns (:data:`~motion.evaluation.reports.HEADLINES`) are looked up among that weight
set's :class:`~motion4d.cards.Reported` numbers: same benchmark, pass and metric. A number on the
split we score (Sintel / KITTI training, Things test) is a reproduction target; one on another
split (the benchmarks' test sets) is listed for reference only. Training-free methods (cards
without weight sets) use the card's own numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from motion4d.cards import ModelCard, Reported

from .subsets import Subset


@dataclass(frozen=True)
class PaperNumber:
    """A reported number matched to a scored subset and column."""

    subset: str  # "sintel-clean"
    column: str  # "EPE"
    reported: Reported
    weights: str  # the weight set it belongs to, or "-" for the method itself
    same_split: bool  # scored on the split we score (comparable)

    def as_dict(self) -> dict[str, Any]:
        r = self.reported
        return {"value": r.value, "unit": r.unit, "split": r.split, "weights": self.weights,
                "comparable": self.same_split, "source": r.source, "note": r.note}


def _candidates(card: ModelCard, weights: str | None) -> tuple[str, tuple[Reported, ...]] | None:
    if weights is None:
        return ("-", card.reported) if not card.weights else None
    weight = card.weight(weights)
    return None if weight is None else (weight.name, weight.reported)


def paper_numbers(card: ModelCard | None, weights: Any, subset: Subset, columns: list[str]) -> list[PaperNumber]:
    """The card's reported numbers for ``weights`` (a weight-set name or alias; paths give none)
    that belong to ``subset`` and one of ``columns``, verified values only."""
    if card is None or not (weights is None or isinstance(weights, str)):
        return []
    found = _candidates(card, weights)
    if found is None:
        return []
    owner, reported = found
    wanted_subset = subset.pass_name or "all"
    out = []
    for r in reported:
        if r.value is None or r.benchmark != subset.benchmark or r.subset != wanted_subset or r.metric not in columns:
            continue
        out.append(PaperNumber(subset.name, r.metric, r, owner, r.split == subset.split))
    return out


def comparison_lines(numbers: list[PaperNumber], ours: dict[str, dict[str, float]]) -> list[str]:
    """Markdown lines: ``ours vs paper`` for comparable numbers, then the other splits for reference.

    ``ours``: subset name -> headline column -> our value.
    """
    lines = []
    for n in sorted(numbers, key=lambda n: not n.same_split):  # reproduction targets first
        r = n.reported
        value = ours.get(n.subset, {}).get(n.column)
        where = f"{n.subset} {n.column}"
        weights = "" if n.weights == "-" else f" ({n.weights} weights)"
        if n.same_split and value is not None and value == value:
            delta = value - r.value
            lines.append(f"- {where}{weights}: ours {value:.3f}, paper {r.formatted()} "
                         f"({'+' if delta >= 0 else ''}{delta:.3f}); source: {r.source}"
                         + (f"; {r.note}" if r.note else ""))
        elif not n.same_split:
            lines.append(f"- {where}{weights}: paper {r.formatted()} on the {r.split} split, not comparable with "
                         f"this {_split_word(n)} score; source: {r.source}")
    return lines


def _split_word(n: PaperNumber) -> str:
    return "training-split" if n.subset.startswith(("sintel", "kitti")) else "test-split"
