"""The file layouts of point tracks, independent of the :class:`~motion.tracks.Tracks` class.

=========== ========== ==================================================================================
format      extension  layout
=========== ========== ==================================================================================
csv         .csv       long table, one row per (track, frame): ``track_id, t, frame, time, x, y, visible,
                       confidence, query``; first line ``# motion4d tracks height=H width=W``
parquet     .parquet   the same table (pyarrow); image size etc. in the schema metadata
cotracker   .npz       CoTracker's layout: ``tracks [1, T, N, 2]`` (x, y px), ``visibility [1, T, N]``,
                       ``queries [1, N, 3]`` (t, x, y), plus ``confidence``, ``ids``, ``frame_indices``,
                       ``times``, ``image_size``
tapvid      .pkl       TAP-Vid's pickle ``{video_name: {...}}`` as released and evaluated: ``video``
                       uint8 [T, H, W, 3] (optional), ``points [N, T, 2]`` (x, y) normalised to [0, 1],
                       ``occluded [N, T]``; plus ``query_points [N, 3]`` (t, y, x) with y, x
                       normalised, ``height``, ``width``, ``ids``, ``frame_indices``
mot         .txt       MOTChallenge ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, -1, -1, -1``:
                       one box per object per frame, 1-based frames, ids and pixel coordinates; without
                       ``groups`` the tracks are grouped into moving objects (:mod:`motion.objects`)
json        .json      ``{"format": "motion4d-tracks", "image_size", "frame_indices", "times",
                       "tracks": [{"id", "query", "xy", "visible", "confidence"}]}``
=========== ========== ==================================================================================

Normalised TAP-Vid coordinates use raster convention: ``x_norm = (x + 0.5) / W`` (motion4d puts
pixel centres at integers, TAP-Vid at half-integers of the [0, W] range).

Writers take a :class:`~motion.tracks.Tracks`; readers return its constructor arguments
(:data:`TrackFields`), so this module never imports the class and ``motion.tracks`` can use it for
``Tracks.save`` / ``Tracks.load``. :mod:`motion.track_io` offers the same readers returning ``Tracks``.
Every writer is atomic; :func:`read_file` raises :class:`~motion4d.errors.InputFileError` on malformed
files.
"""
from __future__ import annotations

import csv
import io
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.checks import check_choice, check_file, require
from motion4d.errors import InputFileError, InvalidArgumentError
from motion4d.numpy_io import load_npz, load_numpy_pickle

if TYPE_CHECKING:
    from .tracks import Tracks

TrackFields = dict[str, Any]
"""Keyword arguments of :class:`~motion.tracks.Tracks` (what the readers here return)."""

TRACK_FORMATS = ("csv", "parquet", "cotracker", "tapvid", "mot", "json")
_BY_EXTENSION = {".csv": "csv", ".parquet": "parquet", ".npz": "cotracker", ".pkl": "tapvid", ".txt": "mot", ".json": "json"}
EXTENSIONS = {v: k for k, v in _BY_EXTENSION.items()}
_COLUMNS = ("track_id", "t", "frame", "time", "x", "y", "visible", "confidence", "query")


def format_of(path: Path, format: str | None) -> str:
    """The format of ``path``: ``format`` when given (checked), else the one of its extension."""
    if format is not None:
        check_choice(format, "format", TRACK_FORMATS)
        return format
    ext = path.suffix.lower()
    if ext not in _BY_EXTENSION:
        raise InvalidArgumentError(f"path: {path} has extension {ext!r}; expected one of {sorted(_BY_EXTENSION)} or pass format=")
    return _BY_EXTENSION[ext]


def write_file(tracks: Tracks, path: str | os.PathLike, format: str | None = None, **options: Any) -> Path:
    """Write ``tracks`` to ``path`` (format from the extension or ``format``); returns the path.

    Options: ``groups [N]`` (or grouping options) for ``mot``; ``video_name`` and ``video`` for ``tapvid``.
    """
    path = Path(path)
    fmt = format_of(path, format)
    writer = {
        "csv": write_csv,
        "parquet": write_parquet,
        "cotracker": write_cotracker,
        "tapvid": write_tapvid,
        "mot": write_mot,
        "json": write_json,
    }[fmt]
    writer(tracks, path, **options)
    return path


Built = TypeVar("Built")


