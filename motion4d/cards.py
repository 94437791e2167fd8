"""Model cards: what each registered method is, where its code and weights come from, under which
licence, what its paper reports and how fast it runs here.

A :class:`ModelCard` travels with the registry entry of its method (``motion.register(..., card=)``,
``pointclouds`` ``register_method(..., card=)``, ``splats`` ``register_gaussian_method(..., card=)``),
so the named weight sets a flow model can download are read from its card. Every fact carries the
place it was read (a file at a commit, a README, a paper table); what could not be checked says
``unverified`` instead of a number, and a licence that the official source does not state is
:data:`NONE_STATED`. The licence fields are a record of what the sources say, not legal advice.

:func:`cards_table` and :func:`cards_json` render cards for ``motion4d models`` and
``motion.list_models(details=True)``; :func:`filter_cards` selects by licence.
"""
from __future__ import annotations

import json
import math
import textwrap
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Iterable, Sequence

from .errors import InvalidArgumentError

NONE_STATED = "none stated"
NOT_APPLICABLE = "not applicable"

#: Licence name -> may the covered thing be used commercially ("yes": permissive; "copyleft":
#: yes, with the obligation to release derived code under the same licence).
LICENCE_TERMS: dict[str, str] = {
    "MIT": "yes",
    "Apache-2.0": "yes",
    "BSD-2-Clause": "yes",
    "BSD-3-Clause": "yes",
    "GPL-3.0-or-later": "copyleft",
    "GPL-3.0-only": "copyleft",
    "LGPL-2.1-or-later": "copyleft",
    "CC-BY-NC-SA-4.0": "no",
    "Inria-3DGS (non-commercial)": "no",
    NONE_STATED: "unclear",
    NOT_APPLICABLE: "n/a",
}

#: Values of the ``licence=`` filter besides licence names (see :func:`filter_cards`).
LICENCE_FILTERS = ("commercial-ok", "commercial-unclear", "none-stated")


@dataclass(frozen=True)
class Licence:
    """A licence as read from its source.

    Attributes:
        name: an SPDX identifier (``"MIT"``, ``"Apache-2.0"``, ``"GPL-3.0-or-later"``), or
            :data:`NONE_STATED` when the source states none, or :data:`NOT_APPLICABLE` (no weights).
        source: where it was read (``"github.com/wwsource/SplatFlow LICENSE @ 41c53ff"``).
        note: anything a user should know besides (e.g. dataset terms).
    """

    name: str
    source: str
    note: str = ""

    @property
    def commercial_use(self) -> str:
        """``"yes"``, ``"copyleft"``, ``"no"``, ``"unclear"`` (none stated or unknown name) or ``"n/a"``."""
        return LICENCE_TERMS.get(self.name, "unclear")


@dataclass(frozen=True)
class Reported:
    """One number a paper (or the source named) reports.

    Attributes:
        benchmark: data set as ``motion4d evaluate`` names it where it has it (``"sintel"``,
            ``"kitti"``, ``"things"``), else the paper's name (``"spring"``, ``"kitti_o"``,
            ``"davis"``, ``"argoverse2"``).
        split: ``"training"``, ``"test"``, ``"val"``, ...
        subset: the pass or part (``"clean"``, ``"final"``, ``"2,048 points"``), ``"all"`` for the
            whole split.
        metric: the column as ``motion4d evaluate`` names it where it has it (``"EPE"``,
            ``"Fl-all"``), else the paper's (``"EPE3D"``, ``"PSNR"``, ``"1px"``).
        value: the number, or None when it could not be read (``note`` then says ``unverified``).
        unit: ``"px"``, ``"%"``, ``"m"``, ``"dB"``, ``"deg"``, or ``"none"`` for a ratio.
        source: where it was read (``"StreamFlow paper Table 1"``, a CSV at a commit).
    """

    benchmark: str
    split: str
    subset: str
    metric: str
    value: float | None
    unit: str
    source: str
    note: str = ""

    @property
    def label(self) -> str:
        part = "" if self.subset == "all" else f" {self.subset}"
        return f"{self.benchmark}{part} ({self.split}) {self.metric}"

    def formatted(self) -> str:
        if self.value is None:
            return "unverified"
        if self.unit == "%":
            return f"{self.value:g}%"
        return f"{self.value:g}" + ("" if self.unit == "none" else f" {self.unit}")


