"""A training-free depth prior from the video itself: two-view geometry on the package's own flow.

Nothing is downloaded: depth comes from the parallax between frames of the video.

1. **pairs**: frame ``t`` is paired with ``t + g``; the flow ``t -> t + g`` is the chain of the
   consecutive flows. The gap ``g`` is the smallest of 1, 2, 4, ... (up to ``max_gap``) whose pairs
   show ``target_parallax`` pixels of parallax (slow cameras get wider baselines).
2. **relative pose**: RANSAC on the essential matrix (OpenCV ``findEssentialMat``, five-point
   solver; USAC-accurate, LMedS and plain RANSAC candidates, the one with the lowest median Sampson
   distance over all matches kept) over forward-backward-consistent flow correspondences, then
   ``recoverPose`` (cheirality) -> rotation and unit translation. A homography is fitted to the same correspondences: where it
   explains the motion (the matches' median distance to it, the parallax, is below ``min_parallax``
   px), the camera only rotates (or sees a plane) and the pair gives no depth.
3. **triangulation** (OpenCV ``triangulatePoints``) of every pixel whose flow is consistent and obeys
   the pair's epipolar geometry (Sampson distance: moving objects are left out), in both frames of
   the pair (the second by scattering the points to their matched pixels, nearest wins). Each depth
   gets a confidence from its rotation-compensated parallax (depth noise ~ flow noise / parallax).
   **Slow movers**: an object drifting off its epipolar line by less than the threshold per frame
   passes each pair's test and is triangulated as if it stood still, at a wrong depth that changes
   from frame to frame. The Sampson test is repeated on the flows chained over gaps of 1-4 frames,
   where that drift adds up (:func:`independent_motion_masks`); those pixels (dilated) keep no depth.
4. **one scale for the video**: each pair has its own unit baseline. Where two pairs see the same
   frame their depth ratio is exact; consecutive frames are linked by the depth ratio of flow-matched
   pixels (approximate: it ignores the camera's forward step). A weighted least-squares solve over
   the log-scales of all pairs puts them on one scale. **Convention**: the median depth of frame 0
   is 1 (scene unit), as for every depth GFlow reads (it learns a scale and shift anyway).
5. **densification guided by the image**: the fused inverse depth is filled and smoothed by the
   edge-aware least-squares solve of :mod:`splats.depth_fill` (holes, moving objects, low parallax):
   a moving object takes the depth of what surrounds it.

When no pair translates, the prior is a constant-depth plane (depth 1) and
:attr:`DepthEstimate.notice` says so; frames without any usable pair copy the nearest frame's depth.
All flows are ``[2, H, W]`` (u right, v down) anchored at the source frame.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from motion.flow_geometry import warp_backward
from motion4d.checks import check_finite, check_positive, check_shape
from motion4d.errors import InvalidArgumentError

from .depth_fill import edge_aware_fill
from .epipolar import dilate_mask, epipolar_moving_mask, forward_backward_occlusion


@dataclass
class TwoViewDepthConfig:
    """Settings of :func:`two_view_depth`.

    Attributes:
        max_gap: widest frame gap tried for the pairs (1, 2, 4, ... up to this).
        target_parallax: parallax (px, median distance of the matches to the best homography) that
            ends the search for a wider gap.
        min_parallax: below this the pair has no usable translation (px).
        ransac_threshold: RANSAC inlier distance to the epipolar line (px); pixels with twice this
            Sampson distance are treated as moving.
        max_points: correspondences drawn for RANSAC.
        min_pixel_parallax: pixels with less rotation-compensated parallax get no depth (px).
        full_confidence_parallax: parallax (px) at which a depth gets confidence 1 (quadratic below).
        smoothness, sigma_color: the edge-aware fill (:func:`splats.depth_fill.edge_aware_fill`).
        depth_range: triangulated depths outside ``[lo, hi] x`` the frame's median are dropped.
        mover_gaps, mover_threshold, mover_dilation: pixels whose flow chained over any of these frame
            gaps breaks the pair's epipolar geometry by more than ``mover_threshold`` px are moving, and
            with ``mover_dilation`` px around them keep no triangulated depth (``()`` disables it). Tune
            scene of ``bench/gflow_quality.py``: GFlow's held-out PSNR 21.41 -> 23.10 dB, AJ 0.624 -> 0.641.
        seed: sampling of the RANSAC correspondences.
    """

    max_gap: int = 4
    target_parallax: float = 0.7
    min_parallax: float = 0.3
    ransac_threshold: float = 0.75
    max_points: int = 6000
    min_pixel_parallax: float = 0.2
    full_confidence_parallax: float = 2.0
    smoothness: float = 0.3
    sigma_color: float = 0.08
    depth_range: tuple[float, float] = (0.05, 20.0)
    mover_gaps: tuple[int, ...] = (1, 2, 3, 4)
    mover_threshold: float = 1.0
    mover_dilation: int = 4
    seed: int = 0

    def validate(self) -> "TwoViewDepthConfig":
        if int(self.max_gap) < 1:
            raise InvalidArgumentError(f"TwoViewDepthConfig.max_gap must be >= 1, got {self.max_gap}")
        for name in ("target_parallax", "min_parallax", "ransac_threshold", "max_points", "full_confidence_parallax",
                     "smoothness", "sigma_color", "mover_threshold"):
            check_positive(getattr(self, name), f"TwoViewDepthConfig.{name}")
        check_positive(int(self.mover_dilation), "TwoViewDepthConfig.mover_dilation", allow_zero=True)
        for gap in self.mover_gaps:
            check_positive(int(gap), "TwoViewDepthConfig.mover_gaps")
        lo, hi = self.depth_range
        if not 0 < lo < 1 < hi:
            raise InvalidArgumentError(f"TwoViewDepthConfig.depth_range must satisfy 0 < lo < 1 < hi, got {self.depth_range}")
        return self


@dataclass
class DepthEstimate:
    """Depth maps for a video.

    Attributes:
        depth: ``float32 [T, H, W]`` > 0 (0 = unknown where a provider has no value).
        method: what made it (``"two-view"``, ``"constant"``, ``"depth-anything"``, ``"folder"``, ...).
        notice: a sentence for the user when the estimate is a fallback (e.g. a constant plane).
        confidence: optional ``float32 [T, H, W]`` of the measurements before densification.
        info: JSON-able details (chosen gap, pair poses, parallax, timings).
    """

    depth: np.ndarray
    method: str
    notice: str | None = None
    confidence: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class PairGeometry:
    """Relative pose of a frame pair: ``X_b = R X_a + t`` (OpenCV camera axes), ``|t| = 1``.

    ``parallax`` is the median distance (px) of the flow's matches to the best homography;
    ``translates`` says whether it reaches ``min_parallax``.
    """

    rotation: np.ndarray
    translation: np.ndarray
    inlier_fraction: float
    parallax: float
    translates: bool


def _pixel_grid(h: int, w: int) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)


def _sampson(x1: np.ndarray, x2: np.ndarray, fundamental: np.ndarray) -> np.ndarray:
    """Sampson distance (px) of homogeneous matches ``x1, x2 [N, 3]`` to ``fundamental [3, 3]``."""
    fx1, ftx2 = x1 @ fundamental.T, x2 @ fundamental
    return np.abs((x2 * fx1).sum(1)) / np.sqrt(fx1[:, 0] ** 2 + fx1[:, 1] ** 2 + ftx2[:, 0] ** 2 + ftx2[:, 1] ** 2
                                               + 1e-12)


def pair_geometry(flow: np.ndarray, K: np.ndarray, valid: np.ndarray | None = None,
                  config: TwoViewDepthConfig | None = None) -> PairGeometry | None:
    """Relative pose from a dense flow ``[2, H, W]`` (RANSAC on the essential matrix); None if degenerate."""
    cfg = (config or TwoViewDepthConfig()).validate()
    check_shape(flow, "flow", (2, "H", "W"))
    h, w = flow.shape[1:]
    p1 = _pixel_grid(h, w)
    p2 = p1 + flow.reshape(2, -1).T.astype(np.float64)
    keep = (p2[:, 0] >= 0) & (p2[:, 0] <= w - 1) & (p2[:, 1] >= 0) & (p2[:, 1] <= h - 1)
    if valid is not None:
        keep &= valid.reshape(-1)
    index = np.nonzero(keep)[0]
    if len(index) < 32:
        return None
    if len(index) > cfg.max_points:
        index = np.sort(np.random.default_rng(cfg.seed).choice(index, cfg.max_points, replace=False))
    a, b = p1[index], p2[index]
    K = np.asarray(K, np.float64)
    # Candidates from several robust estimators (USAC_ACCURATE: RANSAC with local optimisation and a
    # least-squares polish; LMedS; plain RANSAC), kept by the lowest median Sampson distance over every
    # trusted correspondence. Small baselines leave a near-ambiguity between a sideways translation and a
    # turn (the mirrored solution fits almost as well); one estimator on one sample picks it now and then.
    everything = np.nonzero(keep)[0]
    x1 = np.hstack([p1[everything], np.ones((len(everything), 1))])
    x2 = np.hstack([p2[everything], np.ones((len(everything), 1))])
    k_inv = np.linalg.inv(K)
    methods = [getattr(cv2, "USAC_ACCURATE", cv2.RANSAC), cv2.LMEDS, cv2.RANSAC]
    best = None
    for method in methods:
        essential, mask = cv2.findEssentialMat(a, b, K, method, 0.999, cfg.ransac_threshold)
        if essential is None or essential.shape[0] < 3 or mask is None:
            continue
        for i in range(0, essential.shape[0] - 2, 3):  # the five-point solver may return several matrices
            e = essential[i:i + 3]
            score = float(np.median(_sampson(x1, x2, k_inv.T @ e @ k_inv)))
            if best is None or score < best[0]:
                best = (score, e, mask)
    if best is None:
        return None
    _, essential, mask = best
    # cheirality votes only from points with >= ~0.5 px of parallax (farther than focal / 0.5 baselines
    # they are as likely in front as behind: OpenCV's default of 50 baselines drops real scenes
    # filmed with small steps, no limit lets noise pick the mirrored solution)
    count, rotation, translation, pose_mask, _ = cv2.recoverPose(
        essential, a, b, K, distanceThresh=2.0 * float(K[0, 0]), mask=mask.copy())
    translation = translation.ravel()
    inliers = pose_mask.ravel() > 0
    if inliers.sum() < 16:
        return None
    # parallax: how far the correspondences are from the best homography (a rotating camera, or a plane,
    # is a homography); the median ignores moving objects as long as they cover under half the frame
    homography, _ = cv2.findHomography(a, b, methods[0], cfg.ransac_threshold)
    if homography is None:
        parallax = float("inf")
    else:
        mapped = cv2.perspectiveTransform(a[None], homography)[0]
        parallax = float(np.median(np.linalg.norm(b - mapped, axis=1)))
    translation = translation / max(np.linalg.norm(translation), 1e-12)
    return PairGeometry(rotation, translation, float(inliers.mean()), parallax, parallax >= cfg.min_parallax)


def triangulate_pair(flow: np.ndarray, K: np.ndarray, geometry: PairGeometry, valid: np.ndarray | None = None,
                     config: TwoViewDepthConfig | None = None) -> dict[str, np.ndarray]:
    """Depth of both frames of a pair from its flow ``[2, H, W]`` and relative pose.

    Returns ``depth_a`` / ``confidence_a`` ``[H, W]`` on frame a's grid and ``depth_b`` /
    ``confidence_b`` ``[H, W]`` on frame b's grid (scattered, nearest surface wins), in units of the
    pair's baseline; 0 where a pixel has no depth.
    """
    cfg = (config or TwoViewDepthConfig()).validate()
    h, w = flow.shape[1:]
    K = np.asarray(K, np.float64)
    p1 = _pixel_grid(h, w)
    p2 = p1 + flow.reshape(2, -1).T.astype(np.float64)
    r, t = geometry.rotation, geometry.translation
    proj_a = K @ np.hstack([np.eye(3), np.zeros((3, 1))])
    proj_b = K @ np.hstack([r, t[:, None]])
    homog = cv2.triangulatePoints(proj_a, proj_b, p1.T, p2.T)
    with np.errstate(divide="ignore", invalid="ignore"):
        points = (homog[:3] / homog[3]).T
    z_a = points[:, 2]
    in_b = points @ r.T + t
    z_b = in_b[:, 2]
    # Sampson distance of each correspondence to the pair's epipolar geometry (moving content fails it)
    k_inv = np.linalg.inv(K)
    essential = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ r
    fundamental = k_inv.T @ essential @ k_inv
    x1 = np.hstack([p1, np.ones((len(p1), 1))])
    x2 = np.hstack([p2, np.ones((len(p2), 1))])
    sampson = _sampson(x1, x2, fundamental)
    # rotation-compensated parallax: how far the match is from where a pure rotation would put it
    rotated = x1 @ (K @ r @ k_inv).T
    parallax = np.linalg.norm(p2 - rotated[:, :2] / rotated[:, 2:3], axis=1)
    ok = (np.isfinite(z_a) & np.isfinite(z_b) & (z_a > 0) & (z_b > 0) & (sampson < 2 * cfg.ransac_threshold)
          & (parallax >= cfg.min_pixel_parallax)
          & (p2[:, 0] >= 0) & (p2[:, 0] <= w - 1) & (p2[:, 1] >= 0) & (p2[:, 1] <= h - 1))
    if valid is not None:
        ok &= valid.reshape(-1)
    if ok.sum() >= 16:
        median = np.median(z_a[ok])
        lo, hi = cfg.depth_range
        ok &= (z_a > lo * median) & (z_a < hi * median)
    confidence = np.minimum(1.0, (parallax / cfg.full_confidence_parallax) ** 2) * ok
    depth_a = np.where(ok, z_a, 0.0).reshape(h, w)
    conf_a = confidence.reshape(h, w)
    # scatter into frame b: nearest pixel, nearest surface first
    depth_b = np.zeros(h * w)
    conf_b = np.zeros(h * w)
    idx = np.nonzero(ok)[0]
    if len(idx):
        px = np.clip(np.round(p2[idx]).astype(int), 0, [w - 1, h - 1])
        flat = px[:, 1] * w + px[:, 0]
        order = np.argsort(-z_b[idx])  # far first: later (nearer) writes win
        depth_b[flat[order]] = z_b[idx][order]
        conf_b[flat[order]] = confidence[idx][order]
    return {"depth_a": depth_a, "confidence_a": conf_a, "depth_b": depth_b.reshape(h, w),
            "confidence_b": conf_b.reshape(h, w)}


def chain_flows(flows: list[torch.Tensor]) -> torch.Tensor:
    """Flow ``a -> a + n`` ``[2, H, W]`` from the consecutive flows ``[a -> a+1, ..., a+n-1 -> a+n]``."""
    total = flows[0].clone()
    for nxt in flows[1:]:
        total = total + warp_backward(nxt, total)
    return total


def _consistent(forward: torch.Tensor, backward: torch.Tensor | None) -> torch.Tensor:
    """``bool [T-1, H, W]``: source pixels whose forward flow passes the forward-backward check."""
    if backward is None:
        return torch.ones(forward.shape[0], *forward.shape[2:], dtype=torch.bool)
    return torch.stack([~forward_backward_occlusion(f, b) for f, b in zip(forward, backward)])


def _pairs_for_gap(forward: torch.Tensor, consistent: torch.Tensor, gap: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(a, flow a -> a+gap, valid)`` for every start frame ``a``."""
    out = []
    for a in range(forward.shape[0] - gap + 1):
        flow = chain_flows([forward[a + i] for i in range(gap)])
        valid = consistent[a].clone()
        position = torch.zeros_like(flow)
        for i in range(1, gap):  # a chained match is trusted when every link is
            position = chain_flows([forward[a + j] for j in range(i)])
            valid &= warp_backward(consistent[a + i].float()[None], position)[0] > 0.99
        out.append((a, flow, valid))
    return out


