"""Input validation used by every public function (raises :mod:`motion4d.errors`)."""
from __future__ import annotations

import importlib
import math
import numbers
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import (
    InvalidArgumentError,
    MissingDependencyError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
)
from .lazy_torch import is_tensor

ArrayLike = Any  # torch.Tensor | np.ndarray


def check_shape(x: ArrayLike, name: str, pattern: Sequence[int | str | None]) -> dict[str, int]:
    """Check ``x`` against a symbolic shape such as ``("B", 2, "H", "W")``.

    Integers must match exactly, strings bind a size on first use and must agree afterwards, ``None``
    matches anything, and a leading ``"..."`` matches any number of leading dimensions.

    Returns:
        The bound sizes, e.g. ``{"B": 1, "H": 64, "W": 96}``.
    """
    if not (isinstance(x, np.ndarray) or is_tensor(x)):
        raise ShapeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    shape = tuple(x.shape)
    pattern = tuple(pattern)
    expected = "[" + ", ".join("..." if p == "..." else str(p) for p in pattern) + "]"
    if pattern and pattern[0] == "...":
        tail = pattern[1:]
        if len(shape) < len(tail):
            raise ShapeError(f"{name} must have shape {expected}, got {list(shape)}")
        shape = shape[len(shape) - len(tail):]
        pattern = tail
    elif len(shape) != len(pattern):
        raise ShapeError(f"{name} must have shape {expected}, got {list(shape)}")
    bound: dict[str, int] = {}
    for size, want in zip(shape, pattern):
        if want is None:
            continue
        if isinstance(want, int):
            if size != want:
                raise ShapeError(f"{name} must have shape {expected}, got {list(x.shape)}")
        else:
            if want in bound and bound[want] != size:
                raise ShapeError(
                    f"{name} must have shape {expected} with one size for {want}, got {list(x.shape)}"
                )
            bound[want] = size
    return bound


def check_same(name_a: str, a: int, name_b: str, b: int) -> None:
    """Raise a ShapeError when two sizes that must agree differ."""
    if a != b:
        raise ShapeError(f"{name_a} ({a}) and {name_b} ({b}) must be equal")


def check_dtype(x: ArrayLike, name: str, allowed: Iterable[Any]) -> None:
    """Raise a ShapeError unless ``x.dtype`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if x.dtype not in allowed:
        names = ", ".join(str(a) for a in allowed)
        raise ShapeError(f"{name} must have dtype in ({names}), got {x.dtype}")


def check_floating(x: ArrayLike, name: str) -> None:
    """Raise a ShapeError unless ``x`` has a floating-point dtype."""
    is_float = x.is_floating_point() if is_tensor(x) else np.issubdtype(x.dtype, np.floating)
    if not is_float:
        raise ShapeError(f"{name} must be floating point, got {x.dtype}")


def check_finite(x: ArrayLike, name: str) -> None:
    """Raise a NonFiniteError if ``x`` holds NaN or inf, saying how many."""
    bad = (~x.isfinite()).sum().item() if is_tensor(x) else int((~np.isfinite(x)).sum())
    if bad:
        raise NonFiniteError(f"{name} holds {bad} non-finite (NaN or inf) values")


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> None:
    """Raise an InvalidArgumentError unless ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise InvalidArgumentError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_positive(value: float, name: str, allow_zero: bool = False) -> None:
    """Raise an InvalidArgumentError unless ``value`` is > 0 (or >= 0)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise InvalidArgumentError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def check_int(
    value: Any, name: str, minimum: int | None = None, maximum: int | None = None, allow_none: bool = False
) -> int | None:
    """An integer argument within ``[minimum, maximum]`` (bools and floats rejected); returns it as ``int``.

    ``allow_none`` lets ``None`` through unchanged (an optional count or index).
    """
    if value is None and allow_none:
        return None
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Integral)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        bounds = [f">= {minimum}" if minimum is not None else "", f"<= {maximum}" if maximum is not None else ""]
        wanted = " and ".join(b for b in bounds if b)
        accepted = "an integer" + (f" {wanted}" if wanted else "") + (" or None" if allow_none else "")
        raise InvalidArgumentError(f"{name} must be {accepted}, got {value!r}")
    return int(value)


def check_float(
    value: Any, name: str, minimum: float | None = 0.0, strict: bool = True, maximum: float | None = None
) -> float:
    """A finite real argument ``> minimum`` (``>=`` with ``strict=False``) and ``<= maximum``; returns a float."""
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)
    v = float(value) if ok else float("nan")
    ok = ok and math.isfinite(v)
    if ok and minimum is not None:
        ok = v > minimum if strict else v >= minimum
    if ok and maximum is not None:
        ok = v <= maximum
    if not ok:
        bounds = [f"{'>' if strict else '>='} {minimum}" if minimum is not None else "",
                  f"<= {maximum}" if maximum is not None else ""]
        wanted = " and ".join(b for b in bounds if b)
        raise InvalidArgumentError(f"{name} must be a finite number{' ' + wanted if wanted else ''}, got {value!r}")
    return v


def check_file(path: str | os.PathLike, name: str = "path") -> Path:
    """Return ``path`` as a Path, raising MissingFileError when it does not exist."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"{name}: {p} does not exist")
    return p


def require(module: str, feature: str, extra: str | None = None) -> Any:
    """Import an optional dependency or raise MissingDependencyError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'motion4d[{extra}]'" if extra else f"pip install {module}"
        raise MissingDependencyError(f"{feature} needs the optional package '{module}' ({hint}): {exc}") from exc
