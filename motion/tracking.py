"""Point tracking by chaining dense optical flow, checked forward-backward.

::

    frames = motion.read_frames("clip.mp4")                       # uint8 [T, H, W, 3]
    tracks = motion.track_points(frames, model="dis", grid=16)     # or queries=[(t, x, y), ...]

Chaining. From each query ``(t, x, y)`` the point is pushed forward with the forward flow sampled
bilinearly at its current position, ``p_{s+1} = p_s + F_s(p_s)``, and backward with the backward flow,
``p_{s-1} = p_s + B_{s-1}(p_s)``. Every step is checked forward-backward
(:func:`motion.flow_geometry.forward_backward_error`, Sundaram et al., ECCV 2010): the step is
consistent when ``|F(p) + B(p')|² <= alpha (|F(p)|² + |B(p')|²) + beta`` with ``p'`` the
point's new position. An inconsistent step marks the point occluded in the frame it arrives at; after
``max_occluded`` consecutive inconsistent steps the chain is considered lost and the point stays
invisible from then on. A point that leaves the image is invisible from then on (its position is
frozen where it left). The per-frame ``confidence`` multiplies ``exp(-e / (2 tol))`` over the steps
from the query (``e`` the squared forward-backward error, ``tol`` its tolerance), so it decays with
drift; it is 1 at the query frame and 0 once the chain is lost.

The check is :func:`motion.flow_geometry.forward_backward_check`, the one that gives
:func:`motion.estimate_flow` its occlusion masks and confidence maps (``occlusion=True``, ``--format
occ,conf``): a point on a pixel centre is visible after one step exactly where that pixel is not
occluded, with the map's confidence there. The flows come from the video pipeline
(:func:`motion.iter_flow`: decoding, flow and chaining overlap; ``workers`` threads for OpenCV methods).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from motion4d.checks import check_finite, check_shape
from motion4d.errors import InvalidArgumentError

from .flow_geometry import FB_ALPHA, FB_BETA, forward_backward_check, sample_at_points
from .tracks import Tracks


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


def check_queries(query: Any, num_frames: int, height: int, width: int) -> np.ndarray:
    """``float32 [N, 3]`` queries ``(t, x, y)`` checked against ``num_frames`` frames of ``width x height``.

    ``t`` must be an integer frame index and ``(x, y)`` inside the pixel-centre rectangle; a single
    ``[3]`` query is accepted. Raises :class:`~motion4d.errors.InvalidArgumentError` (or
    :class:`~motion4d.errors.ShapeError` for a wrong shape) naming what is wrong.
    """
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


@dataclass(frozen=True)
class ChainOptions:
    """Forward-backward check ``|F + B|² <= alpha (|F|² + |B|²) + beta`` and chain-loss rule."""

    alpha: float = FB_ALPHA
    beta: float = FB_BETA
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
    query = check_queries(query, num_frames, dims["H"], dims["W"])
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
        step = sample_at_points(there, self.position)
        moved = self.position + step
        w, h = self.width, self.height
        inside = (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= h - 1)
        step_back = sample_at_points(back, moved)
        consistent, step_confidence = forward_backward_check(step, step_back, self.options.alpha, self.options.beta,
                                                             dim=1)
        self.misses = torch.where(active, torch.where(consistent, 0, self.misses + 1), self.misses)
        self.conf = torch.where(active, self.conf * step_confidence, self.conf)
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
                check_queries(queries, 1, *size)
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
        flow_options: forwarded to :func:`motion.estimate_flow` (device, batch, workers, start, stop,
            stride, max_frames, resize, model_options, progress).

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
    query = check_queries(queries, num_frames, h, w)
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


__all__ = [
    "ChainOptions",
    "chain_flows",
    "check_queries",
    "grid_queries",
    "mask_queries",
    "track_points",
]
