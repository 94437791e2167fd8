"""Checkpoint loading for the RAFT-family networks: official files, ptlflow files, our own format.

Accepted sources (all loaded strictly by default):

* the official releases as saved by ``nn.DataParallel`` — a plain state_dict whose keys start with
  ``module.`` (VideoFlow ``BOF_*.pth`` / ``MOF_*.pth``), or ``{"model": state_dict}`` (StreamFlow);
* ptlflow's converted Lightning checkpoints ``*.ckpt`` — ``{"state_dict": ..., "hyper_parameters": ...}``;
* our own format written by :func:`save_checkpoint` — ``{"model": name, "config": {...},
  "state_dict": ...}``;
* a state_dict given directly (a mapping of tensors);
* a named weight set (``"things"``, ``"sintel"``, ``"kitti"``, ...) or one of its aliases (ptlflow's
  names, e.g. ``"things_288960"``) from the model's card (:mod:`motion.models.cards`; the registry
  entry's ``weights`` table is built from it): downloaded once from ptlflow's release assets into
  the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and checked against the SHA-256 prefix in
  the file name.

ptlflow's files also store the model's ``hyper_parameters``; they are compared with the model's
configuration before any weight is copied (:mod:`motion.models.checkpoint_settings`).

Any mismatch raises :class:`~motion4d.errors.CheckpointError` with a report of the missing,
unexpected and mis-shaped keys.
"""
from __future__ import annotations

import os
import re
import urllib.error
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from motion4d.atomic import atomic_path
from motion4d.errors import CheckpointError, MissingFileError

from .checkpoint_settings import check_hyper_parameters, flat_hyper_parameters

KeyMap = Callable[[str], "str | None"]

PTLFLOW_RELEASES = "https://github.com/hmorimitsu/ptlflow/releases/download/weights1/"


@dataclass(frozen=True)
class WeightSet:
    """A published weight set of one model.

    Attributes:
        file: file name of ptlflow's converted release asset (the 8 hex digits before ``.ckpt`` are
            the SHA-256 prefix of the file; from ptlflow's docs/source/models/checkpoint_list.csv),
            or a full URL.
        origin: the official file it was converted from, for the record.
    """

    file: str
    origin: str = ""

    @property
    def url(self) -> str:
        return self.file if "://" in self.file else PTLFLOW_RELEASES + self.file


_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.[A-Za-z0-9]+$")
_REPORT_LINES = 12


@dataclass
class LoadReport:
    """What a load did: the detected format and the keys that did not match (empty when strict)."""

    source: str
    format: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """Multi-line human-readable summary of the mismatches."""
        lines = [f"checkpoint {self.source} ({self.format} format)"]
        for title, items in (
            ("missing keys (in the model, not in the file)", self.missing),
            ("unexpected keys (in the file, not in the model)", self.unexpected),
        ):
            if items:
                lines.append(f"  {len(items)} {title}:")
                lines += [f"    {k}" for k in items[:_REPORT_LINES]]
                if len(items) > _REPORT_LINES:
                    lines.append(f"    ... and {len(items) - _REPORT_LINES} more")
        if self.mismatched:
            lines.append(f"  {len(self.mismatched)} keys with a different shape (file vs model):")
            lines += [f"    {k}: {list(a)} vs {list(b)}" for k, a, b in self.mismatched[:_REPORT_LINES]]
            if len(self.mismatched) > _REPORT_LINES:
                lines.append(f"    ... and {len(self.mismatched) - _REPORT_LINES} more")
        return "\n".join(lines)


