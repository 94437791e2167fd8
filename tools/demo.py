#!/usr/bin/env python3
"""``python tools/demo.py ARGS`` == ``motion4d demo ARGS``: the bundled demo: video in -> flow, tracks, pictures out."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's library, installed or not
from motion4d.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