def _gap_candidates(max_gap: int, frames: int) -> list[int]:
    """1, 2, 4, ... up to ``max_gap``, and at most half the video so that every frame is in a pair."""
    gaps, g = [], 1
    while g <= max(1, min(max_gap, frames // 2)):
        gaps.append(g)
        g *= 2
    return gaps


def _sample_nearest(field: np.ndarray, flow: torch.Tensor) -> np.ndarray:
    """``field [H, W]`` of the target frame read at the nearest pixel to ``p + flow(p)`` (0 outside):
    sparse maps must not be blended with their holes."""
    h, w = field.shape
    target = _pixel_grid(h, w) + flow.reshape(2, -1).T.numpy().astype(np.float64)
    px = np.round(target).astype(int)
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    out = np.zeros(h * w)
    out[inside] = field[px[inside, 1], px[inside, 0]]
    return out.reshape(h, w)


def _median_log_ratio(da: np.ndarray, db: np.ndarray, ca: np.ndarray, cb: np.ndarray) -> tuple[float, float]:
    """Median of ``log(da / db)`` where both have depth, and the number of such pixels."""
    both = (da > 0) & (db > 0) & (ca > 0) & (cb > 0)
    n = int(both.sum())
    if n < 32:
        return 0.0, 0.0
    return float(np.median(np.log(da[both] / db[both]))), float(n)


def independent_motion_masks(forward: Any, backward: Any, gaps: tuple[int, ...] = (1, 2, 3, 4),
                             threshold: float = 1.0, dilation: int = 0, seed: int = 0) -> np.ndarray:
    """``bool [T, H, W]``: pixels of frame t whose flow to ``t + g`` breaks that pair's epipolar geometry
    (Sampson distance above ``threshold`` px) for any gap ``g`` of ``gaps``.

    The flow ``t -> t + g`` is the chain of the consecutive ``forward [T-1, 2, H, W]`` flows, or of the
    ``backward`` ones toward ``t - g`` where ``t + g`` is past the end (None: such frames are checked
    with the gaps that fit). An object moving off its epipolar line by less than ``threshold`` px per
    frame passes every consecutive pair; over a gap of g frames its offset is g times larger.
    Masks are opened (radius 1) against single-pixel noise, then dilated by ``dilation`` px.
    """
    fwd = torch.as_tensor(np.asarray(forward), dtype=torch.float32)
    bwd = None if backward is None else torch.as_tensor(np.asarray(backward), dtype=torch.float32)
    for gap in gaps:
        check_positive(int(gap), "gaps")
    t_count = fwd.shape[0] + 1
    out = []
    for t in range(t_count):
        mask = torch.zeros(fwd.shape[2:], dtype=torch.bool)
        for gap in gaps:
            if t + gap < t_count:
                flow = chain_flows([fwd[t + i] for i in range(gap)])
            elif bwd is not None and t - gap >= 0:
                flow = chain_flows([bwd[t - 1 - i] for i in range(gap)])
            else:
                continue
            mask |= epipolar_moving_mask(flow, threshold, opening_radius=1, seed=seed)
        out.append(dilate_mask(mask, dilation).numpy())
    return np.stack(out)


def two_view_depth(frames: np.ndarray, forward: Any, backward: Any, K: Any,
                   config: TwoViewDepthConfig | None = None) -> DepthEstimate:
    """Depth for every frame of a video from its flow (see the module docstring).

    Args:
        frames: ``uint8 [T, H, W, 3]`` (T >= 2), the guide of the densification.
        forward: ``[T-1, 2, H, W]`` flow ``t -> t+1``; backward: ``[T-1, 2, H, W]`` ``t+1 -> t`` or None
            (then no forward-backward check).
        K: ``[3, 3]`` intrinsics.
    Returns:
        :class:`DepthEstimate` with ``method="two-view"`` (or ``"constant"`` with a notice).
    """
    cfg = (config or TwoViewDepthConfig()).validate()
    dims = check_shape(frames, "frames", ("T", "H", "W", 3))
    t_count, h, w = dims["T"], dims["H"], dims["W"]
    fwd = torch.as_tensor(np.asarray(forward), dtype=torch.float32)
    check_shape(fwd, "forward", (t_count - 1, 2, h, w))
    check_finite(fwd, "forward")
    bwd = None
    if backward is not None:
        bwd = torch.as_tensor(np.asarray(backward), dtype=torch.float32)
        check_shape(bwd, "backward", (t_count - 1, 2, h, w))
    K = np.asarray(K.detach().cpu() if isinstance(K, torch.Tensor) else K, np.float64)
    check_shape(K, "K", (3, 3))
    consistent = _consistent(fwd, bwd)

    # 1-2: pick the gap and the pairs' geometry
    chosen: list[tuple[int, np.ndarray, np.ndarray, PairGeometry]] = []
    gap_stats: dict[int, float] = {}
    best_gap, best_stat = None, -1.0
    for gap in _gap_candidates(cfg.max_gap, t_count):
        pairs = []
        for a, flow, valid in _pairs_for_gap(fwd, consistent, gap):
            flow_np, valid_np = flow.numpy(), valid.numpy()
            geometry = pair_geometry(flow_np, K, valid_np, cfg)
            pairs.append((a, flow_np, valid_np, geometry))
        parallaxes = [p[3].parallax for p in pairs if p[3] is not None]
        stat = float(np.median(parallaxes)) if parallaxes else 0.0
        gap_stats[gap] = stat
        if stat > best_stat:
            best_gap, best_stat, chosen = gap, stat, pairs
        if stat >= cfg.target_parallax:
            best_gap, chosen = gap, pairs
            break
    usable = [(a, f, v, g) for a, f, v, g in chosen if g is not None and g.translates]
    info: dict[str, Any] = {"config": asdict(cfg), "gap": best_gap, "parallax_by_gap": gap_stats,
                            "pairs": [{"frames": [a, a + best_gap], "parallax": None if g is None else g.parallax,
                                       "translates": bool(g is not None and g.translates),
                                       "rotation": None if g is None else g.rotation.tolist(),
                                       "translation": None if g is None else g.translation.tolist()}
                                      for a, _, _, g in chosen]}
    if not usable:
        notice = (f"the camera does not translate enough for two-view depth (parallax {best_stat:.2f} px < "
                  f"{cfg.min_parallax} px with frame gaps up to {max(gap_stats) if gap_stats else 1}): using a "
                  "constant-depth plane; pass depth maps or a depth network (--depth) for a better prior")
        return DepthEstimate(np.ones((t_count, h, w), np.float32), "constant", notice,
                             np.zeros((t_count, h, w), np.float32), info)

    # 3: triangulate every usable pair in both of its frames
    observations: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for k, (a, flow, valid, geometry) in enumerate(usable):
        tri = triangulate_pair(flow, K, geometry, valid, cfg)
        observations.setdefault(a, []).append((k, tri["depth_a"], tri["confidence_a"]))
        observations.setdefault(a + best_gap, []).append((k, tri["depth_b"], tri["confidence_b"]))

    # 4: one scale: least squares over the pairs' log-scales
    n_pairs = len(usable)
    rows: list[np.ndarray] = []
    rhs: list[float] = []
    weights: list[float] = []

    def edge(i: int, j: int, value: float, weight: float) -> None:  # log s_i - log s_j = value
        row = np.zeros(n_pairs)
        row[i] += 1.0
        row[j] -= 1.0
        rows.append(row)
        rhs.append(value)
        weights.append(weight)

    for frame, obs in observations.items():
        for x in range(len(obs)):
            for y in range(x + 1, len(obs)):
                (i, di, ci), (j, dj, cj) = obs[x], obs[y]
                if i == j:
                    continue
                ratio, count = _median_log_ratio(dj, di, cj, ci)  # s_i d_i = s_j d_j
                if count:
                    edge(i, j, ratio, count)
    for t in range(t_count - 1):  # consecutive frames through the flow (approximate)
        if t not in observations or t + 1 not in observations:
            continue
        flow = fwd[t]
        for i, di, ci in observations[t]:
            for j, dj, cj in observations[t + 1]:
                if i == j:
                    continue
                warped_d, warped_c = _sample_nearest(dj, flow), _sample_nearest(cj, flow)
                warped_c = np.where(consistent[t].numpy(), warped_c, 0.0)
                ratio, count = _median_log_ratio(warped_d, di, warped_c, ci)
                if count:
                    edge(i, j, ratio, 0.05 * count)
    for k, (a, _, _, _) in enumerate(usable):  # weak convention: each pair's frame-a median near 1
        d = observations[a][[o[0] for o in observations[a]].index(k)][1]
        row = np.zeros(n_pairs)
        row[k] = 1.0
        rows.append(row)
        rhs.append(-float(np.log(np.median(d[d > 0]))) if (d > 0).any() else 0.0)
        weights.append(1e-3 * h * w)
    sqrt_w = np.sqrt(np.asarray(weights))
    log_scale = np.linalg.lstsq(np.stack(rows) * sqrt_w[:, None], np.asarray(rhs) * sqrt_w, rcond=None)[0]
    scales = np.exp(log_scale)

    # 5: fuse in inverse depth and fill guided by the image
    movers = independent_motion_masks(fwd, bwd, tuple(cfg.mover_gaps), cfg.mover_threshold, cfg.mover_dilation,
                                      cfg.seed)
    inverse = np.zeros((t_count, h, w))
    confidence = np.zeros((t_count, h, w))
    for frame, obs in observations.items():
        num, den = np.zeros((h, w)), np.zeros((h, w))
        for k, d, c in obs:
            has = (d > 0) & (c > 0) & ~movers[frame]
            num[has] += c[has] / (scales[k] * d[has])
            den[has] += c[has]
        inverse[frame] = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
        confidence[frame] = den
    have = [t for t in range(t_count) if (confidence[t] > 0).sum() >= 16]
    if not have:
        notice = ("two-view triangulation left no usable depth (the flow's matches disagree with every pair's "
                  "geometry): using a constant-depth plane; pass depth maps or a depth network (--depth)")
        return DepthEstimate(np.ones((t_count, h, w), np.float32), "constant", notice,
                             np.zeros((t_count, h, w), np.float32), info)
    observed = inverse[confidence > 0]
    lo, hi = np.percentile(observed, 1) * 0.5, np.percentile(observed, 99) * 2.0
    dense = np.zeros((t_count, h, w), np.float32)
    for t in have:
        filled = edge_aware_fill(inverse[t], np.minimum(confidence[t], 1.0), frames[t], smoothness=cfg.smoothness,
                                 sigma_color=cfg.sigma_color)
        dense[t] = 1.0 / np.clip(filled, lo, hi)
    copied = []
    for t in range(t_count):
        if t not in have:
            nearest = min(have, key=lambda s: abs(s - t))
            dense[t] = dense[nearest]
            copied.append(t)
    unit = float(np.median(dense[0]))
    dense /= unit
    info.update({"scales": scales.tolist(), "frames_copied": copied, "usable_pairs": n_pairs,
                 "moving_fraction": float(movers.mean())})
    notice = None
    if copied:
        notice = (f"frames {copied} have no pair with enough parallax for two-view depth; they reuse the depth of "
                  "the nearest frame that has one")
    return DepthEstimate(dense.astype(np.float32), "two-view", notice, confidence.astype(np.float32), info)
