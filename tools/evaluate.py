#!/usr/bin/env python3
"""``python tools/evaluate.py ARGS`` == ``motion4d evaluate ARGS``: score a flow model on Sintel / KITTI / FlyingThings3D."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's library, installed or not
from motion4d.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
