"""Scale-free fast NSFP (preset ``nsfp-fast``): a rigid start, a residual field in units of the point
spacing, exact nearest neighbours from prebuilt indices, and a per-region choice between the rigid
motion and the field.

NSFP's settings are in metres (2 m^2 truncation, raw-metre MLP inputs, 0.1 m lookup grids in Fast
NSF), which suit 35 m KITTI crops and nothing else: on a 5 m room every object is a fraction of
one MLP input unit, on a 100 m street a 2 m ego motion is beyond the truncation. Here every length
comes from the data:

* **Units.** ``s`` = median nearest-neighbour distance of the source; the field works in units of
  ``L = length_scale * s`` (inputs ``(p - centroid) / L``, flow in ``L``), so the truncation
  (``truncate``, in ``L^2``), the learning rate and the early-stopping ``min_delta`` (in ``L``)
  mean the same thing in a room and on a street. No axis is special (the inputs are only centred).
* **Rigid start** (``rigid_init``). Three ICP passes with correspondence radii ``max(30 s, 2 % of
  the extent)`` (ego motions of metres), ``10 s`` and ``3 s``: with open3d, on an area-uniform subset of
  at most ``ICP_POINTS`` source points (:func:`area_uniform_subset`), five ways (point-to-plane,
  point-to-point, robust point-to-plane from no motion and from a coarse radius either way along the
  direction the surfaces leave free, :func:`weakest_direction`), compared on the points both candidates
  keep in the target's view; kept only when it beats "no motion" by a margin (residuals
  capped at a few noise sigmas, :func:`robust_cap`), most points that can tell the two apart
  prefer it (:func:`motion_support`) and it puts at least ``rigid_min_fitness`` of the points in view on
  the target's surfaces (:func:`surface_share`); without open3d, point-to-point
  :func:`~pointclouds.methods.baselines.icp_flow` on every point, without that comparison (results
  differ between the two installs; the benchmark figures use open3d). The field is the residual on
  top of that motion, its last layer zero-initialised, so the fit starts at the rigid flow.
* **Movers' starts** (``mover_icp``, open3d only). Where the dominant rigid motion leaves clusters of
  points off the target's surfaces, each cluster gets its own ICP (:func:`mover_starts`) and the
  field fits the residual on top of that piecewise-rigid start.
* **Exact nearest neighbours, no grid.** The target's KD-tree is built once; a step queries it for
  its points (a mini-batch: microseconds). The target-to-source term (each target point pulls its
  nearest warped source point) rebuilds the warped source's tree every ``reverse_refresh``
  mini-batch steps and at every full-cloud step. Memory is that of the two trees.
* **Schedule.** ``batch_iterations`` mini-batch steps (``batch_points``, default an eighth of the
  cloud, 256 to 1,024 points, under a cosine learning rate, exponential average of the weights),
  then full-cloud steps with early stopping and NSFP's best-loss snapshot, up to ``max_iterations``.
* **Rigid or field** (``rigid_margin``). Where the rigid motion puts the points on the target's
  surfaces as well as the field does (neighbourhood-mean point-to-plane distance no more than
  ``rigid_margin`` local point spacings worse, :func:`choose_rigid`), the rigid flow is kept: static and ego-moving surfaces get ICP's accuracy instead of a field fitted
  to the sampling of the two sweeps; movers, whose rigid residual is their own motion, keep the field.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .common import Timer
from .fitting import EarlyStopping, NearestIndex, StopForecast, cosine_lr


def point_spacing(points: torch.Tensor, sample: int = 4096, seed: int = 0) -> float:
    """Median distance (m) from a point to its nearest other point (on at most ``sample`` points)."""
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().numpy()
    tree = cKDTree(pts)
    if len(pts) > sample:
        pts = pts[np.random.default_rng(seed).choice(len(pts), sample, replace=False)]
    d = tree.query(pts, k=2)[0][:, 1]
    positive = d[d > 0]
    return float(np.median(positive)) if len(positive) else 1.0


def rigid_start(src: torch.Tensor, tgt: torch.Tensor, spacing: float) -> tuple[torch.Tensor, float | None]:
    """``float64 [4, 4]`` source-to-target transform from coarse-to-fine point-to-plane ICP (correspondence
    radii ``max(30 s, 2 % of the extent)``, ``10 s``, ``3 s``; target normals from 16 neighbours): the
    planes let lidar rings and camera grids slide along the ground instead of locking the two sweeps'
    sampling patterns together (a point-to-point ICP, or a score that counts close points, prefers no
    motion there). open3d's ICP when installed, point-to-point
    :func:`~pointclouds.methods.baselines.icp_flow` otherwise.

    With open3d, ICP registers an area-uniform subset of the source (:func:`area_uniform_subset`) five ways:
    point-to-plane, point-to-point, and point-to-plane under Tukey's biweight from no motion and from a coarse
    radius either way along the direction the target's surfaces constrain least (:func:`weakest_direction`;
    a camera looking down a street otherwise locks onto a car driving along with it). The candidates and "no
    motion" are compared two at a time by their mean point-to-plane residual capped at :func:`robust_cap`
    (a few noise sigmas of the best fit) on the points that both keep in the target's view (``COVER_REACH``),
    and "no motion" is kept unless a motion scores ``IDENTITY_MARGIN`` lower and ``MOTION_SUPPORT`` of the
    points that tell them apart prefer it (:func:`motion_support`).

    Also returns the share of the (registered) source points in the target's view that a kept motion puts
    on the target's surfaces (:func:`surface_share`); ``None`` for "no motion" and without open3d (the caller
    then counts the points within 1.5 spacings of a target sample: a sensor that stood still sees the same
    samples, and a scene whose ego motion went unresolved is fitted from no motion without the rigid choice)."""
    from pointclouds.neighbors import _open3d_available

    extent = float(torch.linalg.vector_norm(src.max(0).values - src.min(0).values))
    radii = (max(30 * spacing, 0.02 * extent), 10 * spacing, 3 * spacing)
    if not _open3d_available():
        from .baselines import icp_flow

        T = None
        for radius in radii:
            T = icp_flow(src, tgt, max_iterations=40, max_correspondence_distance=radius, tolerance=1e-7, init=T,
                         device=src.device, backend="kdtree").extras["transform"]
        return T.to(src.device), None
    import open3d as o3d

    reg = o3d.pipelines.registration
    clouds = []
    source = src.detach().cpu().double().numpy()
    if len(source) > ICP_POINTS:  # a rigid motion needs no more points than this (ICP cost grows with them)
        source = source[area_uniform_subset(source, ICP_POINTS, spacing)]
    for points in (source, tgt.detach().cpu().double().numpy()):
        cloud = o3d.geometry.PointCloud()
        cloud.points = o3d.utility.Vector3dVector(points)
        clouds.append(cloud)
    clouds[1].estimate_normals(o3d.geometry.KDTreeSearchParamKNN(16))
    candidates = [np.eye(4)]
    # point-to-plane, point-to-point, and point-to-plane under Tukey's biweight (scale a third of each radius):
    # the plain least squares lets a large mover that a near camera sees (a car driving along with it) or
    # a crop's edge drag the whole fit; the robust one ignores the correspondences beyond its scale
    def plane(radius: float) -> Any:
        return reg.TransformationEstimationPointToPlane()

    def point(radius: float) -> Any:
        return reg.TransformationEstimationPointToPoint()

    def robust(radius: float) -> Any:  # the only estimator that depends on the radius
        return reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=radius / ROBUST_ICP_SCALE))

    normals = np.asarray(clouds[1].normals)
    slide = weakest_direction(normals)
    starts = [(plane, 0.0), (point, 0.0), (robust, 0.0), (robust, 1.0), (robust, -1.0)]  # offsets: coarse radii
    for estimator, offset in starts:
        T = np.eye(4)
        T[:3, 3] = offset * radii[0] * slide
        for radius in radii:
            T = reg.registration_icp(clouds[0], clouds[1], radius, T, estimator(radius),
                                     reg.ICPConvergenceCriteria(1e-6, 1e-6, 25)).transformation
        candidates.append(np.array(T))
    # score: robust mean point-to-plane distance; a count of close points would favour "no motion" for lidar
    # rings, whose pattern repeats in both sweeps, a point-to-plane distance does not (only the ground, not
    # the walls and objects, lets the rings slide)
    from scipy.spatial import cKDTree

    tgt_np = np.asarray(clouds[1].points)
    tree = cKDTree(tgt_np)
    src_np = np.asarray(clouds[0].points)
    local = tree.query(tgt_np, k=min(9, len(tgt_np)), workers=-1)[0][:, 1:].mean(1) if len(tgt_np) > 1 else np.ones(1)

    def residuals(T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        moved = src_np @ T[:3, :3].T + T[:3, 3]
        d, j = tree.query(moved, k=1, workers=-1)
        return np.abs(np.einsum("ij,ij->i", moved - tgt_np[j], normals[j])), d, d <= COVER_REACH * local[j]

    fits = [residuals(T) for T in candidates]
    residual = [f[0] for f in fits]
    cap = robust_cap(residual, spacing)

    def scores(a: int, b: int) -> tuple[float, float, np.ndarray]:
        """Capped mean residuals of candidates ``a`` and ``b`` on the points that both keep in view."""
        both = fits[a][2] & fits[b][2]
        if not both.any() or fits[a][2].sum() < COVER_KEEP * fits[b][2].sum():  # a loses most of b's view
            return math.inf, 0.0, both
        return float(np.minimum(residual[a][both], cap).mean()), float(np.minimum(residual[b][both], cap).mean()), both

    best = 1
    for c in range(2, len(candidates)):
        challenger, holder, _ = scores(c, best)
        if challenger < holder:
            best = c
    moved, still, both = scores(best, 0)
    if still <= (1.0 + IDENTITY_MARGIN) * moved:  # no motion unless a motion fits clearly better
        best = 0
    if best and motion_support(residual[0][both], residual[best][both], cap) < MOTION_SUPPORT:
        best = 0
    if best == 0:  # "no motion": the caller's test, points next to a target sample (what standing still means)
        return torch.from_numpy(candidates[0]).to(src.device), None
    in_view = fits[best][2]
    share = surface_share(residual[best][in_view], fits[best][1][in_view], cap, spacing) if in_view.any() else 0.0
    return torch.from_numpy(candidates[best]).to(src.device), share


def weakest_direction(normals: np.ndarray) -> np.ndarray:
    """Unit direction ``[3]`` that surfaces with unit ``normals [M, 3]`` constrain least (least eigenvector of
    the sum of ``n n^T``): the direction point-to-plane ICP can slide along, a street's length for a camera
    looking down it. The rigid start also runs ICP from a coarse radius either way along it."""
    return np.linalg.eigh(normals.T @ normals)[1][:, 0]


def area_uniform_subset(points: np.ndarray, count: int, spacing: float, seed: int = 0) -> np.ndarray:
    """Indices of at most ``count`` of ``points [N, 3]``, one per cell of a cubic grid whose cell (a multiple of
    ``spacing``) is chosen so that about ``count`` cells are occupied: a sample about uniform over the
    surfaces' area, whatever the sensor's density.

    A random subset keeps a depth camera's or lidar's density, which falls with the square of the range: the
    ground next to a camera that drives forward, which leaves its view, then outnumbers the far buildings that
    show the motion along the street, and ICP and the candidates' score prefer "no motion" (tuning draws: the
    static points preferring a near-identity motion over the true one lie 3.5-3.7 m away, 3-12 % of them
    seen by the target; those preferring the truth 22-31 m away)."""
    order = np.random.default_rng(seed).permutation(len(points))
    shuffled = points[order]
    low = shuffled.min(0)
    cell = spacing * max(1.0, math.sqrt(len(points) / count))
    pick = order
    for _ in range(8):  # the occupied cells fall roughly as 1/cell^2 on surfaces
        _, first = np.unique(np.floor((shuffled - low) / cell).astype(np.int64), axis=0, return_index=True)
        pick = order[np.sort(first)]
        if len(pick) <= count * 1.1:
            break
        cell *= math.sqrt(len(pick) / count)
    if len(pick) > count:
        pick = np.sort(np.random.default_rng(seed).choice(pick, count, replace=False))
    return pick


def surface_share(plane: np.ndarray, distance: np.ndarray, cap: float, spacing: float) -> float:
    """Share of moved points on the target's surfaces (the rigid start passes those it keeps in the target's
    view): point-to-plane residual ``plane [N]`` (m) within the
    candidates' :func:`robust_cap` and nearest-sample distance ``distance [N]`` within ``SURFACE_REACH`` point
    spacings.

    The share of points within 1.5 spacings of a target *sample* (the old test) is no measure of a motion
    for a depth camera: its pixel grid moves with it, so "no motion" keeps the samples of both frames on top
    of each other while the true ego motion of a street puts the far, sparse samples between the target's
    (tuning draws: true motions at 18-50 %, "no motion" at 38-48 %); a point-to-plane residual does not care
    where on a surface the samples fall."""
    return float(np.mean((plane <= cap) & (distance <= SURFACE_REACH * spacing)))


def mover_starts(src: torch.Tensor, tgt: torch.Tensor, T: torch.Tensor, spacing: float,
                 min_points: int = 30) -> tuple[torch.Tensor, int]:
    """``float64 [N, 4, 4]`` per-point rigid transforms and the number of clusters that moved on their own.

    ``T`` (the scene's dominant motion, ``[4, 4]``) everywhere, except on the clusters (DBSCAN, ``3 s``
    apart, at least ``min_points``) of the points that ``T`` leaves off the target's surfaces
    (point-to-plane residual above :func:`robust_cap`): each gets its own point-to-point ICP from ``T`` and
    from no motion (radii ``30 s``, ``10 s``, ``3 s``, like the rigid start: a car moves metres; a car ahead
    of a driving camera moves with it, and ICP from ``T`` slides it along its own sides, tuning draws:
    1.3-1.9 m off), the one whose points lie closer to target points (mean distance capped at ``3 s``; a box
    slid along its sides stays on their planes but overhangs its target), kept where it puts at least
    ``MOVER_FIT`` of the cluster on the surfaces. Chamfer fitting of a field cannot bring a car that
    moved several point spacings along its own sides onto its target (the nearest target points are the
    ground and the car's own, unmoved-looking sides); a rigid fit of the car can. Needs open3d."""
    import open3d as o3d
    from scipy.spatial import cKDTree

    reg = o3d.pipelines.registration
    source = src.detach().cpu().double().numpy()
    target = tgt.detach().cpu().double().numpy()
    Tn = T.detach().cpu().double().numpy()
    out = np.repeat(Tn[None], len(source), 0)
    cloud_t = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(target))
    cloud_t.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(16))
    tgt_normals = np.asarray(cloud_t.normals)
    tree = cKDTree(target)

    def residual(points: np.ndarray, M: np.ndarray) -> np.ndarray:
        moved = points @ M[:3, :3].T + M[:3, 3]
        _, j = tree.query(moved, k=1, workers=-1)
        return np.abs(np.einsum("ij,ij->i", moved - target[j], tgt_normals[j]))

    r = residual(source, Tn)
    cap = robust_cap([r], spacing)
    off = np.flatnonzero(r > cap)
    if len(off) < min_points:
        return torch.from_numpy(out), 0
    cloud_off = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(source[off]))
    labels = np.asarray(cloud_off.cluster_dbscan(eps=3 * spacing, min_points=4))
    moved = 0
    for label in range(labels.max() + 1 if len(labels) else 0):
        members = off[labels == label]
        if len(members) < min_points:
            continue
        part = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(source[members]))
        fits = []
        starts = (Tn,) if np.allclose(Tn, np.eye(4)) else (Tn, np.eye(4))
        for start in starts:  # moving like the scene, or with the sensor (a car ahead in traffic)
            M = start
            for radius in (30 * spacing, 10 * spacing, 3 * spacing):
                M = reg.registration_icp(part, cloud_t, radius, M, reg.TransformationEstimationPointToPoint(),
                                         reg.ICPConvergenceCriteria(1e-6, 1e-6, 30)).transformation
            M = np.asarray(M)
            moved_part = source[members] @ M[:3, :3].T + M[:3, 3]
            # point-to-point: a box slid along its own sides stays on their planes but overhangs its target
            fits.append((float(np.minimum(tree.query(moved_part, k=1, workers=-1)[0], 3 * spacing).mean()), M))
        M = min(fits, key=lambda f: f[0])[1]
        fitted = np.mean(residual(source[members], M) <= cap)
        if fitted >= MOVER_FIT:
            out[members] = np.asarray(M)
            moved += 1
    return torch.from_numpy(out), moved


