"""Seeded synthetic scene-flow pairs with exact ground truth.

A street-like scene: a flat ground plane and a few rigid objects (boxes and upright cylinders,
sampled on their visible surfaces) that move with their own rigid motion between two sweeps; the
sensor itself may move (ego motion). Source and target are *independent* surface samples (no
point-to-point correspondence, like two real lidar sweeps), and the flow of every source point
is exact: the displacement of the surface point it was sampled from, expressed in the sensor
frame of each sweep, so static points carry the ego motion (as in Argoverse 2 / NSFP).

Options: a non-rigid variant (objects bend and twist smoothly on top of their rigid motion),
partial overlap (the target sweep misses part of the scene; ``mask`` marks the source points
whose moved position lies inside the target's view), Gaussian measurement noise (added to the
observed coordinates; the flow stays that of the underlying surface point). Ground hidden under
an object's footprint is not sampled (at t0 for the source, at t1 for the target).

Axes: sensor frame with x forward, y left, z up; the ground is at ``z = -sensor_height``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from motion4d.checks import check_positive
from motion4d.errors import InvalidArgumentError

from .data.sample import SceneFlowSample

BOX, CYLINDER = 0, 1


@dataclass(frozen=True)
class _Object:
    kind: int
    size: np.ndarray  # box: (length, width, height); cylinder: (radius, radius, height)
    pose0: np.ndarray  # [4, 4] object-to-world at t0 (base centre on the ground)
    motion: np.ndarray  # [4, 4] world-frame rigid motion t0 -> t1
    bend: np.ndarray  # (amplitude_x, amplitude_y, twist) of the non-rigid deformation


def _rigid(yaw: float, translation: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = translation
    return T


def _apply(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ T[:3, :3].T + T[:3, 3]


def _surface_area(obj: _Object) -> float:
    a, b, h = obj.size
    if obj.kind == BOX:
        return a * b + 2 * a * h + 2 * b * h
    return 2 * np.pi * a * h + np.pi * a * a


def _sample_surface(obj: _Object, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly (by area) on the object's surface without its bottom, local frame."""
    a, b, h = obj.size
    u = rng.random((n, 3))
    if obj.kind == BOX:
        areas = np.array([a * b, b * h, b * h, a * h, a * h])  # top, +x, -x, +y, -y
        face = rng.choice(5, size=n, p=areas / areas.sum())
        x = (u[:, 0] - 0.5) * a
        y = (u[:, 1] - 0.5) * b
        z = u[:, 2] * h
        x = np.where(face == 1, a / 2, np.where(face == 2, -a / 2, x))
        y = np.where(face == 3, b / 2, np.where(face == 4, -b / 2, y))
        z = np.where(face == 0, h, z)
        return np.stack([x, y, z], axis=1)
    side, top = 2 * np.pi * a * h, np.pi * a * a
    on_top = rng.random(n) < top / (side + top)
    theta = 2 * np.pi * u[:, 0]
    radius = np.where(on_top, a * np.sqrt(u[:, 1]), a)
    z = np.where(on_top, h, u[:, 2] * h)
    return np.stack([radius * np.cos(theta), radius * np.sin(theta), z], axis=1)


def _deform(obj: _Object, local: np.ndarray) -> np.ndarray:
    """Smooth non-rigid deformation in the object frame: a bend growing with height plus a twist."""
    h = obj.size[2]
    t = (local[:, 2] / h)[:, None]
    ax, ay, twist = obj.bend
    angle = twist * t[:, 0]
    c, s = np.cos(angle), np.sin(angle)
    x = c * local[:, 0] - s * local[:, 1] + ax * t[:, 0] ** 2
    y = s * local[:, 0] + c * local[:, 1] + ay * t[:, 0] ** 2
    return np.stack([x, y, local[:, 2]], axis=1)


