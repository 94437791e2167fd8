"""Real footage with a known camera path: a real photograph with real depth, seen by a moving virtual
camera, with a real object pasted in that moves in 3-D. Exact ground truth for GFlow's figures.

The backdrop is scikit-image's Middlebury 2014 "motorcycle" image with its measured stereo depth
(:func:`motion.sample_data.motorcycle_depth`; holes filled with the farther neighbouring depth).
New views are rendered by reprojection (depth-image-based rendering): the backdrop's points are
forward-projected into the new camera with a z-buffer (2x supersampled), disocclusion holes take the
farther neighbouring depth, and every pixel then reads the photograph where its 3-D point projects
(bilinear). The virtual camera sees a central crop of the photograph's field of view, so views never
leave the photograph. The pasted object is an elliptical cut-out of another real photograph
(scikit-image's ``coffee`` cup or ``chelsea`` cat) on a plane that translates and spins in 3-D; it
is composited by depth. Ground truth: poses, depth, moving-object masks, 2-D tracks with visibility,
and held-out views from camera poses half-way between consecutive frames.

World frame = the photograph's camera (OpenCV axes); units = metres of the Middlebury scene.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import grey_dilation
from scipy.spatial.transform import Rotation, Slerp

from motion4d.checks import check_int
from motion4d.errors import InvalidArgumentError

OBJECTS = ("coffee", "chelsea")


@dataclass
class ReprojectedVideo:
    """A rendered clip with exact ground truth.

    Attributes:
        frames: ``uint8 [T, H, W, 3]``; depth: ``float32 [T, H, W]`` (camera z, metres).
        world_to_cam: ``float64 [T, 4, 4]``; K: ``float64 [3, 3]``.
        moving_mask: ``bool [T, H, W]`` pixels of the pasted object.
        tracks_xy: ``float32 [T, N, 2]``, tracks_visible: ``bool [T, N]`` of a frame-0 query grid.
        heldout_frames / heldout_world_to_cam / heldout_depth: views half-way between frames t and
            t + 1 (scene at time t), ``[T-1, ...]``.
        description: what the clip shows (path, object).
    """

    frames: np.ndarray
    depth: np.ndarray
    world_to_cam: np.ndarray
    K: np.ndarray
    moving_mask: np.ndarray
    tracks_xy: np.ndarray
    tracks_visible: np.ndarray
    heldout_frames: np.ndarray
    heldout_world_to_cam: np.ndarray
    heldout_depth: np.ndarray
    description: str


def _fill_far(depth: np.ndarray) -> np.ndarray:
    """Holes (0) take the largest depth among their filled neighbours (occlusion holes show background)."""
    out = depth.copy()
    while (out <= 0).any():
        grown = grey_dilation(out, size=3)
        holes = out <= 0
        out[holes] = grown[holes]
        if not (grown[holes] > 0).any():
            raise InvalidArgumentError("depth map has no valid pixels")
    return out


def _backdrop(long_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from motion.sample_data import motorcycle_depth

    image, depth, K = motorcycle_depth()
    h, w = depth.shape
    scale = long_side / max(h, w)
    size = (round(w * scale), round(h * scale))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    depth = _fill_far(depth)
    depth = cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST)
    K = K.copy()
    K[:2] *= scale
    K[0, 2], K[1, 2] = (size[0] - 1) / 2, (size[1] - 1) / 2
    return image, depth.astype(np.float64), K


def _object_texture(name: str, size: int) -> tuple[np.ndarray, float]:
    """Square RGB cut-out of a real photograph around the object, and its aspect (height / width)."""
    from motion.sample_data import photograph

    image = photograph(name)
    crops = {"coffee": (60, 392, 74, 482), "chelsea": (10, 290, 70, 390)}  # rows, cols: the saucer, the face
    r0, r1, c0, c1 = crops[name]
    crop = image[r0:r1, c0:c1]
    aspect = crop.shape[0] / crop.shape[1]
    return cv2.resize(crop, (size, int(round(size * aspect))), interpolation=cv2.INTER_AREA), aspect


def _look(rotvec: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """World-to-camera of a camera at ``centre`` rotated by ``rotvec`` (camera-to-world rotation)."""
    r = Rotation.from_rotvec(rotvec).as_matrix()
    m = np.eye(4)
    m[:3, :3] = r.T
    m[:3, 3] = -r.T @ centre
    return m


class _Scene:
    def __init__(self, long_side: int, crop: float, object_name: str | None, seed: int, n_frames: int,
                 travel: float) -> None:
        self.image, self.depth, self.K_ref = _backdrop(int(round(long_side / crop)))
        hr, wr = self.depth.shape
        self.width, self.height = int(round(wr * crop)), int(round(hr * crop))
        self.K = self.K_ref.copy()
        self.K[0, 2], self.K[1, 2] = (self.width - 1) / 2, (self.height - 1) / 2
        median = float(np.median(self.depth))
        rng = np.random.default_rng(seed)
        # camera path: a sideways sweep with a forward component and a slow turn, sizes relative to the scene
        direction = np.array([1.0, rng.uniform(-0.35, 0.35), rng.uniform(0.3, 0.6)]) * rng.choice([-1.0, 1.0], 3) * [1, 1, 1]
        direction[2] = abs(direction[2])
        direction /= np.linalg.norm(direction)
        self.travel = 0.07 * travel * median * direction
        self.turn = np.radians([rng.uniform(-0.6, 0.6), rng.uniform(-1.5, 1.5), rng.uniform(-0.5, 0.5)])
        # the object: a plane in front of the backdrop, moving across the view and spinning
        self.has_object = object_name is not None
        self.texture, aspect = _object_texture(object_name or "coffee", 96)
        z0 = float(np.percentile(self.depth, 10)) * 0.7
        half_w = 0.13 * z0 * wr / self.K_ref[0, 0] * crop
        self.object_axes = (half_w, half_w * aspect)
        start = np.array([rng.uniform(-0.12, -0.04), rng.uniform(-0.06, 0.06), 0.0])
        move = np.array([rng.uniform(0.1, 0.14), rng.uniform(-0.04, 0.04), -0.05])
        self.object_start = np.array([start[0] * z0, start[1] * z0, z0])
        self.object_move = move * z0
        self.object_spin = np.radians(rng.uniform(10, 20))
        self.n_frames = n_frames
        pasted = (f"real '{object_name}' cut-out at {z0:.2f} m moving {np.linalg.norm(self.object_move):.2f} m"
                  if object_name else "no object")
        self.description = (f"Middlebury motorcycle backdrop (real image and stereo depth), camera travel "
                            f"{np.linalg.norm(self.travel):.2f} m along {np.round(direction, 2).tolist()}, turn "
                            f"{np.round(np.degrees(self.turn), 2).tolist()} deg; {pasted}; seed {seed}")
        ys, xs = np.mgrid[0:hr, 0:wr]
        rays = np.stack([(xs - self.K_ref[0, 2]) / self.K_ref[0, 0], (ys - self.K_ref[1, 2]) / self.K_ref[1, 1],
                         np.ones_like(xs, dtype=np.float64)], -1)
        self.points = rays * self.depth[..., None]  # world points of the backdrop [hr, wr, 3]

    def pose(self, s: float) -> np.ndarray:
        """World-to-camera at path position ``s`` in [0, 1]."""
        return _look(self.turn * (s - 0.5), self.travel * (s - 0.5))

    def object_frame(self, time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre and in-plane axes of the object at ``time`` in [0, 1]."""
        angle = self.object_spin * time
        e1 = np.array([np.cos(angle), np.sin(angle), 0.0])
        e2 = np.array([-np.sin(angle), np.cos(angle), 0.0])
        return self.object_start + self.object_move * time, e1, e2

    def _backdrop_depth(self, w2c: np.ndarray) -> np.ndarray:
        """Camera depth of the backdrop seen from ``w2c`` (z-buffer of the 2x supersampled points)."""
        hr, wr = self.depth.shape
        pts = cv2.resize(self.points, (2 * wr, 2 * hr), interpolation=cv2.INTER_NEAREST).reshape(-1, 3)
        cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
        uv = cam @ self.K.T
        uv = uv[:, :2] / uv[:, 2:3]
        px = np.round(uv).astype(int)
        ok = (px[:, 0] >= 0) & (px[:, 0] < self.width) & (px[:, 1] >= 0) & (px[:, 1] < self.height) & (cam[:, 2] > 0)
        flat = px[ok, 1] * self.width + px[ok, 0]
        z = cam[ok, 2]
        buffer = np.full(self.width * self.height, np.inf)
        np.minimum.at(buffer, flat, z)
        buffer = buffer.reshape(self.height, self.width)
        # splat gaps and disocclusions: the farther neighbour (background) fills them
        return _fill_far(np.where(np.isfinite(buffer), buffer, 0.0))

    def render(self, w2c: np.ndarray, time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """``(image uint8 [H, W, 3], depth [H, W], object mask bool [H, W], object hit info)``."""
        depth = self._backdrop_depth(w2c)
        ys, xs = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        rays = np.stack([(xs - self.K[0, 2]) / self.K[0, 0], (ys - self.K[1, 2]) / self.K[1, 1], np.ones_like(xs)], -1)
        c2w = np.linalg.inv(w2c)
        world = (rays * depth[..., None]) @ c2w[:3, :3].T + c2w[:3, 3]
        uv = world @ self.K_ref.T
        map_x = (uv[..., 0] / uv[..., 2]).astype(np.float32)
        map_y = (uv[..., 1] / uv[..., 2]).astype(np.float32)
        image = cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        # the object: ray-plane intersection, inside the ellipse, in front of the backdrop
        centre, e1, e2 = self.object_frame(time)
        normal = np.cross(e1, e2)
        origin = c2w[:3, 3]
        dirs = rays @ c2w[:3, :3].T
        lam = ((centre - origin) @ normal) / (dirs @ normal)
        hit = origin + lam[..., None] * dirs
        u = (hit - centre) @ e1
        v = (hit - centre) @ e2
        a, b = self.object_axes
        z_obj = lam  # rays have camera z = 1, so the ray parameter is the camera depth
        inside = ((u / a) ** 2 + (v / b) ** 2 <= 1.0) & (lam > 0) & (z_obj < depth) & self.has_object
        th, tw = self.texture.shape[:2]
        tex_x = ((u / a + 1) * 0.5 * (tw - 1)).astype(np.float32)
        tex_y = ((v / b + 1) * 0.5 * (th - 1)).astype(np.float32)
        obj = cv2.remap(self.texture, tex_x, tex_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        image = np.where(inside[..., None], obj, image)
        depth = np.where(inside, z_obj, depth)
        return image, depth.astype(np.float32), inside, {"u": u, "v": v}

    def project(self, world: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cam = world @ w2c[:3, :3].T + w2c[:3, 3]
        uv = cam @ self.K.T
        return uv[:, :2] / uv[:, 2:3], cam[:, 2]


def reprojected_video(n_frames: int = 8, long_side: int = 160, seed: int = 0, object_name: str | None = "coffee",
                      crop: float = 0.8, track_grid: int = 8, camera_travel: float = 1.0) -> ReprojectedVideo:
    """Render a clip (see the module docstring). ``seed`` draws the camera path and the object's motion.

    Args:
        n_frames: frames of the clip (>= 2); long_side: the longer image side of the virtual camera.
        object_name: the pasted object (``coffee``, ``chelsea``) or None for the backdrop alone.
        crop: the virtual camera's field of view as a fraction of the photograph's.
        camera_travel: scales the camera's translation (0: a camera that only turns).
        track_grid: spacing (px) of the frame-0 query grid of the ground-truth tracks.
    """
    check_int(n_frames, "n_frames", minimum=2)
    check_int(long_side, "long_side", minimum=32)
    if object_name is not None and object_name not in OBJECTS:
        raise InvalidArgumentError(f"object_name must be one of {OBJECTS}, got {object_name!r}")
    if not 0.3 <= crop <= 0.95:
        raise InvalidArgumentError(f"crop must be in [0.3, 0.95], got {crop}")
    scene = _Scene(long_side, crop, object_name, seed, n_frames, float(camera_travel))
    s = np.linspace(0.0, 1.0, n_frames)
    poses = np.stack([scene.pose(x) for x in s])
    frames, depths, masks, hits = [], [], [], []
    for i in range(n_frames):
        image, depth, mask, hit = scene.render(poses[i], s[i])
        frames.append(image)
        depths.append(depth)
        masks.append(mask)
        hits.append(hit)
    # tracks from a frame-0 grid: backdrop points stay put, object points ride on the object
    h, w = scene.height, scene.width
    gy, gx = np.mgrid[track_grid // 2:h:track_grid, track_grid // 2:w:track_grid]
    qx, qy = gx.ravel().astype(np.float64), gy.ravel().astype(np.float64)
    rays = np.stack([(qx - scene.K[0, 2]) / scene.K[0, 0], (qy - scene.K[1, 2]) / scene.K[1, 1], np.ones_like(qx)], -1)
    c2w0 = np.linalg.inv(poses[0])
    z0 = depths[0][gy.ravel(), gx.ravel()]
    on_object = masks[0][gy.ravel(), gx.ravel()]
    backdrop_world = (rays * z0[:, None]) @ c2w0[:3, :3].T + c2w0[:3, 3]
    u0 = hits[0]["u"][gy.ravel(), gx.ravel()]
    v0 = hits[0]["v"][gy.ravel(), gx.ravel()]
    xy, visible = [], []
    for i in range(n_frames):
        centre, e1, e2 = scene.object_frame(s[i])
        world = np.where(on_object[:, None], centre + u0[:, None] * e1 + v0[:, None] * e2, backdrop_world)
        uv, z = scene.project(world, poses[i])
        inside = (uv[:, 0] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < h - 0.5) & (z > 0)
        # visible when one of the four pixels around the point shows its depth (sub-pixel positions)
        agrees = np.zeros(len(z), bool)
        for fx in (np.floor, np.ceil):
            for fy in (np.floor, np.ceil):
                cx = fx(uv[:, 0]).astype(int).clip(0, w - 1)
                cy = fy(uv[:, 1]).astype(int).clip(0, h - 1)
                agrees |= np.abs(z - depths[i][cy, cx]) <= 0.03 * z
        xy.append(uv)
        visible.append(inside & agrees)
    held_frames, held_poses, held_depth = [], [], []
    for i in range(n_frames - 1):
        mid = 0.5 * (s[i] + s[i + 1])
        pose = scene.pose(mid)
        image, depth, _, _ = scene.render(pose, s[i])
        held_frames.append(image)
        held_poses.append(pose)
        held_depth.append(depth)
    return ReprojectedVideo(
        np.stack(frames).astype(np.uint8), np.stack(depths), poses, scene.K, np.stack(masks),
        np.stack(xy).astype(np.float32), np.stack(visible), np.stack(held_frames).astype(np.uint8),
        np.stack(held_poses), np.stack(held_depth), scene.description)


def interpolate_pose(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """World-to-camera between ``a`` and ``b`` (slerp of the rotation, linear camera centre)."""
    rots = Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]]))
    r = Slerp([0.0, 1.0], rots)([s]).as_matrix()[0]
    ca, cb = -a[:3, :3].T @ a[:3, 3], -b[:3, :3].T @ b[:3, 3]
    c = (1 - s) * ca + s * cb
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = -r @ c
    return m
