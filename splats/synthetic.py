"""Small dynamic Gaussian scenes with exact ground truth: depth, flow, tracks, motion masks, poses.

A scene is a static textured backdrop (a plane of small Gaussians) plus rigid objects (textured
balls of Gaussians) whose centre follows a known polynomial or periodic trajectory while spinning
about an axis. Everything is rendered with :func:`splats.rendering.rasterize`, so the ground truth is
exact *for the Gaussian scene*: depth is the alpha-blended expected depth, flow is the blended
screen motion of the Gaussians covering a pixel, tracks are projected Gaussian centres with a
depth-test visibility.

Two ready-made layouts:
* :func:`multiview_sequence` — V fixed cameras on an arc x T time steps (Gaussian-Flow tests).
* :func:`monocular_sequence` — one moving camera, one frame per time step (GFlow tests), with
  forward / backward flow and tracks between consecutive frames.

World axes follow OpenCV (y down); cameras look along +z at the origin; the backdrop sits at z = 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from motion4d.checks import check_positive, check_shape
from motion4d.errors import InvalidArgumentError

from .cameras import Cameras, look_at
from .gaussians import Gaussians, quat_to_rotmat
from .rendering import rasterize


# -------------------------------------------------------------------- motions
@dataclass
class PolynomialMotion:
    """``offset(t) = sum_k coeffs[k] * t**k`` with ``coeffs [K, 3]``."""

    coeffs: torch.Tensor

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """``t [T]`` -> ``[T, 3]``."""
        powers = torch.stack([t ** k for k in range(self.coeffs.shape[0])], dim=-1)
        return powers @ self.coeffs


@dataclass
class PeriodicMotion:
    """``offset(t) = amplitude * sin(2 pi (frequency * t) + phase)`` per axis."""

    amplitude: torch.Tensor  # [3]
    frequency: float = 1.0
    phase: float = 0.0

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(2 * math.pi * self.frequency * t + self.phase)[:, None] * self.amplitude


def axis_angle_quat(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """``[T, 4]`` wxyz quaternions of rotations by ``angle [T]`` about the unit ``axis [3]``."""
    axis = torch.nn.functional.normalize(axis.float(), dim=0)
    half = 0.5 * angle
    return torch.cat([torch.cos(half)[:, None], torch.sin(half)[:, None] * axis], dim=-1)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of wxyz quaternions (broadcasting)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


@dataclass
class MovingObject:
    """A rigid set of Gaussians (``local`` coordinates around its centre) and its motion."""

    local: Gaussians
    center: torch.Tensor  # [3] centre at t = 0 before the translation offset
    translation: PolynomialMotion | PeriodicMotion
    spin_axis: torch.Tensor = field(default_factory=lambda: torch.tensor([0.0, 1.0, 0.0]))
    spin_rate: float = 0.0  # radians per unit time

    def center_at(self, t: torch.Tensor) -> torch.Tensor:
        """``[T, 3]`` world position of the object's centre."""
        return self.center + self.translation(t)

    def rotation_at(self, t: torch.Tensor) -> torch.Tensor:
        """``[T, 4]`` wxyz."""
        return axis_angle_quat(self.spin_axis, self.spin_rate * t)

    def gaussians_at(self, t: float) -> Gaussians:
        tt = torch.tensor([float(t)])
        q = self.rotation_at(tt)[0]
        r = quat_to_rotmat(q)
        return self.local.replace(
            means=self.local.means @ r.T + self.center_at(tt)[0],
            quats=quat_multiply(q, self.local.quats),
        )


@dataclass
class SyntheticScene:
    """A static backdrop plus moving objects; ``labels`` gives 0 for static, i + 1 for object i."""

    static: Gaussians
    objects: list[MovingObject]

    def gaussians_at(self, t: float) -> Gaussians:
        return Gaussians.concat([self.static] + [o.gaussians_at(t) for o in self.objects])

    @property
    def labels(self) -> torch.Tensor:
        parts = [torch.zeros(len(self.static), dtype=torch.long)]
        parts += [torch.full((len(o.local),), i + 1, dtype=torch.long) for i, o in enumerate(self.objects)]
        return torch.cat(parts)


