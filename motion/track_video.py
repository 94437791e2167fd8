"""Overlay videos of point tracks: each frame with the tracks' recent trails drawn on it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from motion4d.errors import ShapeError

from .frames import open_video
from .tracks import Tracks
from .video_writer import VideoWriter
from .visualize import overlay_tracks


def write_tracks_video(
    tracks: Tracks,
    source: Any,
    path: str | Path,
    fps: float | None = None,
    trail: int = 8,
    radius: int = 3,
    **video_options: Any,
) -> Path:
    """Overlay video of ``tracks`` on their frames, streamed frame by frame (atomic write).

    Args:
        source: the frames the tracks were computed on: ``uint8 [T, H, W, 3]`` or a video / folder
            opened with ``video_options`` (start, stop, stride, max_frames, resize as used for tracking).
        fps: output frame rate (default: the source's rate divided by the stride).
        trail, radius: drawing options of :func:`motion.visualize.overlay_tracks`.
    """
    video = open_video(source, **video_options)
    if (video.height, video.width) != tuple(tracks.image_size):
        raise ShapeError(
            f"the frames are {video.width}x{video.height} but the tracks refer to "
            f"{tracks.image_size[1]}x{tracks.image_size[0]} images; open the video with the tracking options"
        )
    rate = fps if fps is not None else video.fps / video_options.get("stride", 1)
    with video, VideoWriter(path, fps=rate) as writer:
        count = 0
        for t, frame in enumerate(video):
            if t >= tracks.num_frames:
                break
            writer.write(overlay_tracks(frame.image, tracks.xy, tracks.visible, trail=trail, radius=radius, t=t))
            count += 1
    if count != tracks.num_frames:
        raise ShapeError(f"the video gave {count} frames but the tracks span {tracks.num_frames}")
    return Path(path)
