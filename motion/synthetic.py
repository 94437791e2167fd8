"""Synthetic 2-D sequences with exact optical flow, occlusions and point tracks.

A sequence is a stack of layers drawn back to front. Each layer is a smooth random texture (or a
real photograph) and a map ``to_texture(t, p)`` from pixel ``p`` of frame ``t`` to texture
coordinates. Frame ``t`` is rendered by inverse-warping every texture (bilinear sampling) and keeping,
at each pixel, the top-most layer whose shape contains the sampled texture point. Because every
quantity is a closed-form function of continuous coordinates, the ground truth is exact:

* flow ``t -> t+1`` at ``p`` = ``to_frame(t+1, to_texture(t, p)) - p`` for the visible layer at ``p``
  (for affine layers ``A_{t+1} A_t^{-1} p - p``);
* a pixel is occluded when its destination leaves the image or lands on a different top layer
  (shapes are analytic star-shaped curves, so the test is exact at sub-pixel positions);
* a track follows one texture point of one layer through all frames.

Brightness changes (a global gain per frame and an optional moving Gaussian light blob) multiply the
rendered albedo; they change intensities but never the flow.

Flow, occlusions and tracks are computed in float64 from the analytic maps. Only the pixel colours
carry sampling error: OpenCV's bilinear ``remap`` places samples to 1/32 px, and frames are rounded
to uint8. :func:`warp_image_sequence` applies the same machinery to a real photograph (one layer,
affine or smooth non-rigid motion).

Example::

    seq = make_sequence(T=8, height=96, width=128, num_layers=2, seed=0)
    seq.frames          # uint8 [8, 96, 128, 3]
    seq.flow_forward    # float32 [7, 2, 96, 128]  (u right, v down)
    xy, visible = seq.tracks(np.array([[0, 10.0, 20.0]]))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
import torch

from motion4d.checks import check_finite, check_int, check_positive, check_shape
from motion4d.errors import InvalidArgumentError, ShapeError
from motion4d.imaging import frames_to_tensor

__all__ = [
    "LayerMotion",
    "SyntheticSequence",
    "make_sequence",
    "warp_image_sequence",
    "random_texture",
]


# ----------------------------------------------------------------------------------------------
# motions and layers


@dataclass
class LayerMotion:
    """Per-frame similarity motion of one layer: texture point ``q`` is drawn at pixel
    ``p = scale[t] * R(rotation[t]) q + translation[t]``.

    Attributes:
        translation: ``float [T, 2]`` pixel position (x, y) of the texture origin in each frame.
        rotation: ``float [T]`` radians (positive turns x towards y, i.e. clockwise on screen).
        scale: ``float [T]`` isotropic scale (> 0).
    """

    translation: np.ndarray
    rotation: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        self.translation = np.asarray(self.translation, dtype=np.float64)
        self.rotation = np.asarray(self.rotation, dtype=np.float64)
        self.scale = np.asarray(self.scale, dtype=np.float64)
        sizes = check_shape(self.translation, "LayerMotion.translation", ("T", 2))
        check_shape(self.rotation, "LayerMotion.rotation", (sizes["T"],))
        check_shape(self.scale, "LayerMotion.scale", (sizes["T"],))
        for name in ("translation", "rotation", "scale"):
            check_finite(getattr(self, name), f"LayerMotion.{name}")
        if np.any(self.scale <= 0):
            raise InvalidArgumentError("LayerMotion.scale must be > 0 in every frame")

    @property
    def num_frames(self) -> int:
        return len(self.rotation)

    def matrices(self) -> np.ndarray:
        """``float64 [T, 3, 3]`` homogeneous texture-to-frame affines ``A_t``."""
        c, s = np.cos(self.rotation) * self.scale, np.sin(self.rotation) * self.scale
        a = np.zeros((self.num_frames, 3, 3))
        a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = c, -s, s, c
        a[:, :2, 2] = self.translation
        a[:, 2, 2] = 1.0
        return a


def _apply_affine(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``m [3, 3]`` (or ``[2, 3]``) applied to points ``p [..., 2]``."""
    x, y = p[..., 0], p[..., 1]
    out = np.empty(p.shape, np.float64)
    out[..., 0] = m[0, 0] * x + m[0, 1] * y + m[0, 2]
    out[..., 1] = m[1, 0] * x + m[1, 1] * y + m[1, 2]
    return out


