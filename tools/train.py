#!/usr/bin/env python3
"""``python tools/train.py ARGS`` == ``motion4d train ARGS``: train a flow model.

Under torchrun too: ``torchrun --nproc_per_node=2 tools/train.py --model tiny-flow ... --out runs/x`` (DDP).
"""
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
    sys.exit(main(["train", *sys.argv[1:]]))
