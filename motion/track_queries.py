"""Query points of point tracks read from files: rows of ``(t, x, y)``."""
from __future__ import annotations

import os

import numpy as np

from motion4d.checks import check_file
from motion4d.errors import InputFileError


def read_queries(path: str | os.PathLike, name: str = "queries") -> np.ndarray:
    """Queries ``float32 [N, 3]`` (t, x, y) from ``.npy`` or a text file (comma or space separated).

    Text files may start with a header line and hold ``#`` comment lines; ``name`` is how errors
    name the argument.
    """
    file = check_file(path, name)
    try:
        if file.suffix.lower() == ".npy":
            data = np.load(file, allow_pickle=False)
        else:
            text = file.read_text(encoding="utf-8").replace(",", " ")
            rows = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            if rows and not _is_number(rows[0][0]):
                rows = rows[1:]  # a header line
            data = np.array(rows, dtype=np.float32)
    except ValueError as exc:
        raise InputFileError(f"{name} {file}: expected rows of three numbers t, x, y ({exc})") from exc
    if data.ndim != 2 or data.shape[1] != 3:
        raise InputFileError(f"{name} {file}: expected rows of three numbers t, x, y, got shape {list(data.shape)}")
    return data


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
