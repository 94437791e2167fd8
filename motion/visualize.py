"""Pictures of flow and tracks: Middlebury colour coding, legend, arrows, panels, PNGs and videos.

Colour coding follows Baker et al.'s Middlebury reference code (``flowToColor`` / ``computeColor``):
the hue comes from the flow direction on a 55-colour wheel (segments red-yellow 15, yellow-green 6,
green-cyan 4, cyan-blue 11, blue-magenta 13, magenta-red 6), the saturation grows with
``|flow| / max_radius``, and vectors longer than ``max_radius`` are darkened to 75 %. Right is red,
down is orange-yellow, left is cyan, up is blue-violet; zero flow is white.

For a video, pass one fixed ``max_radius`` (e.g. from :func:`flow_max_radius` over the clip) so the
colours of a given motion do not change from frame to frame.
"""
from __future__ import annotations

import functools

import colorsys
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
import torch

from motion4d.checks import check_dtype, check_int, check_positive, check_shape
from motion4d.errors import InvalidArgumentError, ShapeError

__all__ = [
    "make_color_wheel",
    "flow_to_color",
    "flow_max_radius",
    "color_wheel_legend",
    "flow_arrows",
    "side_by_side",
    "overlay_tracks",
    "track_colors",
    "save_png",
    "write_flow_video",
]

# Middlebury colour-wheel segment lengths: RY, YG, GC, CB, BM, MR
_SEGMENTS = (15, 6, 4, 11, 13, 6)
# flow components above this magnitude mean "unknown" in the Middlebury code (.flo uses 1e10)
_UNKNOWN_FLOW = 1e9


def make_color_wheel() -> np.ndarray:
    """The Middlebury colour wheel: ``uint8 [55, 3]`` RGB, starting at red and turning through
    yellow, green, cyan, blue and magenta."""
    ry, yg, gc, cb, bm, mr = _SEGMENTS
    rows = []
    ramp = lambda n: np.floor(255 * np.arange(n) / n)  # noqa: E731
    rows.append(np.stack([np.full(ry, 255), ramp(ry), np.zeros(ry)], 1))
    rows.append(np.stack([255 - ramp(yg), np.full(yg, 255), np.zeros(yg)], 1))
    rows.append(np.stack([np.zeros(gc), np.full(gc, 255), ramp(gc)], 1))
    rows.append(np.stack([np.zeros(cb), 255 - ramp(cb), np.full(cb, 255)], 1))
    rows.append(np.stack([ramp(bm), np.zeros(bm), np.full(bm, 255)], 1))
    rows.append(np.stack([np.full(mr, 255), np.zeros(mr), 255 - ramp(mr)], 1))
    return np.concatenate(rows).astype(np.uint8)


_WHEEL = make_color_wheel().astype(np.float64) / 255.0


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise ShapeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _channels_first(flow: np.ndarray, channels_last: bool | None, name: str = "flow") -> np.ndarray:
    """``flow [..., 2, H, W]`` from channels-first or channels-last input."""
    if channels_last is None:
        if flow.ndim >= 3 and flow.shape[-3] == 2:
            channels_last = False
        elif flow.ndim >= 3 and flow.shape[-1] == 2:
            channels_last = True
        else:
            raise ShapeError(f"{name} must have shape [..., 2, H, W] or [..., H, W, 2], got {list(flow.shape)}")
    if channels_last:
        check_shape(flow, name, ("...", "H", "W", 2))
        return np.moveaxis(flow, -1, -3)
    check_shape(flow, name, ("...", 2, "H", "W"))
    return flow


def _radius(flow_chw: np.ndarray) -> np.ndarray:
    """``|flow|`` with unknown (non-finite or > 1e9) vectors set to NaN; ``[..., H, W]``."""
    u, v = flow_chw[..., 0, :, :].astype(np.float64), flow_chw[..., 1, :, :].astype(np.float64)
    known = np.isfinite(u) & np.isfinite(v) & (np.abs(u) <= _UNKNOWN_FLOW) & (np.abs(v) <= _UNKNOWN_FLOW)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(known, np.hypot(u, v), np.nan)


