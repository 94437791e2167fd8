"""Export and import of :class:`~motion.tracks.Tracks` in the formats downstream tools read.

The formats (csv, parquet, CoTracker npz, TAP-Vid pickle, MOTChallenge txt, json) and their layouts
are described in :mod:`motion.track_formats`; this module is their ``Tracks``-level interface::

    save_tracks(tracks, "out/tracks.pkl")            # format from the extension, or format=
    export_tracks(tracks, "out", ["csv", "cotracker", "tapvid", "mot"], video="clip.mp4")
    tracks = load_tracks("out/tracks.pkl")
    tracks = from_tapvid(dataset["video_0"])         # TAP-Vid arrays in memory

Every writer is atomic; :func:`load_tracks` raises :class:`~motion4d.errors.InputFileError` on
malformed files.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.checks import check_choice
from motion4d.errors import InvalidArgumentError

from . import track_formats
from .track_formats import (  # noqa: F401 (re-exported: writers, in-memory layouts, MOT tables)
    EXTENSIONS,
    TRACK_FORMATS,
    read_mot,
    to_cotracker,
    to_table,
    to_tapvid,
    write_cotracker,
    write_csv,
    write_json,
    write_mot,
    write_mot_rows,
    write_parquet,
    write_tapvid,
)
from .tracks import Tracks


def save_tracks(tracks: Tracks, path: str | os.PathLike, format: str | None = None, **options: Any) -> Path:
    """Write ``tracks`` to ``path`` (format from the extension or ``format``); returns the path.

    Options: ``groups [N]`` (or grouping options) for ``mot``; ``video_name`` and ``video`` for ``tapvid``.
    """
    return track_formats.write_file(tracks, path, format, **options)


def export_tracks(tracks: Tracks, folder: str | os.PathLike, formats: Sequence[str], stem: str = "tracks",
                  **options: Any) -> list[Path]:
    """Write ``tracks`` once per format to ``folder/<stem><extension>``; returns the paths.

    ``formats``: names of :data:`TRACK_FORMATS` (one name per format: ``csv``, ``parquet``,
    ``cotracker``, ``tapvid``, ``mot``, ``json``). ``options`` go to the writers that take them:
    ``groups`` to ``mot``; ``video`` (frames or the source video) and ``video_name`` to ``tapvid``.
    """
    names = list(formats)
    for name in names:
        check_choice(name, "formats", TRACK_FORMATS)
    takes = {"mot": ("groups",), "tapvid": ("video", "video_name")}
    unused = set(options) - {key for keys in takes.values() for key in keys}
    if unused:
        raise InvalidArgumentError(f"options {sorted(unused)} apply to no track format")
    written = []
    for name in names:
        mine = {k: v for k, v in options.items() if k in takes.get(name, ())}
        written.append(track_formats.write_file(tracks, Path(folder) / f"{stem}{EXTENSIONS[name]}", name, **mine))
    return written


def load_tracks(path: str | os.PathLike, format: str | None = None, **options: Any) -> Tracks:
    """Read tracks written by :func:`save_tracks` (MOT files give box-centre tracks; pass ``image_size``)."""
    return track_formats.read_file(path, format, build=Tracks, **options)


def from_table(table: dict[str, np.ndarray], image_size: tuple[int, int], metadata: dict | None = None) -> Tracks:
    """Inverse of :func:`to_table` (rows in any order)."""
    return Tracks(**track_formats.table_fields(table, image_size, metadata))


def from_tapvid(data: dict[str, Any], image_size: tuple[int, int] | None = None) -> Tracks:
    """Tracks from TAP-Vid arrays (``image_size`` needed when the dict has no height/width or video)."""
    return Tracks(**track_formats.tapvid_fields(data, image_size))


def mot_to_tracks(table: dict[str, np.ndarray], image_size: tuple[int, int] | None = None) -> Tracks:
    """One track per MOT id following its box centre (``table`` from :func:`read_mot`)."""
    return Tracks(**track_formats.mot_fields(table, image_size))


def read_csv(path: str | os.PathLike) -> Tracks:
    """Read a CSV written by :func:`write_csv`."""
    return Tracks(**track_formats.csv_fields(path))


def read_parquet(path: str | os.PathLike) -> Tracks:
    """Read a Parquet file written by :func:`write_parquet`."""
    return Tracks(**track_formats.parquet_fields(path))


def read_cotracker(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> Tracks:
    """Read a CoTracker-layout NPZ (``tracks``, ``visibility``; the rest optional, batch index 0)."""
    return Tracks(**track_formats.cotracker_fields(path, image_size))


def read_tapvid(path: str | os.PathLike, video_name: str | None = None, image_size: tuple[int, int] | None = None
                ) -> Tracks:
    """Read one video of a TAP-Vid pickle (only open pickles you trust: unpickling runs code)."""
    return Tracks(**track_formats.tapvid_file_fields(path, video_name, image_size))


def read_json(path: str | os.PathLike) -> Tracks:
    """Read a JSON document written by :func:`write_json`."""
    return Tracks(**track_formats.json_fields(path))