# -------------------------------------------------------------------- building scenes
def _texture(xy: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Procedural colour texture at plane coordinates ``xy [N, 2]`` -> ``[N, 3]`` in [0.05, 0.95]."""
    check = ((torch.floor(xy[:, 0] / 0.4) + torch.floor(xy[:, 1] / 0.4)) % 2)[:, None]
    angle = torch.rand(3, generator=rng) * math.pi
    freq = (torch.rand(3, generator=rng) * 3 + 4)[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    phase = torch.rand(3, generator=rng) * 6.28
    waves = torch.sin(xy @ freq.T + phase)
    base = torch.tensor([0.3, 0.45, 0.6]) + 0.3 * (check - 0.5) * torch.tensor([1.0, -0.7, 0.5])
    return (base + 0.15 * waves).clamp(0.05, 0.95)


def _backdrop(extent: float, spacing: float, depth: float, rng: torch.Generator) -> Gaussians:
    ticks = torch.arange(-extent, extent + 1e-6, spacing)
    ys, xs = torch.meshgrid(ticks, ticks, indexing="ij")
    xy = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)
    n = len(xy)
    means = torch.cat([xy, torch.full((n, 1), depth)], dim=-1)
    log_s = torch.log(torch.tensor([spacing * 0.6, spacing * 0.6, spacing * 0.1])).expand(n, 3).clone()
    return Gaussians(means, torch.tensor([1.0, 0, 0, 0]).repeat(n, 1), log_s, torch.full((n,), 4.0),
                     _texture(xy, rng))


def _ball(radius: float, n: int, base_rgb: tuple[float, float, float]) -> Gaussians:
    """A ball of Gaussians on a Fibonacci sphere with colour bands (so rotation and motion show)."""
    i = torch.arange(n, dtype=torch.float32) + 0.5
    polar = torch.acos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5 ** 0.5) * i
    dirs = torch.stack([torch.sin(polar) * torch.cos(azimuth), torch.cos(polar),
                        torch.sin(polar) * torch.sin(azimuth)], dim=-1)
    spacing = radius * math.sqrt(4 * math.pi / n)
    bands = 0.5 + 0.5 * torch.sign(torch.sin(3 * azimuth) * torch.cos(4 * polar))
    rgb = torch.tensor(base_rgb) * (0.55 + 0.45 * bands[:, None])
    return Gaussians(dirs * radius, torch.tensor([1.0, 0, 0, 0]).repeat(n, 1),
                     torch.full((n, 3), math.log(spacing * 0.7)), torch.full((n,), 4.0), rgb.clamp(0.02, 0.98))


def make_scene(n_objects: int = 2, seed: int = 0, ball_points: int = 500, backdrop_spacing: float = 0.085,
               motion_seed: int | None = None) -> SyntheticScene:
    """The default scene: a textured backdrop at z = 1 and up to two moving balls.

    Object 1 swings periodically along x (amplitude 0.45, one period over t in [0, 1]) and spins;
    object 2 follows a quadratic path (drifting right and down, accelerating towards the camera).
    ``seed`` draws the backdrop texture. With ``motion_seed`` the motions are drawn around these
    defaults instead: swing amplitude 0.35-0.5, frequency 0.8-1.2 periods per unit time, any phase;
    quadratic coefficients x0.7-1.3 with a random left / right drift; spin rates x0.5-1.5.
    """
    if not 0 <= n_objects <= 2:
        raise InvalidArgumentError(f"n_objects must be 0, 1 or 2, got {n_objects}")
    rng = torch.Generator().manual_seed(seed)
    static = _backdrop(extent=3.4, spacing=backdrop_spacing, depth=1.0, rng=rng)
    amplitude, frequency, phase = 0.45, 1.0, 0.0
    quadratic = torch.tensor([[0.0, 0.0, 0.0], [0.25, -0.3, 0.0], [0.0, 0.2, -0.4]])
    spins = (math.pi, -0.5 * math.pi)
    if motion_seed is not None:
        mrng = torch.Generator().manual_seed(int(motion_seed))

        def uniform(lo: float, hi: float, n: int = 1) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=mrng)

        amplitude, frequency = float(uniform(0.35, 0.5)), float(uniform(0.8, 1.2))
        phase = float(uniform(0.0, 2 * math.pi))
        quadratic = quadratic * uniform(0.7, 1.3, 9).reshape(3, 3)
        if bool(torch.rand(1, generator=mrng) < 0.5):
            quadratic[1, 0] = -quadratic[1, 0]
        spins = tuple(float(r * f) for r, f in zip(spins, uniform(0.5, 1.5, 2)))
    objects = [
        MovingObject(_ball(0.32, ball_points, (0.95, 0.35, 0.15)), torch.tensor([-0.25, -0.25, 0.0]),
                     PeriodicMotion(torch.tensor([amplitude, 0.0, 0.0]), frequency=frequency, phase=phase),
                     spin_axis=torch.tensor([0.0, 1.0, 0.0]), spin_rate=spins[0]),
        MovingObject(_ball(0.25, ball_points, (0.2, 0.9, 0.35)), torch.tensor([0.3, 0.35, 0.2]),
                     PolynomialMotion(quadratic), spin_axis=torch.tensor([1.0, 0.0, 0.0]), spin_rate=spins[1]),
    ]
    return SyntheticScene(static, objects[:n_objects])


# -------------------------------------------------------------------- rendering ground truth
@dataclass
class SyntheticFrames:
    """M rendered views with ground truth. Frame i is seen by ``cameras[i]`` at ``times[i]``."""

    frames: np.ndarray  # uint8 [M, H, W, 3]
    images: torch.Tensor  # float [M, H, W, 3] in [0, 1]
    depth: torch.Tensor  # float [M, H, W] expected depth (camera z)
    alpha: torch.Tensor  # float [M, H, W]
    moving_mask: torch.Tensor  # bool [M, H, W]: pixel mostly covered by a moving object
    cameras: Cameras
    times: torch.Tensor  # [M]
    background: torch.Tensor  # [3]
    forward_flow: torch.Tensor | None = None  # [M - 1, 2, H, W] frame i -> i + 1 (monocular layout)
    backward_flow: torch.Tensor | None = None  # [M - 1, 2, H, W] frame i + 1 -> i
    tracks_xy: torch.Tensor | None = None  # [M, P, 2] pixels
    tracks_visible: torch.Tensor | None = None  # [M, P] bool
    track_ids: torch.Tensor | None = None  # [P] Gaussian index of each track


def _render_features(scene: SyntheticScene, cameras: Cameras, times: torch.Tensor, features: torch.Tensor | None,
                     background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Render RGB + expected depth (+ extra per-Gaussian features ``[M, N, F]``) of every view."""
    outs, alphas, extras = [], [], []
    for i in range(len(cameras)):
        g = scene.gaussians_at(float(times[i]))
        colors = g.colors if features is None else torch.cat([g.colors, features[i]], dim=-1)
        bg = torch.cat([background, torch.zeros(colors.shape[-1] - 3)])
        img, alpha, _ = rasterize(g.means, g.quats, g.scales, g.opacities, colors, cameras.world_to_cam[i:i + 1],
                                  cameras.K[i:i + 1], cameras.width, cameras.height, mode="RGB+ED",
                                  backgrounds=bg)
        outs.append(torch.cat([img[0, ..., :3], img[0, ..., -1:]], dim=-1))
        alphas.append(alpha[0, ..., 0])
        if features is not None:
            extras.append(img[0, ..., 3:-1] / alpha[0].clamp_min(1e-6))
    out = torch.stack(outs)
    return out, torch.stack(alphas), (torch.stack(extras) if extras else None)


def render_views(scene: SyntheticScene, cameras: Cameras, times: torch.Tensor | list[float],
                 background: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> SyntheticFrames:
    """Render ``scene`` from ``cameras[i]`` at ``times[i]`` with depth and motion masks."""
    times = torch.as_tensor(times, dtype=torch.float32)
    check_shape(times, "times", (len(cameras),))
    bg = torch.tensor(background, dtype=torch.float32)
    moving = (scene.labels > 0).float()[None, :, None].expand(len(cameras), -1, 1)
    with torch.no_grad():
        out, alpha, extra = _render_features(scene, cameras, times, moving, bg)
    images = out[..., :3].clamp(0, 1)
    frames = (images * 255 + 0.5).to(torch.uint8).numpy()
    return SyntheticFrames(frames=frames, images=images, depth=out[..., 3], alpha=alpha,
                           moving_mask=(extra[..., 0] > 0.5) & (alpha > 0.5), cameras=cameras, times=times,
                           background=bg)


def unproject_depth(views: SyntheticFrames, index: int, stride: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """World points ``[P, 3]`` and RGB ``[P, 3]`` of every ``stride``-th pixel of view ``index``
    (an RGB-D start for reconstruction, the way SfM or depth-sensor points are used)."""
    cam = views.cameras[index]
    k = cam.K[0]
    depth = views.depth[index][::stride, ::stride]
    ys, xs = torch.meshgrid(torch.arange(0, cam.height, stride, dtype=torch.float32),
                            torch.arange(0, cam.width, stride, dtype=torch.float32), indexing="ij")
    rays = torch.stack([(xs - k[0, 2]) / k[0, 0], (ys - k[1, 2]) / k[1, 1], torch.ones_like(xs)], dim=-1)
    c2w = cam.cam_to_world[0]
    points = (rays * depth[..., None]).reshape(-1, 3) @ c2w[:3, :3].T + c2w[:3, 3]
    colors = views.images[index][::stride, ::stride].reshape(-1, 3)
    return points, colors


def _flow_between(scene: SyntheticScene, cam_a: Cameras, t_a: float, cam_b: Cameras, t_b: float,
                  background: torch.Tensor) -> torch.Tensor:
    """``[2, H, W]`` screen motion from view a to view b of the Gaussians covering each pixel of a."""
    ga, gb = scene.gaussians_at(t_a), scene.gaussians_at(t_b)
    uv_a, _ = cam_a.project(ga.means)
    uv_b, _ = cam_b.project(gb.means)
    motion = (uv_b - uv_a)[0]
    _, _, flow = _render_features(scene, cam_a, torch.tensor([t_a]), motion[None], background)
    return flow[0].permute(2, 0, 1)


def _tracks(scene: SyntheticScene, cameras: Cameras, times: torch.Tensor, depth: torch.Tensor, n_points: int,
            seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tracks of ``n_points`` Gaussian centres (half on moving objects when there are any)."""
    labels = scene.labels
    rng = torch.Generator().manual_seed(seed)
    h, w = depth.shape[1:]
    uv0, _ = cameras[0].project(scene.gaussians_at(float(times[0])).means)
    in_first = (uv0[0, :, 0] >= 0) & (uv0[0, :, 0] <= w - 1) & (uv0[0, :, 1] >= 0) & (uv0[0, :, 1] <= h - 1)
    moving = torch.nonzero(labels > 0).squeeze(1)
    static = torch.nonzero((labels == 0) & in_first).squeeze(1)
    n_moving = min(len(moving), n_points // 2)
    ids = torch.cat([moving[torch.randperm(len(moving), generator=rng)[:n_moving]],
                     static[torch.randperm(len(static), generator=rng)[: n_points - n_moving]]])
    xy, vis = [], []
    for i in range(len(cameras)):
        g = scene.gaussians_at(float(times[i]))
        uv, z = cameras[i].project(g.means[ids])
        uv, z = uv[0], z[0]
        inside = (uv[:, 0] > -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < h - 0.5) & (z > 0)
        px = uv.round().long()
        px[:, 0].clamp_(0, w - 1)
        px[:, 1].clamp_(0, h - 1)
        surface = depth[i, px[:, 1], px[:, 0]]
        # the ball Gaussians sit on the surface: visible when no nearer surface covers them
        vis.append(inside & (z < surface + 0.08))
        xy.append(uv)
    return torch.stack(xy), torch.stack(vis), ids


def multiview_sequence(n_views: int = 4, n_times: int = 10, width: int = 64, height: int = 64, seed: int = 0,
                       n_objects: int = 2, arc_degrees: float = 30.0, fov_degrees: float = 60.0,
                       background: tuple[float, float, float] = (0.0, 0.0, 0.0), ball_points: int = 500,
                       backdrop_spacing: float = 0.085, motion_seed: int | None = None
                       ) -> tuple[SyntheticScene, SyntheticFrames]:
    """V fixed cameras on a horizontal arc at distance 3, each seeing T times in [0, 1].

    Frames are ordered time-major: index ``t * V + v``. ``seed`` and ``motion_seed``: see :func:`make_scene`.
    """
    check_positive(n_views, "n_views")
    check_positive(n_times, "n_times")
    scene = make_scene(n_objects=n_objects, seed=seed, ball_points=ball_points, backdrop_spacing=backdrop_spacing,
                       motion_seed=motion_seed)
    angles = torch.linspace(-arc_degrees / 2, arc_degrees / 2, n_views) if n_views > 1 else torch.zeros(1)
    rad = torch.deg2rad(angles)
    eyes = torch.stack([3 * torch.sin(rad), -0.3 * torch.ones_like(rad), -3 * torch.cos(rad)], dim=-1)
    views = Cameras.from_fov(look_at(eyes, torch.zeros(3)), width, height, fov_degrees)
    times = torch.linspace(0, 1, n_times)
    cams = views[[v for _ in range(n_times) for v in range(n_views)]]
    t_all = times.repeat_interleave(n_views)
    return scene, render_views(scene, cams, t_all, background)


def monocular_sequence(n_frames: int = 8, width: int = 64, height: int = 48, seed: int = 0, n_objects: int = 2,
                       n_tracks: int = 64, fov_degrees: float = 60.0, camera_travel: float = 0.6,
                       background: tuple[float, float, float] = (0.0, 0.0, 0.0), ball_points: int = 500,
                       backdrop_spacing: float = 0.085) -> tuple[SyntheticScene, SyntheticFrames]:
    """One camera moving sideways (and slightly forward) while looking at the origin.

    Returns frames with depth, moving masks, forward / backward flow ``[T - 1, 2, H, W]`` and tracks.
    """
    if n_frames < 2:
        raise InvalidArgumentError(f"n_frames must be >= 2, got {n_frames}")
    scene = make_scene(n_objects=n_objects, seed=seed, ball_points=ball_points, backdrop_spacing=backdrop_spacing)
    s = torch.linspace(0, 1, n_frames)
    eyes = torch.stack([camera_travel * (s - 0.5), -0.2 + 0.1 * s, -3.0 + 0.3 * s], dim=-1)
    targets = torch.stack([0.3 * camera_travel * (s - 0.5), torch.zeros_like(s), torch.zeros_like(s)], dim=-1)
    cams = Cameras.from_fov(look_at(eyes, targets), width, height, fov_degrees)
    times = s.clone()
    out = render_views(scene, cams, times, background)
    with torch.no_grad():
        fwd = torch.stack([_flow_between(scene, cams[i], float(times[i]), cams[i + 1], float(times[i + 1]), out.background)
                           for i in range(n_frames - 1)])
        bwd = torch.stack([_flow_between(scene, cams[i + 1], float(times[i + 1]), cams[i], float(times[i]), out.background)
                           for i in range(n_frames - 1)])
        xy, vis, ids = _tracks(scene, cams, times, out.depth, n_tracks, seed)
    out.forward_flow, out.backward_flow = fwd, bwd
    out.tracks_xy, out.tracks_visible, out.track_ids = xy, vis, ids
    return scene, out