def flow_max_radius(flows: Any, percentile: float = 100.0, channels_last: bool | None = None) -> float:
    """A fixed ``max_radius`` for colour-coding several flows alike.

    Args:
        flows: one flow ``[..., 2, H, W]`` / ``[..., H, W, 2]`` (torch or numpy) or an iterable of
            them (e.g. a generator over a long video: memory stays bounded).
        percentile: per flow field, the radius at this percentile of its known vectors (100 = the
            maximum; 99 ignores a few wild vectors); the result is the largest over all fields.

    Returns:
        The radius in pixels (1.0 when every flow is zero or unknown).
    """
    if not 0 < percentile <= 100:
        raise InvalidArgumentError(f"percentile must be in (0, 100], got {percentile!r}")
    items = [flows] if isinstance(flows, (np.ndarray, torch.Tensor)) else flows
    best = 0.0
    count = 0
    for item in items:
        r = _radius(_channels_first(_to_numpy(item, "flows"), channels_last, "flows"))
        r = r.reshape(-1, r.shape[-2] * r.shape[-1])
        for field in r:
            known = field[np.isfinite(field)]
            if known.size:
                best = max(best, float(np.percentile(known, percentile)))
        count += 1
    if count == 0:
        raise InvalidArgumentError("flows is empty")
    return best if best > 0 else 1.0


def flow_to_color(flow: Any, max_radius: float | None = None, channels_last: bool | None = None) -> np.ndarray:
    """Middlebury colour coding of optical flow.

    Args:
        flow: ``[..., 2, H, W]`` or ``[..., H, W, 2]`` (torch or numpy; the layout is detected from
            which axis has size 2, or forced with ``channels_last``). Non-finite or > 1e9 entries
            are "unknown" and drawn black.
        max_radius: the flow length drawn fully saturated; longer vectors are darkened. Default: the
            largest known length in each image (per image, so pass a fixed value for videos).

    Returns:
        ``uint8 [..., H, W, 3]`` RGB.
    """
    f = _channels_first(_to_numpy(flow, "flow"), channels_last).astype(np.float64)
    if max_radius is not None:
        if not (isinstance(max_radius, (int, float, np.floating, np.integer)) and math.isfinite(max_radius)
                and max_radius > 0):
            raise InvalidArgumentError(f"max_radius must be a finite number > 0, got {max_radius!r}")
    radius = _radius(f)  # [..., H, W]
    known = np.isfinite(radius)
    if max_radius is None:
        flat = np.where(known, radius, 0.0).reshape(*radius.shape[:-2], -1)
        scale = flat.max(axis=-1) if flat.shape[-1] else np.zeros(flat.shape[:-1])
        scale = np.where(scale > 0, scale, 1.0)[..., None, None]
    else:
        scale = float(max_radius)
    u = np.where(known, f[..., 0, :, :], 0.0) / scale
    v = np.where(known, f[..., 1, :, :], 0.0) / scale
    rad = np.where(known, radius, 0.0) / scale
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    ncols = len(_WHEEL)
    fk = (angle + 1.0) / 2.0 * (ncols - 1)
    k0 = np.floor(fk).astype(np.int64)
    k1 = (k0 + 1) % ncols
    frac = (fk - k0)[..., None]
    col = (1 - frac) * _WHEEL[k0] + frac * _WHEEL[k1]  # [..., H, W, 3]
    inside = (rad <= 1.0)[..., None]
    col = np.where(inside, 1.0 - rad[..., None] * (1.0 - col), col * 0.75)
    image = np.floor(255.0 * col).astype(np.uint8)
    image[~known] = 0
    return image


