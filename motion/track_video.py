"""Overlay videos: point tracks and object boxes drawn on their frames, with a progress bar.

* :func:`write_tracks_video`: moving tracks with their recent trails in colour, the boxes of the
  objects they form with their ids; tracks of the static background faded (or hidden);
* :func:`write_objects_video`: the boxes, ids and masks of :class:`~motion.objects.result.Objects`.

Both stream the source frame by frame and write atomically (:class:`~motion.video_writer.VideoWriter`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from motion4d.checks import check_choice, check_float
from motion4d.errors import ShapeError

from .frames import open_video
from .tracks import Tracks
from .video_writer import VideoWriter
from .visualize import track_colors

STATIC_STYLES = ("fade", "hide", "show")


def id_colors(ids: np.ndarray) -> np.ndarray:
    """``uint8 [k, 3]`` RGB colour of each object id (the same id always gets the same colour)."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    palette = track_colors(64)
    return palette[(ids * 7) % 64] if len(ids) else np.zeros((0, 3), np.uint8)


def draw_boxes(image: np.ndarray, ids: np.ndarray, boxes: np.ndarray, masks: np.ndarray | None = None,
               thickness: int = 2, mask_alpha: float = 0.35) -> np.ndarray:
    """Draw ``boxes [k, 4]`` (left, top, width, height) labelled with their ``ids [k]`` on ``image [H, W, 3]``
    (in place, returned); ``masks [H, W]`` (object id per pixel) are tinted in the id colours."""
    colors = id_colors(ids)
    if masks is not None and masks.any():
        tint = np.zeros_like(image)
        for i, color in zip(ids, colors):
            tint[masks == i] = color
        on = masks > 0
        image[on] = ((1 - mask_alpha) * image[on] + mask_alpha * tint[on]).astype(np.uint8)
    for i, box, color in zip(ids, boxes, colors):
        c = tuple(int(v) for v in color)
        left, top = int(round(box[0])), int(round(box[1]))
        right, bottom = int(round(box[0] + box[2])) - 1, int(round(box[1] + box[3])) - 1
        cv2.rectangle(image, (left, top), (right, bottom), c, thickness, cv2.LINE_AA)
        label = f"{int(i)}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        y = top - 3 if top - th - 4 >= 0 else top + th + 3
        cv2.rectangle(image, (left, y - th - 2), (left + tw + 3, y + 2), c, -1)
        cv2.putText(image, label, (left + 2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def group_boxes(tracks: Tracks, groups: np.ndarray) -> dict[str, np.ndarray]:
    """:meth:`Tracks.boxes` of the moving groups (``groups > 0``); empty when there are none."""
    if not (groups > 0).any():
        return {"frame": np.zeros(0, np.int64), "group": np.zeros(0, np.int64), "box": np.zeros((0, 4), np.float32)}
    return tracks[groups > 0].boxes(groups[groups > 0])


def draw_tracks_frame(image: np.ndarray, tracks: Tracks, t: int, groups: np.ndarray, static: str = "fade",
                      trail: int = 8, radius: int = 2, fade: float = 0.35,
                      boxes: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Frame ``t`` of the tracks overlay on ``image [H, W, 3]`` (in place, returned).

    ``groups [N]``: object id of each track (0 = static background). Static points are drawn as faint
    grey dots (``"fade"``), not at all (``"hide"``) or like the others (``"show"``). ``boxes``: the
    :func:`group_boxes` table (computed when not given).
    """
    check_choice(static, "static", STATIC_STYLES)
    xy, vis = tracks.xy, tracks.visible
    moving = groups > 0 if static != "show" else np.ones(len(groups), bool)
    if static == "fade":
        pts = np.round(xy[t, ~moving & vis[t]]).astype(int)
        h, w = image.shape[:2]
        pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)]
        dots = np.zeros(image.shape[:2], np.uint8)
        dots[pts[:, 1], pts[:, 0]] = 1
        dots = cv2.dilate(dots, np.ones((2, 2), np.uint8)).astype(bool)
        image[dots] = ((1 - fade) * image[dots] + fade * 255).astype(np.uint8)
    # moving tracks: trails as polylines (one call per colour group), then dots
    colors = id_colors(np.maximum(groups, 1)) if static != "show" else track_colors(len(groups))
    start = max(0, t - trail)
    for i in np.nonzero(moving & vis[t])[0]:
        color = tuple(int(c) for c in colors[i])
        seen = vis[start:t + 1, i]
        path = xy[start:t + 1, i][seen]
        if len(path) > 1:
            cv2.polylines(image, [np.round(path * 16).astype(np.int32)], False, color, 1, cv2.LINE_AA, 4)
        cx, cy = np.round(xy[t, i] * 16).astype(int)
        cv2.circle(image, (int(cx), int(cy)), radius * 16, color, -1, cv2.LINE_AA, 4)
    if static != "show":
        table = group_boxes(tracks, groups) if boxes is None else boxes
        here = table["frame"] == t
        draw_boxes(image, table["group"][here], table["box"][here])
    return image


def _progress(total: int | None, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="frame", desc=desc, disable=not enabled)


def write_tracks_video(
    tracks: Tracks,
    source: Any,
    path: str | Path,
    fps: float | None = None,
    trail: int = 8,
    radius: int = 2,
    *,
    static: str = "fade",
    groups: np.ndarray | None = None,
    progress: bool = True,
    **video_options: Any,
) -> Path:
    """Overlay video of ``tracks`` on their frames, streamed frame by frame (atomic write).

    Args:
        source: the frames the tracks were computed on: ``uint8 [T, H, W, 3]`` or a video / folder
            opened with ``video_options`` (start, stop, stride, max_frames, resize as used for tracking).
        fps: output frame rate (default: the source's rate divided by the stride).
        trail, radius: trail length in frames and dot radius in pixels of the moving tracks.
        static: how background tracks are drawn: ``"fade"``, ``"hide"`` or ``"show"`` (all tracks in
            colour, no boxes).
        groups: ``int [N]`` object id of each track, 0 for the background (default:
            :func:`motion.objects.grouping.group_track_arrays`).
        progress: show a tqdm progress bar.
    """
    check_choice(static, "static", STATIC_STYLES)
    if groups is None:
        if static == "show":
            groups = np.zeros(tracks.num_tracks, np.int64)
        else:
            from .objects.grouping import group_track_arrays

            groups = group_track_arrays(tracks.xy, tracks.visible, tracks.image_size)
    groups = np.asarray(groups, np.int64)
    if groups.shape != (tracks.num_tracks,):
        raise ShapeError(f"groups must have one entry per track ({tracks.num_tracks}), got {list(groups.shape)}")
    video = open_video(source, **video_options)
    if (video.height, video.width) != tuple(tracks.image_size):
        raise ShapeError(
            f"the frames are {video.width}x{video.height} but the tracks refer to "
            f"{tracks.image_size[1]}x{tracks.image_size[0]} images; open the video with the tracking options"
        )
    rate = fps if fps is not None else video.fps / video_options.get("stride", 1)
    boxes = group_boxes(tracks, groups)
    with video, VideoWriter(path, fps=rate) as writer, _progress(tracks.num_frames, "overlay", progress) as bar:
        count = 0
        for t, frame in enumerate(video):
            if t >= tracks.num_frames:
                break
            writer.write(draw_tracks_frame(frame.image.copy(), tracks, t, groups, static, trail, radius, boxes=boxes))
            count += 1
            bar.update(1)
    if count != tracks.num_frames:
        raise ShapeError(f"the video gave {count} frames but the tracks span {tracks.num_frames}")
    return Path(path)


def objects_frame(image: np.ndarray, objects: Any, t: int, masks: bool = True) -> np.ndarray:
    """Frame ``t`` of the objects overlay on a copy of ``image [H, W, 3]``."""
    ids, boxes = objects.in_frame(t)
    mask = objects.masks[t] if masks and objects.masks is not None else None
    return draw_boxes(image.copy(), ids, boxes, mask)


def write_objects_video(objects: Any, source: Any, path: str | Path, fps: float | None = None, *,
                        masks: bool = True, progress: bool = True, **video_options: Any) -> Path:
    """Overlay video of :class:`~motion.objects.result.Objects`: masks tinted, boxes with ids (atomic).

    ``source`` and ``video_options`` as in :func:`write_tracks_video`.
    """
    video = open_video(source, **video_options)
    if (video.height, video.width) != tuple(objects.image_size):
        raise ShapeError(f"the frames are {video.width}x{video.height} but the objects refer to "
                         f"{objects.image_size[1]}x{objects.image_size[0]} images")
    rate = fps if fps is not None else video.fps / video_options.get("stride", 1)
    check_float(rate, "fps", minimum=0.0)
    with video, VideoWriter(path, fps=rate) as writer, _progress(objects.num_frames, "overlay", progress) as bar:
        count = 0
        for t, frame in enumerate(video):
            if t >= objects.num_frames:
                break
            writer.write(objects_frame(frame.image, objects, t, masks))
            count += 1
            bar.update(1)
    if count != objects.num_frames:
        raise ShapeError(f"the video gave {count} frames but the objects span {objects.num_frames}")
    return Path(path)
