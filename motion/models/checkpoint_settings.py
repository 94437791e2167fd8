"""ptlflow's ``hyper_parameters`` against a model's configuration, before any weight is loaded.

ptlflow's ``.ckpt`` files store the arguments the model was built with (Lightning's
``save_hyperparameters``: ``corr_levels``, ``gma``, ``decoder_depth``, ``T``, ...). A network class
here declares, per ptlflow argument, what motion4d builds (:class:`HyperParameter`): a fixed value
(correlation levels, GMA variant, heads: a checkpoint with another value cannot load) or the
option it maps to (``decoder_depth`` -> ``iters``, ``cnet``/``fnet`` -> ``encoder``, ``T`` ->
``group_size``).

:func:`check_hyper_parameters` turns a difference into one line: a :class:`CheckpointError` when
the weights need another architecture, a :class:`CheckpointSettingsWarning` when only an inference
setting differs (SplatFlow: ptlflow runs 32 iterations, the official script 24).
:func:`options_from_hyper_parameters` gives the builder options that reproduce the checkpoint's
settings (``motion.create(name, weights=path, config_from_checkpoint=True)``).

The argument names are those of ptlflow's model constructors at commit e9cf9bc, which Lightning
stores; the released files themselves could not be downloaded here, so an argument a file does not
store is simply not checked (a nested ``args`` mapping, as older Lightning versions wrote, is read
too).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from motion4d.errors import CheckpointError

_FIXED = object()


class CheckpointSettingsWarning(UserWarning):
    """A checkpoint was saved with an inference setting (e.g. iterations) other than the model's."""


@dataclass(frozen=True)
class HyperParameter:
    """One ptlflow constructor argument and what motion4d builds for it.

    Attributes:
        name: ptlflow's argument name (``"corr_levels"``).
        built: the value motion4d's architecture has (used when ``option`` is None).
        option: the builder option it corresponds to (``"iters"``), or None when it is fixed.
        to_option: checkpoint value -> option value; raises ``ValueError`` for a value motion4d
            cannot build. Arguments mapping to the same option (``cnet`` and ``fnet`` ->
            ``encoder``) must convert to the same value.
        architecture: True when a different value changes the weights (refused); False for
            inference settings (a warning).
    """

    name: str
    built: Any = _FIXED
    option: str | None = None
    to_option: Callable[[Any], Any] = lambda v: v
    architecture: bool = True

    def __post_init__(self) -> None:
        if (self.option is None) == (self.built is _FIXED):
            raise ValueError(f"HyperParameter {self.name!r}: give exactly one of built= and option=")


@dataclass
class SettingsComparison:
    """The differences between a checkpoint's hyper-parameters and a model configuration."""

    fixed: list[tuple[str, Any, Any]] = field(default_factory=list)  # (name, checkpoint, motion4d)
    options: list[tuple[str, Any, str, Any]] = field(default_factory=list)  # (name, checkpoint, option, model value)
    inference: list[tuple[str, Any, str, Any]] = field(default_factory=list)
    unbuildable: list[tuple[str, Any]] = field(default_factory=list)  # values no option can express


def flat_hyper_parameters(hyper: Any) -> dict[str, Any]:
    """ptlflow's ``hyper_parameters`` as one flat dict (a nested ``args`` mapping is merged in)."""
    if not isinstance(hyper, Mapping):
        return {}
    flat = {k: v for k, v in hyper.items() if k != "args"}
    if isinstance(hyper.get("args"), Mapping):
        flat = {**hyper["args"], **flat}
    return flat


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def compare_hyper_parameters(hyper: Mapping[str, Any], table: Sequence[HyperParameter], config: Any) -> SettingsComparison:
    """Compare ``hyper`` (flat) with ``table`` and ``config`` (the model's configuration object)."""
    result = SettingsComparison()
    wanted: dict[str, tuple[HyperParameter, Any]] = {}
    for p in table:
        if p.name not in hyper:
            continue
        value = hyper[p.name]
        if p.option is None:
            if not _same(value, p.built):
                result.fixed.append((p.name, value, p.built))
            continue
        try:
            wanted[p.name] = (p, p.to_option(value))
        except ValueError:
            result.unbuildable.append((p.name, value))
    for option in {p.option for p, _ in wanted.values()}:
        members = [(p, w) for p, w in wanted.values() if p.option == option]
        if any(not _same(w, members[0][1]) for _, w in members):  # e.g. cnet and fnet of different kinds
            result.unbuildable += [(p.name, hyper[p.name]) for p, _ in members]
            continue
        p, w = members[0]
        current = getattr(config, option)
        if not _same(w, current):
            target = result.options if p.architecture else result.inference
            target += [(q.name, hyper[q.name], option, current) for q, _ in members]
    return result


