"""Error messages in command-line words."""
from __future__ import annotations

import argparse

from motion4d.cli.messages import name_flags


def test_python_keywords_become_the_flags_typed():
    parser = argparse.ArgumentParser()
    for flag in ("--overwrite", "--weights", "--device", "--method", "--out"):
        parser.add_argument(flag)
    parser.add_argument("--max-samples")
    cases = {
        "out holds results; use another folder or overwrite=True": "out holds results; use another folder or --overwrite",
        "weights='sintl' is neither a file nor a named weight set": "--weights sintl is neither a file nor a named weight set",
        "method='scoop' needs weights=: a checkpoint path": "--method scoop needs --weights: a checkpoint path",
        "max_samples=0 is too small, overwrite=False kept": "--max-samples 0 is too small, overwrite=False kept",
        "GFlowConfig(device='cpu') and keep_out=1": "GFlowConfig(device='cpu') and keep_out=1",  # not a keyword of ours
    }
    for message, expected in cases.items():
        assert name_flags(message, parser) == expected
