"""``Scene4D``: the result of GFlow — Gaussians per frame, camera poses, labels, tracks, masks.

GFlow updates one set of Gaussians frame after frame and only ever appends new ones, so Gaussian
``i`` is the same particle in every frame from its birth frame on: frame ``t`` holds the first
``N_t`` Gaussians (``N_t`` never decreases). That identity is what turns the reconstruction into
point tracks (follow a Gaussian's centre) and into moving-object masks (render the still / moving
label of every Gaussian).

::

    scene = GFlow(cfg).fit(frames, depth=depth)
    scene.poses                         # [T, 4, 4] world-to-camera (OpenCV axes)
    image = scene.render(3)             # [H, W, 3] in [0, 1]
    mask = scene.moving_mask(3)         # bool [H, W]
    tracks = scene.tracks(queries)      # motion.tracks.Tracks, queries [N, 3] (t, x, y)
    xyz = scene.tracks_3d(queries)      # Tracks3D: world / camera positions over time
    scene.export("out")                 # per-frame PLY, TUM + COLMAP poses, tracks, masks, video
    scene.save("scene.pt"); Scene4D.load("scene.pt")
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from motion4d.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from motion4d.checks import check_file, check_int, check_shape
from motion4d.errors import CheckpointError, InvalidArgumentError, ShapeError
from motion4d.imaging import frames_to_tensor, psnr

from .cameras import Cameras, write_colmap_text, write_tum
from .gaussians import Gaussians, write_ply
from .rendering import rasterize

SCENE_FORMAT = "motion4d-gflow-scene"
SCENE_VERSION = 1
_PARAM_KEYS = ("means", "quats", "log_scales", "logit_opacities", "colors")


@dataclass
class Tracks3D:
    """3-D point tracks: ``xyz [T, N, 3]`` world positions, ``xyz_camera [T, N, 3]`` in each frame's
    camera (OpenCV axes), ``visible bool [T, N]``, ``query [N, 3]`` (t, x, y), intrinsics ``K [3, 3]``."""

    xyz: np.ndarray
    xyz_camera: np.ndarray
    visible: np.ndarray
    query: np.ndarray
    K: np.ndarray

    def save(self, path: str | os.PathLike) -> Path:
        """TAPVid-3D-style ``.npz``: ``tracks_XYZ`` (camera frame), ``visibility``, ``queries_xyt``,
        ``fx_fy_cx_cy``, plus ``tracks_world``."""
        path = Path(path)
        k = self.K
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, tracks_XYZ=self.xyz_camera.astype(np.float32), tracks_world=self.xyz.astype(np.float32),
                         visibility=self.visible, queries_xyt=self.query[:, [1, 2, 0]].astype(np.float32),
                         fx_fy_cx_cy=np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], np.float32))
        return path


def project(means: torch.Tensor, world_to_cam: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel positions ``uv [N, 2]`` and camera depths ``z [N]`` of world points ``means [N, 3]``."""
    cam = means @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    z = cam[:, 2]
    uvw = cam @ K.T
    return uvw[:, :2] / z.clamp_min(1e-8)[:, None], z


