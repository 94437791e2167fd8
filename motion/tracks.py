"""Point tracks: the :class:`Tracks` container and tracking by chaining dense optical flow.

::

    frames = motion.read_frames("clip.mp4")                       # uint8 [T, H, W, 3]
    tracks = motion.track_points(frames, model="dis", grid=16)     # or queries=[(t, x, y), ...]
    tracks.save("out/tracks.csv")                                  # .csv .parquet .npz .pkl .json .txt
    tracks.to_tapvid()                                             # TAP-Vid dict (normalised, occluded)

Chaining. From each query ``(t, x, y)`` the point is pushed forward with the forward flow sampled
bilinearly at its current position, ``p_{s+1} = p_s + F_s(p_s)``, and backward with the backward flow,
``p_{s-1} = p_s + B_{s-1}(p_s)``. Every step is checked forward-backward (Sundaram et al., ECCV 2010):
the step is consistent when ``|F(p) + B(p')|² <= alpha (|F(p)|² + |B(p')|²) + beta`` with ``p'`` the
point's new position. An inconsistent step marks the point occluded in the frame it arrives at; after
``max_occluded`` consecutive inconsistent steps the chain is considered lost and the point stays
invisible from then on. A point that leaves the image is invisible from then on (its position is
frozen where it left). The per-frame ``confidence`` multiplies ``exp(-e / (2 tol))`` over the steps
from the query (``e`` the squared forward-backward error, ``tol`` its tolerance), so it decays with
drift; it is 1 at the query frame and 0 once the chain is lost.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion4d.checks import check_finite, check_shape
from motion4d.errors import InvalidArgumentError, ShapeError


@dataclass
class Tracks:
    """``N`` point tracks over ``T`` frames.

    Attributes:
        xy: ``float32 [T, N, 2]`` pixel positions (x right, y down; pixel centres are integers).
        visible: ``bool [T, N]``.
        confidence: ``float32 [T, N]`` in [0, 1] or None.
        ids: ``int64 [N]`` track ids (default ``0..N-1``).
        frame_indices: ``int64 [T]`` index of each frame in its source video (default ``0..T-1``).
        times: ``float64 [T]`` timestamps in seconds, or None.
        image_size: ``(H, W)`` of the frames the pixel positions refer to.
        query: ``float32 [N, 3]`` ``(t, x, y)`` query of each track (t indexes the T frames), or None.
    """

    xy: np.ndarray
    visible: np.ndarray
    image_size: tuple[int, int]
    confidence: np.ndarray | None = None
    ids: np.ndarray | None = None
    frame_indices: np.ndarray | None = None
    times: np.ndarray | None = None
    query: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xy = np.asarray(_numpy(self.xy), dtype=np.float32)
        dims = check_shape(self.xy, "xy", ("T", "N", 2))
        t, n = dims["T"], dims["N"]
        self.visible = np.asarray(_numpy(self.visible)).astype(bool)
        check_shape(self.visible, "visible", (t, n))
        if self.confidence is not None:
            self.confidence = np.asarray(_numpy(self.confidence), dtype=np.float32)
            check_shape(self.confidence, "confidence", (t, n))
        self.ids = np.arange(n, dtype=np.int64) if self.ids is None else np.asarray(self.ids, dtype=np.int64)
        check_shape(self.ids, "ids", (n,))
        if len(np.unique(self.ids)) != n:
            raise InvalidArgumentError("ids must be unique")
        self.frame_indices = (
            np.arange(t, dtype=np.int64) if self.frame_indices is None else np.asarray(self.frame_indices, dtype=np.int64)
        )
        check_shape(self.frame_indices, "frame_indices", (t,))
        if self.times is not None:
            self.times = np.asarray(self.times, dtype=np.float64)
            check_shape(self.times, "times", (t,))
        if self.query is not None:
            self.query = np.asarray(_numpy(self.query), dtype=np.float32)
            check_shape(self.query, "query", (n, 3))
        size = tuple(int(s) for s in self.image_size)
        if len(size) != 2 or min(size) <= 0:
            raise InvalidArgumentError(f"image_size must be (H, W) with positive sizes, got {self.image_size!r}")
        self.image_size = size  # type: ignore[assignment]

    @property
    def num_frames(self) -> int:
        return int(self.xy.shape[0])

    @property
    def num_tracks(self) -> int:
        return int(self.xy.shape[1])

    def __len__(self) -> int:
        return self.num_tracks

    def __getitem__(self, index: Any) -> "Tracks":
        """Select tracks (not frames): ``tracks[mask]``, ``tracks[[0, 3]]``, ``tracks[2:5]``."""
        index = np.arange(self.num_tracks)[index]
        index = np.atleast_1d(index)
        return replace(
            self,
            xy=self.xy[:, index],
            visible=self.visible[:, index],
            confidence=None if self.confidence is None else self.confidence[:, index],
            ids=self.ids[index],
            query=None if self.query is None else self.query[index],
            metadata=dict(self.metadata),
        )

    def inside_image(self) -> np.ndarray:
        """``bool [T, N]``: positions inside the image (pixel-centre rectangle)."""
        h, w = self.image_size
        x, y = self.xy[..., 0], self.xy[..., 1]
        return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)

    def boxes(self, groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Axis-aligned boxes around the visible points of each group, per frame.

        Args:
            groups: ``int [N]`` group label of each track (e.g. an object id); default: one group.

        Returns:
            A long table: ``frame [K]`` (index into the T frames), ``group [K]``, ``box [K, 4]``
            (left, top, width, height in pixels of the pixel-edge convention, i.e. covering the
            points' pixels), ``confidence [K]`` (mean confidence, 1 without confidences). Frames where
            a group has no visible point give no row.
        """
        groups = np.zeros(self.num_tracks, np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        check_shape(groups, "groups", (self.num_tracks,))
        frames_out, groups_out, boxes_out, conf_out = [], [], [], []
        for label in np.unique(groups):
            members = groups == label
            for t in range(self.num_frames):
                seen = members & self.visible[t]
                if not seen.any():
                    continue
                pts = self.xy[t, seen]
                low, high = pts.min(axis=0), pts.max(axis=0) + 1.0
                frames_out.append(t)
                groups_out.append(label)
                boxes_out.append([low[0], low[1], high[0] - low[0], high[1] - low[1]])
                conf_out.append(1.0 if self.confidence is None else float(self.confidence[t, seen].mean()))
        return {
            "frame": np.asarray(frames_out, np.int64),
            "group": np.asarray(groups_out, np.int64),
            "box": np.asarray(boxes_out, np.float32).reshape(-1, 4),
            "confidence": np.asarray(conf_out, np.float32),
        }

    # exporters / readers live in motion.track_io; these are the convenient entry points
    def save(self, path: str | Path, **options: Any) -> Path:
        """Write to ``path``; the format follows the extension (see :func:`motion.track_io.save_tracks`)."""
        from .track_io import save_tracks

        return save_tracks(self, path, **options)

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> "Tracks":
        """Read a file written by :meth:`save` (see :func:`motion.track_io.load_tracks`)."""
        from .track_io import load_tracks

        return load_tracks(path, **options)

    def to_tapvid(self) -> dict[str, np.ndarray]:
        """TAP-Vid arrays: ``points [N, T, 2]`` normalised x, y; ``occluded [N, T]``; ``query_points [N, 3]`` (t, y, x)."""
        from .track_io import to_tapvid

        return to_tapvid(self)

    def to_cotracker(self) -> dict[str, np.ndarray]:
        """CoTracker layout: ``tracks [1, T, N, 2]``, ``visibility [1, T, N]``, ``queries [1, N, 3]`` (t, x, y)."""
        from .track_io import to_cotracker

        return to_cotracker(self)


def _numpy(x: Any) -> Any:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


# --------------------------------------------------------------------------------------------
# query points


def grid_queries(height: int, width: int, spacing: int, frame: int = 0, mask: np.ndarray | None = None) -> np.ndarray:
    """``float32 [N, 3]`` queries ``(t, x, y)`` on a regular grid (cell centres), optionally inside ``mask [H, W]``."""
    if spacing < 1:
        raise InvalidArgumentError(f"grid spacing must be >= 1 pixel, got {spacing}")
    offset = (spacing - 1) / 2
    ys = np.arange(offset, height, spacing)
    xs = np.arange(offset, width, spacing)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    if mask is not None:
        mask = np.asarray(_numpy(mask)).astype(bool)
        check_shape(mask, "mask", (height, width))
        keep = mask[np.round(points[:, 1]).astype(int), np.round(points[:, 0]).astype(int)]
        points = points[keep]
    return np.concatenate([np.full((len(points), 1), frame), points], axis=1).astype(np.float32)


def mask_queries(mask: np.ndarray, frame: int = 0, max_points: int | None = None, seed: int = 0) -> np.ndarray:
    """``float32 [N, 3]`` queries at the pixels of ``mask [H, W]`` (a random subset when ``max_points``)."""
    mask = np.asarray(_numpy(mask)).astype(bool)
    check_shape(mask, "mask", ("H", "W"))
    ys, xs = np.nonzero(mask)
    if max_points is not None and len(xs) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(xs), max_points, replace=False))
        ys, xs = ys[pick], xs[pick]
    return np.stack([np.full(len(xs), frame), xs, ys], axis=1).astype(np.float32)