@dataclass(frozen=True)
class WeightCard:
    """A published weight set of a method.

    Attributes:
        name: the name ``weights=`` takes (``"sintel"``).
        trained_on: the training schedule and data (``"FlyingThings3D, then Sintel+KITTI+HD1K+Things"``).
        official_file: the file the authors published, or ``"not released"``.
        published_at: where the authors publish it (README link, release page).
        asset: the converted file motion4d downloads for ``weights=name`` (a ptlflow release asset
            name or a URL), or None when the set cannot be downloaded by name (pass ``weights=PATH``).
        aliases: other names accepted for it (ptlflow's names).
        reported: what the papers report for these weights.
        note: anything else (e.g. which file a name stands for when that is not obvious).
    """

    name: str
    trained_on: str
    official_file: str
    published_at: str
    asset: str | None = None
    aliases: tuple[str, ...] = ()
    reported: tuple[Reported, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Setting:
    """A default of ours next to the official one and a peer's.

    Attributes:
        name: the setting (``"iterations"``).
        ours: motion4d's default, then in parentheses the option that changes it and details
            (``"24 (iters=)"``); tables show the part before the parenthesis.
        official: the official script's value, details in parentheses likewise.
        official_source: the file it was read from.
        peer: a peer implementation's value, naming the peer (``"ptlflow 0.4.2: 32"``), or
            ``"not in ptlflow"``.
        peer_source: where the peer's value was read (or why there is none).
        note: what the difference does.
    """

    name: str
    ours: str
    official: str
    official_source: str
    peer: str
    peer_source: str
    note: str = ""


@dataclass(frozen=True)
class Speed:
    """Our measured CPU speed (``bench/model_cards.py``).

    Attributes:
        seconds: seconds per ``per``.
        per: the unit of work (``"flow"``, ``"point-cloud pair"``, ``"iteration"``, ``"frame"``).
        workload: input size and settings.
        source: the run (script, date, machine, threads, load average).
    """

    seconds: float
    per: str
    workload: str
    source: str

    def formatted(self) -> str:
        s = self.seconds
        value = f"{s * 1000:.3g} ms" if s < 1 else f"{s:.3g} s"
        return f"{value}/{self.per}"


@dataclass(frozen=True)
class ModelCard:
    """Everything a user should know about a registered method besides its options.

    Attributes:
        title: the method's name as its paper writes it.
        task: ``"optical flow"``, ``"scene flow"`` or ``"4D Gaussians"``.
        paper: authors, title, venue and year (or why there is none).
        paper_url: arXiv / proceedings link (or why there is none).
        repository: the official code repository, with the commit read (or why there is none).
        implementation: what motion4d runs (re-implementation, OpenCV, ...).
        code_licence: licence of the official code.
        implementation_licence: licence of the code motion4d runs.
        weights_licence: licence of the official weights (:data:`NOT_APPLICABLE` without weights).
        weights: the published weight sets.
        reported: numbers the paper reports that belong to no released weight set (training-free
            methods, models whose weights were not released).
        reported_note: how to read the reported numbers (protocol, comparability) or why there are
            none.
        settings: defaults of ours against the official script's and a peer's.
        speed: our measured CPU speed.
    """

    title: str
    task: str
    paper: str
    paper_url: str
    repository: str
    implementation: str
    code_licence: Licence
    implementation_licence: Licence
    weights_licence: Licence
    weights: tuple[WeightCard, ...]
    reported: tuple[Reported, ...]
    reported_note: str
    settings: tuple[Setting, ...]
    speed: Speed

    # ---------------------------------------------------------------------------------- weights
    def weight(self, name: str) -> WeightCard | None:
        """The weight set called ``name`` or one of its aliases, or None."""
        for w in self.weights:
            if name == w.name or name in w.aliases:
                return w
        return None

    def downloadable(self) -> dict[str, WeightCard]:
        """Weight sets that ``weights=NAME`` downloads, by name (aliases not included)."""
        return {w.name: w for w in self.weights if w.asset}

    def aliases(self) -> dict[str, str]:
        """Alias -> name of the downloadable weight set it stands for."""
        return {a: w.name for w in self.weights if w.asset for a in w.aliases}

    def all_reported(self) -> list[tuple[str, Reported]]:
        """``(weight set name or "-", number)`` for every reported number."""
        found = [("-", r) for r in self.reported]
        return found + [(w.name, r) for w in self.weights for r in w.reported]

    # --------------------------------------------------------------------------------- licences
    @property
    def uses_weights(self) -> bool:
        return any(w.official_file != "not released" for w in self.weights)

    @property
    def commercial_use(self) -> str:
        """Whether the code motion4d runs and, when the method has published weights, those weights
        may be used commercially: ``"yes"``, ``"copyleft"``, ``"no"`` or ``"unclear"``."""
        terms = [self.implementation_licence.commercial_use]
        if self.uses_weights:
            terms.append(self.weights_licence.commercial_use)
        for verdict in ("no", "unclear", "copyleft"):
            if verdict in terms:
                return verdict
        return "yes"

    # ------------------------------------------------------------------------------ completeness
    def problems(self) -> list[str]:
        """Empty fields, licences or numbers without a source, unverified numbers not saying so."""
        found = [f"{path}: empty" for path, value in _leaves(self) if isinstance(value, str) and not value.strip()]
        for label, licence in (("code_licence", self.code_licence), ("implementation_licence", self.implementation_licence),
                               ("weights_licence", self.weights_licence)):
            if licence.name not in LICENCE_TERMS:
                found.append(f"{label}: unknown licence name {licence.name!r} (add it to LICENCE_TERMS)")
        if self.uses_weights and self.weights_licence.name == NOT_APPLICABLE:
            found.append("weights_licence: the method has published weights, so it cannot be 'not applicable'")
        if not self.settings:
            found.append("settings: none")
        names: list[str] = []
        for w in self.weights:
            names += [w.name, *w.aliases]
        if len(names) != len(set(names)):
            found.append(f"weights: a name or alias is used twice ({names})")
        for owner, r in self.all_reported():
            if r.value is None and "unverified" not in r.note.lower():
                found.append(f"reported {owner} {r.label}: no value and the note does not say 'unverified'")
            if r.value is not None and not math.isfinite(r.value):
                found.append(f"reported {owner} {r.label}: value {r.value} is not finite")
        if not math.isfinite(self.speed.seconds) or self.speed.seconds <= 0:
            found.append(f"speed: {self.speed.seconds} is not a positive time")
        return found

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["commercial_use"] = self.commercial_use
        for key, licence in (("code_licence", self.code_licence), ("implementation_licence", self.implementation_licence),
                             ("weights_licence", self.weights_licence)):
            out[key]["commercial_use"] = licence.commercial_use
        return out


def _leaves(value: Any, path: str = "card") -> Iterable[tuple[str, Any]]:
    if is_dataclass(value):
        for f in fields(value):
            if f.name == "note":  # optional free text
                continue
            yield from _leaves(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


# ------------------------------------------------------------------------------------- listing
@dataclass(frozen=True)
class CardRow:
    """A registered method and its card (None when its registration gives none)."""

    name: str
    kind: str  # "flow", "scene flow", "Gaussians"
    description: str
    card: ModelCard | None = field(default=None, compare=False)


def filter_cards(rows: Sequence[CardRow], licence: str | None = None) -> list[CardRow]:
    """Rows whose card matches ``licence``.

    ``licence``: None (all rows), ``"commercial-ok"`` (the code motion4d runs and the published
    weights, if any, allow commercial use: :attr:`ModelCard.commercial_use` is ``"yes"``),
    ``"commercial-unclear"`` (anything else, including rows without a card), ``"none-stated"``
    (the official code or weights state no licence), or a licence name (``"MIT"``) matched against
    the official code, implementation and weights licences.
    """
    if licence is None:
        return list(rows)
    if licence == "none-stated":
        licence = NONE_STATED
    if not isinstance(licence, str) or not licence:
        raise InvalidArgumentError(f"licence must be a licence name or one of {LICENCE_FILTERS}, got {licence!r}")
    known = set(LICENCE_FILTERS) | set(LICENCE_TERMS)
    if licence not in known:
        raise InvalidArgumentError(f"licence={licence!r} is not one of {sorted(known)}")
    picked = []
    for row in rows:
        card = row.card
        if licence == "commercial-ok":
            keep = card is not None and card.commercial_use == "yes"
        elif licence == "commercial-unclear":
            keep = card is None or card.commercial_use != "yes"
        else:
            names = () if card is None else (card.code_licence.name, card.implementation_licence.name,
                                              card.weights_licence.name)
            keep = licence in names
        if keep:
            picked.append(row)
    return picked


def _weights_cell(card: ModelCard) -> str:
    if not card.weights:
        return "none"
    parts = []
    for w in card.weights:
        name = w.name + (f" (={'/'.join(w.aliases)})" if w.aliases else "")
        if w.official_file == "not released":
            name += " [not released]"
        elif not w.asset:
            name += " [weights=PATH]"
        parts.append(name)
    return ", ".join(parts)


def _reported_cell(card: ModelCard, limit: int = 1) -> str:
    numbers = [(owner, r) for owner, r in card.all_reported() if r.value is not None]
    if not numbers:
        return "unverified" if card.all_reported() else "none published"
    cells = [f"{'' if owner == '-' else owner + ': '}{r.benchmark}{'' if r.subset == 'all' else '-' + r.subset} "
             f"{r.metric} {r.formatted()}" for owner, r in numbers[:limit]]
    more = len(numbers) - limit
    return "; ".join(cells) + (f"; +{more}" if more > 0 else "")


def _settings_cell(card: ModelCard) -> str:
    s = card.settings[0]
    return f"{s.name} {s.ours.split(' (')[0]} (official {s.official.split(' (')[0]}; {s.peer})"


TABLE_COLUMNS = ("name", "kind", "code licence", "weights licence", "commercial (as run)", "weights", "reported",
                 "default vs official/peer", "CPU speed")


def table_cells(row: CardRow) -> list[str]:
    card = row.card
    if card is None:
        return [row.name, row.kind, "no card", "", "", "", "", "", ""]
    return [row.name, row.kind, card.code_licence.name, card.weights_licence.name, card.commercial_use,
            _weights_cell(card), _reported_cell(card), _settings_cell(card), card.speed.formatted()]


def cards_table(rows: Sequence[CardRow], markdown: bool = False, width: int | None = 34) -> str:
    """The rows as a table (plain text, or markdown with ``markdown=True``); cells longer than
    ``width`` are wrapped (plain text) or left whole (markdown)."""
    body = [table_cells(r) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in body]
        return "\n".join(lines)
    wrapped = [[textwrap.wrap(c, width) or [""] if width else [c] for c in cells] for cells in body]
    widths = [max([len(h)] + [len(line) for cells in wrapped for line in cells[i]]) for i, h in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(TABLE_COLUMNS, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for cells in wrapped:
        for k in range(max(len(c) for c in cells)):
            lines.append("  ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines)


def cards_json(rows: Sequence[CardRow]) -> str:
    """Every row with its full card as JSON (``None`` for rows without a card)."""
    return json.dumps([{"name": r.name, "kind": r.kind, "description": r.description,
                        "card": None if r.card is None else r.card.as_dict()} for r in rows], indent=2)


def describe_card(row: CardRow) -> str:
    """A multi-line plain-text view of one card (``motion4d models NAME``)."""
    card = row.card
    if card is None:
        return f"{row.name} ({row.kind}): {row.description}\n  no model card"
    out = [f"{row.name} ({row.kind}): {card.title}", f"  {row.description}",
           f"  paper: {card.paper} <{card.paper_url}>", f"  repository: {card.repository}",
           f"  implementation: {card.implementation}"]
    for label, licence in (("code licence", card.code_licence), ("implementation licence", card.implementation_licence),
                           ("weights licence", card.weights_licence)):
        out.append(f"  {label}: {licence.name} [commercial use: {licence.commercial_use}] (source: {licence.source})"
                   + (f" - {licence.note}" if licence.note else ""))
    out.append(f"  commercial use of the method as shipped: {card.commercial_use}")
    for w in card.weights:
        alias = f" (also {', '.join(w.aliases)})" if w.aliases else ""
        out.append(f"  weights {w.name!r}{alias}: trained on {w.trained_on}; file {w.official_file} "
                   f"from {w.published_at}" + (f"; downloads {w.asset}" if w.asset else "; not downloadable by name"))
        if w.note:
            out.append(f"    note: {w.note}")
        for r in w.reported:
            out.append(f"    reported {r.label}: {r.formatted()} (source: {r.source})" + (f" - {r.note}" if r.note else ""))
    for r in card.reported:
        out.append(f"  reported {r.label}: {r.formatted()} (source: {r.source})" + (f" - {r.note}" if r.note else ""))
    out.append(f"  about the numbers: {card.reported_note}")
    for s in card.settings:
        out.append(f"  {s.name}: ours {s.ours}; official {s.official} ({s.official_source}); {s.peer} ({s.peer_source})"
                   + (f" - {s.note}" if s.note else ""))
    out.append(f"  CPU speed: {card.speed.formatted()} ({card.speed.workload}; {card.speed.source})")
    return "\n".join(out)