MOVER_FIT = 0.8
"""A cluster's own ICP is kept when it puts at least this share of the cluster on the target's surfaces."""
"""A cluster's own ICP is kept when it puts at least this share of the cluster on the target's surfaces."""


def robust_cap(residuals: list[np.ndarray], spacing: float) -> float:
    """Cap (m) of the rigid candidates' point-to-plane residuals: ``CAP_SIGMAS`` robust standard deviations
    (1.4826 x the median residual) of the best-fitting candidate, at least half a point spacing.

    A point counts as fitted only at the noise level of the points that fit. A fixed cap of a few point
    spacings (the old 3 s) let a motion that spreads the static background over the noise band but puts
    moving cars on their targets beat "no motion": a camera standing in a street, cars driving along
    it, whose walls and ground do not pin a slide along the street (worse where the target's crop
    removes the cross-street structure that does). Half a spacing keeps noise-free samples (median ~0)
    from making every candidate tie."""
    scale = 1.4826 * min(float(np.median(d)) for d in residuals)
    return max(CAP_SIGMAS * scale, 0.5 * spacing)


def motion_support(still: np.ndarray, moved: np.ndarray, cap: float) -> float:
    """Share, among the points whose capped residual ``[N]`` differs by more than half the cap between "no
    motion" (``still``) and a motion (``moved``), of those that the motion fits better (0.5 when none differ).

    Under a real motion of the scene every point that can tell the two apart prefers it, except the
    movers (tuning scenes: 88-99 %); a slide along the directions that the background leaves free (a street's
    ground and walls) onto cars driving along it is contested by the static structure that pins it
    (63-76 %), which a mean over all points, most of which cannot tell, dilutes."""
    a, b = np.minimum(still, cap), np.minimum(moved, cap)
    for_motion, for_still = int(np.sum(b < a - 0.5 * cap)), int(np.sum(a < b - 0.5 * cap))
    return for_motion / (for_motion + for_still) if for_motion + for_still else 0.5