def read_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """Read a checkpoint file (or an already loaded object) and return ``(state_dict, format, meta)``.

    ``format`` is ``"motion4d"``, ``"ptlflow"``, ``"wrapped"`` (``{"model": state_dict}``) or
    ``"state_dict"``; ``meta`` holds ``model``/``config`` for our own format and ``hyper_parameters``
    (flat) for ptlflow's. The ``module.`` prefix of DataParallel checkpoints is removed.
    """
    if isinstance(source, Mapping):
        obj: Any = source
        name = "<state_dict>"
    else:
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(f"weights: checkpoint file {path} does not exist")
        name = str(path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle, zip and unpickling-policy errors all mean "not a checkpoint"
            raise CheckpointError(f"weights: {path} is not a readable PyTorch checkpoint: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"weights: {name} holds a {type(obj).__name__}, expected a state_dict mapping")
    meta: dict[str, Any] = {}
    if isinstance(obj.get("state_dict"), Mapping) and isinstance(obj.get("model"), str):
        fmt, state, meta = "motion4d", obj["state_dict"], {"model": obj["model"], "config": obj.get("config", {})}
    elif isinstance(obj.get("state_dict"), Mapping):
        fmt, state = "ptlflow", obj["state_dict"]
        meta = {"hyper_parameters": flat_hyper_parameters(obj.get("hyper_parameters"))}
    elif isinstance(obj.get("model"), Mapping):
        fmt, state = "wrapped", obj["model"]
    else:
        fmt, state = "state_dict", obj
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"weights: {name} is not a state_dict: entries {bad[:5]} are not tensors")
    return strip_prefix(dict(state), "module."), fmt, meta


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from the keys when every key carries it."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str = "<state_dict>",
    fmt: str = "state_dict",
    strict: bool = True,
    key_map: KeyMap | None = None,
) -> LoadReport:
    """Copy ``state`` into ``model``, comparing keys and shapes first.

    Args:
        key_map: optional renaming ``file key -> model key`` (None drops the key).
        strict: raise :class:`CheckpointError` on any missing, unexpected or mis-shaped key;
            otherwise load what matches and return the report.
    """
    if key_map is not None:
        renamed = {}
        for k, v in state.items():
            new = key_map(k)
            if new is not None:
                renamed[new] = v
        state = renamed
    own = model.state_dict()
    report = LoadReport(source, fmt)
    report.missing = sorted(k for k in own if k not in state)
    report.unexpected = sorted(k for k in state if k not in own)
    report.mismatched = sorted(
        (k, tuple(state[k].shape), tuple(own[k].shape)) for k in own if k in state and state[k].shape != own[k].shape
    )
    if strict and not report.ok:
        raise CheckpointError(f"weights do not match {type(model).__name__}:\n" + report.describe())
    usable = {k: v.to(dtype=own[k].dtype) if v.is_floating_point() else v
              for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(usable, strict=False)
    return report


def load_weights(
    model: nn.Module,
    weights: str | os.PathLike | Mapping[str, Any],
    model_name: str | None = None,
    strict: bool = True,
    key_map: KeyMap | None = None,
) -> LoadReport:
    """Load ``weights`` (a checkpoint path or a state_dict) into ``model``.

    Named weight sets (``"sintel"``) are resolved to files by :func:`motion.create` before the
    builder runs. ``model_name`` is checked against the name stored in our own checkpoints, and the
    ``hyper_parameters`` of ptlflow's files against the model's configuration first
    (:func:`check_model_settings`).
    """
    state, fmt, meta = read_checkpoint(weights)
    if fmt == "motion4d" and model_name is not None and meta.get("model") != model_name:
        raise CheckpointError(
            f"weights: checkpoint {weights} was saved for model {meta.get('model')!r}, not {model_name!r}"
        )
    source = "<state_dict>" if isinstance(weights, Mapping) else str(weights)
    check_model_settings(model, meta, source, model_name)
    return load_state(model, state, source=source, fmt=fmt, strict=strict, key_map=key_map)


def check_model_settings(model: nn.Module, meta: Mapping[str, Any], source: str, model_name: str | None = None) -> None:
    """Compare a ptlflow checkpoint's ``hyper_parameters`` (``meta`` of :func:`read_checkpoint`) with
    the model's ``config``, using the model's ``checkpoint_hyper_parameters`` table: a one-line
    CheckpointError for another architecture, a CheckpointSettingsWarning for other inference settings."""
    table = getattr(model, "checkpoint_hyper_parameters", ())
    config = getattr(model, "config", None)
    if meta.get("hyper_parameters") and table and config is not None:
        check_hyper_parameters(meta["hyper_parameters"], table, config, model_name or type(model).__name__, source)


def save_checkpoint(
    model: nn.Module, path: str | os.PathLike, model_name: str, config: Any = None, **extra: Any
) -> Path:
    """Write our format ``{"model": name, "config": {...}, "state_dict": ...}`` atomically.

    ``config`` may be a dataclass or a dict; ``extra`` entries (e.g. ``step``) are stored alongside.
    """
    if is_dataclass(config):
        config = asdict(config)
    payload = {"model": model_name, "config": dict(config or {}), "state_dict": model.state_dict(), **extra}
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def download_weight_set(weight_set: WeightSet, label: str, progress: bool = True) -> Path:
    """Return the local path of a published weight set, downloading it into the torch hub cache once.

    ``label`` names it in messages (e.g. ``"the 'sintel' weights of videoflow-mof"``).

    The SHA-256 of the downloaded file must start with the hex digits in its name (torch hub's
    convention, which ptlflow's assets follow). Failures raise :class:`CheckpointError` that says
    what to download by hand.
    """
    url = weight_set.url
    file_name = url.rsplit("/", 1)[-1]
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    target = cache / file_name
    if target.is_file():
        return target
    match = _HASH_IN_NAME.search(file_name)
    cache.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=match.group(1) if match else None, progress=progress)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise CheckpointError(
            f"could not download {label} from {url} ({exc}). Without network "
            f"access, download the file elsewhere and pass weights=PATH, or place it at {target}"
        ) from exc
    except RuntimeError as exc:  # torch.hub's hash mismatch; it removes the partial file
        raise CheckpointError(f"downloaded weights {url} failed the integrity check: {exc}") from exc
    return target
