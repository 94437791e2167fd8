"""``motion4d models [NAME ...] [--kind KIND] [--licence FILTER] [--json | --markdown]``: the model cards.

Without names: one row per registered method (optical flow, scene flow, 4D Gaussians) with its
official code licence, weights licence, whether it may be used commercially as shipped, its
weight sets (aliases in parentheses), the first number its paper reports, its main default against
the official script's and a peer's, and its measured CPU speed. With names: every field of those
cards, each fact with its source. ``--json`` prints the full cards for scripts.
"""
from __future__ import annotations

import argparse

from motion4d.errors import InvalidArgumentError

KINDS = ("flow", "scene-flow", "gaussians")


def build_parser(parser: argparse.ArgumentParser) -> None:
    from motion4d.cards import LICENCE_FILTERS

    parser.add_argument("names", nargs="*", metavar="NAME", help="show these methods' full cards")
    parser.add_argument("--kind", action="append", choices=KINDS, help="only this kind of method (repeatable)")
    parser.add_argument("--licence", "--license", dest="licence", default=None,
                        help=f"only methods matching: {', '.join(LICENCE_FILTERS)}, or a licence name such as MIT")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="full cards as JSON")
    output.add_argument("--markdown", action="store_true", help="the table in markdown")


def all_rows(kinds=KINDS):
    """Card rows of every registered method of ``kinds``, flow first."""
    rows = []
    if "flow" in kinds:
        from motion.registry import model_rows

        rows += model_rows()
    if "scene-flow" in kinds:
        from pointclouds.methods.registry import method_rows

        rows += method_rows()
    if "gaussians" in kinds:
        from splats.methods import gaussian_rows

        rows += gaussian_rows()
    return rows


def run(args: argparse.Namespace) -> int:
    from motion4d.cards import cards_json, cards_table, describe_card, filter_cards

    rows = filter_cards(all_rows(tuple(args.kind or KINDS)), args.licence)
    if args.names:
        by_name = {r.name: r for r in rows}
        unknown = [n for n in args.names if n not in by_name]
        if unknown:
            raise InvalidArgumentError(f"NAME: no method {', '.join(map(repr, unknown))} among {sorted(by_name)}")
        rows = [by_name[n] for n in args.names]
        if not args.json:
            print("\n\n".join(describe_card(r) for r in rows))
            return 0
    if args.json:
        print(cards_json(rows))
    else:
        print(cards_table(rows, markdown=args.markdown))
    return 0