def read_file(path: str | os.PathLike, format: str | None = None, *, build: Callable[..., Built], **options: Any
              ) -> Built:
    """``build(**fields)`` of the tracks in ``path`` (format from the extension or ``format``).

    ``build`` is the class to construct (:class:`~motion.tracks.Tracks`); a file whose content it
    rejects raises :class:`~motion4d.errors.InputFileError` like any other malformed file. Options:
    ``image_size`` for ``cotracker`` / ``tapvid`` / ``mot`` files that do not store it, ``video_name``
    for ``tapvid``.
    """
    path = check_file(path, "tracks file")
    fmt = format_of(path, format)
    reader = {
        "csv": csv_fields,
        "parquet": parquet_fields,
        "cotracker": cotracker_fields,
        "tapvid": tapvid_file_fields,
        "mot": lambda p, **o: mot_fields(read_mot(p), **o),
        "json": json_fields,
    }[fmt]
    try:
        return build(**reader(path, **options))
    except (KeyError, ValueError, IndexError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        if isinstance(exc, InvalidArgumentError):
            raise
        raise InputFileError(f"{path}: not a valid {fmt} tracks file ({type(exc).__name__}: {exc})") from exc


# --------------------------------------------------------------------------------------------
# long table (CSV, Parquet)


def to_table(tracks: Tracks) -> dict[str, np.ndarray]:
    """Long table, track-major: one entry per (track, frame), columns as in :data:`_COLUMNS`."""
    t, n = tracks.num_frames, tracks.num_tracks
    frame_t = np.tile(np.arange(t), n)
    track = np.repeat(np.arange(n), t)
    is_query = np.zeros((n, t), bool)
    if tracks.query is not None:
        is_query[np.arange(n), tracks.query[:, 0].astype(int)] = True
    conf = tracks.confidence if tracks.confidence is not None else np.full((t, n), np.nan, np.float32)
    times = tracks.times if tracks.times is not None else np.full(t, np.nan)
    return {
        "track_id": tracks.ids[track],
        "t": frame_t.astype(np.int64),
        "frame": tracks.frame_indices[frame_t],
        "time": times[frame_t],
        "x": tracks.xy[:, :, 0].T.ravel(),
        "y": tracks.xy[:, :, 1].T.ravel(),
        "visible": tracks.visible.T.ravel(),
        "confidence": conf.T.ravel(),
        "query": is_query.ravel(),
    }


def table_fields(table: dict[str, np.ndarray], image_size: tuple[int, int], metadata: dict | None = None) -> TrackFields:
    """Inverse of :func:`to_table` (rows in any order)."""
    ids, track = np.unique(np.asarray(table["track_id"], np.int64), return_inverse=True)
    frame_t = np.asarray(table["t"], np.int64)
    t, n = int(frame_t.max()) + 1, len(ids)
    if len(frame_t) != t * n:
        raise InputFileError(f"the table has {len(frame_t)} rows, expected {n} tracks x {t} frames = {t * n}")
    xy = np.zeros((t, n, 2), np.float32)
    xy[frame_t, track, 0] = table["x"]
    xy[frame_t, track, 1] = table["y"]
    visible = np.zeros((t, n), bool)
    visible[frame_t, track] = np.asarray(table["visible"]).astype(bool)
    conf = np.zeros((t, n), np.float32)
    conf[frame_t, track] = table["confidence"]
    frame_indices = np.zeros(t, np.int64)
    frame_indices[frame_t] = table["frame"]
    times = np.zeros(t, np.float64)
    times[frame_t] = table["time"]
    query = None
    is_query = np.asarray(table["query"]).astype(bool)
    if is_query.any():
        if is_query.sum() != n:
            raise InputFileError(f"expected one query row per track, found {int(is_query.sum())} for {n} tracks")
        q_track, q_t = track[is_query], frame_t[is_query]
        query = np.zeros((n, 3), np.float32)
        query[q_track, 0] = q_t
        query[q_track, 1:] = xy[q_t, q_track]
    return dict(
        xy=xy,
        visible=visible,
        confidence=None if np.isnan(conf).all() else conf,
        ids=ids,
        frame_indices=frame_indices,
        times=None if np.isnan(times).all() else times,
        image_size=image_size,
        query=query,
        metadata=metadata or {},
    )


def write_csv(tracks: Tracks, path: str | os.PathLike) -> None:
    """CSV long table with a ``# motion4d tracks height=H width=W`` first line."""
    table = to_table(tracks)
    buffer = io.StringIO()
    h, w = tracks.image_size
    buffer.write(f"# motion4d tracks height={h} width={w}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_COLUMNS)
    g = lambda v: format(float(v), ".9g")
    for row in zip(*(table[c] for c in _COLUMNS)):
        track_id, t, frame, time, x, y, visible, conf, query = row
        writer.writerow([int(track_id), int(t), int(frame), repr(float(time)), g(x), g(y), int(visible), g(conf), int(query)])
    atomic_write_text(path, buffer.getvalue())


def csv_fields(path: str | os.PathLike) -> TrackFields:
    """Read a CSV written by :func:`write_csv`."""
    with open(path, newline="", encoding="utf-8") as f:
        header = f.readline()
        if not header.startswith("# motion4d tracks"):
            raise InputFileError(f"{path}: missing the '# motion4d tracks height=H width=W' first line")
        fields = dict(item.split("=") for item in header.split()[3:])
        rows = list(csv.DictReader(f))
    if not rows:
        raise InputFileError(f"{path}: holds no rows")
    table = {c: np.array([r[c] for r in rows]) for c in _COLUMNS}
    for c in ("track_id", "t", "frame", "visible", "query"):
        table[c] = table[c].astype(np.int64)
    for c in ("time", "x", "y", "confidence"):
        table[c] = table[c].astype(np.float64)
    return table_fields(table, (int(fields["height"]), int(fields["width"])))


def write_parquet(tracks: Tracks, path: str | os.PathLike) -> None:
    """Parquet long table (needs pyarrow: ``pip install 'motion4d[parquet]'``)."""
    pa = require("pyarrow", "Parquet export", extra="parquet")
    pq = require("pyarrow.parquet", "Parquet export", extra="parquet")
    table = pa.table({c: v for c, v in to_table(tracks).items()})
    meta = {"height": tracks.image_size[0], "width": tracks.image_size[1], "metadata": tracks.metadata}
    table = table.replace_schema_metadata({b"motion4d": json.dumps(meta, default=str).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def parquet_fields(path: str | os.PathLike) -> TrackFields:
    """Read a Parquet file written by :func:`write_parquet`."""
    pq = require("pyarrow.parquet", "Parquet import", extra="parquet")
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"motion4d", b"{}"))
    if "height" not in meta:
        raise InputFileError(f"{path}: not a motion4d tracks Parquet file (no 'motion4d' schema metadata)")
    columns = {c: table.column(c).to_numpy() for c in _COLUMNS}
    return table_fields(columns, (meta["height"], meta["width"]), meta.get("metadata"))


# --------------------------------------------------------------------------------------------
# CoTracker NPZ


def to_cotracker(tracks: Tracks) -> dict[str, np.ndarray]:
    """CoTracker arrays: ``tracks [1, T, N, 2]``, ``visibility [1, T, N]``, ``queries [1, N, 3]`` (t, x, y)."""
    out = {
        "tracks": tracks.xy[None],
        "visibility": tracks.visible[None],
        "ids": tracks.ids,
        "frame_indices": tracks.frame_indices,
        "image_size": np.asarray(tracks.image_size, np.int64),
    }
    if tracks.query is not None:
        out["queries"] = tracks.query[None]
    if tracks.confidence is not None:
        out["confidence"] = tracks.confidence[None]
    if tracks.times is not None:
        out["times"] = tracks.times
    return out


def write_cotracker(tracks: Tracks, path: str | os.PathLike) -> None:
    """NPZ in CoTracker's layout (see :func:`to_cotracker`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **to_cotracker(tracks))


def cotracker_fields(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> TrackFields:
    """Read a CoTracker-layout NPZ (``tracks``, ``visibility``; the rest optional, batch index 0)."""
    data = load_npz(path)
    if "tracks" not in data or "visibility" not in data:
        raise InputFileError(f"{path}: a CoTracker NPZ needs 'tracks' [1, T, N, 2] and 'visibility' [1, T, N]")
    xy = data["tracks"]
    xy = xy[0] if xy.ndim == 4 else xy
    vis = data["visibility"]
    vis = vis[0] if vis.ndim == 3 else vis
    if vis.dtype != bool:
        vis = vis > 0.5  # CoTracker may store visibility probabilities
    size = tuple(data["image_size"]) if "image_size" in data else image_size
    if size is None:
        raise InvalidArgumentError(f"{path} holds no image_size; pass image_size=(H, W)")
    get = lambda k: (data[k][0] if data[k].ndim > 1 and k in ("queries", "confidence") else data[k]) if k in data else None
    return dict(
        xy=xy,
        visible=vis,
        confidence=get("confidence"),
        ids=get("ids"),
        frame_indices=get("frame_indices"),
        times=get("times"),
        image_size=size,
        query=get("queries"),
    )


# --------------------------------------------------------------------------------------------
# TAP-Vid


def to_tapvid(tracks: Tracks) -> dict[str, np.ndarray]:
    """TAP-Vid arrays: normalised ``points [N, T, 2]`` (x, y), ``occluded [N, T]``, ``query_points [N, 3]`` (t, y, x)."""
    h, w = tracks.image_size
    size = np.array([w, h], np.float64)
    points = ((tracks.xy.transpose(1, 0, 2).astype(np.float64) + 0.5) / size).astype(np.float32)
    out = {
        "points": points,
        "occluded": ~tracks.visible.T,
        "height": np.int64(h),
        "width": np.int64(w),
        "ids": tracks.ids,
        "frame_indices": tracks.frame_indices,
    }
    if tracks.query is not None:
        q = tracks.query.astype(np.float64)
        out["query_points"] = np.stack([q[:, 0], (q[:, 2] + 0.5) / h, (q[:, 1] + 0.5) / w], axis=1).astype(np.float32)
    return out


def tapvid_fields(data: dict[str, Any], image_size: tuple[int, int] | None = None) -> TrackFields:
    """Track fields from TAP-Vid arrays (``image_size`` needed when the dict has no height/width or video)."""
    if image_size is None:
        if "height" in data and "width" in data:
            image_size = (int(data["height"]), int(data["width"]))
        elif "video" in data:
            image_size = tuple(np.asarray(data["video"]).shape[1:3])
        else:
            raise InvalidArgumentError("TAP-Vid data has no height/width or video; pass image_size=(H, W)")
    h, w = image_size
    points = np.asarray(data["points"], np.float64)
    xy = points * np.array([w, h]) - 0.5
    query = None
    if "query_points" in data:
        q = np.asarray(data["query_points"], np.float64)
        query = np.stack([q[:, 0], q[:, 2] * w - 0.5, q[:, 1] * h - 0.5], axis=1)
    return dict(
        xy=xy.transpose(1, 0, 2),
        visible=~np.asarray(data["occluded"], bool).T,
        image_size=(h, w),
        ids=data.get("ids"),
        frame_indices=data.get("frame_indices"),
        query=query,
    )


def write_tapvid(tracks: Tracks, path: str | os.PathLike, video_name: str | None = None, video: Any = None) -> None:
    """TAP-Vid pickle in the layout of the released ``.pkl`` files and of TAP-Vid's evaluation.

    ``{video_name: {"video": uint8 [T, H, W, 3], "points": float32 [N, T, 2], "occluded": bool [N, T]}}``
    with ``points`` normalised (see :func:`to_tapvid`), plus ``query_points``, ``height``, ``width``,
    ``ids`` and ``frame_indices``, which the evaluation ignores and :func:`tapvid_file_fields` reads.

    Args:
        video_name: key of the video (default: the stem of ``video`` when it is a path, else the stem
            of ``path``).
        video: the frames: ``uint8 [T, H, W, 3]``, or a video file / image folder read at the tracks'
            ``frame_indices`` and resized to their ``image_size``; None omits the frames (the entry then
            has no ``"video"``, and ``height`` / ``width`` give the size).
    """
    entry = to_tapvid(tracks)
    if video is not None:
        if isinstance(video, (str, os.PathLike)):
            video_name = video_name or Path(video).stem
            video = _frames_at(video, tracks.frame_indices, tracks.image_size)
        frames = np.asarray(video)
        expected = (tracks.num_frames, *tracks.image_size, 3)
        if frames.shape != expected or frames.dtype != np.uint8:
            raise InvalidArgumentError(f"video must be uint8 {list(expected)} (the tracks' frames), got "
                                       f"{frames.dtype} {list(frames.shape)}")
        entry["video"] = frames
    name = video_name or Path(path).stem
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps({name: entry}, protocol=4))


def _frames_at(source: str | os.PathLike, frame_indices: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """``uint8 [T, H, W, 3]``: the frames ``frame_indices`` of ``source``, resized to ``image_size``."""
    import cv2

    from .frames import open_video

    wanted = {int(i): k for k, i in enumerate(frame_indices)}
    out = np.zeros((len(frame_indices), *image_size, 3), np.uint8)
    found = np.zeros(len(frame_indices), bool)
    h, w = image_size
    with open_video(source, start=int(min(wanted)), stop=int(max(wanted)) + 1) as frames:
        for frame in frames:
            k = wanted.get(frame.index)
            if k is None:
                continue
            image = frame.image
            if image.shape[:2] != (h, w):
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
            out[k], found[k] = image, True
    if not found.all():
        raise InputFileError(f"{source}: frames {frame_indices[~found][:5].tolist()} of the tracks are missing")
    return out


def tapvid_file_fields(path: str | os.PathLike, video_name: str | None = None, image_size: tuple[int, int] | None = None) -> TrackFields:
    """Read one video of a TAP-Vid pickle (numpy arrays only: other objects are refused, never built)."""
    data = load_numpy_pickle(path)
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a dict of videos, got {type(data).__name__}")
    if "points" in data:
        entry = data
    else:
        names = list(data)
        if video_name is None:
            if len(names) != 1:
                raise InvalidArgumentError(f"{path} holds {len(names)} videos; pass video_name= one of {names[:10]}")
            video_name = names[0]
        if video_name not in data:
            raise InvalidArgumentError(f"{path} has no video {video_name!r}; it has {names[:10]}")
        entry = data[video_name]
    missing = [k for k in ("points", "occluded") if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise InputFileError(f"{path}: TAP-Vid entry lacks {missing} (it needs 'points' [N, T, 2] and 'occluded' [N, T])")
    return tapvid_fields(entry, image_size)


# --------------------------------------------------------------------------------------------
# MOTChallenge


def write_mot(tracks: Tracks, path: str | os.PathLike, groups: np.ndarray | None = None, **grouping: Any) -> None:
    """MOTChallenge boxes, one per object per frame: ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, -1, -1, -1``.

    ``groups [N]`` are the MOT ids of the tracks (integers >= 1). Without ``groups`` the tracks are
    grouped into moving objects by :func:`motion.objects.grouping.group_track_arrays` (``grouping``
    are its options); tracks of the static background are not written. The boxes cover the pixels
    of each object's visible points (see :meth:`Tracks.boxes`) and are written as
    :func:`write_mot_rows` does (1-based frames and pixel coordinates).
    """
    if groups is None:
        from .objects.grouping import group_track_arrays

        groups = group_track_arrays(tracks.xy, tracks.visible, tracks.image_size, **grouping)
        selected = groups > 0
    else:
        if grouping:
            raise InvalidArgumentError(f"grouping options {sorted(grouping)} apply only without groups")
        groups = np.asarray(groups, np.int64)
        if groups.shape != (tracks.num_tracks,) or (groups.size and groups.min() < 1):
            raise InvalidArgumentError(f"groups must be {tracks.num_tracks} integer ids >= 1")
        selected = np.ones(tracks.num_tracks, bool)
    table = tracks[selected].boxes(groups[selected]) if selected.any() else None
    if table is None:
        write_mot_rows(path, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
        return
    write_mot_rows(path, tracks.frame_indices[table["frame"]] + 1, table["group"], table["box"], table["confidence"])


def write_mot_rows(path: str | os.PathLike, frames: np.ndarray, ids: np.ndarray, boxes: np.ndarray,
                   confidence: np.ndarray | None = None) -> None:
    """Write MOTChallenge rows (atomic), sorted by frame then id.

    Args:
        frames: ``int [K]`` 1-based frame numbers (the image files ``000001.jpg`` ... of a MOT sequence).
        ids: ``int [K]`` object ids >= 1.
        boxes: ``float [K, 4]`` ``(left, top, width, height)`` in 0-based pixel-edge coordinates (the
            left edge of pixel column 0 is 0). They are written 1-based, as MOTChallenge stores them (the
            top-left pixel is (1, 1)), so the devkit's and py-motmetrics' loaders, which subtract 1, get
            them back.
        confidence: ``float [K]`` (default 1).
    """
    frames = np.asarray(frames, np.int64).reshape(-1)
    ids = np.asarray(ids, np.int64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    conf = np.ones(len(frames)) if confidence is None else np.asarray(confidence, np.float64).reshape(-1)
    if not len(frames) == len(ids) == len(boxes) == len(conf):
        raise InvalidArgumentError(
            f"frames, ids, boxes and confidence must have one entry per row, got {len(frames)}, {len(ids)}, "
            f"{len(boxes)}, {len(conf)}")
    if len(frames) and (frames.min() < 1 or ids.min() < 1):
        raise InvalidArgumentError("MOT frame numbers and ids are 1-based (>= 1)")
    order = np.lexsort((ids, frames))
    lines = []
    for k in order:
        left, top, width, height = boxes[k]
        lines.append(f"{frames[k]},{ids[k]},{left + 1:.3f},{top + 1:.3f},{width:.3f},{height:.3f},{conf[k]:.4f},-1,-1,-1")
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_mot(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a MOTChallenge text file.

    Returns:
        ``frame [K]`` (1-based, as stored), ``id [K]``, ``box [K, 4]`` ``(left, top, width, height)``
        in 0-based pixel-edge coordinates (the stored 1-based values minus 1, as py-motmetrics reads
        them), ``confidence [K]``.
    """
    rows = []
    columns = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.strip().replace(" ", "").split(",")
            if len(parts) < 7:
                raise InputFileError(f"{path}:{number}: expected at least 7 comma-separated values, got {len(parts)}")
            if columns is not None and len(parts) != columns:  # e.g. a last line cut short
                raise InputFileError(f"{path}:{number}: {len(parts)} values where the lines above have {columns}")
            columns = len(parts)
            rows.append([float(v) for v in parts[:7]])
    data = np.asarray(rows, np.float64).reshape(-1, 7)
    box = data[:, 2:6].copy()
    box[:, :2] -= 1.0
    return {
        "frame": data[:, 0].astype(np.int64),
        "id": data[:, 1].astype(np.int64),
        "box": box.astype(np.float32),
        "confidence": data[:, 6].astype(np.float32),
    }


def mot_fields(table: dict[str, np.ndarray], image_size: tuple[int, int] | None = None) -> TrackFields:
    """One track per MOT id following its box centre; visible in the frames that have a box."""
    if image_size is None:
        raise InvalidArgumentError("MOT files do not store the image size; pass image_size=(H, W)")
    frames = np.unique(table["frame"])
    ids = np.unique(table["id"])
    xy = np.zeros((len(frames), len(ids), 2), np.float32)
    visible = np.zeros((len(frames), len(ids)), bool)
    conf = np.zeros((len(frames), len(ids)), np.float32)
    ti = np.searchsorted(frames, table["frame"])
    ni = np.searchsorted(ids, table["id"])
    box = table["box"]
    xy[ti, ni] = box[:, :2] + box[:, 2:] / 2 - 0.5  # edge coordinates -> integer pixel centres
    visible[ti, ni] = True
    conf[ti, ni] = table["confidence"]
    return dict(xy=xy, visible=visible, confidence=conf, ids=ids, frame_indices=frames - 1, image_size=image_size)


# --------------------------------------------------------------------------------------------
# JSON


def write_json(tracks: Tracks, path: str | os.PathLike) -> None:
    """JSON document (see the module table); floats are exact float32 values."""
    doc = {
        "format": "motion4d-tracks",
        "version": 1,
        "image_size": list(tracks.image_size),
        "frame_indices": tracks.frame_indices.tolist(),
        "times": None if tracks.times is None else tracks.times.tolist(),
        "metadata": tracks.metadata,
        "tracks": [
            {
                "id": int(tracks.ids[i]),
                "query": None if tracks.query is None else tracks.query[i].tolist(),
                "xy": tracks.xy[:, i].tolist(),
                "visible": tracks.visible[:, i].tolist(),
                "confidence": None if tracks.confidence is None else tracks.confidence[:, i].tolist(),
            }
            for i in range(tracks.num_tracks)
        ],
    }
    atomic_write_text(path, json.dumps(doc, default=str))


def json_fields(path: str | os.PathLike) -> TrackFields:
    """Read a JSON document written by :func:`write_json`."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != "motion4d-tracks":
        raise InputFileError(f"{path}: not a motion4d tracks JSON file (no \"format\": \"motion4d-tracks\")")
    items = doc["tracks"]
    t = len(doc["frame_indices"])
    xy = np.array([tr["xy"] for tr in items], np.float32).reshape(len(items), t, 2).transpose(1, 0, 2)
    visible = np.array([tr["visible"] for tr in items], bool).reshape(len(items), t).T
    has_conf = bool(items) and items[0]["confidence"] is not None
    has_query = bool(items) and items[0]["query"] is not None
    return dict(
        xy=xy,
        visible=visible,
        confidence=np.array([tr["confidence"] for tr in items], np.float32).T if has_conf else None,
        ids=np.array([tr["id"] for tr in items], np.int64),
        frame_indices=np.array(doc["frame_indices"], np.int64),
        times=None if doc["times"] is None else np.array(doc["times"]),
        image_size=tuple(doc["image_size"]),
        query=np.array([tr["query"] for tr in items], np.float32) if has_query else None,
        metadata=doc.get("metadata") or {},
    )
