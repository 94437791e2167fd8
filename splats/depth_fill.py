"""Image-guided densification of sparse, uneven depth: an edge-aware weighted least-squares fill.

Triangulated depth is missing where the flow is unreliable (occlusions, moving objects, too little
parallax) and noisy where the parallax is small. :func:`edge_aware_fill` turns it into a dense map
by solving, for the inverse depth ``u`` (affine in the image on any plane, so smooth surfaces stay
exact under linear propagation),

    min_u  sum_i c_i (u_i - u0_i)^2  +  lambda * sum_{i~j} w_ij (u_i - u_j)^2,
    w_ij = exp(-|I_i - I_j|^2 / (2 sigma^2)),

over the 4-neighbour pixel graph: data where the confidence ``c`` is high, smoothness that stops at
image edges (the weights are those of a joint-bilateral filter on the image; the solve is the
weighted-least-squares / colourisation-by-optimisation form of edge-aware propagation, so holes of
any size are filled from their surroundings along similar colours). The sparse system is solved with
SciPy's sparse direct solver. Frames larger than ``max_pixels`` are solved at a reduced size first;
the upsampled solution then enters a full-resolution solve (in overlapping bands) as weak data, so
the result keeps the guide's fine edges at a bounded cost.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from motion4d.checks import check_finite, check_positive, check_shape
from motion4d.errors import InvalidArgumentError


def _edge_weights(image: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal ``[H, W-1]`` and vertical ``[H-1, W]`` affinities of ``image [H, W, C]`` in [0, 1]."""
    dx = ((image[:, 1:] - image[:, :-1]) ** 2).sum(-1)
    dy = ((image[1:] - image[:-1]) ** 2).sum(-1)
    return np.exp(-dx / (2 * sigma * sigma)), np.exp(-dy / (2 * sigma * sigma))


def _solve(values: np.ndarray, confidence: np.ndarray, image: np.ndarray, smoothness: float, sigma: float) -> np.ndarray:
    h, w = values.shape
    n = h * w
    wx, wy = _edge_weights(image, sigma)
    wx = smoothness * (wx + 1e-4)  # a small floor keeps every pixel connected across strong edges
    wy = smoothness * (wy + 1e-4)
    index = np.arange(n).reshape(h, w)
    rows = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    cols = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    weights = np.concatenate([wx.ravel(), wy.ravel()])
    adjacency = sp.coo_matrix((weights, (rows, cols)), shape=(n, n))
    adjacency = (adjacency + adjacency.T).tocsr()
    laplacian = sp.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency
    c = confidence.ravel().astype(np.float64)
    system = (sp.diags(c) + laplacian).tocsc()
    solution = spsolve(system, c * values.ravel().astype(np.float64))
    return solution.reshape(h, w)


def edge_aware_fill(values: np.ndarray, confidence: np.ndarray, image: np.ndarray, *, smoothness: float = 1.0,
                    sigma_color: float = 0.08, max_pixels: int = 40_000) -> np.ndarray:
    """Dense ``float64 [H, W]`` from ``values [H, W]`` known with ``confidence [H, W]`` (0 = unknown).

    Args:
        values: the sparse / noisy measurements (any finite value where ``confidence`` is 0).
        confidence: weights >= 0 of the data term (e.g. 1 / variance, scaled to about [0, 1]).
        image: the guide, ``uint8`` or float in [0, 1], ``[H, W, 3]`` or ``[H, W]``.
        smoothness: ``lambda``: larger values smooth more (relative to a confidence of 1).
        sigma_color: colour distance (guide in [0, 1], summed over channels) at which propagation
            across an edge falls to ``exp(-1/2)``.
        max_pixels: larger frames are solved at a reduced size, then refined at full size in bands.

    Raises:
        ShapeError / InvalidArgumentError: mismatched shapes, negative confidence, or no data at all.
    """
    dims = check_shape(values, "values", ("H", "W"))
    check_shape(confidence, "confidence", (dims["H"], dims["W"]))
    guide = np.asarray(image)
    if guide.ndim == 2:
        guide = guide[..., None]
    check_shape(guide, "image", (dims["H"], dims["W"], None))
    check_positive(smoothness, "smoothness")
    check_positive(sigma_color, "sigma_color")
    confidence = np.asarray(confidence, np.float64)
    check_finite(confidence, "confidence")
    if (confidence < 0).any():
        raise InvalidArgumentError("confidence must be >= 0")
    if not (confidence > 0).any():
        raise InvalidArgumentError("edge_aware_fill needs at least one pixel with confidence > 0")
    values = np.where(confidence > 0, np.asarray(values, np.float64), 0.0)
    check_finite(values, "values")
    guide = guide.astype(np.float64) / (255.0 if guide.dtype == np.uint8 else 1.0)
    h, w = dims["H"], dims["W"]
    if h * w <= max_pixels:
        return _solve(values, confidence, guide, smoothness, sigma_color)
    # reduced solve: area-average the data (weighted by confidence), then a full-size refinement
    factor = math.sqrt(max_pixels / (h * w))
    hs, ws = max(2, int(h * factor)), max(2, int(w * factor))
    weight_small = cv2.resize(confidence, (ws, hs), interpolation=cv2.INTER_AREA)
    value_small = cv2.resize(values * confidence, (ws, hs), interpolation=cv2.INTER_AREA)
    value_small = np.where(weight_small > 0, value_small / np.maximum(weight_small, 1e-12), 0.0)
    guide_small = cv2.resize(guide, (ws, hs), interpolation=cv2.INTER_AREA).reshape(hs, ws, -1)
    coarse = _solve(value_small, weight_small, guide_small, smoothness, sigma_color)
    up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    # one full-resolution pass: the upsampled solution as weak data keeps the fine edges of the guide
    blend = np.where(confidence > 0, confidence, 0.0) + 0.05
    data = (confidence * values + 0.05 * up) / blend
    return _solve_tiles(data, blend, guide, smoothness, sigma_color, max_pixels)


def _solve_tiles(values: np.ndarray, confidence: np.ndarray, guide: np.ndarray, smoothness: float, sigma: float,
                 max_pixels: int) -> np.ndarray:
    """The full-resolution solve in overlapping horizontal bands of at most ``max_pixels`` pixels."""
    h, w = values.shape
    band = max(8, max_pixels // w)
    overlap = min(16, band // 4)
    out = np.zeros((h, w))
    weight = np.zeros((h, 1))
    start = 0
    while start < h:
        lo, hi = max(0, start - overlap), min(h, start + band + overlap)
        part = _solve(values[lo:hi], confidence[lo:hi], guide[lo:hi], smoothness, sigma)
        ramp = np.ones((hi - lo, 1))
        if lo > 0:
            ramp[: 2 * overlap, 0] = np.linspace(0.0, 1.0, 2 * overlap)[: hi - lo]
        out[lo:hi] += part * ramp
        weight[lo:hi] += ramp
        start += band
    return out / np.maximum(weight, 1e-12)
