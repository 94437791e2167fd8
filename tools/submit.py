#!/usr/bin/env python3
"""``python tools/submit.py ARGS`` == ``motion4d submit ARGS``: write Sintel / KITTI benchmark submission trees."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's library, installed or not
from motion4d.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["submit", *sys.argv[1:]]))
