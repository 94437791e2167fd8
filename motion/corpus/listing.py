"""The videos of a corpus: a folder (video files and frame folders, recursively) or a list file."""
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
    """One unit of work: a video file or a folder of frames, and the name of its output folder."""

    path: str
    id: str


def _is_frame_folder(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS for e in entries)


def _video_id(relative: str) -> str:
    """Output folder name of a video: its relative path with separators flattened, made unique."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", relative.replace(os.sep, "__").replace("/", "__")).strip("._") or "video"
    digest = hashlib.sha1(relative.encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def list_corpus(source: str | os.PathLike) -> list[Video]:
    """Videos of a folder (recursive; folders of images count as videos) or of a list file, sorted.

    A list file holds one video or image folder per line (``#`` comments; relative paths are
    relative to the list).
    """
    source = Path(source)
    if source.is_file():
        base = source.parent
        paths = []
        for line in source.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            path = Path(line) if Path(line).is_absolute() else base / line
            paths.append((os.path.normpath(line), path))
    elif source.is_dir():
        paths = []
        for folder, dirs, files in os.walk(source):
            dirs.sort()
            folder_path = Path(folder)
            if folder_path != source and _is_frame_folder(folder_path):
                paths.append((str(folder_path.relative_to(source)), folder_path))
                dirs.clear()  # a frame folder is one video
                continue
            for name in files:
                if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                    path = folder_path / name
                    paths.append((str(path.relative_to(source)), path))
    else:
        raise MissingFileError(f"corpus input {source} does not exist (expected a folder of videos or a list file)")
    unique = {}
    for relative, path in paths:
        unique.setdefault(str(path), Video(str(path), _video_id(relative)))
    videos = sorted(unique.values(), key=lambda v: v.path)
    if not videos:
        raise MissingFileError(f"corpus input {source}: no videos ({', '.join(VIDEO_EXTENSIONS)}) or image folders found")
    return videos
