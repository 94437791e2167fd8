#!/usr/bin/env python3
"""``python tools/corpus.py ARGS`` == ``motion4d corpus ARGS``: flow, encodings or tracks for every video of a corpus, sharded.

Under torchrun too: each process takes one shard (``RANK`` / ``WORLD_SIZE``).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's library, installed or not
from motion4d.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["corpus", *sys.argv[1:]]))