def _check_queries(query: Any, num_frames: int, height: int, width: int) -> np.ndarray:
    query = np.asarray(_numpy(query), dtype=np.float32)
    if query.ndim == 1 and query.shape[0] == 3:
        query = query[None]
    check_shape(query, "query", ("N", 3))
    check_finite(query, "query")
    t = query[:, 0]
    if np.any(t != np.round(t)) or np.any(t < 0) or np.any(t >= num_frames):
        raise InvalidArgumentError(f"query[:, 0] must hold integer frame indices in [0, {num_frames - 1}]")
    x, y = query[:, 1], query[:, 2]
    outside = (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)
    if outside.any():
        raise InvalidArgumentError(
            f"{int(outside.sum())} query points lie outside the {width}x{height} image (first: {query[outside][0].tolist()})"
        )
    return query


# --------------------------------------------------------------------------------------------
# chaining


def _sample(flow: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear sample ``flow [2, H, W]`` at ``points [N, 2]`` (x, y; border values outside) -> ``[N, 2]``."""
    h, w = flow.shape[-2:]
    grid = torch.stack([points[:, 0] * (2.0 / max(w - 1, 1)) - 1, points[:, 1] * (2.0 / max(h - 1, 1)) - 1], dim=-1)
    out = torch.nn.functional.grid_sample(
        flow[None], grid[None, None], mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0, :, 0].T


@dataclass(frozen=True)
class ChainOptions:
    """Forward-backward check ``|F + B|² <= alpha (|F|² + |B|²) + beta`` and chain-loss rule."""

    alpha: float = 0.01
    beta: float = 0.5
    max_occluded: int = 3


def chain_flows(
    forward: torch.Tensor | np.ndarray,
    backward: torch.Tensor | np.ndarray,
    query: np.ndarray,
    options: ChainOptions = ChainOptions(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chain ``forward [T-1, 2, H, W]`` and ``backward [T-1, 2, H, W]`` flows from ``query [N, 3]`` (t, x, y).

    Returns:
        ``xy float32 [T, N, 2]``, ``visible bool [T, N]``, ``confidence float32 [T, N]``.
    """
    forward = torch.as_tensor(_numpy(forward)).float()
    backward = torch.as_tensor(_numpy(backward)).float()
    dims = check_shape(forward, "forward", ("S", 2, "H", "W"))
    check_shape(backward, "backward", (dims["S"], 2, dims["H"], dims["W"]))
    num_frames = dims["S"] + 1
    query = _check_queries(query, num_frames, dims["H"], dims["W"])
    xy = np.zeros((num_frames, len(query), 2), np.float32)
    visible = np.zeros((num_frames, len(query)), bool)
    confidence = np.zeros((num_frames, len(query)), np.float32)
    for direction in (+1, -1):
        _chain_one_way(forward, backward, query, direction, options, xy, visible, confidence)
    return xy, visible, confidence


class _Chain:
    """Chaining state of ``N`` points in one direction (+1 forward in time, -1 backward)."""

    def __init__(self, query: np.ndarray, direction: int, size: tuple[int, int], options: ChainOptions):
        self.direction = direction
        self.height, self.width = size
        self.options = options
        self.start = torch.from_numpy(query[:, 0].astype(np.int64))
        self.position = torch.from_numpy(query[:, 1:].copy()).float()
        n = len(query)
        self.alive = torch.ones(n, dtype=torch.bool)  # followed so far: not lost, not out of the image
        self.misses = torch.zeros(n, dtype=torch.int64)  # consecutive inconsistent steps
        self.conf = torch.ones(n)

    def started(self, t: int) -> torch.Tensor:
        return self.start <= t if self.direction > 0 else self.start >= t

    def state(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(started [N], xy [N, 2], visible [N], confidence [N])`` in frame ``t``."""
        visible = self.alive & (self.misses == 0)
        confidence = torch.where(self.alive, self.conf, torch.zeros_like(self.conf))
        return self.started(t).numpy(), self.position.numpy().copy(), visible.numpy(), confidence.numpy()

    def step(self, t: int, there: torch.Tensor, back: torch.Tensor) -> None:
        """Move the started points from ``t`` to ``t + direction``: ``there`` is the flow of that step
        (``[2, H, W]`` anchored at ``t``), ``back`` the flow of the reverse step anchored at the target."""
        active = self.started(t) & self.alive
        if not active.any():
            return
        there, back = there.float().cpu(), back.float().cpu()
        step = _sample(there, self.position)
        moved = self.position + step
        w, h = self.width, self.height
        inside = (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= h - 1)
        step_back = _sample(back, moved)
        error = (step + step_back).square().sum(1)
        tolerance = self.options.alpha * (step.square().sum(1) + step_back.square().sum(1)) + self.options.beta
        consistent = error <= tolerance
        self.misses = torch.where(active, torch.where(consistent, 0, self.misses + 1), self.misses)
        self.conf = torch.where(active, self.conf * torch.exp(-0.5 * error / tolerance), self.conf)
        self.position = torch.where((active & inside)[:, None], moved, self.position)
        self.alive = self.alive & ~(active & (~inside | (self.misses > self.options.max_occluded)))


def _chain_one_way(
    forward: torch.Tensor,
    backward: torch.Tensor,
    query: np.ndarray,
    direction: int,
    options: ChainOptions,
    xy: np.ndarray,
    visible: np.ndarray,
    confidence: np.ndarray,
) -> None:
    """Fill the frames on one side of each query (the query frame included) in place."""
    num_frames = xy.shape[0]
    chain = _Chain(query, direction, tuple(forward.shape[-2:]), options)
    order = range(num_frames) if direction > 0 else range(num_frames - 1, -1, -1)
    for t in order:
        started, pos, vis, conf = chain.state(t)
        xy[t, started], visible[t, started], confidence[t, started] = pos[started], vis[started], conf[started]
        target = t + direction
        if 0 <= target < num_frames:
            if direction > 0:
                chain.step(t, forward[t], backward[t])
            else:
                chain.step(t, backward[target], forward[target])


def _track_streaming(source: Any, model: Any, queries: Any, grid: int | None, mask: Any, options: ChainOptions,
                     flow_options: dict[str, Any]) -> Tracks:
    """Forward-only chaining while the flow is computed: memory holds one window, not the whole video."""
    from .estimate import iter_flow

    chain = None
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    indices, times = [], []
    query = None
    size = None
    for pair in iter_flow(source, model, backward=True, **flow_options):
        if chain is None:
            size = pair.forward.shape[-2:]
            query = (
                _check_queries(queries, 1, *size)
                if queries is not None
                else mask_queries(mask) if mask is not None and grid is None
                else grid_queries(*size, grid or 16, mask=mask)
            )
            if len(query) == 0:
                raise InvalidArgumentError("no query points (empty queries, or a mask without pixels on the grid)")
            chain = _Chain(query, +1, tuple(size), options)
            rows.append(chain.state(0)[1:])
            indices.append(pair.source.index)
            times.append(pair.source.time)
        chain.step(len(rows) - 1, pair.forward, pair.backward)
        rows.append(chain.state(len(rows))[1:])
        indices.append(pair.target.index)
        times.append(pair.target.time)
    return Tracks(
        xy=np.stack([r[0] for r in rows]),
        visible=np.stack([r[1] for r in rows]),
        confidence=np.stack([r[2] for r in rows]),
        image_size=tuple(size),
        frame_indices=np.asarray(indices),
        times=np.asarray(times),
        query=query,
        metadata={"model": model if isinstance(model, str) else type(model).__name__, "method": "chained flow"},
    )


def track_points(
    source: Any = None,
    model: Any = "dis",
    *,
    queries: Any = None,
    grid: int | None = None,
    mask: Any = None,
    query_frame: int = 0,
    flows: tuple[Any, Any] | None = None,
    image_size: tuple[int, int] | None = None,
    options: ChainOptions = ChainOptions(),
    **flow_options: Any,
) -> Tracks:
    """Track points through a video by chaining forward and backward optical flow.

    When every query is on the first frame the video is processed as a stream (memory holds one
    window of frames and flows); queries on later frames also chain backwards in time, which keeps all
    flows of the video in memory (``2 x (T-1) x 2 x H x W`` floats).

    Args:
        source: video file / image folder / ``uint8 [T, H, W, 3]`` array (see :func:`motion.estimate_flow`).
        model: flow model name or :class:`~motion.models.base.FlowModel` used for the flows.
        queries: ``[N, 3]`` rows ``(t, x, y)``; t indexes the frames used (after start/stride).
        grid: grid spacing in pixels for queries on ``query_frame`` (default 16 when nothing else is given).
        mask: ``bool [H, W]``: keep grid points inside it (with ``grid``) or query every mask pixel.
        query_frame: frame of the grid / mask queries.
        flows: precomputed ``(forward, backward)``, each ``[T-1, 2, H, W]``; then ``source`` is not read.
        image_size: ``(H, W)``; only needed with ``flows`` when it is not their size.
        options: forward-backward check and chain-loss parameters.
        flow_options: forwarded to :func:`motion.estimate_flow` (device, batch, start, stop, stride,
            max_frames, resize, model_options, progress).

    Returns:
        :class:`Tracks` with ``confidence``, the queries, frame indices and timestamps.
    """
    flow_options.pop("backward", None)
    first_frame_only = query_frame == 0 and (
        queries is None or np.all(np.asarray(_numpy(queries), dtype=np.float32).reshape(-1, 3)[:, 0] == 0)
    )
    if flows is None and first_frame_only:
        if source is None:
            raise InvalidArgumentError("give a video source or precomputed flows")
        return _track_streaming(source, model, queries, grid, mask, options, flow_options)
    if flows is None:
        if source is None:
            raise InvalidArgumentError("give a video source or precomputed flows")
        from .estimate import estimate_flow

        result = estimate_flow(source, model, backward=True, **flow_options)
        forward, backward = result.forward, result.backward
        frame_indices, times, size = result.frame_indices, result.times, result.image_size
    else:
        if flow_options:
            raise InvalidArgumentError(f"options {sorted(flow_options)} apply only when flows are estimated from a source")
        forward, backward = (torch.as_tensor(_numpy(f)) for f in flows)
        dims = check_shape(forward, "flows[0]", ("S", 2, "H", "W"))
        frame_indices, times = None, None
        size = image_size or (dims["H"], dims["W"])
    num_frames = forward.shape[0] + 1
    h, w = size
    if not 0 <= query_frame < num_frames:
        raise InvalidArgumentError(f"query_frame must be in [0, {num_frames - 1}], got {query_frame}")
    if queries is None:
        if mask is not None and grid is None:
            queries = mask_queries(mask, frame=query_frame)
        else:
            queries = grid_queries(h, w, grid or 16, frame=query_frame, mask=mask)
    query = _check_queries(queries, num_frames, h, w)
    if len(query) == 0:
        raise InvalidArgumentError("no query points (empty queries, or a mask without pixels on the grid)")
    xy, visible, confidence = chain_flows(forward, backward, query, options)
    return Tracks(
        xy=xy,
        visible=visible,
        confidence=confidence,
        image_size=(h, w),
        frame_indices=frame_indices,
        times=times,
        query=query,
        metadata={"model": model if isinstance(model, str) else type(model).__name__, "method": "chained flow"},
    )


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
    from .frames import open_video
    from .video_writer import VideoWriter
    from .visualize import overlay_tracks

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
