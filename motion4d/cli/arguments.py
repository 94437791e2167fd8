"""Argument parsing shared by the subcommands: lists, options, frame selection, JSON, device, output options."""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from motion4d.errors import InvalidArgumentError


def parse_resize(text: str | None) -> Any:
    """``"640x480"`` -> (640, 480); ``"0.5"`` -> 0.5 (scale); ``"512"`` -> 512 (largest side); None -> None."""
    if text is None:
        return None
    try:
        if "x" in text:
            w, h = text.lower().split("x")
            return (int(w), int(h))
        return float(text) if "." in text else int(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"--resize must be WxH, a scale like 0.5, or a largest side like 512; got {text!r}") from exc


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``["vo=dis", "sigma=0.5"]`` -> {"vo": "dis", "sigma": 0.5} (Python literals where they parse)."""
    options: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InvalidArgumentError(f"--option expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            options[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key.strip()] = value
    return options


def parse_list(text: str, name: str, choices: tuple[str, ...]) -> list[str]:
    """Comma-separated choices, validated."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in choices]
    if bad or not items:
        raise InvalidArgumentError(f"{name} must be a comma-separated list of {list(choices)}, got {text!r}")
    return items


def add_frame_selection(parser: argparse.ArgumentParser) -> None:
    """--start/--stop/--stride/--max-frames/--resize/--on-damage, as in motion.open_video."""
    group = parser.add_argument_group("frame selection")
    group.add_argument("--start", type=int, default=0, help="first frame index (default 0)")
    group.add_argument("--stop", type=int, default=None, help="stop before this frame index")
    group.add_argument("--stride", type=int, default=1, help="use every n-th frame (default 1)")
    group.add_argument("--max-frames", type=int, default=None, help="use at most this many frames")
    group.add_argument("--resize", default=None, help="WxH, a scale (0.5) or the largest side (512)")
    group.add_argument("--on-damage", default="error", choices=("error", "warn", "skip"),
                       help="a truncated or corrupt video: stop with an error (default), keep every frame that "
                            "decodes with a warning, or leave damaged frames out")


def add_workers(parser: argparse.ArgumentParser) -> None:
    """``--workers N|auto``: threads computing frame pairs at once (classical methods; networks use 1)."""
    parser.add_argument("--workers", default="auto", metavar="N|auto",
                        help="threads computing frame pairs at once for the classical OpenCV methods (default auto: "
                             "one per available core, at most 8); networks run one stream")


def parse_workers(text: str | int | None) -> int | str:
    """``"auto"`` or a positive int, from ``--workers``."""
    if text is None or text == "auto" or isinstance(text, int):
        return "auto" if text is None else text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidArgumentError(f"--workers must be a positive integer or auto, got {text!r}")
    return value


def stage_rates(stages: dict[str, dict[str, float]]) -> str:
    """``decode 310/s, flow 21/s, write 540/s``: items per busy second of each pipeline stage."""
    return ", ".join(f"{name} {entry['per_second']:.3g}/s" for name, entry in stages.items() if entry["seconds"] > 0)


def frame_selection(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "start": args.start,
        "stop": args.stop,
        "stride": args.stride,
        "max_frames": args.max_frames,
        "resize": parse_resize(args.resize),
        "on_damage": args.on_damage,
    }


def parse_json_object(text: str | None, flag: str) -> dict[str, Any]:
    """A JSON object from a file path or inline JSON (``flag`` names the option in errors); None -> {}."""
    if not text:
        return {}
    path = Path(text)
    try:
        values = json.loads(path.read_text() if path.exists() else text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"{flag} is neither a JSON file nor inline JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise InvalidArgumentError(f"{flag} must hold a JSON object")
    return values


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` and ``--quiet``, the same on every subcommand (unless its module defines them)."""
    taken = parser._option_string_actions
    group = parser.add_argument_group("progress and messages")
    if "--no-progress" not in taken:
        group.add_argument("--no-progress", action="store_true", help="hide progress bars")
    if "--quiet" not in taken:
        names = ["-q", "--quiet"] if "-q" not in taken else ["--quiet"]
        group.add_argument(*names, action="store_true",
                           help="hide progress bars and the summary on stdout (errors and warnings still show)")


def check_device_argument(args: argparse.Namespace) -> None:
    """Check ``--device`` against this machine before any work (raises naming ``--device``)."""
    device = getattr(args, "device", None)
    if isinstance(device, str) and device.strip() not in ("auto", "cpu"):  # these need no check (nor torch)
        from motion4d.device import resolve_device

        resolve_device(device, "--device")


def warn(command: str, message: str) -> None:
    """A warning on stderr in the command's words (``motion4d track: warning: ...``)."""
    print(f"motion4d {command}: warning: {message}", file=sys.stderr)


#: settings that do not change what a run writes (left out of the comparison with an earlier run)
NOT_RESULT_SETTINGS = frozenset({"no_progress", "quiet", "device", "batch", "workers", "overwrite", "out", "export"})


def check_video(args: argparse.Namespace) -> None:
    """Open ``args.video`` with the frame selection and close it: an unreadable or missing video is
    refused before an output folder or a model exists."""
    from motion.frames import open_video

    selection = frame_selection(args)
    selection.pop("on_damage")
    open_video(args.video, **selection).close()


def owned_output_folder(args: argparse.Namespace, config_name: str, source: Any, **settings: Any) -> Any:
    """An :class:`~motion4d.outputs.OutputFolder` for ``args.out`` owned by this run's source and settings.

    The configuration is the parsed arguments (plus ``settings``, e.g. normalised values) and the
    source's identity; an earlier run with other result-changing settings is refused unless
    ``--overwrite`` is given (its recorded outputs are then removed).
    """
    from motion4d.outputs import OutputFolder, source_identity

    config = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    config.update(settings)
    config["source_identity"] = source_identity(source)
    keys = [k for k in config if k not in NOT_RESULT_SETTINGS]
    return OutputFolder(args.out, config_name, config, keys, overwrite=bool(getattr(args, "overwrite", False)))