def _make_objects(
    rng: np.random.Generator,
    num_objects: int,
    extent: float,
    ground_z: float,
    max_speed: float,
    nonrigid: bool,
    static_fraction: float,
) -> list[_Object]:
    objects: list[_Object] = []
    centres: list[np.ndarray] = []
    for _ in range(num_objects):
        kind = BOX if rng.random() < 0.6 else CYLINDER
        if kind == BOX:
            size = np.array([rng.uniform(1.5, 4.5), rng.uniform(1.0, 2.0), rng.uniform(1.0, 2.2)])
        else:
            r = rng.uniform(0.3, 0.8)
            size = np.array([r, r, rng.uniform(1.0, 2.0)])
        for _attempt in range(50):  # keep footprints apart and away from the sensor
            centre = rng.uniform(-0.8 * extent, 0.8 * extent, size=2)
            far = all(np.linalg.norm(centre - c) > 5.0 for c in centres)
            if far and np.linalg.norm(centre) > 4.0:
                break
        centres.append(centre)
        pose0 = _rigid(rng.uniform(-np.pi, np.pi), np.array([centre[0], centre[1], ground_z]))
        if rng.random() < static_fraction:
            motion = np.eye(4)
        else:
            heading = rng.uniform(-np.pi, np.pi)
            speed = rng.uniform(0.2, 1.0) * max_speed
            step = speed * np.array([np.cos(heading), np.sin(heading), 0.0])
            dyaw = rng.uniform(-0.15, 0.15)
            # rotate about the object's own vertical axis, then translate
            to_origin = _rigid(0.0, -pose0[:3, 3])
            back = _rigid(dyaw, pose0[:3, 3] + step)
            motion = back @ to_origin
        # drawn either way so that nonrigid=True deforms the very same scene
        bend = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(-0.5, 0.5)])
        if not nonrigid:
            bend = np.zeros(3)
        objects.append(_Object(kind, size, pose0, motion, bend))
    return objects


