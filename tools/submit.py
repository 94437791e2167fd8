#!/usr/bin/env python3
"""``python tools/submit.py ARGS`` == ``motion4d submit ARGS``: write Sintel / KITTI benchmark submission trees."""
import sys
from pathlib import Path

try:
    from motion4d.cli import main
except ImportError:  # a clone without install (or with an older one): the library next to this folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for name in [m for m in sys.modules if m.split(".")[0] == "motion4d"]:
        del sys.modules[name]
    from motion4d.cli import main

if __name__ == "__main__":
    sys.exit(main(["submit", *sys.argv[1:]]))