def options_from_hyper_parameters(hyper: Mapping[str, Any], table: Sequence[HyperParameter], model_name: str,
                                  source: str) -> dict[str, Any]:
    """Builder options reproducing the checkpoint's settings; CheckpointError when motion4d cannot build them."""
    options: dict[str, Any] = {}
    problems = []
    for p in table:
        if p.name not in hyper:
            continue
        value = hyper[p.name]
        if p.option is None:
            if not _same(value, p.built):
                problems.append(f"{p.name}={value!r} (motion4d builds {p.built!r})")
            continue
        try:
            wanted = p.to_option(value)
        except ValueError:
            problems.append(f"{p.name}={value!r} (no {p.option} option builds it)")
            continue
        if p.option in options and not _same(options[p.option], wanted):
            together = [q.name for q in table if q.option == p.option]
            problems.append(f"{', '.join(f'{n}={hyper.get(n)!r}' for n in together)} (motion4d's {p.option} "
                            f"sets them together)")
            continue
        options[p.option] = wanted
    if problems:
        raise CheckpointError(f"weights {source}: {model_name} cannot be built with the checkpoint's settings: "
                              + "; ".join(problems))
    return options


def check_hyper_parameters(hyper: Any, table: Sequence[HyperParameter], config: Any, model_name: str, source: str) -> None:
    """Refuse (one line) checkpoints trained with another architecture; warn for other inference settings."""
    flat = flat_hyper_parameters(hyper)
    if not flat or not table:
        return
    found = compare_hyper_parameters(flat, table, config)
    refused = [f"{name}={value!r} (motion4d builds {built!r})" for name, value, built in found.fixed]
    refused += [f"{name}={value!r} (motion4d cannot build it)" for name, value in found.unbuildable]
    by_option = {p.name: p for p in table}
    mapped = [f"{name}={value!r} (model: {option}={current!r})" for name, value, option, current in found.options]
    if refused or mapped:
        hint = ""
        if mapped and not refused:
            options = sorted({f"{option}={by_option[name].to_option(value)!r}" for name, value, option, _ in found.options})
            hint = f"; pass {', '.join(options)} or config_from_checkpoint=True"
        raise CheckpointError(f"weights {source} were trained with settings {model_name} is not built with: "
                              + ", ".join(refused + mapped) + hint)
    if found.inference:
        diffs = ", ".join(f"{name}={value!r} (model: {option}={current!r})" for name, value, option, current in found.inference)
        options = ", ".join(f"{option}={by_option[name].to_option(value)!r}" for name, value, option, _ in found.inference)
        warnings.warn(f"weights {source} store ptlflow's inference settings {diffs}; the outputs differ from "
                      f"ptlflow's: pass {options} or config_from_checkpoint=True to match", CheckpointSettingsWarning,
                      stacklevel=3)


def _choice(mapping: Mapping[Any, Any]) -> Callable[[Any], Any]:
    """``to_option`` for a value table (unknown values raise ValueError)."""

    def to_option(value: Any) -> Any:
        if value not in mapping:
            raise ValueError(value)
        return mapping[value]

    return to_option


def encoder_parameters() -> tuple[HyperParameter, HyperParameter]:
    """ptlflow's VideoFlow ``cnet`` / ``fnet`` -> motion4d's ``encoder`` (one option for both)."""
    to_option = _choice({"twins": "twins", "basicencoder": "basic"})
    return (HyperParameter("cnet", option="encoder", to_option=to_option),
            HyperParameter("fnet", option="encoder", to_option=to_option))


def iterations_parameter(name: str) -> HyperParameter:
    """ptlflow's test iterations (``decoder_depth`` or ``iters``) -> ``iters`` (an inference setting)."""

    def to_iters(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(value)
        return value

    return HyperParameter(name, option="iters", to_option=to_iters, architecture=False)