class _Scene:
    """Samples (t0 position, t1 position, label) triples on the scene's surfaces (world frame)."""

    def __init__(self, objects: list[_Object], extent: float, ground_z: float, ground_fraction: float) -> None:
        self.objects, self.extent, self.ground_z, self.ground_fraction = objects, extent, ground_z, ground_fraction
        areas = np.array([_surface_area(o) for o in objects])
        self.object_share = areas / areas.sum() if len(objects) else areas

    def _covered(self, ground: np.ndarray, time: int) -> np.ndarray:
        """Ground points hidden under an object's footprint at ``time`` (0 or 1)."""
        covered = np.zeros(len(ground), dtype=bool)
        for obj in self.objects:
            pose = obj.pose0 if time == 0 else obj.motion @ obj.pose0
            local = _apply(np.linalg.inv(pose), ground)
            a, b, _ = obj.size
            if obj.kind == BOX:
                covered |= (np.abs(local[:, 0]) <= a / 2) & (np.abs(local[:, 1]) <= b / 2)
            else:
                covered |= np.hypot(local[:, 0], local[:, 1]) <= a
        return covered

    def _sample_ground(self, n: int, rng: np.random.Generator, time: int) -> np.ndarray:
        kept = np.zeros((0, 3))
        while len(kept) < n:
            xy = rng.uniform(-self.extent, self.extent, (n + 64, 2))
            candidates = np.column_stack([xy, np.full(len(xy), self.ground_z)])
            kept = np.concatenate([kept, candidates[~self._covered(candidates, time)]])
        return kept[:n]

    def sample(self, n: int, rng: np.random.Generator, time: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` surface points visible at ``time``: positions at t0 and t1 and labels."""
        n_ground = n if not self.objects else int(round(n * self.ground_fraction))
        counts = rng.multinomial(n - n_ground, self.object_share) if self.objects else []
        x0 = [self._sample_ground(n_ground, rng, time)]
        x1 = [x0[0]]
        labels = [np.zeros(n_ground, dtype=np.int32)]
        for k, (obj, count) in enumerate(zip(self.objects, counts), start=1):
            local = _sample_surface(obj, int(count), rng)
            p0 = _apply(obj.pose0, local)
            moved = _deform(obj, local) if obj.bend.any() else local
            p1 = _apply(obj.motion @ obj.pose0, moved)
            x0.append(p0)
            x1.append(p1)
            labels.append(np.full(int(count), k, dtype=np.int32))
        return np.concatenate(x0), np.concatenate(x1), np.concatenate(labels)


def make_scene_flow_pair(
    num_points: int = 4096,
    *,
    seed: int = 0,
    num_target_points: int | None = None,
    num_objects: int = 5,
    ego_motion: bool = True,
    ego_speed: float = 1.0,
    max_object_speed: float = 1.5,
    static_fraction: float = 0.2,
    nonrigid: bool = False,
    overlap: float = 1.0,
    noise: float = 0.0,
    extent: float = 20.0,
    sensor_height: float = 1.7,
    ground_fraction: float = 0.35,
) -> SceneFlowSample:
    """One synthetic scene-flow pair with exact flow for the source points.

    Args:
        num_points: source points (and target points unless ``num_target_points`` is given).
        seed: everything is a deterministic function of the arguments.
        num_objects: boxes / cylinders standing on the ground (0 gives ground only).
        ego_motion: move the sensor forward by ``ego_speed`` m (plus a small yaw) between sweeps.
        max_object_speed: largest object displacement per sweep in metres.
        static_fraction: probability that an object does not move.
        nonrigid: add a smooth bend / twist deformation to every object's motion.
        overlap: fraction (0, 1] of the scene's x-extent that the target sweep still sees.
        noise: std (m) of Gaussian noise on the observed source and target coordinates.
        extent: the ground spans ``[-extent, extent]^2`` m around the first sensor position.
        sensor_height: sensor height above the ground.
        ground_fraction: share of the points sampled on the ground.

    Returns:
        :class:`SceneFlowSample` with ``point_data["labels"]`` (0 = ground, k = object k),
        ``point_data["dynamic"]`` (moves relative to the world), ``meta["ego_motion"]`` (``[4, 4]``
        frame-0 -> frame-1 coordinates, so static flow is ``ego_motion @ p - p``) and
        ``meta["object_motions"]`` (``[K, 4, 4]`` world-frame rigid parts).
    """
    for name, value in (("num_points", num_points), ("num_target_points", num_target_points or 1)):
        if int(value) != value or value < 1:
            raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
    if num_objects < 0:
        raise InvalidArgumentError(f"num_objects must be >= 0, got {num_objects}")
    if not 0.0 < overlap <= 1.0:
        raise InvalidArgumentError(f"overlap must lie in (0, 1], got {overlap}")
    if not 0.0 <= ground_fraction <= 1.0:
        raise InvalidArgumentError(f"ground_fraction must lie in [0, 1], got {ground_fraction}")
    check_positive(noise, "noise", allow_zero=True)
    check_positive(extent, "extent")
    rng = np.random.default_rng(seed)
    ground_z = -float(sensor_height)
    objects = _make_objects(rng, num_objects, extent, ground_z, max_object_speed, nonrigid, static_fraction)
    scene = _Scene(objects, extent, ground_z, ground_fraction)

    sensor1 = _rigid(rng.uniform(-0.05, 0.05), np.array([ego_speed, 0.0, 0.0])) if ego_motion else np.eye(4)
    world_to_frame1 = np.linalg.inv(sensor1)
    x_cut = -extent + 2 * extent * overlap  # the target sees world x < x_cut (at t1)

    src0, src1, labels = scene.sample(num_points, rng, time=0)
    flow = _apply(world_to_frame1, src1) - src0
    mask = src1[:, 0] < x_cut if overlap < 1.0 else np.ones(num_points, dtype=bool)

    n_target = num_target_points or num_points
    target_world = np.zeros((0, 3))
    for _ in range(100):  # rejection-sample the target's visible part
        _, t1, _ = scene.sample(max(n_target, 256), rng, time=1)
        target_world = np.concatenate([target_world, t1[t1[:, 0] < x_cut] if overlap < 1.0 else t1])
        if len(target_world) >= n_target:
            break
    if len(target_world) < n_target:
        raise InvalidArgumentError(f"overlap={overlap} leaves too little of the scene visible in the target")
    target = _apply(world_to_frame1, target_world[:n_target])

    source = src0
    if noise > 0:
        source = source + rng.normal(0.0, noise, source.shape)
        target = target + rng.normal(0.0, noise, target.shape)
    motions = np.stack([o.motion for o in objects]) if objects else np.zeros((0, 4, 4))
    moving = np.array([False] + [not np.allclose(o.motion, np.eye(4)) or bool(o.bend.any()) for o in objects])
    return SceneFlowSample(
        source,
        target,
        flow,
        mask,
        name=f"synthetic-{seed}",
        point_data={"labels": labels, "dynamic": moving[labels]},
        meta={"ego_motion": world_to_frame1.astype(np.float32), "object_motions": motions.astype(np.float32)},
    )


__all__ = ["make_scene_flow_pair"]
