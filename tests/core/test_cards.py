"""motion4d.cards: completeness checks, licence verdicts, filtering and rendering of model cards."""
from __future__ import annotations

import dataclasses
import json

import pytest

from motion4d.cards import (
    NONE_STATED,
    NOT_APPLICABLE,
    CardRow,
    Licence,
    ModelCard,
    Reported,
    Setting,
    Speed,
    WeightCard,
    cards_json,
    cards_table,
    describe_card,
    filter_cards,
)
from motion4d.errors import InvalidArgumentError

MIT = Licence("MIT", "LICENSE @ abc123")
APACHE = Licence("Apache-2.0", "setup.py")
NO_WEIGHTS = Licence(NOT_APPLICABLE, "no weights")


def _card(**changes) -> ModelCard:
    base = ModelCard(
        title="Test method", task="optical flow", paper="A, B: Title, Venue 2024", paper_url="https://example.org",
        repository="https://github.com/a/b (read @ abc123)", implementation="motion4d",
        code_licence=MIT, implementation_licence=APACHE, weights_licence=NO_WEIGHTS, weights=(),
        reported=(Reported("sintel", "training", "clean", "EPE", 1.5, "px", "paper Table 1"),),
        reported_note="training split", settings=(Setting("iterations", "12 (iters=)", "12", "run.py", "ptlflow: 32",
                                                          "ptlflow/model.py"),),
        speed=Speed(0.5, "flow", "2 frames 64x64", "bench run"))
    return dataclasses.replace(base, **changes)


def _weights(**changes) -> WeightCard:
    base = WeightCard("sintel", "Things, then Sintel", "w_sintel.pth", "Google Drive (README)",
                      asset="m-sintel-0123abcd.ckpt", aliases=("sintel_v1",),
                      reported=(Reported("sintel", "test", "final", "EPE", 2.0, "px", "abstract"),))
    return dataclasses.replace(base, **changes)


def test_a_complete_card_has_no_problems():
    assert _card().problems() == []
    assert _card(weights=(_weights(),), weights_licence=Licence(NONE_STATED, "README")).problems() == []


@pytest.mark.parametrize(("changes", "expected"), [
    ({"title": " "}, "card.title: empty"),
    ({"code_licence": Licence("MIT", "")}, "card.code_licence.source: empty"),
    ({"code_licence": Licence("WTFPL-9", "LICENSE")}, "unknown licence name"),
    ({"reported": (Reported("kitti", "training", "all", "Fl-all", None, "%", "paper"),)}, "does not say 'unverified'"),
    ({"reported": (Reported("kitti", "training", "all", "Fl-all", 3.0, "%", ""),)}, "card.reported[0].source: empty"),
    ({"weights": (_weights(),)}, "cannot be 'not applicable'"),
    ({"weights": (_weights(), _weights(name="kitti", aliases=("sintel",)))}, "used twice"),
    ({"settings": ()}, "settings: none"),
    ({"settings": (Setting("iterations", "12", "12", "", "ptlflow: 32", "x"),)}, "official_source: empty"),
    ({"speed": Speed(0.0, "flow", "x", "y")}, "not a positive time"),
])
def test_incomplete_cards_are_reported(changes, expected):
    problems = _card(**changes).problems()
    assert any(expected in p for p in problems), problems


def test_unverified_numbers_are_allowed_when_they_say_so():
    card = _card(reported=(Reported("kitti", "test", "all", "EPE3D", None, "m", "paper", "unverified: table unreadable"),))
    assert card.problems() == []


def test_licence_verdicts_combine_code_and_published_weights():
    assert MIT.commercial_use == "yes" and Licence(NONE_STATED, "x").commercial_use == "unclear"
    assert Licence("GPL-3.0-or-later", "x").commercial_use == "copyleft"
    assert _card().commercial_use == "yes"  # no weights: the implementation decides
    unclear = _card(weights=(_weights(),), weights_licence=Licence(NONE_STATED, "README"))
    assert unclear.commercial_use == "unclear"
    unreleased = _card(weights=(_weights(official_file="not released", asset=None),))
    assert unreleased.commercial_use == "yes"  # only unreleased weights: nothing to license
    assert _card(implementation_licence=Licence("GPL-3.0-only", "x")).commercial_use == "copyleft"


def test_weight_lookup_and_download_table():
    card = _card(weights=(_weights(), _weights(name="kitti", aliases=(), asset=None)),
                 weights_licence=Licence("MIT", "README"))
    assert card.weight("sintel_v1").name == "sintel" and card.weight("nope") is None
    assert list(card.downloadable()) == ["sintel"]  # kitti has no asset: by path only
    assert card.aliases() == {"sintel_v1": "sintel"}


def test_filter_by_licence():
    rows = [CardRow("ok", "optical flow", "d", _card()),
            CardRow("weights", "optical flow", "d", _card(weights=(_weights(),), weights_licence=Licence(NONE_STATED, "x"))),
            CardRow("bare", "optical flow", "d", None)]
    assert [r.name for r in filter_cards(rows, "commercial-ok")] == ["ok"]
    assert [r.name for r in filter_cards(rows, "commercial-unclear")] == ["weights", "bare"]
    assert [r.name for r in filter_cards(rows, NONE_STATED)] == ["weights"]
    assert [r.name for r in filter_cards(rows, "none-stated")] == ["weights"]
    assert [r.name for r in filter_cards(rows, "MIT")] == ["ok", "weights"]
    assert filter_cards(rows, None) == rows
    with pytest.raises(InvalidArgumentError, match="licence='free'"):
        filter_cards(rows, "free")


def test_table_json_and_description():
    rows = [CardRow("ok", "optical flow", "a test method", _card(weights=(_weights(),), weights_licence=MIT)),
            CardRow("bare", "scene flow", "no card", None)]
    text = cards_table(rows)
    header = text.splitlines()[0]
    assert header.split()[:3] == ["name", "kind", "code"] and "CPU speed" in header
    assert "sintel (=sintel_v1)" in text and "500 ms/flow" in text and "no card" in text
    markdown = cards_table(rows, markdown=True).splitlines()
    assert markdown[0].startswith("| name | kind |") and len(markdown) == 4
    data = json.loads(cards_json(rows))
    assert data[0]["card"]["weights"][0]["aliases"] == ["sintel_v1"] and data[1]["card"] is None
    assert data[0]["card"]["code_licence"]["commercial_use"] == "yes"
    described = describe_card(rows[0])
    assert "source: LICENSE @ abc123" in described and "sintel final (test) EPE: 2 px (source: abstract)" in described
