"""Where the training data sets are: conventional folder names under one data root."""
from __future__ import annotations

import os
from pathlib import Path

from motion4d.errors import InvalidArgumentError

#: conventional folder names under a data root, per reader
DATA_FOLDERS: dict[str, tuple[str, ...]] = {
    "sintel": ("Sintel", "MPI-Sintel-complete", "sintel"),
    "kitti": ("KITTI", "kitti15", "KITTI2015", "kitti"),
    "things": ("FlyingThings3D", "things"),
    "hd1k": ("HD1K", "hd1k"),
    "chairs": ("FlyingChairs_release", "FlyingChairs", "chairs"),
}


def find_data_roots(data_root: str | os.PathLike, name: str = "data_root") -> dict[str, str]:
    """Reader name -> root for every conventional folder (:data:`DATA_FOLDERS`) present under ``data_root``."""
    base = Path(data_root)
    if not base.is_dir():
        raise InvalidArgumentError(f"{name} {base} is not a folder")
    roots: dict[str, str] = {}
    for reader, names in DATA_FOLDERS.items():
        found = next((base / n for n in names if (base / n).is_dir()), None)
        if found is not None:
            roots[reader] = str(found)
    return roots