ROBUST_ICP_SCALE = 3.0
"""The robust candidate's Tukey scale is its correspondence radius over this (:func:`rigid_start`)."""
COVER_REACH = 3.0
"""A moved point is in the target's view when a target sample lies within this many of the target's local
spacings (mean distance to 8 neighbours) of it. Two rigid candidates are compared on the points that both
keep in view: the ground that a forward-driving camera leaves behind has no target samples under the true
motion and always has some under "no motion" (points, not evidence, in favour of standing still)."""
COVER_KEEP = 0.5
"""A rigid candidate that keeps fewer than this share of the other's points in the target's view loses the
comparison (the view lost to a forward ego motion is a strip next to the sensor, not most of the scene)."""
SURFACE_REACH = 10.0
"""Nearest-sample distance (point spacings) within which a point on a target surface's plane counts as on it
(:func:`surface_share`): the rigid start's middle ICP radius."""
ICP_POINTS = 3000
"""Source points (an area-uniform subset, :func:`area_uniform_subset`) that the rigid start registers."""
CAP_SIGMAS = 4.0
"""Residual cap of the rigid candidates' score, in robust standard deviations (:func:`robust_cap`)."""
MOTION_SUPPORT = 0.9
"""The rigid start keeps "no motion" unless at least this share of the points that tell it from the motion
prefer the motion (:func:`motion_support`). Compared on the points both keep in view, true ego motions get
95-100 % (tuning draws of every ego family); a fit of the ground and one mover (``pointclouds.synthetic``'s
scenes, where every object moves) 82-86 %, a standing camera's slide along a street 63-76 %."""
IDENTITY_MARGIN = 0.05
"""The rigid start keeps "no motion" unless an ICP result's score is this much (relative) lower: near-ties
come from ICP sliding along planes (a street seen by a camera standing still), not from motion."""


