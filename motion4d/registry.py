"""The name -> entry registry behind ``motion.create``, ``pointclouds.estimate_scene_flow`` and ``splats``.

A :class:`Registry` holds one entry per method name. Entries are added by the modules that
implement the methods (``providers``), which are imported on the first lookup so that importing a
package stays cheap. Registering a name twice keeps the newer entry and warns, naming both origins.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Generic, Iterator, Sequence, TypeVar

from .errors import InvalidArgumentError

E = TypeVar("E")


class Registry(Generic[E]):
    """Named entries of one kind (flow models, scene-flow methods, Gaussian methods).

    Args:
        kind: what the entries are, for messages (``"model"``, ``"scene-flow method"``).
        providers: modules that register entries when imported; a provider whose own module is
            missing is skipped (an optional part not installed), any other import error propagates.
    """

    def __init__(self, kind: str, providers: Sequence[str] = ()):
        self.kind = kind
        self.providers = tuple(providers)
        self._entries: dict[str, E] = {}
        self._origins: dict[str, str] = {}
        self._loaded = False

    def add(self, name: str, entry: E, origin: str = "") -> E:
        """Register ``entry`` under ``name``; warns when the name is already taken."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            warnings.warn(
                f"{self.kind} {name!r} registered again (by {origin or 'unknown'}; first by "
                f"{self._origins[name] or 'unknown'}): the newer entry replaces the older",
                RuntimeWarning,
                stacklevel=3,
            )
        self._entries[name] = entry
        self._origins[name] = origin
        return entry

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.providers:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:  # a real missing dependency inside an existing provider
                    self._loaded = False
                    raise

    def get(self, name: str) -> E:
        """The entry of ``name``; an InvalidArgumentError lists the known names otherwise."""
        self._load()
        if name not in self._entries:
            raise InvalidArgumentError(f"unknown {self.kind} {name!r}; available: {self.names()}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[E]:
        """Registered entries, sorted by name."""
        return [self._entries[k] for k in self.names()]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)
