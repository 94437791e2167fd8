"""The ``motion4d`` console script (also ``python -m motion4d``): one subcommand per module of this package.

Every subcommand module exposes ``build_parser(parser)`` and ``run(args) -> int``: it parses its
arguments and calls the library (``motion``, ``pointclouds``, ``splats``), imported inside its
functions. Subcommands are imported only when used so ``motion4d --help`` stays fast; a new one is
a module with that contract plus a line in :data:`SUBCOMMANDS`.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Sequence

from motion4d.errors import Motion4DError

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "info": ("motion4d.cli.info", "versions and available backends (CUDA, compiled ops, gsplat, open3d, PyAV)"),
    "demo": ("motion4d.cli.demo", "run the bundled demo: video in -> flow, tracks, pictures out"),
    "flow": ("motion4d.cli.flow", "optical flow for a video or frame folder"),
    "encode": ("motion4d.cli.encode", "ReynoldsFlow+ RGB encoding of a video for detectors"),
    "track": ("motion4d.cli.track", "point tracks from chained flow, exported for downstream tools"),
    "evaluate": ("motion4d.cli.evaluate", "evaluate a flow model on Sintel / KITTI / FlyingThings3D"),
    "submit": ("motion4d.cli.submit", "write Sintel / KITTI benchmark submission trees"),
    "train": ("motion4d.cli.train", "train a flow model (single process or torchrun DDP)"),
    "corpus": ("motion4d.cli.corpus", "flow, encodings or tracks for every video of a corpus, sharded"),
    "sceneflow": ("motion4d.cli.sceneflow", "scene flow between point clouds or over a data set"),
    "train-scoop": ("motion4d.cli.train_scoop", "train SCOOP (self-supervised scene flow) on a data set or synthetic pairs"),
    "reconstruct": ("motion4d.cli.reconstruct", "4D Gaussians from video (gaussian-flow, gflow)"),
}


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_text) in SUBCOMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, help_text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motion4d", description="Motion estimation and 4D reconstruction.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).build_parser(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="motion4d", add_help=False)
    parser.add_argument("command", nargs="?")
    known, _ = parser.parse_known_args(argv[:1])
    available = _available()
    if known.command not in available:
        full = build_parser()
        if known.command in (None, "-h", "--help"):
            full.print_help()
            return 0
        full.parse_args(argv)  # prints the usage error and exits 2
        return 2
    module_name, help_text = available[known.command]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"motion4d {known.command}", description=help_text)
    module.build_parser(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except Motion4DError as exc:
        print(f"motion4d {known.command}: error: {exc}", file=sys.stderr)
        return 2