class Scene4D:
    """A GFlow reconstruction of a ``T``-frame video.

    Args:
        states: per frame a dict of storage-form Gaussian tensors (``means [N_t, 3]``, ``quats``,
            ``log_scales``, ``logit_opacities``, ``colors [N_t, 3]``); ``N_t`` non-decreasing, rows
            of frame ``t`` continue those of frame ``t - 1``.
        poses: ``[T, 4, 4]`` world-to-camera.
        K: ``[3, 3]`` intrinsics; width, height: image size.
        moving: ``bool [N]`` still (False) / moving (True) label of every Gaussian (N = N_{T-1}).
        birth: ``int64 [N]`` frame where each Gaussian was created.
        frames: optional ``uint8 [T, H, W, 3]`` input video (for PSNR and the comparison video).
        epipolar_masks: optional ``bool [T, H, W]`` motion masks computed from the flow prior.
        info: JSON-able run information (configuration, timings, losses).
    """

    def __init__(self, states: list[dict[str, torch.Tensor]], poses: torch.Tensor, K: torch.Tensor, width: int,
                 height: int, moving: torch.Tensor, birth: torch.Tensor, frames: np.ndarray | None = None,
                 epipolar_masks: torch.Tensor | None = None, info: dict[str, Any] | None = None,
                 background: tuple[float, float, float] = (0.0, 0.0, 0.0), occlusion_tolerance: float = 0.05) -> None:
        if not states:
            raise InvalidArgumentError("Scene4D needs at least one frame state")
        self.states = [{k: s[k].detach().float().cpu() for k in _PARAM_KEYS} for s in states]
        self.poses = torch.as_tensor(poses).detach().float().cpu()
        t = len(self.states)
        check_shape(self.poses, "poses", (t, 4, 4))
        self.K = torch.as_tensor(K).detach().float().cpu()
        check_shape(self.K, "K", (3, 3))
        self.width, self.height = int(width), int(height)
        counts = [len(s["means"]) for s in self.states]
        if any(b < a for a, b in zip(counts, counts[1:])):
            raise ShapeError(f"Gaussian counts per frame must not decrease, got {counts}")
        n = counts[-1]
        self.moving = torch.as_tensor(moving).bool().cpu()
        self.birth = torch.as_tensor(birth).long().cpu()
        check_shape(self.moving, "moving", (n,))
        check_shape(self.birth, "birth", (n,))
        self.frames = None if frames is None else np.asarray(frames, dtype=np.uint8)
        if self.frames is not None:
            check_shape(self.frames, "frames", (t, self.height, self.width, 3))
        self.epipolar_masks = None if epipolar_masks is None else torch.as_tensor(epipolar_masks).bool().cpu()
        self.info = dict(info or {})
        self.background = tuple(float(x) for x in background)
        self.occlusion_tolerance = float(occlusion_tolerance)
        self._surface_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # renders run on the GPU (gsplat) when there is one; results always come back to the CPU
        self.render_device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # ------------------------------------------------------------------ basics
    @property
    def num_frames(self) -> int:
        return len(self.states)

    @property
    def num_gaussians(self) -> int:
        return len(self.moving)

    def _check_t(self, t: int) -> int:
        return check_int(t, "frame index", minimum=0, maximum=self.num_frames - 1)

    def gaussians_at(self, t: int) -> Gaussians:
        """The Gaussians of frame ``t``."""
        return Gaussians(**self.states[self._check_t(t)])

    def cameras(self, t: int | None = None) -> Cameras:
        """All frames' cameras, or frame ``t``'s."""
        poses = self.poses if t is None else self.poses[self._check_t(t)][None]
        return Cameras(self.K, poses, self.width, self.height)

    def positions(self, t: int) -> torch.Tensor:
        """``[N, 3]`` centres of all N Gaussians at frame ``t``; Gaussians born later sit where they were
        created (exact for still ones)."""
        t = self._check_t(t)
        current = self.states[t]["means"]
        n_t = len(current)
        if n_t == self.num_gaussians:
            return current
        out = torch.cat([current, current.new_empty(self.num_gaussians - n_t, 3)])
        for b in torch.unique(self.birth[n_t:]).tolist():
            rows = n_t + torch.nonzero(self.birth[n_t:] == b).squeeze(1)
            out[rows] = self.states[int(b)]["means"][rows]
        return out

    # ------------------------------------------------------------------ rendering
    def _rasterize(self, t: int, camera: Cameras | None, features: torch.Tensor | None, mode: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.states[t]
        if camera is None:
            viewmat, k, w, h = self.poses[t][None], self.K[None], self.width, self.height
        else:
            if not isinstance(camera, Cameras) or len(camera) != 1:
                raise InvalidArgumentError("camera must be a single splats.Cameras (len 1)")
            viewmat, k, w, h = camera.world_to_cam.float().cpu(), camera.K.float().cpu(), camera.width, camera.height
        colors = s["colors"] if features is None else features
        bg = torch.tensor(self.background) if features is None else torch.zeros(colors.shape[-1])
        dev = self.render_device
        with torch.no_grad():
            img, alpha, _ = rasterize(s["means"].to(dev), s["quats"].to(dev), s["log_scales"].exp().to(dev),
                                      torch.sigmoid(s["logit_opacities"]).to(dev), colors.to(dev), viewmat.to(dev),
                                      k.to(dev), w, h, mode=mode, backgrounds=bg.to(dev) if mode != "ED" else None)
        return img[0].cpu(), alpha[0, ..., 0].cpu()

    def render(self, t: int, camera: Cameras | None = None, mode: str = "RGB") -> torch.Tensor:
        """Render frame ``t``'s Gaussians from its own camera or ``camera`` (a novel view).

        Returns:
            ``[H, W, 3]`` RGB in [0, 1] (``mode="RGB"``), ``[H, W, 1]`` expected depth (``"ED"``) or
            ``[H, W, 4]`` (``"RGB+ED"``).
        """
        t = self._check_t(t)
        if mode not in ("RGB", "ED", "RGB+ED"):
            raise InvalidArgumentError(f"mode must be 'RGB', 'ED' or 'RGB+ED', got {mode!r}")
        img, _ = self._rasterize(t, camera, None, mode)
        if mode != "ED":
            img = torch.cat([img[..., :3].clamp(0, 1), img[..., 3:]], dim=-1)
        return img

    def moving_mask(self, t: int, camera: Cameras | None = None, threshold: float = 0.5) -> torch.Tensor:
        """``bool [H, W]``: pixels whose visible surface is mostly made of moving Gaussians.

        The still / moving label is rendered as a feature, so occlusions are respected (GFlow's paper
        draws the concave hull of the moving centres instead, which fills holes and ignores occluders).
        """
        t = self._check_t(t)
        n_t = len(self.states[t]["means"])
        label = self.moving[:n_t].float()[:, None]
        img, alpha = self._rasterize(t, camera, label, "RGB")
        return (img[..., 0] > threshold * alpha.clamp_min(1e-6)) & (alpha > 0.5)

    def _surface(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rendered expected depth ``[H, W]`` and alpha ``[H, W]`` of frame ``t`` (cached)."""
        if t not in self._surface_cache:
            img, alpha = self._rasterize(t, None, None, "ED")
            self._surface_cache[t] = (img[..., 0], alpha)
        return self._surface_cache[t]

    def visibility(self, t: int, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projection of Gaussians ``ids`` (default all) at frame ``t`` with a depth test.

        Returns ``uv [M, 2]``, camera depth ``z [M]`` and ``visible bool [M]``: inside the image, in front
        of the camera, on a covered pixel and not behind the rendered surface by more than
        ``occlusion_tolerance`` (relative). The test is one-sided, a z-buffer test: a centre nearer than
        the rendered (alpha-blended) depth has nothing in front of it, so it is not occluded; a two-sided
        test would hide the front layer wherever the blend mixes it with a surface behind.
        """
        t = self._check_t(t)
        pos = self.positions(t) if ids is None else self.positions(t)[ids]
        uv, z = project(pos, self.poses[t], self.K)
        depth, alpha = self._surface(t)
        px = uv.round().long()
        inside = (px[:, 0] >= 0) & (px[:, 0] < self.width) & (px[:, 1] >= 0) & (px[:, 1] < self.height) & (z > 0)
        px[:, 0].clamp_(0, self.width - 1)
        px[:, 1].clamp_(0, self.height - 1)
        surface = depth[px[:, 1], px[:, 0]]
        covered = alpha[px[:, 1], px[:, 0]] > 0.5
        visible = inside & covered & (z - surface <= self.occlusion_tolerance * surface.abs())
        return uv, z, visible

    # ------------------------------------------------------------------ tracks
    def _assign(self, query: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian id and pixel offset ``[N, 2]`` of each query (nearest visible projected centre)."""
        from scipy.spatial import cKDTree

        ids = torch.zeros(len(query), dtype=torch.long)
        offsets = torch.zeros(len(query), 2)
        for tq in np.unique(query[:, 0]).astype(int):
            rows = np.nonzero(query[:, 0] == tq)[0]
            n_t = len(self.states[tq]["means"])
            uv, _, visible = self.visibility(tq, torch.arange(n_t))
            candidates = torch.nonzero(visible).squeeze(1)
            if len(candidates) == 0:
                candidates = torch.arange(n_t)
            tree = cKDTree(uv[candidates].numpy())
            _, nearest = tree.query(query[rows, 1:3])
            chosen = candidates[torch.as_tensor(nearest, dtype=torch.long)]
            ids[rows] = chosen
            offsets[rows] = torch.from_numpy(query[rows, 1:3]).float() - uv[chosen]
        return ids, offsets

    def _check_query(self, query: Any) -> np.ndarray:
        from motion.tracking import check_queries

        return check_queries(query, self.num_frames, self.height, self.width)

    def tracks(self, query: Any) -> "Any":
        """2-D tracks of query points ``[N, 3]`` ``(t, x, y)`` -> :class:`motion.tracks.Tracks`.

        Each query follows the Gaussian whose projected centre is nearest among those visible in the
        query frame, keeping its initial pixel offset. A track is visible where its Gaussian passes the
        depth test; before a moving Gaussian's birth frame its position is unknown (invisible).
        """
        from motion.tracks import Tracks

        query = self._check_query(query)
        ids, offsets = self._assign(query)
        xy, visible = [], []
        for t in range(self.num_frames):
            uv, _, vis = self.visibility(t, ids)
            unknown = self.moving[ids] & (self.birth[ids] > t)
            xy.append(uv + offsets)
            visible.append(vis & ~unknown)
        xy_all = torch.stack(xy).numpy()
        vis_all = torch.stack(visible).numpy()
        q_t = query[:, 0].astype(int)
        vis_all[q_t, np.arange(len(query))] = True
        xy_all[q_t, np.arange(len(query))] = query[:, 1:3]
        return Tracks(xy=xy_all, visible=vis_all, image_size=(self.height, self.width), query=query,
                      metadata={"method": "gflow", "gaussian_ids": ids.tolist()})

    def tracks_3d(self, query: Any) -> Tracks3D:
        """3-D tracks (world and camera coordinates) of query points ``[N, 3]`` ``(t, x, y)``."""
        query = self._check_query(query)
        ids, _ = self._assign(query)
        xyz, cam, visible = [], [], []
        for t in range(self.num_frames):
            pos = self.positions(t)[ids]
            _, _, vis = self.visibility(t, ids)
            xyz.append(pos)
            cam.append(pos @ self.poses[t, :3, :3].T + self.poses[t, :3, 3])
            visible.append(vis & ~(self.moving[ids] & (self.birth[ids] > t)))
        return Tracks3D(torch.stack(xyz).numpy(), torch.stack(cam).numpy(), torch.stack(visible).numpy(), query,
                        self.K.numpy())

    # ------------------------------------------------------------------ quality
    def psnr(self, frames: np.ndarray | None = None) -> list[float]:
        """PSNR (dB) of every frame's render against ``frames`` (default: the stored input video)."""
        frames = self.frames if frames is None else np.asarray(frames)
        if frames is None:
            raise InvalidArgumentError("no frames to compare with: pass frames (uint8 [T, H, W, 3])")
        check_shape(frames, "frames", (self.num_frames, self.height, self.width, 3))
        return [psnr(self.render(t), frames_to_tensor(frames[t], channels_first=False)) for t in range(self.num_frames)]

    # ------------------------------------------------------------------ files
    def write_tum(self, path: str | os.PathLike) -> Path:
        """Camera trajectory in TUM format (camera-to-world, one line per frame, timestamp = index)."""
        return write_tum(path, np.arange(self.num_frames, dtype=np.float64), self.poses.double())

    def write_colmap(self, folder: str | os.PathLike) -> Path:
        """COLMAP text model (``cameras.txt``, ``images.txt``, empty ``points3D.txt``)."""
        return write_colmap_text(folder, self.cameras(), [f"{t:05d}.png" for t in range(self.num_frames)])

    def export(self, out_dir: str | os.PathLike, query: Any = None, grid: int = 8, video: bool = True,
               fps: float = 10.0) -> Path:
        """Write everything a user looks at or feeds to other tools.

        Layout: ``gaussians/frame_00000.ply`` (INRIA layout plus ``moving`` and ``birth`` properties),
        ``poses_tum.txt``, ``colmap/``, ``tracks.{csv,npz,pkl,json}`` (query frame 0 grid of ``grid``
        pixels unless ``query`` is given), ``tracks_3d.npz``, ``masks/00000.png`` (moving-object masks),
        ``renders/00000.png``, ``render.mp4`` (input | render | mask), ``scene.json`` (manifest).
        """
        from motion.image_io import write_image

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for t in range(self.num_frames):
            n_t = len(self.states[t]["means"])
            write_ply(out / "gaussians" / f"frame_{t:05d}.ply", self.gaussians_at(t),
                      extra={"moving": self.moving[:n_t].float().numpy(), "birth": self.birth[:n_t].float().numpy()})
        self.write_tum(out / "poses_tum.txt")
        self.write_colmap(out / "colmap")
        if query is None:
            query = self._grid(grid)
        tracks = self.tracks(query)
        for ext in ("csv", "npz", "pkl", "json"):
            tracks.save(out / f"tracks.{ext}")
        if self.frames is not None:
            from motion.visualize import save_png

            save_png(out / "overview.png", self.overview())
        self.tracks_3d(query).save(out / "tracks_3d.npz")
        panels = []
        for t in range(self.num_frames):
            render = (self.render(t).numpy() * 255 + 0.5).astype(np.uint8)
            mask = self.moving_mask(t).numpy()
            write_image(out / "masks" / f"{t:05d}.png", (mask * 255).astype(np.uint8))
            write_image(out / "renders" / f"{t:05d}.png", render)
            mask_rgb = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=-1)
            row = [render, mask_rgb] if self.frames is None else [self.frames[t], render, mask_rgb]
            panels.append(np.concatenate(row, axis=1))
        if video:
            from motion.video_writer import write_video

            write_video(out / "render.mp4", np.stack(panels), fps=fps)
        manifest = {
            "format": SCENE_FORMAT, "version": SCENE_VERSION, "num_frames": self.num_frames,
            "num_gaussians": self.num_gaussians, "num_moving": int(self.moving.sum()),
            "width": self.width, "height": self.height, "K": self.K.tolist(),
            "gaussians_per_frame": [len(s["means"]) for s in self.states],
            "psnr": self.psnr() if self.frames is not None else None, "info": self.info,
        }
        atomic_write_text(out / "scene.json", json.dumps(manifest, indent=1, default=str))
        return out

    def _grid(self, spacing: int) -> np.ndarray:
        """Frame-0 queries at the centres of ``spacing``-pixel cells that lie inside the image."""
        from motion.tracking import grid_queries

        query = grid_queries(self.height, self.width, spacing, frame=0)
        inside = (query[:, 1] <= self.width - 1) & (query[:, 2] <= self.height - 1)
        return query[inside]

    def overview(self, tracks: Any = None, columns: int = 4, scale: int = 2) -> np.ndarray:
        """A picture of the result: for ``columns`` frames spread over the video, the input with the
        moving mask tinted red and the tracks (dots, trails of the previous frames) above the render.

        Args:
            tracks: :class:`motion.tracks.Tracks` to draw (default: a 12-pixel grid from frame 0).
            scale: integer upscaling of the panels (small CPU-sized frames are hard to read).
        Returns:
            ``uint8 [H', W', 3]``.
        """
        import cv2

        from motion.visualize import overlay_tracks, side_by_side

        if self.frames is None:
            raise InvalidArgumentError("overview needs the input frames (Scene4D built without frames)")
        if tracks is None:
            tracks = self.tracks(self._grid(12))
        shown = sorted(set(np.linspace(0, self.num_frames - 1, min(columns, self.num_frames)).round().astype(int)))
        size = (self.width * scale, self.height * scale)
        xy = tracks.xy * scale + (scale - 1) / 2  # pixel centres of the upscaled panels
        tops, bottoms, labels = [], [], []
        for t in shown:
            image = cv2.resize(self.frames[t], size, interpolation=cv2.INTER_LINEAR).astype(np.float32)
            mask = cv2.resize(self.moving_mask(t).numpy().astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
            image[mask] = 0.45 * image[mask] + 0.55 * np.array([255.0, 40.0, 40.0])
            tops.append(overlay_tracks(image.astype(np.uint8), xy, tracks.visible, trail=len(shown) * 4, radius=2, t=t))
            render = (self.render(t).numpy() * 255 + 0.5).astype(np.uint8)
            bottoms.append(cv2.resize(render, size, interpolation=cv2.INTER_LINEAR))
            labels.append(f"t={t} mask+tracks")
        labels += [f"t={t} render" for t in shown]
        return side_by_side(tops + bottoms, labels, columns=len(shown))

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": SCENE_FORMAT, "version": SCENE_VERSION, "states": self.states, "poses": self.poses,
            "K": self.K, "width": self.width, "height": self.height, "moving": self.moving, "birth": self.birth,
            "frames": None if self.frames is None else torch.from_numpy(self.frames),
            "epipolar_masks": self.epipolar_masks, "info_json": json.dumps(self.info, default=str),
            "background": list(self.background), "occlusion_tolerance": self.occlusion_tolerance,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the scene to one ``.pt`` file (atomically); read it back with :meth:`load`."""
        import io

        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return Path(path)

    @classmethod
    def from_state_dict(cls, data: dict[str, Any], source: str = "state dict") -> "Scene4D":
        if not isinstance(data, dict) or data.get("format") != SCENE_FORMAT:
            raise CheckpointError(f"{source}: not a motion4d GFlow scene (format {SCENE_FORMAT!r} expected)")
        missing = [k for k in ("states", "poses", "K", "width", "height", "moving", "birth") if k not in data]
        if missing:
            raise CheckpointError(f"{source}: scene file lacks {missing}")
        try:
            return cls(data["states"], data["poses"], data["K"], data["width"], data["height"], data["moving"],
                       data["birth"], None if data.get("frames") is None else data["frames"].numpy(),
                       data.get("epipolar_masks"), json.loads(data.get("info_json") or "{}"),
                       tuple(data.get("background", (0.0, 0.0, 0.0))), data.get("occlusion_tolerance", 0.05))
        except (KeyError, ShapeError, InvalidArgumentError) as exc:
            raise CheckpointError(f"{source}: inconsistent scene file ({exc})") from exc

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Scene4D":
        path = check_file(path, "scene file")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt / foreign files
            raise CheckpointError(f"{path}: cannot read the scene file ({exc})") from exc
        return cls.from_state_dict(data, str(path))
