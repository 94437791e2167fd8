"""Error messages in the words of the command line: Python keywords (``overwrite=True``) become flags."""
from __future__ import annotations

import argparse
import re


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Parameter name -> the long flag that sets it (``overwrite`` -> ``--overwrite``)."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        names = [s for s in action.option_strings if s.startswith("--")]
        if names and action.dest != argparse.SUPPRESS:
            flags.setdefault(action.dest, names[0])
    return flags


def name_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with ``name=True`` / ``name='value'`` / ``name=value`` / ``name=:`` of the parser's
    parameters written as typed (``--name``, ``--name value``); other text is left alone."""
    flags = _flags(parser)
    if not flags:
        return message
    names = "|".join(sorted((re.escape(n) for n in flags), key=len, reverse=True))
    pattern = re.compile(rf"(?<!\S)({names})=('[^']*'|\"[^\"]*\"|[^\s,;:)'\"]*)")

    def replace(match: re.Match) -> str:
        flag, value = flags[match.group(1)], match.group(2)
        if value in ("True", ""):
            return flag
        if value == "False":
            return match.group(0)
        return f"{flag} {value.strip(chr(39) + chr(34))}"

    return pattern.sub(replace, message)
