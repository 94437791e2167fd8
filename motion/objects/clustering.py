"""Moving pixels of one frame -> object regions, by position and motion (a graph clustering).

The moving mask is cleaned (opening, closing), sampled on a grid of ``step`` pixels, and the samples
become the nodes of a graph: two samples are linked when they are grid neighbours (8-connectivity)
and their residual velocities agree (difference at most ``max(tolerance, relative x speed)``). The
connected components of the graph (:func:`scipy.sparse.csgraph.connected_components`) are the
regions, so touching objects that move differently come apart while an object whose parts move
alike stays whole. Every moving pixel then takes the label of the nearest sample, at most one grid
step away.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


def clean_mask(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """``bool [H, W]``: ``mask`` opened (removes specks) then closed (fills small gaps)."""
    m = mask.astype(np.uint8)
    small = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    large = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * radius + 1,) * 2)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, small)
    return cv2.morphologyEx(m, cv2.MORPH_CLOSE, large).astype(bool)


def cluster_moving(mask: np.ndarray, velocity: np.ndarray, step: int = 4, tolerance: float = 1.0,
                   relative: float = 0.5, min_area: int = 100, separation: float = 4.0) -> np.ndarray:
    """``int32 [H, W]`` region labels (0 = background, 1.. regions) of the moving ``mask [H, W]``.

    Args:
        velocity: ``[2, H, W]`` residual velocity of every pixel.
        step: grid spacing of the samples in pixels.
        tolerance, relative: two neighbouring samples are linked when their velocities differ by at
            most ``max(tolerance, relative * max(|v_a|, |v_b|))`` px/frame.
        min_area: regions smaller than this (pixels) are dropped.
        separation: a region whose velocities form two groups this well separated (Fisher ratio
            ``|c1 - c2|² / (s1² + s2²)``, and ``|c1 - c2| > tolerance``) is split in two (recursively).
    """
    h, w = mask.shape
    offset = step // 2
    ys, xs = np.mgrid[offset:h:step, offset:w:step]
    on = mask[ys, xs]
    ys, xs = ys[on], xs[on]
    labels = np.zeros((h, w), np.int32)
    if len(xs) == 0:
        return labels
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    v = velocity[:, ys, xs].T.astype(np.float64)
    pairs = cKDTree(points).query_pairs(r=step * 1.5, output_type="ndarray")
    if len(pairs):
        diff = np.linalg.norm(v[pairs[:, 0]] - v[pairs[:, 1]], axis=1)
        speed = np.maximum(np.linalg.norm(v[pairs[:, 0]], axis=1), np.linalg.norm(v[pairs[:, 1]], axis=1))
        pairs = pairs[diff <= np.maximum(tolerance, relative * speed)]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points), len(points))) \
        if len(pairs) else coo_matrix((len(points), len(points)))
    _, component = connected_components(graph, directed=False)
    component = _split_by_motion(component, points, v, pairs, step, tolerance, min_area, separation)
    sizes = np.bincount(component)
    keep = sizes * step * step >= min_area
    order = np.argsort(-sizes)
    new_label = np.zeros(len(sizes), np.int32)
    new_label[order[keep[order]]] = np.arange(1, keep.sum() + 1)
    seeds = np.zeros((h, w), np.int32)
    seeds[ys, xs] = new_label[component]
    # every moving pixel takes the label of the nearest sample within one step
    distance, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    labels = np.where(mask & (distance <= step), seeds[iy, ix], 0).astype(np.int32)
    return labels


def _split_by_motion(component: np.ndarray, points: np.ndarray, velocity: np.ndarray, pairs: np.ndarray, step: int,
                     tolerance: float, min_area: int, separation: float) -> np.ndarray:
    """Split components whose sample velocities form two well-separated groups (2-means, recursively);
    each part is then re-split into its spatially connected pieces."""
    component = component.copy()
    queue = list(np.unique(component))
    next_label = int(component.max()) + 1
    min_samples = max(4, min_area // (step * step))
    while queue:
        label = queue.pop()
        members = np.nonzero(component == label)[0]
        if len(members) < 2 * min_samples:
            continue
        v = velocity[members]
        centres, assign = kmeans2(v, 2, seed=0, minit="++")
        counts = np.bincount(assign, minlength=2)
        if counts.min() < min_samples:
            continue
        gap = float(np.sum((centres[0] - centres[1]) ** 2))
        spread = sum(float(np.mean(np.sum((v[assign == k] - centres[k]) ** 2, axis=1))) for k in range(2))
        if gap <= tolerance ** 2 or gap < separation * max(spread, 1e-6):
            continue
        # spatially connected pieces of each velocity group become components
        local = {int(m): k for k, m in enumerate(members)}
        inside = np.isin(pairs[:, 0], members) & np.isin(pairs[:, 1], members) if len(pairs) else np.zeros(0, bool)
        a = np.array([local[int(i)] for i in pairs[inside, 0]], np.int64)
        b = np.array([local[int(i)] for i in pairs[inside, 1]], np.int64)
        same = assign[a] == assign[b]
        graph = coo_matrix((np.ones(int(same.sum())), (a[same], b[same])), shape=(len(members), len(members)))
        _, pieces = connected_components(graph, directed=False)
        for piece in np.unique(pieces):
            component[members[pieces == piece]] = next_label
            queue.append(next_label)
            next_label += 1
    return component
