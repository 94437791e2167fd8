#!/usr/bin/env python3
"""``python tools/corpus.py ARGS`` == ``motion4d corpus ARGS``: flow, encodings or tracks for every video of a corpus, sharded.

Under torchrun too: each process takes one shard (``RANK`` / ``WORLD_SIZE``).
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
    sys.exit(main(["corpus", *sys.argv[1:]]))
