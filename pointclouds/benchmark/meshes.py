"""Triangle meshes that move between two time steps: the geometry of the scene-flow benchmark.

A :class:`MovingMesh` holds the vertices at both times (``vertices0`` / ``vertices1``, float64
``[V, 3]``, world frame) over one set of faces (``int64 [F, 3]``): a point at barycentric
coordinates ``(1 - u - v, u, v)`` of a face at t0 is at the same barycentric coordinates of that
face at t1, so every surface point has an exact displacement (rigid motions move vertices rigidly;
non-rigid ones move them smoothly and the meshes are subdivided finely enough for the linear
interpolation to follow).

Primitives: subdivided planes, boxes (also seen from inside: rooms), closed cylinders, and the
surface of a real depth map (:func:`depth_map_mesh`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motion4d.errors import InvalidArgumentError


@dataclass
class MovingMesh:
    """Vertices at t0 and t1 over shared faces, plus an integer label (0 = static background)."""

    vertices0: np.ndarray
    vertices1: np.ndarray
    faces: np.ndarray
    label: int = 0

    def __post_init__(self) -> None:
        if self.vertices0.shape != self.vertices1.shape or self.vertices0.ndim != 2 or self.vertices0.shape[1] != 3:
            raise InvalidArgumentError(f"vertices must be two [V, 3] arrays, got {self.vertices0.shape} and "
                                       f"{self.vertices1.shape}")

    def area(self) -> float:
        a, b, c = (self.vertices0[self.faces[:, i]] for i in range(3))
        return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def merge(meshes: list[MovingMesh]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One mesh of many: ``vertices0 [V, 3]``, ``vertices1 [V, 3]``, ``faces [F, 3]``, ``labels [F]``."""
    v0, v1, faces, labels = [], [], [], []
    offset = 0
    for m in meshes:
        v0.append(m.vertices0)
        v1.append(m.vertices1)
        faces.append(m.faces + offset)
        labels.append(np.full(len(m.faces), m.label, np.int32))
        offset += len(m.vertices0)
    return np.concatenate(v0), np.concatenate(v1), np.concatenate(faces), np.concatenate(labels)


def grid_faces(rows: int, cols: int) -> np.ndarray:
    """Two triangles per cell of a ``rows x cols`` vertex grid (row-major vertex order)."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b, d = a + 1, a + cols
    return np.concatenate([np.stack([a, b, d + 1], 1), np.stack([a, d + 1, d], 1)]).astype(np.int64)


def plane(corner: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """A parallelogram ``corner + s edge_u + t edge_v`` (s, t in [0, 1]) cut into cells of about ``step`` m."""
    nu = max(1, int(np.ceil(np.linalg.norm(edge_u) / step)))
    nv = max(1, int(np.ceil(np.linalg.norm(edge_v) / step)))
    s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1), indexing="ij")
    vertices = corner + s.reshape(-1, 1) * edge_u + t.reshape(-1, 1) * edge_v
    return vertices, grid_faces(nu + 1, nv + 1)


def box(size: np.ndarray, step: float, bottom: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Box ``size = (length, width, height)`` in its local frame (base centre at the origin), faces of about ``step``."""
    a, b, h = (float(x) for x in size)
    lo = np.array([-a / 2, -b / 2, 0.0])
    ex, ey, ez = np.array([a, 0, 0.0]), np.array([0, b, 0.0]), np.array([0, 0, h])
    sides = [(lo + ez, ex, ey), (lo, ex, ez), (lo + ey, ex, ez), (lo, ey, ez), (lo + ex, ey, ez)]
    if bottom:
        sides.append((lo, ex, ey))
    return _stack([plane(c, u, v, step) for c, u, v in sides])


def cylinder(radius: float, height: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Upright closed cylinder (side and top), base centre at the origin."""
    segments = max(8, int(np.ceil(2 * np.pi * radius / step)))
    rings = max(1, int(np.ceil(height / step)))
    theta = np.linspace(0, 2 * np.pi, segments + 1)
    z = np.linspace(0, height, rings + 1)
    tt, zz = np.meshgrid(theta, z, indexing="ij")
    side = np.stack([radius * np.cos(tt).ravel(), radius * np.sin(tt).ravel(), zz.ravel()], 1)
    side_faces = grid_faces(segments + 1, rings + 1)
    cap = np.concatenate([[[0.0, 0.0, height]], np.stack([radius * np.cos(theta[:-1]), radius * np.sin(theta[:-1]),
                                                          np.full(segments, height)], 1)])
    k = np.arange(segments)
    cap_faces = np.stack([np.zeros(segments, np.int64), 1 + k, 1 + (k + 1) % segments], 1)
    return _stack([(side, side_faces), (cap, cap_faces)])


def _stack(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces, offset = [], [], 0
    for v, f in parts:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(faces)


def depth_map_mesh(depth: np.ndarray, K: np.ndarray, stride: int = 1, max_jump: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Surface of a depth map in camera coordinates (OpenCV axes: x right, y down, z forward).

    Neighbouring pixels (every ``stride``-th) are joined into triangles where all three depths are
    known and differ by less than ``max_jump`` times their depth (no skins across occlusion edges).
    """
    d = np.asarray(depth, np.float64)[::stride, ::stride]
    rows, cols = d.shape
    v, u = np.meshgrid(np.arange(rows) * stride, np.arange(cols) * stride, indexing="ij")
    x = (u - K[0, 2]) / K[0, 0] * d
    y = (v - K[1, 2]) / K[1, 1] * d
    vertices = np.stack([x, y, d], -1).reshape(-1, 3)
    faces = grid_faces(rows, cols)
    z = d.ravel()[faces]
    ok = (z > 0).all(1) & ((z.max(1) - z.min(1)) < max_jump * z.min(1))
    used = np.unique(faces[ok])
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces[ok]]


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """``[3, 3]`` rotation by ``angle`` (rad) about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, np.float64)
    k = k / np.linalg.norm(k)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random ``[3, 3]`` rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``[4, 4]`` transform applied to ``[N, 3]`` points."""
    return points @ T[:3, :3].T + T[:3, 3]


def pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def bend(local: np.ndarray, height: float, amplitude: np.ndarray, twist: float) -> np.ndarray:
    """Smooth non-rigid deformation in an object's frame: a bend growing with height and a twist."""
    t = np.clip(local[:, 2] / height, 0.0, 1.0)
    angle = twist * t
    c, s = np.cos(angle), np.sin(angle)
    x = c * local[:, 0] - s * local[:, 1] + amplitude[0] * t**2
    y = s * local[:, 0] + c * local[:, 1] + amplitude[1] * t**2
    return np.stack([x, y, local[:, 2]], 1)


__all__ = ["MovingMesh", "merge", "plane", "box", "cylinder", "depth_map_mesh", "rotation", "random_rotation",
           "transform", "pose", "bend", "grid_faces"]