class _Layer:
    """A texture plus a time-dependent map between frame pixels and texture coordinates."""

    texture: np.ndarray  # float32 [h, w, 3] in [0, 1]
    origin: np.ndarray  # texture pixel coordinates of texture point (0, 0)

    def to_texture(self, t: int, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_frame(self, t: int, q: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inside(self, q: np.ndarray) -> np.ndarray:
        """``bool [...]``: whether texture points ``q [..., 2]`` belong to the layer's shape."""
        return np.ones(q.shape[:-1], dtype=bool)


class _AffineLayer(_Layer):
    def __init__(self, texture: np.ndarray, origin: np.ndarray, affines: np.ndarray,
                 shape: "_StarShape | None" = None) -> None:
        self.texture = texture
        self.origin = np.asarray(origin, dtype=np.float64)
        self.affines = affines
        self.inverses = np.linalg.inv(affines)
        self.shape = shape

    def to_texture(self, t: int, p: np.ndarray) -> np.ndarray:
        return _apply_affine(self.inverses[t], p)

    def to_frame(self, t: int, q: np.ndarray) -> np.ndarray:
        return _apply_affine(self.affines[t], q)

    def inside(self, q: np.ndarray) -> np.ndarray:
        if self.shape is None:
            return np.ones(q.shape[:-1], dtype=bool)
        return self.shape.contains(q)


class _StarShape:
    """Star-shaped region ``|q| < r0 (1 + sum_k a_k cos(k phi + phase_k))`` around the origin
    (``k = 2, 3, ...``; ``phi`` = polar angle of ``q``)."""

    def __init__(self, radius: float, amplitudes: np.ndarray, phases: np.ndarray) -> None:
        self.radius = radius
        self.amplitudes = amplitudes
        self.phases = phases
        spread = float(np.abs(amplitudes).sum())
        self.max_radius = radius * (1.0 + spread)
        self.min_radius = radius * max(0.0, 1.0 - spread)

    def contains(self, q: np.ndarray) -> np.ndarray:
        x, y = q[..., 0], q[..., 1]
        r2 = x * x + y * y
        inside = r2 < self.min_radius ** 2
        # only points in the ring between the inscribed and the enclosing circle need the boundary
        ring = ~inside & (r2 < self.max_radius ** 2)
        if ring.any():
            r = np.sqrt(r2[ring])
            z = (x[ring] + 1j * y[ring]) / r  # e^{i phi}
            zk = z * z
            bound = np.ones_like(r)
            for amplitude, phase in zip(self.amplitudes, self.phases):
                # cos(k phi + phase) = Re(e^{i k phi} e^{i phase})
                bound += amplitude * (zk.real * math.cos(phase) - zk.imag * math.sin(phase))
                zk = zk * z
            inside[ring] = r < self.radius * bound
        return inside


class _SmoothWarpLayer(_Layer):
    """Full-frame layer with a smooth non-rigid map ``G_t(p) = B_t p + b_t + t * sum_j bump_j(p)``.

    ``G_t`` maps frame pixels to texture (photo) coordinates; its inverse is found by Newton's method
    on the analytic Jacobian, to far below 1e-6 px.
    """

    def __init__(self, texture: np.ndarray, affines: np.ndarray, centres: np.ndarray,
                 displacements: np.ndarray, sigmas: np.ndarray) -> None:
        self.texture = texture
        self.origin = np.zeros(2)
        self.affines = affines
        self.inverses = np.linalg.inv(affines)
        self.centres, self.displacements, self.sigmas = centres, displacements, sigmas

    def _bumps(self, p: np.ndarray, jacobian: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Bump displacement ``[..., 2]`` at ``p`` and, if asked, its Jacobian entries
        ``(du/dx, du/dy, dv/dx, dv/dy)``."""
        x, y = p[..., 0], p[..., 1]
        value = np.zeros(p.shape, np.float64)
        jac = [np.zeros(x.shape) for _ in range(4)] if jacobian else None
        for (cx, cy), (du, dv), sigma in zip(self.centres, self.displacements, self.sigmas):
            dx, dy = x - cx, y - cy
            w = np.exp((dx * dx + dy * dy) * (-0.5 / sigma ** 2))
            value[..., 0] += du * w
            value[..., 1] += dv * w
            if jac is not None:
                gx, gy = w * dx * (-1.0 / sigma ** 2), w * dy * (-1.0 / sigma ** 2)  # grad of w
                jac[0] += du * gx
                jac[1] += du * gy
                jac[2] += dv * gx
                jac[3] += dv * gy
        return value, (tuple(jac) if jac is not None else None)

    def to_texture(self, t: int, p: np.ndarray) -> np.ndarray:
        return _apply_affine(self.inverses[t], p) + t * self._bumps(p)[0]

    def to_frame(self, t: int, q: np.ndarray) -> np.ndarray:
        m = self.inverses[t]
        lin = m[:2, :2]
        p = _apply_affine(self.affines[t], q)  # exact without the bumps
        for _ in range(50):
            value, (jxx, jxy, jyx, jyy) = self._bumps(p, jacobian=True)
            residual = _apply_affine(m, p) + t * value - q
            if np.abs(residual).max(initial=0.0) < 1e-9:
                return p
            a, b = lin[0, 0] + t * jxx, lin[0, 1] + t * jxy
            c, d = lin[1, 0] + t * jyx, lin[1, 1] + t * jyy
            det = a * d - b * c
            p = p - np.stack([d * residual[..., 0] - b * residual[..., 1],
                              a * residual[..., 1] - c * residual[..., 0]], axis=-1) / det[..., None]
        raise InvalidArgumentError("the smooth warp is too strong to invert; lower max_speed")


# ----------------------------------------------------------------------------------------------
# textures


def random_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth random colour texture ``float32 [height, width, 3]`` in [0.05, 0.95].

    Multi-scale filtered noise plus oriented stripes: rich gradients in every direction (so flow is
    well defined) yet smooth at the pixel scale (so bilinear resampling is accurate).
    """
    base = rng.uniform(0.3, 0.7, size=3)
    tex = np.zeros((height, width, 3), np.float32)
    # mostly luminance structure with a little colour variation, at a coarse and a fine scale
    for cell, lum_weight, colour_weight in ((12, 0.16, 0.05), (4, 0.10, 0.03)):
        small = rng.standard_normal((height // cell + 3, width // cell + 3, 4)).astype(np.float32)
        big = cv2.resize(small, (width + 3 * cell, height + 3 * cell), interpolation=cv2.INTER_CUBIC)
        ox, oy = rng.integers(0, cell, size=2)
        noise = big[oy:oy + height, ox:ox + width]
        noise /= np.maximum(noise.reshape(-1, 4).std(0), 1e-6)
        tex += lum_weight * noise[..., :1] + colour_weight * noise[..., 1:]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period, phase = rng.uniform(0, np.pi), rng.uniform(7.0, 16.0), rng.uniform(0, 2 * np.pi)
    stripes = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    tex += 0.12 * stripes[..., None] * rng.uniform(-1, 1, size=3).astype(np.float32)
    tex = cv2.GaussianBlur(tex, (0, 0), 1.0)
    return np.clip(tex + base.astype(np.float32), 0.05, 0.95).astype(np.float32)


def _image_texture(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """A real ``uint8 [H0, W0, 3]`` image as a ``float32 [height, width, 3]`` texture in [0, 1]: scaled to
    cover the size (aspect kept) and centre-cropped."""
    h0, w0 = image.shape[:2]
    scale = max(height / h0, width / w0)
    size = (max(width, round(w0 * scale)), max(height, round(h0 * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return resized[top:top + height, left:left + width].astype(np.float32) / 255.0


# ----------------------------------------------------------------------------------------------
# the sequence container


@dataclass
class SyntheticSequence:
    """A rendered sequence and its exact ground truth.

    Attributes:
        frames: ``uint8 [T, H, W, 3]`` RGB.
        flow_forward: ``float32 [T-1, 2, H, W]`` flow ``t -> t+1`` anchored at frame ``t``.
        flow_backward: ``float32 [T-1, 2, H, W]`` flow ``t+1 -> t`` anchored at frame ``t+1``.
        occlusion: ``bool [T-1, H, W]`` pixels of frame ``t`` not visible in frame ``t+1``
            (hidden by another layer or out of view).
        occlusion_backward: ``bool [T-1, H, W]`` pixels of frame ``t+1`` not visible in frame ``t``.
        layer_ids: ``int32 [T, H, W]`` index of the visible layer (0 = background); a moving-object
            mask is ``layer_ids > 0``.
        gain: ``float32 [T, H, W]`` lighting multiplier applied to the albedo (1 = unchanged).
        query: ``float32 [N, 3]`` (t, x, y) of the default ground-truth tracks.
        tracks_xy: ``float32 [T, N, 2]`` their positions in every frame.
        tracks_visible: ``bool [T, N]`` whether each point is visible (in view and not occluded).
        affines: ``float64 [L, T, 3, 3]`` texture-to-frame maps of the layers (affine scenes only).
    """

    frames: np.ndarray
    flow_forward: np.ndarray
    flow_backward: np.ndarray
    occlusion: np.ndarray
    occlusion_backward: np.ndarray
    layer_ids: np.ndarray
    gain: np.ndarray
    query: np.ndarray
    tracks_xy: np.ndarray
    tracks_visible: np.ndarray
    affines: np.ndarray | None = None
    _layers: list = field(default_factory=list, repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    def frames_tensor(self) -> torch.Tensor:
        """Model input ``float32 [1, T, 3, H, W]`` in [0, 1]."""
        return frames_to_tensor(self.frames)[None]

    def flow(self, source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact flow between any two frames (not only consecutive ones).

        Returns:
            ``flow float32 [2, H, W]`` anchored at frame ``source`` and ``occluded bool [H, W]``
            (pixels of ``source`` not visible in ``target``).
        """
        self._check_frame(source, "source")
        self._check_frame(target, "target")
        grid = _pixel_grid(self.height, self.width)
        flow, occluded = _flow_between(self._layers, source, target, grid, self.layer_ids[source])
        return flow.transpose(2, 0, 1).astype(np.float32), occluded

    def tracks(self, query: np.ndarray | Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth tracks of query points.

        Args:
            query: ``[N, 3]`` rows (t, x, y): frame index and sub-pixel position; the point follows
                the layer visible at that position in frame t.

        Returns:
            ``xy float32 [T, N, 2]`` and ``visible bool [T, N]`` (in view and on top).
        """
        query = np.asarray(query, dtype=np.float64)
        check_shape(query, "query", ("N", 3))
        check_finite(query, "query")
        times = query[:, 0]
        if np.any(times != np.round(times)) or np.any(times < 0) or np.any(times >= self.num_frames):
            raise InvalidArgumentError(
                f"query[:, 0] must hold integer frame indices in [0, {self.num_frames - 1}]")
        return _tracks(self._layers, self.num_frames, self.height, self.width, query)

    def preview(self, max_frames: int = 4) -> np.ndarray:
        """A picture of the ground truth: ``uint8 [H', W', 3]`` with one row per pair of frames: frame t,
        flow t -> t+1 in Middlebury colours on one scale, and, where the sequence has them, the
        occluded pixels (red over the frame), the layers (one colour each) and the tracks."""
        from .visualize import flow_max_radius, flow_to_color, overlay_tracks, side_by_side, track_colors

        pairs = min(max_frames, self.num_frames - 1)
        radius = flow_max_radius(self.flow_forward[:pairs])
        occluded = bool(self.occlusion[:pairs].any())
        layered = int(self.layer_ids.max()) > 0
        tracked = overlay_tracks(self.frames, self.tracks_xy, self.tracks_visible, trail=4, radius=2) \
            if self.tracks_xy.shape[1] else None
        palette = track_colors(int(self.layer_ids.max()) + 1)
        palette[0] = 40  # the background layer in dark grey
        panels, labels = [], []
        for t in range(pairs):
            panels += [self.frames[t], flow_to_color(self.flow_forward[t], max_radius=radius)]
            labels += [f"frame {t}", f"flow {t}->{t + 1} (max {radius:.1f} px)"]
            if occluded:
                tinted = self.frames[t].copy()
                tinted[self.occlusion[t]] = (0.5 * tinted[self.occlusion[t]] + [127, 0, 0]).astype(np.uint8)
                panels.append(tinted)
                labels.append(f"occluded ({self.occlusion[t].mean():.1%})")
            if layered:
                panels.append(palette[self.layer_ids[t]])
                labels.append("layers")
            if tracked is not None:
                panels.append(tracked[t])
                labels.append("tracks")
        return side_by_side(panels, labels=labels, columns=len(panels) // pairs)

    def _check_frame(self, t: int, name: str) -> None:
        if not (isinstance(t, (int, np.integer)) and 0 <= t < self.num_frames):
            raise InvalidArgumentError(f"{name} must be a frame index in [0, {self.num_frames - 1}], got {t!r}")


# ----------------------------------------------------------------------------------------------
# geometry shared by every scene


def _pixel_grid(height: int, width: int) -> np.ndarray:
    """``float64 [H, W, 2]`` pixel-centre coordinates (x, y)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([xx, yy], axis=-1)


def _in_view(p: np.ndarray, height: int, width: int) -> np.ndarray:
    """Points inside the pixel-centre rectangle where bilinear sampling is defined."""
    return (p[..., 0] >= 0) & (p[..., 0] <= width - 1) & (p[..., 1] >= 0) & (p[..., 1] <= height - 1)


def _top_layer(layers: list[_Layer], t: int, p: np.ndarray) -> np.ndarray:
    """``int32 [...]`` index of the top-most layer covering points ``p [..., 2]`` of frame ``t``."""
    ids = np.zeros(p.shape[:-1], dtype=np.int32)
    for k, layer in enumerate(layers[1:], start=1):
        ids[layer.inside(layer.to_texture(t, p))] = k
    return ids


def _move(layers: list[_Layer], source: int, target: int, p: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions in frame ``target`` of the texture points under ``p`` (layer ``ids``) in ``source``."""
    out = np.empty_like(p)
    for k, layer in enumerate(layers):
        sel = ids == k
        if sel.any():
            out[sel] = layer.to_frame(target, layer.to_texture(source, p[sel]))
    return out


def _flow_between(layers: list[_Layer], source: int, target: int, grid: np.ndarray,
                  ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = grid.shape[:2]
    dest = _move(layers, source, target, grid, ids)
    occluded = ~_in_view(dest, height, width) | (_top_layer(layers, target, dest) != ids)
    return dest - grid, occluded


def _tracks(layers: list[_Layer], num_frames: int, height: int, width: int,
            query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(query)
    xy = np.zeros((num_frames, n, 2))
    visible = np.zeros((num_frames, n), dtype=bool)
    times = query[:, 0].astype(np.int64)
    points = query[:, 1:]
    ids = np.zeros(n, dtype=np.int32)
    for t in np.unique(times):
        sel = times == t
        ids[sel] = _top_layer(layers, int(t), points[sel])
    for t in range(num_frames):
        for t_query in np.unique(times):
            sel = times == t_query
            xy[t, sel] = _move(layers, int(t_query), t, points[sel], ids[sel])
        visible[t] = _in_view(xy[t], height, width) & (_top_layer(layers, t, xy[t]) == ids)
    return xy.astype(np.float32), visible


def _render(layers: list[_Layer], t: int, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Albedo ``float32 [H, W, 3]`` and visible layer ids ``int32 [H, W]`` of frame ``t``."""
    height, width = grid.shape[:2]
    image = np.zeros((height, width, 3), np.float32)
    ids = np.zeros((height, width), np.int32)
    for k, layer in enumerate(layers):
        q = layer.to_texture(t, grid)
        mask = layer.inside(q)
        coords = (q + layer.origin).astype(np.float32)
        sampled = cv2.remap(layer.texture, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
        image[mask] = sampled[mask]
        ids[mask] = k
    return image, ids


def _light_gain(rng: np.random.Generator, num_frames: int, height: int, width: int,
                brightness_change: float, local_light: float, grid: np.ndarray) -> np.ndarray:
    """``float32 [T, H, W]``: global gain ``(1 + brightness_change)**t`` times ``1 + a * blob_t``."""
    gain = np.ones((num_frames, height, width), np.float32)
    gain *= ((1.0 + brightness_change) ** np.arange(num_frames, dtype=np.float64))[:, None, None].astype(np.float32)
    if local_light:
        sigma = 0.2 * min(height, width)
        start = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height])
        angle = rng.uniform(0, 2 * np.pi)
        speed = 0.04 * min(height, width)
        for t in range(num_frames):
            centre = start + t * speed * np.array([np.cos(angle), np.sin(angle)])
            blob = np.exp(-((grid - centre) ** 2).sum(-1) / (2 * sigma ** 2))
            gain[t] *= (1.0 + local_light * blob).astype(np.float32)
    return gain


def _finish(layers: list[_Layer], num_frames: int, height: int, width: int, rng: np.random.Generator,
            brightness_change: float, local_light: float, noise: float, num_tracks: int,
            affines: np.ndarray | None) -> SyntheticSequence:
    grid = _pixel_grid(height, width)
    albedo = np.zeros((num_frames, height, width, 3), np.float32)
    ids = np.zeros((num_frames, height, width), np.int32)
    for t in range(num_frames):
        albedo[t], ids[t] = _render(layers, t, grid)
    gain = _light_gain(rng, num_frames, height, width, brightness_change, local_light, grid)
    image = albedo * gain[..., None]
    if noise:
        image += rng.normal(0.0, noise, size=image.shape).astype(np.float32)
    frames = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)

    shape = (num_frames - 1, 2, height, width)
    flow_fw, flow_bw = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    occ_fw = np.zeros((num_frames - 1, height, width), bool)
    occ_bw = np.zeros_like(occ_fw)
    for t in range(num_frames - 1):
        f, occ_fw[t] = _flow_between(layers, t, t + 1, grid, ids[t])
        flow_fw[t] = f.transpose(2, 0, 1)
        b, occ_bw[t] = _flow_between(layers, t + 1, t, grid, ids[t + 1])
        flow_bw[t] = b.transpose(2, 0, 1)

    query = np.zeros((num_tracks, 3), np.float32)
    query[:, 1] = rng.uniform(0, width - 1, num_tracks)
    query[:, 2] = rng.uniform(0, height - 1, num_tracks)
    xy, visible = _tracks(layers, num_frames, height, width, query.astype(np.float64))
    return SyntheticSequence(frames=frames, flow_forward=flow_fw, flow_backward=flow_bw,
                             occlusion=occ_fw, occlusion_backward=occ_bw, layer_ids=ids, gain=gain,
                             query=query, tracks_xy=xy, tracks_visible=visible,
                             affines=affines, _layers=layers)


# ----------------------------------------------------------------------------------------------
# public generators


def _check_common(T: int, height: int, width: int, brightness_change: float, local_light: float | bool,
                  noise: float, num_tracks: int) -> float:
    for name, value, low in (("T", T, 2), ("height", height, 8), ("width", width, 8), ("num_tracks", num_tracks, 0)):
        check_int(value, name, minimum=low)
    if not np.isfinite(brightness_change) or brightness_change <= -1.0:
        raise InvalidArgumentError(f"brightness_change must be a finite number > -1, got {brightness_change!r}")
    light = 0.3 if local_light is True else float(local_light or 0.0)
    if not np.isfinite(light) or light < 0:
        raise InvalidArgumentError(f"local_light must be a bool or an amplitude >= 0, got {local_light!r}")
    check_positive(noise, "noise", allow_zero=True)
    return light


def _random_motion(rng: np.random.Generator, num_frames: int, start: np.ndarray, max_speed: float,
                   max_rotation: float, max_scale_change: float, jitter: float) -> LayerMotion:
    """Smoothly varying similarity motion: speed never above ``max_speed`` px/frame."""
    angle = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(0.3, 1.0) * max_speed * np.array([np.cos(angle), np.sin(angle)])
    translation = np.zeros((num_frames, 2))
    translation[0] = start
    for t in range(1, num_frames):
        velocity = velocity + jitter * max_speed * rng.standard_normal(2)
        speed = float(np.hypot(*velocity))
        if speed > max_speed:
            velocity *= max_speed / speed
        translation[t] = translation[t - 1] + velocity
    omega = rng.uniform(-1, 1) * max_rotation
    growth = rng.uniform(-1, 1) * max_scale_change
    steps = np.arange(num_frames, dtype=np.float64)
    return LayerMotion(translation, rng.uniform(-0.3, 0.3) + omega * steps, (1.0 + growth) ** steps)


def make_sequence(
    T: int = 8,
    height: int = 96,
    width: int = 128,
    num_layers: int = 2,
    seed: int = 0,
    max_speed: float = 3.0,
    max_rotation: float = math.radians(2.0),
    max_scale_change: float = 0.02,
    background_motion: bool = True,
    brightness_change: float = 0.0,
    local_light: bool | float = False,
    noise: float = 0.0,
    num_tracks: int = 64,
    motions: Sequence[LayerMotion] | None = None,
    textures: Sequence[np.ndarray | None] | None = None,
) -> SyntheticSequence:
    """Textured layers moving with known similarity motion over a moving background.

    Args:
        T: number of frames (>= 2).
        height, width: frame size in pixels.
        num_layers: foreground layers drawn over the background (0 gives a background-only scene).
        seed: all randomness (textures, shapes, motions, light, noise, track queries) derives from it.
        max_speed: largest translation speed of a layer in px/frame (the background uses half).
        max_rotation: largest rotation speed in radians/frame.
        max_scale_change: largest relative scale change per frame (0.02 = 2 %).
        background_motion: move the background too (otherwise it is static).
        brightness_change: global relative intensity change per frame: frame t is multiplied by
            ``(1 + brightness_change) ** t``.
        local_light: a moving Gaussian light blob multiplying intensities by ``1 + a * blob``;
            ``True`` means ``a = 0.3``, a number sets ``a``.
        noise: standard deviation of additive Gaussian noise in [0, 1] intensity units.
        num_tracks: number of default ground-truth tracks (queried at frame 0, random positions).
        motions: optional explicit motions, one per layer including the background
            (``num_layers + 1`` entries, each with T frames); layer textures/shapes stay random.
            Foreground texture point (0, 0) is the shape's centre; the background's texture point
            (0, 0) is its texture's centre.
        textures: optional real images (``uint8 [H, W, 3]`` RGB), one per layer including the
            background (None entries keep a random texture): each is scaled to cover the layer's
            texture and centre-cropped, so a foreground layer is a star-shaped patch of the image
            pasted over the background. Motions and shapes are those of the same seed without them.

    Returns:
        A :class:`SyntheticSequence` with exact flow, occlusions, layer ids and tracks.
    """
    light = _check_common(T, height, width, brightness_change, local_light, noise, num_tracks)
    check_int(num_layers, "num_layers", minimum=0)
    for name, value in (("max_speed", max_speed), ("max_rotation", max_rotation),
                        ("max_scale_change", max_scale_change)):
        check_positive(value, name, allow_zero=True)
    if max_scale_change >= 0.5:
        raise InvalidArgumentError(f"max_scale_change must be < 0.5, got {max_scale_change!r}")
    if motions is not None:
        motions = list(motions)
        if len(motions) != num_layers + 1:
            raise InvalidArgumentError(
                f"motions must hold num_layers + 1 = {num_layers + 1} LayerMotion entries, got {len(motions)}")
        for i, m in enumerate(motions):
            if not isinstance(m, LayerMotion) or m.num_frames != T:
                raise InvalidArgumentError(f"motions[{i}] must be a LayerMotion with T = {T} frames")

    if textures is not None:
        textures = list(textures)
        if len(textures) != num_layers + 1:
            raise InvalidArgumentError(
                f"textures must hold num_layers + 1 = {num_layers + 1} images (or None), got {len(textures)}")
        for i, image in enumerate(textures):
            if image is not None and (not isinstance(image, np.ndarray) or image.dtype != np.uint8
                                      or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 8):
                raise ShapeError(f"textures[{i}] must be uint8 [H, W, 3] RGB with H, W >= 8")

    def texture_of(layer: int, h: int, w: int) -> np.ndarray:
        drawn = random_texture(rng, h, w)  # drawn either way: the same seed gives the same motions
        image = None if textures is None else textures[layer]
        return drawn if image is None else _image_texture(image, h, w)

    rng = np.random.default_rng(seed)
    layers: list[_Layer] = []
    all_affines = []

    # background: texture large enough to cover the frame under its motion
    margin = int(math.ceil(max_speed * T + 0.3 * max(height, width))) + 8
    bg_h, bg_w = height + 2 * margin, width + 2 * margin
    bg_texture = texture_of(0, bg_h, bg_w)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    if motions is not None:
        bg_motion = motions[0]
    elif background_motion:
        # a sub-pixel start so that no frame samples its texture exactly on texels
        bg_motion = _random_motion(rng, T, centre + rng.uniform(-0.5, 0.5, 2), 0.5 * max_speed, 0.25 * max_rotation,
                                   0.25 * max_scale_change, jitter=0.1)
        bg_motion.rotation -= bg_motion.rotation[0]
    else:
        bg_motion = LayerMotion(np.tile(centre, (T, 1)), np.zeros(T), np.ones(T))
    affines = bg_motion.matrices()
    all_affines.append(affines)
    layers.append(_AffineLayer(bg_texture, np.array([(bg_w - 1) / 2, (bg_h - 1) / 2]), affines))

    for k in range(num_layers):
        radius = rng.uniform(0.14, 0.24) * min(height, width)
        shape = _StarShape(radius, rng.uniform(-1, 1, 3) * np.array([0.15, 0.08, 0.05]),
                           rng.uniform(0, 2 * np.pi, 3))
        size = 2 * int(math.ceil(shape.max_radius * 1.6)) + 9
        texture = texture_of(k + 1, size, size)
        start = np.array([rng.uniform(0.2, 0.8) * (width - 1), rng.uniform(0.2, 0.8) * (height - 1)])
        motion = motions[k + 1] if motions is not None else _random_motion(
            rng, T, start, max_speed, max_rotation, max_scale_change, jitter=0.15)
        affines = motion.matrices()
        all_affines.append(affines)
        layers.append(_AffineLayer(texture, np.array([(size - 1) / 2, (size - 1) / 2]), affines, shape))

    return _finish(layers, T, height, width, rng, brightness_change, light, noise, num_tracks,
                   np.stack(all_affines))


def warp_image_sequence(
    image: np.ndarray,
    T: int = 8,
    motion: str = "affine",
    height: int | None = None,
    width: int | None = None,
    seed: int = 0,
    max_speed: float = 2.0,
    max_rotation: float = math.radians(1.0),
    max_scale_change: float = 0.01,
    brightness_change: float = 0.0,
    local_light: bool | float = False,
    noise: float = 0.0,
    num_tracks: int = 64,
) -> SyntheticSequence:
    """Move a real photograph with a known motion and return frames with exact ground truth.

    Frame t samples the photograph at ``G_t(p)`` (bilinear; reflected outside the photo). The output
    window is centred on the photo and by default 80 % of its size, so the content stays real.

    Args:
        image: ``uint8 [H0, W0, 3]`` RGB (or ``[H0, W0]`` grey) photograph.
        T: number of frames.
        motion: ``"affine"`` (global similarity: translation + rotation + scale, per-frame random
            walk) or ``"smooth"`` (the affine motion plus Gaussian bumps of local non-rigid motion
            growing over time; flow via exact Newton inversion of the analytic map).
        height, width: output size (defaults: 80 % of the photo).
        max_speed: largest translation speed in px/frame (bumps add up to half of it locally).
        Other arguments as in :func:`make_sequence`.

    Returns:
        A :class:`SyntheticSequence` with one layer (``layer_ids`` all 0); occlusions are the pixels
        that leave the view.
    """
    if not isinstance(image, np.ndarray):
        raise ShapeError(f"image must be a numpy array uint8 [H, W, 3], got {type(image).__name__}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))) or min(image.shape[:2]) < 8:
        raise ShapeError(f"image must have shape [H, W, 3] or [H, W] with H, W >= 8, got {list(image.shape)}")
    if image.dtype != np.uint8:
        raise InvalidArgumentError(f"image must be uint8 RGB, got dtype {image.dtype}")
    if motion not in ("affine", "smooth"):
        raise InvalidArgumentError(f"motion must be one of ['affine', 'smooth'], got {motion!r}")
    photo = image if image.ndim == 3 and image.shape[2] == 3 else np.repeat(image.reshape(*image.shape[:2], 1), 3, 2)
    h0, w0 = photo.shape[:2]
    height = int(height) if height is not None else int(round(0.8 * h0))
    width = int(width) if width is not None else int(round(0.8 * w0))
    light = _check_common(T, height, width, brightness_change, local_light, noise, num_tracks)
    for name, value in (("max_speed", max_speed), ("max_rotation", max_rotation),
                        ("max_scale_change", max_scale_change)):
        check_positive(value, name, allow_zero=True)

    rng = np.random.default_rng(seed)
    texture = photo.astype(np.float32) / 255.0
    # photo centre sits at the window centre in frame 0
    offset = np.array([(w0 - 1) / 2, (h0 - 1) / 2])
    start = np.array([(width - 1) / 2, (height - 1) / 2]) + rng.uniform(-0.5, 0.5, 2)
    sim = _random_motion(rng, T, start, max_speed, max_rotation,
                         max_scale_change, jitter=0.15)
    sim.rotation -= sim.rotation[0]
    shift = np.eye(3)
    shift[:2, 2] = -offset
    affines = sim.matrices() @ shift  # photo pixel -> frame pixel
    if motion == "affine":
        layer: _Layer = _AffineLayer(texture, np.zeros(2), affines)
    else:
        n_bumps = 4
        sigmas = rng.uniform(0.15, 0.3, n_bumps) * min(height, width)
        centres = np.stack([rng.uniform(0, width - 1, n_bumps), rng.uniform(0, height - 1, n_bumps)], 1)
        directions = rng.uniform(0, 2 * np.pi, n_bumps)
        amplitude = 0.5 * max_speed
        # keep the map a diffeomorphism: total bump Jacobian over the sequence well below 1
        amplitude = min(amplitude, 0.3 * float(sigmas.min()) * math.exp(0.5) / max(T - 1, 1) / n_bumps)
        displacements = amplitude * np.stack([np.cos(directions), np.sin(directions)], 1)
        layer = _SmoothWarpLayer(texture, affines, centres, displacements, sigmas)
    return _finish([layer], T, height, width, rng, brightness_change, light, noise, num_tracks,
                   affines[None] if motion == "affine" else None)