def color_wheel_legend(size: int = 151, max_radius: float | None = None, background: int = 255) -> np.ndarray:
    """The colour key: ``uint8 [size, size, 3]`` showing the colour of every flow vector up to
    the wheel's radius (centre = zero flow, right = +u, down = +v); the rim is outlined.

    With ``max_radius`` the image is captioned with the radius in pixels.
    """
    check_int(size, "size", minimum=16)
    c = (size - 1) / 2.0
    r = c - 1.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([(xx - c) / r, (yy - c) / r])
    image = flow_to_color(flow, max_radius=1.0)
    image[np.hypot(xx - c, yy - c) > r] = background
    centre = (int(round(c * 16)), int(round(c * 16)))
    cv2.circle(image, centre, int(round(r * 16)), (80, 80, 80), 1, cv2.LINE_AA, shift=4)
    if max_radius is not None:
        text = f"{max_radius:.3g} px"
        scale = size / 300.0
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        strip = np.full((th + 10, size, 3), background, np.uint8)
        cv2.putText(strip, text, ((size - tw) // 2, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
        image = np.concatenate([image, strip], axis=0)
    return image


@functools.lru_cache(maxsize=8)
def _legend(size: int, max_radius: float) -> np.ndarray:
    return color_wheel_legend(size, max_radius=max_radius)


def with_legend(image: np.ndarray, max_radius: float) -> np.ndarray:
    """``image`` (a flow colour image ``uint8 [H, W, 3]``) with the colour key, labelled with
    ``max_radius`` px, drawn into its top-left corner (a quarter of the shorter side)."""
    size = max(16, min(image.shape[0], image.shape[1]) // 4)
    key = _legend(size if size % 2 else size + 1, float(max_radius))
    kh, kw = min(key.shape[0], image.shape[0]), min(key.shape[1], image.shape[1])
    image = image.copy()
    image[:kh, :kw] = key[:kh, :kw]
    return image


def _as_rgb8(image: Any, name: str) -> np.ndarray:
    """``uint8 [H, W, 3]`` copy from uint8 / bool ``[H, W]`` or ``[H, W, 3]`` (torch or numpy)."""
    arr = _to_numpy(image, name)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    check_dtype(arr, name, (np.dtype(np.uint8),))
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    check_shape(arr, name, ("H", "W", 3))
    return np.ascontiguousarray(arr).copy()


def flow_arrows(image: Any, flow: Any, step: int = 16, scale: float = 1.0, color: tuple[int, int, int] = (255, 255, 255),
                thickness: int = 1, min_length: float = 0.5, channels_last: bool | None = None) -> np.ndarray:
    """Arrows of the flow drawn on a grid every ``step`` pixels (``cv2.arrowedLine``).

    Args:
        image: ``uint8 [H, W, 3]`` background (or ``[H, W]``); ``None`` uses the flow's colour coding.
        flow: ``[2, H, W]`` or ``[H, W, 2]``.
        scale: arrow length per pixel of flow.
        color: RGB of the arrows (drawn over a dark outline so they show on any background).
        min_length: arrows shorter than this (in drawn pixels) are skipped.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    f = _channels_first(_to_numpy(flow, "flow"), channels_last)
    if f.ndim != 3:
        raise ShapeError(f"flow must be a single field [2, H, W] or [H, W, 2], got {list(f.shape)}")
    h, w = f.shape[-2:]
    check_int(step, "step", minimum=1)
    check_positive(scale, "scale")
    canvas = flow_to_color(f) if image is None else _as_rgb8(image, "image")
    if canvas.shape[:2] != (h, w):
        raise ShapeError(f"image {list(canvas.shape[:2])} and flow {[h, w]} must have the same H, W")
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    for y, x in zip(ys.ravel(), xs.ravel()):
        u, v = f[0, y, x], f[1, y, x]
        if not (np.isfinite(u) and np.isfinite(v)) or math.hypot(u, v) * scale < min_length:
            continue
        start = (int(x), int(y))
        end = (int(round(x + scale * u)), int(round(y + scale * v)))
        cv2.arrowedLine(canvas, start, end, (0, 0, 0), thickness + 2, cv2.LINE_AA, tipLength=0.3)
        cv2.arrowedLine(canvas, start, end, tuple(int(c) for c in color), thickness, cv2.LINE_AA, tipLength=0.3)
    return canvas


def side_by_side(images: Sequence[Any], labels: Sequence[str] | None = None, columns: int | None = None,
                 gap: int = 4, background: int = 255, font_scale: float | None = None) -> np.ndarray:
    """Panels in a grid with an optional text label above each one.

    Args:
        images: ``uint8 [H, W, 3]`` / ``[H, W]`` or bool ``[H, W]`` arrays (sizes may differ; each
            cell is as large as the largest panel, panels sit top-left).
        labels: one caption per image.
        columns: panels per row (default: all in one row).

    Returns:
        ``uint8 [H', W', 3]``.
    """
    if isinstance(images, (np.ndarray, torch.Tensor)) and _to_numpy(images, "images").ndim == 4:
        images = list(images)
    panels = [_as_rgb8(im, f"images[{i}]") for i, im in enumerate(images)]
    if not panels:
        raise InvalidArgumentError("images is empty")
    if labels is not None and len(labels) != len(panels):
        raise InvalidArgumentError(f"labels has {len(labels)} entries for {len(panels)} images")
    columns = len(panels) if columns is None else int(columns)
    if columns < 1:
        raise InvalidArgumentError(f"columns must be >= 1, got {columns}")
    cell_h = max(p.shape[0] for p in panels)
    cell_w = max(p.shape[1] for p in panels)
    label_h = 0
    if labels is not None:
        font_scale = font_scale or max(0.35, min(1.0, cell_w / 400.0))
        text_h = max(cv2.getTextSize(str(t) or " ", cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][1] for t in labels)
        label_h = text_h + 10
    rows = math.ceil(len(panels) / columns)
    out_h = rows * (cell_h + label_h) + (rows - 1) * gap
    out_w = columns * cell_w + (columns - 1) * gap
    canvas = np.full((out_h, out_w, 3), background, np.uint8)
    for i, panel in enumerate(panels):
        r, c = divmod(i, columns)
        y0, x0 = r * (cell_h + label_h + gap), c * (cell_w + gap)
        if labels is not None:
            cv2.putText(canvas, str(labels[i]), (x0 + 2, y0 + label_h - 6), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                        (0, 0, 0), 1, cv2.LINE_AA)
        canvas[y0 + label_h:y0 + label_h + panel.shape[0], x0:x0 + panel.shape[1]] = panel
    return canvas


def track_colors(n: int) -> np.ndarray:
    """``uint8 [n, 3]`` distinct, bright RGB colours (hues spread by the golden ratio)."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    return np.array([[int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, 1.0)] for h in hues], np.uint8).reshape(n, 3)


def overlay_tracks(frames: Any, xy: Any, visible: Any | None = None, trail: int = 8, radius: int = 3,
                   thickness: int = 1, colors: np.ndarray | None = None, t: int | None = None,
                   show_occluded: bool = True) -> np.ndarray:
    """Draw point tracks: a dot at each point's current position and its recent trail.

    Args:
        frames: ``uint8 [T, H, W, 3]`` (every frame gets its own points) or one image ``[H, W, 3]``
            (the points of frame ``t`` are drawn on it; default ``t = T - 1``).
        xy: ``float [T, N, 2]`` positions in pixels.
        visible: ``bool [T, N]``; occluded points are drawn as hollow circles (or hidden with
            ``show_occluded=False``) and trail segments touching them are skipped.
        trail: number of previous frames whose path is drawn (0 = dots only).
        colors: ``uint8 [N, 3]`` RGB per track (default :func:`track_colors`).

    Returns:
        Same shape as ``frames``, uint8.
    """
    pts = _to_numpy(xy, "xy").astype(np.float64)
    dims = check_shape(pts, "xy", ("T", "N", 2))
    n_t, n = dims["T"], dims["N"]
    vis = np.ones((n_t, n), bool) if visible is None else _to_numpy(visible, "visible").astype(bool)
    check_shape(vis, "visible", (n_t, n))
    cols = track_colors(n) if colors is None else np.asarray(colors, np.uint8)
    check_shape(cols, "colors", (n, 3))
    if trail < 0 or radius < 1:
        raise InvalidArgumentError(f"trail must be >= 0 and radius >= 1, got trail={trail}, radius={radius}")
    arr = _to_numpy(frames, "frames")
    if arr.ndim == 4:
        check_shape(arr, "frames", (n_t, "H", "W", 3))
        if t is not None:
            raise InvalidArgumentError("t applies to a single image; frames [T, H, W, 3] draw every frame")
        return np.stack([_draw_tracks(_as_rgb8(arr[i], f"frames[{i}]"), pts, vis, cols, i, trail, radius,
                                      thickness, show_occluded) for i in range(n_t)])
    t = n_t - 1 if t is None else int(t)
    if not 0 <= t < n_t:
        raise InvalidArgumentError(f"t must be in [0, {n_t - 1}], got {t}")
    return _draw_tracks(_as_rgb8(arr, "frames"), pts, vis, cols, t, trail, radius, thickness, show_occluded)


def _draw_tracks(image: np.ndarray, pts: np.ndarray, vis: np.ndarray, cols: np.ndarray, t: int, trail: int,
                 radius: int, thickness: int, show_occluded: bool) -> np.ndarray:
    shift = 4  # sub-pixel drawing with 1/16 px precision
    fixed = lambda p: (int(round(p[0] * 16)), int(round(p[1] * 16)))  # noqa: E731
    finite = np.isfinite(pts).all(-1)
    for i in range(pts.shape[1]):
        color = tuple(int(c) for c in cols[i])
        for s in range(max(0, t - trail), t):
            if vis[s, i] and vis[s + 1, i] and finite[s, i] and finite[s + 1, i]:
                cv2.line(image, fixed(pts[s, i]), fixed(pts[s + 1, i]), color, thickness, cv2.LINE_AA, shift)
        if not finite[t, i]:
            continue
        if vis[t, i]:
            cv2.circle(image, fixed(pts[t, i]), radius * 16, color, -1, cv2.LINE_AA, shift)
        elif show_occluded:
            cv2.circle(image, fixed(pts[t, i]), radius * 16, color, 1, cv2.LINE_AA, shift)
    return image


def save_png(path: str | os.PathLike, image: Any) -> Path:
    """Write ``uint8 [H, W, 3]`` RGB (or ``[H, W]`` grey / bool) to a PNG file atomically."""
    from .image_io import write_image

    target = Path(path)
    if target.suffix.lower() != ".png":
        raise InvalidArgumentError(f"path: {target} must end in .png")
    arr = _to_numpy(image, "image")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return write_image(target, np.ascontiguousarray(arr))


def write_flow_video(path: str | os.PathLike, flows: Iterable[Any], fps: float = 30.0, max_radius: float | None = None,
                     frames: Iterable[Any] | None = None, legend: bool = True, channels_last: bool | None = None,
                     **writer_options: Any) -> Path:
    """Colour-coded flow video with one fixed ``max_radius`` for all frames.

    Args:
        path: output video (.mp4, .mkv, ...), written atomically by :class:`motion.video_writer.VideoWriter`.
        flows: ``[T, 2, H, W]`` / ``[T, H, W, 2]`` array or an iterable of single flows (a generator
            over a long video is fine: nothing is kept in memory).
        max_radius: fixed colour scale. Default: the largest flow length of the whole clip when
            ``flows`` is an array or list; for other iterables, that of the first flow.
        frames: optional iterable of ``uint8 [H, W, 3]`` images shown left of each flow.
        legend: draw the colour key (labelled with ``max_radius``) into the top-left corner.
        writer_options: passed to ``VideoWriter`` (codec, crf, backend, ...).

    Returns:
        The path.
    """
    from .video_writer import VideoWriter

    if isinstance(flows, (np.ndarray, torch.Tensor)):
        flows = list(_channels_first(_to_numpy(flows, "flows"), channels_last, "flows"))
        channels_last = False
    elif isinstance(flows, (list, tuple)):
        flows = list(flows)
    iterator = iter(flows)
    try:
        first = next(iterator)
    except StopIteration:
        raise InvalidArgumentError("flows is empty") from None
    if max_radius is None:
        max_radius = flow_max_radius(flows if isinstance(flows, list) else first, channels_last=channels_last)
    frame_iter = iter(frames) if frames is not None else None

    def render(flow: Any) -> np.ndarray:
        f = _channels_first(_to_numpy(flow, "flow"), channels_last)
        if f.ndim != 3:
            raise ShapeError(f"each flow must be [2, H, W] or [H, W, 2], got {list(f.shape)}")
        image = flow_to_color(f, max_radius=max_radius)
        if legend:
            image = with_legend(image, max_radius)
        if frame_iter is not None:
            try:
                picture = next(frame_iter)
            except StopIteration:
                raise InvalidArgumentError("frames has fewer items than flows") from None
            picture = _as_rgb8(getattr(picture, "image", picture), "frames")
            if picture.shape != image.shape:
                raise ShapeError(f"frame {list(picture.shape)} and flow image {list(image.shape)} differ in size")
            image = np.concatenate([picture, image], axis=1)
        return image

    with VideoWriter(path, fps=fps, **writer_options) as writer:
        writer.write(render(first))
        for flow in iterator:
            writer.write(render(flow))
    return Path(path)
