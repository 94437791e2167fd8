"""The videos of a corpus: a folder (video files and frame folders, recursively) or a list file.

Every path is resolved (absolute, symbolic links followed) here, once, so a video has one name
whatever the working directory or the spelling of the input (``corpus/``, ``./corpus``,
``/data/corpus``): the manifest, the output folders and Ray workers on other machines all use it.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from motion4d.errors import MissingFileError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Video:
    """One unit of work: a video file or a folder of frames (resolved path), the name of its output
    folder and its size in bytes when listed (a frame folder: its images; -1: missing)."""

    path: str
    id: str
    bytes: int = -1


def _is_frame_folder(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS for e in entries)


def _video_id(relative: str) -> str:
    """Output folder name of a video: its relative path with separators flattened, made unique."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", relative.replace(os.sep, "__").replace("/", "__")).strip("._") or "video"
    digest = hashlib.sha1(relative.encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def video_stamp(path: Path) -> tuple[int, int]:
    """``(bytes, mtime_ns)`` of a video file, or of a frame folder's images (summed size, latest
    modification); ``(-1, -1)`` when it does not exist. A changed stamp means a changed video."""
    try:
        if path.is_dir():
            with os.scandir(path) as entries:
                stats = [e.stat() for e in entries
                         if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS]
            return sum(st.st_size for st in stats), max((st.st_mtime_ns for st in stats), default=-1)
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def video_bytes(path: Path) -> int:
    """Size of a video file, or the summed size of a frame folder's images; -1 when it does not exist."""
    return video_stamp(path)[0]


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:  # a list naming videos outside its folder: the whole path names them
        return str(path).lstrip(os.sep)


def list_corpus(source: str | os.PathLike) -> list[Video]:
    """Videos of a folder (recursive; folders of images count as videos) or of a list file, sorted by
    resolved path.

    A list file holds one video or image folder per line (``#`` comments; relative paths are
    relative to the list). Output folder names come from the path relative to the folder (or to
    the list's folder), so they do not depend on where the corpus is mounted.
    """
    source = Path(source)
    if not source.exists():
        raise MissingFileError(f"corpus input {source} does not exist (expected a folder of videos or a list file)")
    root = source.resolve()
    if root.is_file():
        base = root.parent
        paths = []
        for line in root.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                path = (base / line).resolve()  # an absolute line stays itself
                paths.append((_relative(path, base), path))
    else:
        paths = []
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            folder_path = Path(folder)
            if folder_path != root and _is_frame_folder(folder_path):
                paths.append((str(folder_path.relative_to(root)), folder_path.resolve()))
                dirs.clear()  # a frame folder is one video
                continue
            for name in files:
                if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                    path = folder_path / name
                    paths.append((str(path.relative_to(root)), path.resolve()))
    unique: dict[str, Video] = {}
    for relative, path in paths:
        if str(path) not in unique:
            unique[str(path)] = Video(str(path), _video_id(relative), video_bytes(path))
    videos = sorted(unique.values(), key=lambda v: v.path)
    if not videos:
        raise MissingFileError(f"corpus input {source}: no videos ({', '.join(VIDEO_EXTENSIONS)}) or image folders found")
    return videos
