"""Stable object ids over frames: the regions of each frame are linked to the objects of the last.

Every object carries a sample of its pixels (its point tracks). From frame ``t-1`` to ``t`` the
points move with the optical flow, and each region of frame ``t`` is voted for by the objects whose
points land in it (a vote is the fraction of an object's points). Then:

* **match**: the Hungarian algorithm pairs objects and regions on the votes (at least ``min_vote``);
* **merge**: a region that also holds a large share of other objects' points (two objects touching
  or crossing) is split between them, each pixel going to the object with the nearest moved point,
  so every object keeps its id through the contact;
* **split**: an unmatched region voted for by an object already matched elsewhere joins that object
  when it lies within ``merge_gap`` pixels of it (a fragment); farther away it is a new object;
* **join**: two objects that touch and move alike, or a younger one lying mostly (``join_inside``)
  within the box of an older one it touches, become one (the older id stays): pieces of one mover,
  such as the legs of a walker;
* **birth / death**: other regions start new objects; an object without a region (hidden) or sharing
  one (in contact) moves on at its own last velocity for ``max_missing`` frames (and is picked up again if a region appears where its points are),
  then ends.

Objects seen in fewer than ``min_frames`` frames are dropped at the end and the ids renumbered
1, 2, ... in order of appearance.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


@dataclass
class _Object:
    id: int
    points: np.ndarray  # [P, 2] x, y in the current frame
    box: np.ndarray  # [4] last seen box
    missing: int = 0
    frames: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # px/frame when last seen alone
    shared: bool = False  # its last region was shared with another object (contact or occlusion)


@dataclass
class ObjectLinker:
    """Links per-frame region label maps into objects with stable ids (see the module notes)."""

    min_vote: float = 0.2
    merge_vote: float = 0.3
    merge_gap: float = 8.0
    join_tolerance: float = 0.75
    join_relative: float = 0.2
    join_inside: float = 0.6
    max_missing: int = 4
    points_per_object: int = 150
    seed: int = 0
    _objects: dict[int, _Object] = field(default_factory=dict)
    _next_id: int = 1
    _rng: np.random.Generator | None = None

    def reset(self) -> None:
        """End every object (a shot cut, or a frame whose motion could not be explained)."""
        self._objects.clear()

    def _sample(self, region: np.ndarray) -> np.ndarray:
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        ys, xs = np.nonzero(region)
        if len(xs) > self.points_per_object:
            pick = self._rng.choice(len(xs), self.points_per_object, replace=False)
            ys, xs = ys[pick], xs[pick]
        return np.stack([xs, ys], axis=1).astype(np.float32)

    def advance(self, flow: np.ndarray) -> None:
        """Move every object's points by ``flow [2, H, W]`` (from the previous frame to this one)."""
        _, h, w = flow.shape
        for obj in self._objects.values():
            if len(obj.points):
                coords = [obj.points[:, 1], obj.points[:, 0]]
                step = np.stack([ndimage.map_coordinates(flow[c], coords, order=1, mode="nearest") for c in range(2)], 1)
                if obj.missing or obj.shared:
                    # hidden or in contact: the flow at its points may be the occluder's; keep its own pace
                    step = np.broadcast_to(obj.velocity, step.shape)
                else:
                    obj.velocity = np.median(step, axis=0).astype(np.float32)
                moved = obj.points + step
                inside = (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= h - 1)
                obj.points = moved[inside]
                if len(step):
                    obj.box = obj.box + np.array([*np.median(step, axis=0), 0, 0], np.float32)

    def update(self, regions: np.ndarray, velocity: np.ndarray | None = None) -> np.ndarray:
        """Link the regions ``int [H, W]`` (0 = background) of this frame; returns ``int64 [H, W]`` object ids.

        ``velocity [2, H, W]`` (residual motion) lets two objects that touch and move alike become one
        (the older id stays): pieces of one mover that were taken for two.
        """
        h, w = regions.shape
        region_ids = np.unique(regions)
        region_ids = region_ids[region_ids > 0]
        live = list(self._objects)
        out = np.zeros((h, w), np.int64)
        # votes: share of each object's moved points inside each region (regions widened by 2 px)
        widened = regions
        if len(region_ids):
            distance, (iy, ix) = ndimage.distance_transform_edt(regions == 0, return_indices=True)
            widened = np.where(distance <= 2, regions[iy, ix], 0)
        votes = np.zeros((len(live), len(region_ids)))
        index_of = {int(r): k for k, r in enumerate(region_ids)}
        for a, key in enumerate(live):
            pts = self._objects[key].points
            if not len(pts):
                continue
            hit = widened[np.clip(np.round(pts[:, 1]).astype(int), 0, h - 1), np.clip(np.round(pts[:, 0]).astype(int), 0, w - 1)]
            for r, count in zip(*np.unique(hit[hit > 0], return_counts=True)):
                votes[a, index_of[int(r)]] = count / len(pts)
        owner_of_region: dict[int, list[int]] = {k: [] for k in range(len(region_ids))}
        matched: dict[int, int] = {}
        if votes.size:
            rows, cols = linear_sum_assignment(-votes)
            for a, r in zip(rows, cols):
                if votes[a, r] >= self.min_vote:
                    matched[a] = r
                    owner_of_region[r].append(a)
        # merges: unmatched objects with a large share of their points in a matched region
        for a in range(len(live)):
            if a in matched or not votes.shape[1]:
                continue
            r = int(np.argmax(votes[a]))
            if votes[a, r] >= self.merge_vote and owner_of_region[r]:
                owner_of_region[r].append(a)
                matched[a] = r
        boxes_of_owner: dict[int, np.ndarray] = {}
        for a, key in enumerate(live):
            self._objects[key].shared = len(owner_of_region.get(matched.get(a, -1), [])) > 1
        for r, owners in owner_of_region.items():
            region = regions == region_ids[r]
            if len(owners) == 1:
                out[region] = live[owners[0]]
            elif len(owners) > 1:
                self._split_between(region, [live[a] for a in owners], out)
            for a in owners:
                part = out == live[a]
                if part.any():
                    boxes_of_owner[a] = _box(part)
        # unmatched regions: fragments of a matched object, re-found coasting objects, or new objects
        for r, owners in owner_of_region.items():
            if owners:
                continue
            region = regions == region_ids[r]
            box = _box(region)
            target = None
            if votes.shape[0]:
                a = int(np.argmax(votes[:, r]))
                if votes[a, r] >= self.min_vote and a in boxes_of_owner and _gap(box, boxes_of_owner[a]) <= self.merge_gap:
                    target = live[a]
            if target is None:
                target, self._next_id = self._next_id, self._next_id + 1
                self._objects[target] = _Object(id=target, points=np.zeros((0, 2), np.float32), box=box)
            out[region] = target
        if velocity is not None:
            self._join_alike(out, velocity)
        # state of every object for the next frame
        seen = set(np.unique(out[out > 0]).tolist())
        for key in list(self._objects):
            obj = self._objects[key]
            if key in seen:
                part = out == key
                obj.points, obj.box, obj.missing = self._sample(part), _box(part), 0
                obj.frames += 1
            else:
                obj.missing += 1
                if obj.missing > self.max_missing:
                    del self._objects[key]
        return out

    def _join_alike(self, out: np.ndarray, velocity: np.ndarray) -> None:
        """Relabel, in place, objects touching an older object that moves alike (median velocities within
        ``max(join_tolerance, join_relative x speed)``)."""
        keys = sorted(int(k) for k in np.unique(out[out > 0]))
        if len(keys) < 2:
            return
        median = {k: np.median(velocity[:, out == k], axis=1) for k in keys}
        grown = {k: cv2.dilate((out == k).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) for k in keys}
        for young in reversed(keys):  # larger ids are younger
            for old in keys:
                if old >= young or not (grown[old] & (out == young)).any():
                    continue
                diff = float(np.linalg.norm(median[old] - median[young]))
                speed = float(max(np.linalg.norm(median[old]), np.linalg.norm(median[young])))
                inside = _inside_fraction(_box(out == young), _box(out == old))
                if diff <= max(self.join_tolerance, self.join_relative * speed) or inside >= self.join_inside:
                    out[out == young] = old
                    grown[old] |= grown[young]
                    break

    def _split_between(self, region: np.ndarray, keys: list[int], out: np.ndarray) -> None:
        """Give each pixel of ``region`` to the object (of ``keys``) with the nearest moved point."""
        points = np.concatenate([self._objects[k].points for k in keys])
        owner = np.concatenate([np.full(len(self._objects[k].points), k) for k in keys])
        ys, xs = np.nonzero(region)
        _, nearest = cKDTree(points).query(np.stack([xs, ys], axis=1))
        out[ys, xs] = owner[nearest]


def _box(mask: np.ndarray) -> np.ndarray:
    """``float32 [4]`` (left, top, width, height) of the pixels of ``mask``."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    return np.array([x, y, w, h], np.float32)


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Distance in pixels between two boxes (0 when they overlap)."""
    dx = max(a[0] - (b[0] + b[2]), b[0] - (a[0] + a[2]), 0.0)
    dy = max(a[1] - (b[1] + b[3]), b[1] - (a[1] + a[3]), 0.0)
    return float(np.hypot(dx, dy))


def _inside_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of box ``a``'s area inside box ``b``."""
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return float(w * h / max(a[2] * a[3], 1e-9))
