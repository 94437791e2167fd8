"""The ``motion4d`` console script (also ``python -m motion4d``): one subcommand per module of this package.

Every subcommand module exposes ``build_parser(parser)`` and ``run(args) -> int``: it parses its
arguments and calls the library (``motion``, ``pointclouds``, ``splats``), imported inside its
functions. Subcommands are imported only when used so ``motion4d --help`` stays fast; a new one is
a module with that contract plus a line in :data:`SUBCOMMANDS`.

One vocabulary for every subcommand: ``--out`` for where results go, ``--format`` for what is
written, ``--device`` (checked before any work), ``--no-progress`` (no progress bars) and
``--quiet`` (no progress bars and no summary on stdout), both added here to every subcommand.
Exit status: 0 done, 1 failed (some work failed, or the system refused: disk, memory), 2 bad
arguments or inputs (``motion4d CMD: error: ...``), 130 interrupted (rerun the command to resume).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Sequence

from motion4d import __version__
from motion4d.errors import Motion4DError

from .arguments import add_output_options, check_device_argument
from .messages import name_flags

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "info": ("motion4d.cli.info", "versions and available backends (CUDA, compiled ops, gsplat, open3d, PyAV)"),
    "models": ("motion4d.cli.models", "model cards: papers, code and weight licences, weights, reported numbers, speed"),
    "demo": ("motion4d.cli.demo", "run the bundled demo: video in -> flow, tracks, pictures out"),
    "flow": ("motion4d.cli.flow", "optical flow for a video or frame folder"),
    "encode": ("motion4d.cli.encode", "ReynoldsFlow+ RGB encoding of a video for detectors"),
    "track": ("motion4d.cli.track", "point tracks from chained flow, exported for downstream tools"),
    "objects": ("motion4d.cli.objects", "moving objects from motion: boxes (MOT), masks and an overlay video"),
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


def subcommand_module(command: str) -> ModuleType:
    """The module of ``command`` (``"flow"`` -> :mod:`motion4d.cli.flow`)."""
    return importlib.import_module(SUBCOMMANDS[command][0])


def subcommand_parser(command: str, **parser_options) -> argparse.ArgumentParser:
    """The full argument parser of ``command``: its module's options plus ``--no-progress`` / ``--quiet``.

    ``parser_options`` go to :class:`argparse.ArgumentParser` (``prog``, ``add_help``, ``exit_on_error``).
    """
    parser_options.setdefault("prog", f"motion4d {command}")
    parser_options.setdefault("description", SUBCOMMANDS[command][1])
    parser = argparse.ArgumentParser(**parser_options)
    subcommand_module(command).build_parser(parser)
    add_output_options(parser)
    return parser


def prepare_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Settle what every subcommand shares: ``--quiet`` implies ``--no-progress``; ``--device`` is checked
    against this machine (InvalidArgumentError / BackendUnavailableError naming ``--device``)."""
    if getattr(args, "quiet", False):
        args.no_progress = True
    check_device_argument(args)
    return args


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``--version`` and the subcommand names (their options are not built here)."""
    parser = argparse.ArgumentParser(
        prog="motion4d", description="Motion estimation and 4D reconstruction.",
        epilog="Run 'motion4d COMMAND --help' for the options of a command. Exit status: 0 done, 1 failed, "
               "2 bad arguments or inputs, 130 interrupted (rerun to resume).",
    )
    parser.add_argument("--version", action="version", version=f"motion4d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in _available().items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def run_subcommand(command: str, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run a parsed subcommand; every outcome is an exit status with a one-line message on stderr."""
    prefix = f"motion4d {command}"
    try:
        prepare_arguments(args)
        with contextlib.ExitStack() as stack:
            if args.quiet:
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            return int(subcommand_module(command).run(args) or 0)
    except Motion4DError as exc:
        print(f"{prefix}: error: {name_flags(str(exc), parser)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{prefix}: interrupted, rerun to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"{prefix}: error: out of memory (try smaller inputs, e.g. --batch 1 or --resize)", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # the system refused: disk full, permissions, a path that is a file
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as exc:
        if type(exc).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError; anything else is a bug
            raise
        print(f"{prefix}: error: CUDA out of memory (try smaller inputs, e.g. --batch 1 or --resize)", file=sys.stderr)
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """``motion4d [--version] COMMAND [OPTIONS]``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    available = _available()
    if not argv or argv[0] not in available:
        if not argv or argv[0] in ("-h", "--help"):
            build_parser().print_help()
            return 0
        if argv[0] == "--version":
            print(f"motion4d {__version__}")
            return 0
        build_parser().parse_args(argv[:1])  # prints the usage error and exits 2
        return EXIT_USAGE
    command = argv[0]
    parser = subcommand_parser(command)
    args = parser.parse_args(argv[1:])
    return run_subcommand(command, args, parser)
