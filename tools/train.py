#!/usr/bin/env python3
"""``python tools/train.py ARGS`` == ``motion4d train ARGS``: train a flow model.

Under torchrun too: ``torchrun --nproc_per_node=2 tools/train.py --model tiny-flow ... --out runs/x`` (DDP).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's library, installed or not
from motion4d.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
