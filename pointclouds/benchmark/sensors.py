"""Sensors that sample a moving mesh: spinning lidar rings, depth-camera pixel grids, uniform samples.

Ray sensors cast their rays with open3d's ``RaycastingScene`` from a pose ``world_from_sensor``
(sensor axes: x forward, y left, z up); every hit keeps its face and barycentric coordinates, so
the same surface point is found on the mesh at the other time step (its exact flow). The uniform
sampler draws area-uniform points on every surface, seen or not (a "perfect scanner").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motion4d.errors import MissingDependencyError


@dataclass(frozen=True)
class Hits:
    """Surface samples: ``face int64 [K]`` and barycentric ``uv float64 [K, 2]`` of the sampled mesh, plus
    the unit ray direction ``[K, 3]`` (world) for range noise (zeros for the uniform sampler)."""

    face: np.ndarray
    uv: np.ndarray
    direction: np.ndarray


def surface_points(vertices: np.ndarray, faces: np.ndarray, hits: Hits) -> np.ndarray:
    """World positions ``[K, 3]`` of the hits on a mesh with these vertices."""
    tri = vertices[faces[hits.face]]  # [K, 3, 3]
    u, v = hits.uv[:, :1], hits.uv[:, 1:]
    return (1 - u - v) * tri[:, 0] + u * tri[:, 1] + v * tri[:, 2]


def _raycasting_scene(vertices: np.ndarray, faces: np.ndarray):  # noqa: ANN202
    try:
        import open3d as o3d
    except ImportError as exc:
        raise MissingDependencyError(f"the scene-flow benchmark ray-casts with open3d (pip install open3d): {exc}") from exc
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    return scene


def cast(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, directions: np.ndarray,
         max_range: float) -> tuple[Hits, np.ndarray]:
    """Cast rays ``origin + t d`` (``d [R, 3]`` unit, world) at the mesh; returns the hits and their ranges."""
    import open3d as o3d

    scene = _raycasting_scene(vertices, faces)
    rays = np.concatenate([np.broadcast_to(origin, directions.shape), directions], 1).astype(np.float32)
    out = scene.cast_rays(o3d.core.Tensor(rays))
    t = out["t_hit"].numpy().astype(np.float64)
    ok = np.isfinite(t) & (t < max_range) & (t > 1e-6)
    face = out["primitive_ids"].numpy().astype(np.int64)[ok]
    uv = out["primitive_uvs"].numpy().astype(np.float64)[ok]
    return Hits(face, uv, directions[ok]), t[ok]


def visible_from(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, points: np.ndarray,
                 tolerance: float) -> np.ndarray:
    """``bool [K]``: the segment from ``origin`` to each point meets no surface more than ``tolerance`` before it."""
    import open3d as o3d

    scene = _raycasting_scene(vertices, faces)
    d = points - origin
    dist = np.linalg.norm(d, axis=1)
    unit = d / np.maximum(dist, 1e-12)[:, None]
    rays = np.concatenate([np.broadcast_to(origin, unit.shape), unit], 1).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)
    return ~(t < dist - tolerance)


@dataclass(frozen=True)
class Lidar:
    """A spinning lidar: ``rings`` beams between ``elevation`` (rad, low / high), ``azimuth_steps`` per turn;
    each sweep starts at a random azimuth phase."""

    rings: int = 32
    azimuth_steps: int = 1024
    elevation: tuple[float, float] = (-0.43, 0.17)
    max_range: float = 120.0

    def directions(self, rng: np.random.Generator) -> np.ndarray:
        elev = np.linspace(self.elevation[0], self.elevation[1], self.rings)
        azim = (np.arange(self.azimuth_steps) + rng.random()) * (2 * np.pi / self.azimuth_steps)
        e, a = np.meshgrid(elev, azim, indexing="ij")
        return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3)

    def in_view(self, local: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(local, axis=1)
        elev = np.arcsin(np.clip(local[:, 2] / np.maximum(r, 1e-12), -1, 1))
        pad = 0.5 * (self.elevation[1] - self.elevation[0]) / max(1, self.rings - 1)
        return (elev >= self.elevation[0] - pad) & (elev <= self.elevation[1] + pad) & (r < self.max_range)


@dataclass(frozen=True)
class DepthCamera:
    """A pinhole depth camera looking along the sensor's x axis: ``width x height`` pixels, horizontal field
    of view ``hfov`` (rad), square pixels; one ray through every pixel centre."""

    width: int = 160
    height: int = 120
    hfov: float = 1.2
    max_range: float = 60.0

    @property
    def focal(self) -> float:
        return 0.5 * self.width / np.tan(0.5 * self.hfov)

    def directions(self, rng: np.random.Generator) -> np.ndarray:
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5, indexing="xy")
        x = np.ones(u.size)
        y = -(u.ravel() - self.width / 2) / self.focal
        z = -(v.ravel() - self.height / 2) / self.focal
        d = np.stack([x, y, z], 1)
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def in_view(self, local: np.ndarray) -> np.ndarray:
        x = np.maximum(local[:, 0], 1e-9)
        u = -local[:, 1] / x * self.focal + self.width / 2
        v = -local[:, 2] / x * self.focal + self.height / 2
        return (local[:, 0] > 0) & (u >= 0) & (u < self.width) & (v >= 0) & (v < self.height) & (
            np.linalg.norm(local, axis=1) < self.max_range)


@dataclass(frozen=True)
class UniformSampler:
    """Area-uniform random samples on every surface (no occlusion, no field of view)."""

    count: int = 8192

    def sample(self, vertices: np.ndarray, faces: np.ndarray, rng: np.random.Generator) -> Hits:
        tri = vertices[faces]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        face = rng.choice(len(faces), size=self.count, p=area / area.sum())
        r1, r2 = rng.random(self.count), rng.random(self.count)
        flip = r1 + r2 > 1
        r1, r2 = np.where(flip, 1 - r1, r1), np.where(flip, 1 - r2, r2)
        return Hits(face.astype(np.int64), np.stack([r1, r2], 1), np.zeros((self.count, 3)))


Sensor = Lidar | DepthCamera | UniformSampler


def scan(sensor: Sensor, vertices: np.ndarray, faces: np.ndarray, world_from_sensor: np.ndarray,
         rng: np.random.Generator) -> Hits:
    """Sample the mesh (world vertices at the scan's time) with ``sensor`` placed at ``world_from_sensor``."""
    if isinstance(sensor, UniformSampler):
        return sensor.sample(vertices, faces, rng)
    directions = sensor.directions(rng) @ world_from_sensor[:3, :3].T
    hits, _ = cast(vertices, faces, world_from_sensor[:3, 3], directions, sensor.max_range)
    return hits


def in_view(sensor: Sensor, world_from_sensor: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``bool [K]``: world ``points`` inside the sensor's field of view and range (always True when uniform)."""
    if isinstance(sensor, UniformSampler):
        return np.ones(len(points), bool)
    local = (points - world_from_sensor[:3, 3]) @ world_from_sensor[:3, :3]
    return sensor.in_view(local)


__all__ = ["Hits", "Lidar", "DepthCamera", "UniformSampler", "scan", "surface_points", "cast", "visible_from",
           "in_view"]