def _leaky(d: torch.Tensor, r: float, slope: float) -> torch.Tensor:
    return torch.where(d.detach() < r, d, r + slope * (d - r))


def _distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square().sum(-1).clamp_min(1e-12).sqrt()


def fit_fast(src: torch.Tensor, tgt: torch.Tensor, cfg: Any, dev: torch.device, net: nn.Module,
             start_rigid: bool = True, progress: bool = False) -> dict[str, Any]:
    """The scale-free fast fit (see the module docstring) of validated ``src [N, 3]``, ``tgt [M, 3]``.

    ``cfg`` is an :class:`~pointclouds.methods.nsfp.NSFPConfig`, ``net`` the field to fit (an NSFP
    :class:`~pointclouds.methods.nsfp.FlowField`; ``start_rigid`` zeroes its last layer so that the fit
    starts at the rigid flow). Returns ``flow [N, 3]`` (m), ``best_loss``, ``best_iteration``,
    ``iterations``, ``seconds``, ``losses``, ``point_steps`` and ``extras``.
    """

    with Timer(dev) as timer:
        spacing = point_spacing(src)
        unit = cfg.length_scale * spacing
        centre = src.mean(0)
        x, y = (src - centre) / unit, (tgt - centre) / unit
        T, rigid, fitness = torch.eye(4, dtype=torch.float64, device=dev), torch.zeros_like(src), 0.0
        movers = 0
        if cfg.rigid_init:
            from pointclouds.neighbors import _open3d_available

            T, fitness = rigid_start(src, tgt, spacing)
            moved = (src.double() @ T[:3, :3].T + T[:3, 3]).float()
            if fitness is None:  # no motion kept, or no open3d: the share of points near a target sample
                nearest = tgt[NearestIndex(tgt, cfg.backend).query(moved)]
                fitness = float((_distance(moved, nearest) < 1.5 * spacing).float().mean())
            if fitness >= cfg.rigid_min_fitness:
                rigid = (moved - src) / unit
            else:  # mostly movers: no dominant motion to start from
                T = torch.eye(4, dtype=torch.float64, device=dev)
            if cfg.mover_icp and fitness >= cfg.rigid_min_fitness and _open3d_available():
                Ts, movers = mover_starts(src, tgt, T, spacing)
                Ts = Ts.to(dev)
                moved_each = torch.einsum("nij,nj->ni", Ts[:, :3, :3], src.double()) + Ts[:, :3, 3]
                rigid = (moved_each.float() - src) / unit
        use_rigid = cfg.rigid_init and fitness >= cfg.rigid_min_fitness
        if start_rigid and use_rigid:
            with torch.no_grad():  # start exactly at the rigid flow
                last = net.mlp[-1]
                last.weight.zero_()
                last.bias.zero_()
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        y_index = NearestIndex(y, cfg.backend)
        n, m = len(x), len(y)
        batch = cfg.batch_points or int(min(1024, max(256, n // 8)))
        batch = min(batch, n)
        batch_steps = min(cfg.batch_iterations, cfg.max_iterations - 1) if batch < n else 0
        r = math.sqrt(cfg.truncate) if cfg.truncate is not None else math.inf
        slope = cfg.truncate_slope
        generator = torch.Generator().manual_seed(cfg.seed)
        averaged = [p.detach().clone() for p in net.parameters()] if batch_steps and cfg.batch_average > 0 else None
        stopper = EarlyStopping(cfg.patience, cfg.min_delta)
        forecast = StopForecast(cfg.patience, cfg.min_delta, cfg.max_iterations)
        best_loss, best_flow, best_iteration = math.inf, rigid.clone(), 0
        history: list[float] = []
        point_steps = 0
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=None, desc="nsfp-fast", leave=False)
        reverse = cfg.reverse_weight > 0
        reverse_idx = None
        flow_now = rigid.clone()
        iteration = 0
        for iteration in range(1, cfg.max_iterations + 1):
            full = iteration > batch_steps
            if cfg.lr_schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(cfg, iteration)
            optimizer.zero_grad(set_to_none=True)
            if averaged is not None and iteration == batch_steps + 1:
                with torch.no_grad():
                    for p, a in zip(net.parameters(), averaged):
                        p.copy_(a)
                    flow_now = rigid + net(x)
            if reverse and (full or reverse_idx is None or (iteration - 1) % cfg.reverse_refresh == 0):
                reverse_idx = NearestIndex(x + flow_now, cfg.backend).query(y)
            if not full:
                pick = torch.randperm(n, generator=generator)[:batch].to(dev)
                points = x[pick]
                if reverse:
                    pick_t = torch.randperm(m, generator=generator)[: max(1, batch // 2)].to(dev)
                    pulled = reverse_idx[pick_t]
                    points = torch.cat([points, x[pulled]])
                    base = torch.cat([rigid[pick], rigid[pulled]])
                else:
                    base = rigid[pick]
                f = base + net(points)
                warped = points[:batch] + f[:batch]
                with torch.no_grad():
                    near = y[y_index.query(warped)]
                term = _leaky(_distance(warped, near), r, slope).mean()
                if reverse:
                    term = term + cfg.reverse_weight * _leaky(_distance(x[pulled] + f[batch:], y[pick_t]), r, slope).mean()
                term.backward()
                loss = term.item()
                point_steps += len(points)
                if not math.isfinite(loss):
                    break
                if iteration % cfg.reverse_refresh == 0 and reverse:
                    point_steps += n // 3  # the forward pass below: no backward, about a third of a step
                    with torch.no_grad():
                        flow_now = rigid + net(x)
            else:
                f = rigid + net(x)
                warped = x + f
                if not bool(torch.isfinite(warped).all()):
                    break
                with torch.no_grad():
                    near = y[y_index.query(warped)]
                term = _leaky(_distance(warped, near), r, slope).mean()
                if reverse:
                    term = term + cfg.reverse_weight * _leaky(_distance(warped[reverse_idx], y), r, slope).mean()
                term.backward()
                loss = term.item()
                point_steps += n
                flow_now = f.detach()
                history.append(loss)
                if math.isfinite(loss) and loss < best_loss:
                    best_loss, best_flow, best_iteration = loss, flow_now, iteration
                if stopper.step(loss):
                    break
            optimizer.step()
            if averaged is not None and not full:
                with torch.no_grad():
                    torch._foreach_lerp_(averaged, list(net.parameters()), 1.0 - cfg.batch_average)
            if bar is not None:
                if full:
                    expected = forecast.update(iteration, loss)
                    if expected is not None:
                        bar.total = expected
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}")
        if bar is not None:
            bar.close()
        flow = best_flow
        kept_rigid = 0.0
        if cfg.rigid_margin is not None and use_rigid:
            flow, kept_rigid = choose_rigid(x, y, y_index, normals(y), rigid, flow, cfg.rigid_margin)
        flow = flow * unit
    return {"flow": flow, "best_loss": best_loss * unit, "best_iteration": best_iteration, "iterations": iteration,
            "seconds": timer.seconds, "losses": [h * unit for h in history], "point_steps": point_steps,
            "extras": {"spacing": spacing, "unit": unit, "rigid_transform": T.cpu(), "rigid_share": kept_rigid,
                       "rigid_fitness": fitness, "mover_clusters": movers,
                       "batch_points": batch}}


@torch.no_grad()
def normals(points: torch.Tensor, k: int = 16) -> torch.Tensor:
    """Unit normals ``[N, 3]`` (unoriented): the least-variance direction of each point's ``k`` neighbours."""
    from pointclouds.neighbors import knn

    idx = knn(points, points, min(k, len(points))).idx
    local = points[idx] - points[idx].mean(1, keepdim=True)
    cov = local.transpose(1, 2) @ local
    return torch.linalg.eigh(cov.double())[1][:, :, 0].float()


@torch.no_grad()
def choose_rigid(x: torch.Tensor, y: torch.Tensor, y_index: Any, y_normals: torch.Tensor, rigid: torch.Tensor,
                 field: torch.Tensor, margin: float, k: int = 8) -> tuple[torch.Tensor, float]:
    """Per source point, the rigid flow where its neighbourhood (``k`` points) lies on the target's
    surfaces with it about as well as with the field, else the field's flow; and the share of rigid points.

    "On the surfaces" is the point-to-plane distance to the nearest target point (its normal from the
    target's neighbours), not the point-to-point one: between lidar rings or camera pixels a rigidly
    moved point lies on the ground plane yet far from every sample, and a field fitted to the samples
    can always pull it onto one, which is no evidence of motion. A mover, moved only rigidly, sits off
    the target's surfaces. The rigid flow is kept where its neighbourhood-mean plane distance exceeds
    the field's by at most ``margin`` times the neighbourhood's point spacing in field units.
    """
    from pointclouds.neighbors import knn

    def plane_distance(flow: torch.Tensor) -> torch.Tensor:
        warped = x + flow
        j = y_index.query(warped)
        return ((warped - y[j]) * y_normals[j]).sum(-1).abs()

    neighbours = knn(x, x, min(k, len(x)))
    spacing = neighbours.sqdist[:, 1:].clamp_min(0).sqrt().mean(1) if neighbours.idx.shape[1] > 1 else torch.zeros(len(x))
    e_rigid = plane_distance(rigid)[neighbours.idx].mean(1)
    e_field = plane_distance(field)[neighbours.idx].mean(1)
    use_rigid = e_rigid <= e_field + margin * spacing
    return torch.where(use_rigid[:, None], rigid, field), float(use_rigid.float().mean())


__all__ = ["fit_fast", "point_spacing", "rigid_start", "surface_share", "area_uniform_subset", "weakest_direction", "robust_cap", "motion_support", "mover_starts", "choose_rigid", "normals"]
