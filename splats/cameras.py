"""Pinhole cameras (OpenCV axes, world-to-camera) and trajectory files: TUM, COLMAP text, transforms.json.

Axes: x right, y down, z forward. Pixel centres sit at integer coordinates, so a point on the optical
axis projects to ``(cx, cy)`` and the image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kornia.geometry.conversions import quaternion_to_rotation_matrix, rotation_matrix_to_quaternion

from motion4d.atomic import atomic_write_text
from motion4d.checks import check_file, check_finite, check_floating, check_positive, check_shape
from motion4d.errors import InputFileError, InvalidArgumentError, ShapeError

# OpenGL / Blender camera axes (x right, y up, z backwards) -> OpenCV: flip the y and z camera axes.
GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    """``[3, 3]`` pinhole matrix."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def to_gsplat_intrinsics(K: torch.Tensor) -> torch.Tensor:
    """``[..., 3, 3]`` intrinsics with pixel centres at integer coordinates (ours) -> at ``i + 0.5``
    (gsplat's, and :mod:`splats._raster_torch`'s): the principal point moves by half a pixel."""
    shift = torch.zeros_like(K)
    shift[..., 0, 2] = 0.5
    shift[..., 1, 2] = 0.5
    return K + shift


def invert_rigid(m: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms ``[..., 4, 4]``."""
    r = m[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(m)
    out[..., :3, :3] = r
    out[..., :3, 3] = -(r @ m[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1
    return out


RIGID_TOLERANCE = 1e-3


def _check_rigid(m: torch.Tensor, name: str) -> None:
    """Raise unless every ``m [C, 4, 4]`` is a rotation plus translation (last row 0, 0, 0, 1)."""
    m = m.double()
    eye = torch.eye(3, dtype=torch.float64, device=m.device)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=m.device)
    r = m[:, :3, :3]
    row_error = (m[:, 3] - bottom).abs().amax(dim=-1)
    orthonormal_error = (r @ r.transpose(-1, -2) - eye).abs().amax(dim=(-1, -2))
    bad = (row_error > RIGID_TOLERANCE) | (orthonormal_error > RIGID_TOLERANCE) | (torch.linalg.det(r) <= 0)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise InvalidArgumentError(
            f"{name}[{i}] is not a rigid transform (rotation + translation with last row 0 0 0 1): "
            f"{m[i].tolist()}")


def _unit_quaternion(values: list[float], where: str) -> torch.Tensor:
    """``values`` (w, x, y, z) normalised; a zero or non-finite quaternion is an InputFileError at ``where``."""
    q = torch.tensor(values, dtype=torch.float64)
    norm = float(q.norm())
    if not math.isfinite(norm) or norm < 1e-8:
        raise InputFileError(f"{where}: the rotation quaternion {values} is zero or not finite")
    return q / norm


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: not a text {what} file ({exc})") from exc


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """World-to-camera ``[..., 4, 4]`` (OpenCV axes) of cameras at ``eye [..., 3]`` facing ``target``.

    ``up`` is the world direction that should appear upwards in the image (default ``-y``, i.e. a
    world whose y axis points down like OpenCV's image axis).
    """
    eye, target = torch.as_tensor(eye, dtype=torch.float32), torch.as_tensor(target, dtype=torch.float32)
    eye, target = torch.broadcast_tensors(eye, target)
    up = torch.tensor([0.0, -1.0, 0.0]) if up is None else torch.as_tensor(up, dtype=torch.float32)
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.cross(z, up.expand_as(z), dim=-1), dim=-1)
    if not torch.isfinite(x).all() or (x.norm(dim=-1) < 0.5).any():
        raise InvalidArgumentError("look_at: the viewing direction is parallel to 'up'")
    y = torch.cross(z, x, dim=-1)
    c2w = torch.zeros(eye.shape[:-1] + (4, 4))
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = x, y, z, eye
    c2w[..., 3, 3] = 1
    return invert_rigid(c2w)


@dataclass
class Cameras:
    """C pinhole cameras sharing one image size.

    Attributes:
        K: ``[C, 3, 3]`` intrinsics (pixel centres at integer coordinates).
        world_to_cam: ``[C, 4, 4]`` rigid transforms, OpenCV axes.
        width, height: image size in pixels.
    """

    K: torch.Tensor
    world_to_cam: torch.Tensor
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("K", "world_to_cam"):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(np.asarray(value), dtype=torch.float32)
                setattr(self, name, value)
            check_floating(value, f"Cameras.{name}")
        if self.K.dim() == 2:
            self.K = self.K[None]
        if self.world_to_cam.dim() == 2:
            self.world_to_cam = self.world_to_cam[None]
        c = check_shape(self.K, "Cameras.K", ("C", 3, 3))["C"]
        check_shape(self.world_to_cam, "Cameras.world_to_cam", (None, 4, 4))
        if self.world_to_cam.shape[0] != c:
            if c == 1:
                self.K = self.K.expand(self.world_to_cam.shape[0], 3, 3)
            else:
                raise ShapeError(
                    f"Cameras.K holds {c} cameras but Cameras.world_to_cam holds {self.world_to_cam.shape[0]}"
                )
        check_finite(self.K.detach(), "Cameras.K")
        check_finite(self.world_to_cam.detach(), "Cameras.world_to_cam")
        self.width, self.height = int(self.width), int(self.height)
        check_positive(self.width, "Cameras.width")
        check_positive(self.height, "Cameras.height")
        if (self.K[:, 0, 0] <= 0).any() or (self.K[:, 1, 1] <= 0).any():
            raise InvalidArgumentError("Cameras.K must have positive focal lengths fx, fy")
        _check_rigid(self.world_to_cam.detach(), "Cameras.world_to_cam")

    @classmethod
    def from_fov(cls, world_to_cam: torch.Tensor, width: int, height: int, fov_x_deg: float = 60.0) -> "Cameras":
        """Cameras with square pixels, the principal point at the image centre and horizontal FoV."""
        if not 0 < fov_x_deg < 180:
            raise InvalidArgumentError(f"fov_x_deg must be in (0, 180), got {fov_x_deg}")
        f = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
        return cls(intrinsics_matrix(f, f, (width - 1) / 2, (height - 1) / 2), world_to_cam, width, height)

    def __len__(self) -> int:
        return self.K.shape[0]

    def __getitem__(self, index: int | slice | torch.Tensor | list[int]) -> "Cameras":
        if isinstance(index, int):
            index = [index]
        return Cameras(self.K[index], self.world_to_cam[index], self.width, self.height)

    def to(self, *args, **kwargs) -> "Cameras":
        return Cameras(self.K.to(*args, **kwargs), self.world_to_cam.to(*args, **kwargs), self.width, self.height)

    @staticmethod
    def concat(parts: list["Cameras"]) -> "Cameras":
        sizes = {(p.width, p.height) for p in parts}
        if len(sizes) != 1:
            raise InvalidArgumentError(f"cameras of different image sizes cannot be concatenated: {sorted(sizes)}")
        return Cameras(torch.cat([p.K for p in parts]), torch.cat([p.world_to_cam for p in parts]), *sizes.pop())

    @property
    def device(self) -> torch.device:
        return self.K.device

    @property
    def cam_to_world(self) -> torch.Tensor:
        """``[C, 4, 4]``."""
        return invert_rigid(self.world_to_cam)

    @property
    def centers(self) -> torch.Tensor:
        """``[C, 3]`` camera centres in world coordinates."""
        return self.cam_to_world[:, :3, 3]

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project world points ``[N, 3]`` (or per camera ``[C, N, 3]``).

        Returns:
            ``uv [C, N, 2]`` pixels and ``depth [C, N]`` (camera z).
        """
        if points.dim() == 2:
            points = points[None].expand(len(self), -1, -1)
        check_shape(points, "points", (len(self), "N", 3))
        r, t = self.world_to_cam[:, None, :3, :3], self.world_to_cam[:, None, :3, 3]
        cam = (r @ points[..., None])[..., 0] + t
        z = cam[..., 2]
        uvw = (self.K[:, None] @ cam[..., None])[..., 0]
        return uvw[..., :2] / z[..., None], z

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for images resized by ``factor`` (pixel-centre convention kept)."""
        k = self.K.clone()
        k[:, :2, :2] *= factor
        k[:, :2, 2] = (k[:, :2, 2] + 0.5) * factor - 0.5
        return Cameras(k, self.world_to_cam, round(self.width * factor), round(self.height * factor))


# -------------------------------------------------------------------- TUM
def write_tum(path: str | os.PathLike, timestamps: np.ndarray | list[float], world_to_cam: torch.Tensor) -> Path:
    """TUM trajectory: ``timestamp tx ty tz qx qy qz qw`` per line, camera-to-world."""
    w2c = torch.as_tensor(world_to_cam, dtype=torch.float64)
    check_shape(w2c, "world_to_cam", ("T", 4, 4))
    stamps = np.asarray(timestamps, dtype=np.float64)
    if stamps.shape != (w2c.shape[0],):
        raise ShapeError(f"timestamps must have shape [{w2c.shape[0]}], got {list(stamps.shape)}")
    c2w = invert_rigid(w2c)
    q = rotation_matrix_to_quaternion(c2w[:, :3, :3].contiguous())  # wxyz
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for s, t, qq in zip(stamps, c2w[:, :3, 3].tolist(), q.tolist()):
        lines.append(f"{s:.6f} {t[0]:.9f} {t[1]:.9f} {t[2]:.9f} {qq[1]:.9f} {qq[2]:.9f} {qq[3]:.9f} {qq[0]:.9f}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)


def read_tum(path: str | os.PathLike) -> tuple[np.ndarray, torch.Tensor]:
    """Read a TUM trajectory -> ``(timestamps [T], world_to_cam [T, 4, 4] float64)``."""
    path = check_file(path, "TUM trajectory")
    rows = []
    quats = []
    for i, line in enumerate(_read_text(path, "TUM trajectory").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = line.replace(",", " ").split()
        try:
            values = [float(w) for w in words]
        except ValueError as exc:
            raise InputFileError(f"{path}:{i}: not a number in {line!r}") from exc
        if len(values) != 8:
            raise InputFileError(f"{path}:{i}: expected 8 values 'timestamp tx ty tz qx qy qz qw', got {len(values)}")
        if not all(math.isfinite(v) for v in values):
            raise InputFileError(f"{path}:{i}: non-finite value in {line!r}")
        rows.append(values)
        quats.append(_unit_quaternion([values[7], values[4], values[5], values[6]], f"{path}:{i}"))
    if not rows:
        raise InputFileError(f"{path}: no poses in the TUM file")
    a = torch.tensor(rows, dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(a), 1, 1)
    c2w[:, :3, :3] = quaternion_to_rotation_matrix(torch.stack(quats))
    c2w[:, :3, 3] = a[:, 1:4]
    return a[:, 0].numpy(), invert_rigid(c2w)


# -------------------------------------------------------------------- COLMAP text
def read_colmap_text(folder: str | os.PathLike) -> tuple[Cameras, list[str]]:
    """Read ``cameras.txt`` + ``images.txt`` (PINHOLE, SIMPLE_PINHOLE; distortion-free models).

    Returns ``(cameras, image names)`` ordered by image name. All cameras must share one size.
    """
    folder = check_file(folder, "COLMAP folder")
    cameras_txt = check_file(folder / "cameras.txt", "cameras.txt")
    cams: dict[int, tuple[int, int, torch.Tensor]] = {}
    for i, line in enumerate(_read_text(cameras_txt, "COLMAP").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{cameras_txt}:{i}"
        try:
            w = line.split()
            model, width, height, p = w[1], int(w[2]), int(w[3]), [float(x) for x in w[4:]]
            if model == "PINHOLE":
                fx, fy, cx, cy = p[:4]
            elif model == "SIMPLE_PINHOLE":
                fx = fy = p[0]
                cx, cy = p[1:3]
            elif model in ("OPENCV", "RADIAL", "SIMPLE_RADIAL") and all(abs(x) < 1e-12 for x in p[4 if model == "OPENCV" else 3:]):
                fx, fy, cx, cy = (p[:4] if model == "OPENCV" else (p[0], p[0], p[1], p[2]))
            else:
                raise InputFileError(f"{where}: camera model {model} with distortion is not supported")
            camera_id = int(w[0])
        except (IndexError, ValueError) as exc:
            raise InputFileError(f"{where}: malformed camera line {line.strip()!r} "
                                 "(expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...')") from exc
        if width <= 0 or height <= 0 or not (fx > 0 and fy > 0) or not all(map(math.isfinite, (fx, fy, cx, cy))):
            raise InputFileError(f"{where}: camera size and focal lengths must be positive, got {line.strip()!r}")
        # COLMAP puts pixel centres at +0.5; ours are at integers.
        cams[camera_id] = (width, height, intrinsics_matrix(fx, fy, cx - 0.5, cy - 0.5))
    images_txt = check_file(folder / "images.txt", "images.txt")
    lines = [(n, ln) for n, ln in enumerate(_read_text(images_txt, "COLMAP").splitlines(), 1) if not ln.startswith("#")]
    entries = []
    i = 0
    while i < len(lines):
        number, line = lines[i]
        if not line.strip():
            i += 1
            continue
        where = f"{images_txt}:{number}"
        w = line.split()
        try:
            if len(w) < 10:
                raise ValueError("fewer than 10 fields")
            q = _unit_quaternion([float(x) for x in w[1:5]], where)
            t = torch.tensor([float(x) for x in w[5:8]], dtype=torch.float64)
            cam_id = int(w[8])
        except ValueError as exc:
            raise InputFileError(f"{where}: malformed image line {line.strip()!r} "
                                 f"(expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'): {exc}") from exc
        if not torch.isfinite(t).all():
            raise InputFileError(f"{where}: non-finite translation in {line.strip()!r}")
        if cam_id not in cams:
            raise InputFileError(f"{where}: image {w[9]} refers to unknown camera {cam_id}")
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = quaternion_to_rotation_matrix(q)
        m[:3, 3] = t
        entries.append((" ".join(w[9:]), cams[cam_id], m))
        i += 2  # skip the 2D points line
    if not entries:
        raise InputFileError(f"{folder / 'images.txt'}: no images")
    entries.sort(key=lambda e: e[0])
    sizes = {(e[1][0], e[1][1]) for e in entries}
    if len(sizes) != 1:
        raise InputFileError(f"{folder}: images of several sizes {sorted(sizes)} are not supported")
    width, height = sizes.pop()
    cameras = Cameras(
        torch.stack([e[1][2] for e in entries]).float(), torch.stack([e[2] for e in entries]).float(), width, height
    )
    return cameras, [e[0] for e in entries]


def write_colmap_text(folder: str | os.PathLike, cameras: Cameras, names: list[str]) -> Path:
    """Write ``cameras.txt`` (PINHOLE, one per image), ``images.txt`` and an empty ``points3D.txt``."""
    if len(names) != len(cameras):
        raise ShapeError(f"names ({len(names)}) and cameras ({len(cameras)}) must have the same count")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    k = cameras.K.detach().double().cpu()
    w2c = cameras.world_to_cam.detach().double().cpu()
    q = rotation_matrix_to_quaternion(w2c[:, :3, :3].contiguous())
    cam_lines = ["# CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"]
    img_lines = ["# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", "# POINTS2D[] as (X, Y, POINT3D_ID)"]
    for i, name in enumerate(names):
        fx, fy, cx, cy = k[i, 0, 0], k[i, 1, 1], k[i, 0, 2] + 0.5, k[i, 1, 2] + 0.5
        cam_lines.append(f"{i + 1} PINHOLE {cameras.width} {cameras.height} {fx:.9f} {fy:.9f} {cx:.9f} {cy:.9f}")
        qq, t = q[i].tolist(), w2c[i, :3, 3].tolist()
        img_lines.append(f"{i + 1} " + " ".join(f"{x:.12f}" for x in qq + t) + f" {i + 1} {name}")
        img_lines.append("")
    atomic_write_text(folder / "cameras.txt", "\n".join(cam_lines) + "\n")
    atomic_write_text(folder / "images.txt", "\n".join(img_lines) + "\n")
    atomic_write_text(folder / "points3D.txt", "# POINT3D_ID X Y Z R G B ERROR TRACK[]\n")
    return folder


# -------------------------------------------------------------------- transforms.json
@dataclass
class TransformsFrames:
    """Frames listed in a nerfstudio / D-NeRF ``transforms*.json``."""

    cameras: Cameras
    image_paths: list[Path]
    times: np.ndarray | None  # [C] in [0, 1] (D-NeRF), None when the file has no times


def read_transforms_json(path: str | os.PathLike, width: int | None = None, height: int | None = None) -> TransformsFrames:
    """Read a nerfstudio / D-NeRF / Blender ``transforms*.json``; OpenGL axes are converted to OpenCV.

    Intrinsics come from ``fl_x, fl_y, cx, cy, w, h`` (nerfstudio, top-level or per frame) or from
    ``camera_angle_x`` plus the image size (Blender / D-NeRF: pass ``width``/``height`` or the first
    image is opened to read it).
    """
    path = check_file(path, "transforms json")
    try:
        meta = json.loads(_read_text(path, "JSON"))
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise InputFileError(f"{path}: expected a JSON object with a 'frames' list, got {type(meta).__name__}")
    frames = meta.get("frames")
    if not frames or not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
        raise InputFileError(f"{path}: no 'frames' list of objects")
    try:
        return _transforms_frames(path, meta, frames, width, height)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        raise InputFileError(f"{path}: malformed camera values ({type(exc).__name__}: {exc})") from exc


def _transforms_frames(path: Path, meta: dict[str, Any], frames: list[dict[str, Any]], width: int | None,
                       height: int | None) -> TransformsFrames:
    paths, c2ws, times, ks = [], [], [], []
    for i, frame in enumerate(frames):
        if "file_path" not in frame or "transform_matrix" not in frame:
            raise InputFileError(f"{path}: frame {i} lacks 'file_path' or 'transform_matrix'")
        p = path.parent / frame["file_path"]
        if not p.suffix:
            p = p.with_suffix(".png")
        paths.append(p)
        m = torch.tensor(frame["transform_matrix"], dtype=torch.float64)
        if m.shape != (4, 4) or not torch.isfinite(m).all():
            raise InputFileError(f"{path}: frame {i} transform_matrix is not a finite 4x4 matrix")
        try:
            _check_rigid(m[None], f"transform_matrix of frame {i}")
        except InvalidArgumentError as exc:
            raise InputFileError(f"{path}: {exc}") from None
        c2ws.append(m @ GL_TO_CV)
        if "time" in frame:
            times.append(float(frame["time"]))
        ks.append({**meta, **frame})
    w = width or meta.get("w")
    h = height or meta.get("h")
    if w is None or h is None:
        import cv2

        img = cv2.imread(str(paths[0]), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputFileError(f"{path}: cannot read image size from {paths[0]}; pass width and height")
        h, w = img.shape[:2]
    w, h = int(w), int(h)
    kmats = []
    for entry in ks:
        if "fl_x" in entry:
            fx = float(entry["fl_x"])
            fy = float(entry.get("fl_y", fx))
            # nerfstudio also uses the +0.5 pixel-centre convention (cx = W / 2 for a centred camera)
            cx = float(entry.get("cx", w / 2)) - 0.5
            cy = float(entry.get("cy", h / 2)) - 0.5
        elif "camera_angle_x" in entry:
            angle = float(entry["camera_angle_x"])
            if not 0 < angle < math.pi:
                raise InputFileError(f"{path}: camera_angle_x must be in (0, pi) radians, got {angle}")
            fx = fy = 0.5 * w / math.tan(0.5 * angle)
            cx, cy = (w - 1) / 2, (h - 1) / 2
        else:
            raise InputFileError(f"{path}: no intrinsics (expected fl_x/fl_y/cx/cy or camera_angle_x)")
        kmats.append(intrinsics_matrix(fx, fy, cx, cy))
    if times and len(times) != len(frames):
        raise InputFileError(f"{path}: only {len(times)} of {len(frames)} frames have a 'time'")
    if w <= 0 or h <= 0:
        raise InputFileError(f"{path}: image size must be positive, got {w}x{h}")
    try:
        cameras = Cameras(torch.stack(kmats), invert_rigid(torch.stack(c2ws)).float(), w, h)
    except InvalidArgumentError as exc:
        raise InputFileError(f"{path}: {exc}") from None
    return TransformsFrames(cameras, paths, np.asarray(times, dtype=np.float64) if times else None)


def write_transforms_json(
    path: str | os.PathLike, cameras: Cameras, file_paths: list[str], times: np.ndarray | None = None
) -> Path:
    """Write a nerfstudio-style ``transforms.json`` (OpenGL axes, +0.5 pixel-centre intrinsics)."""
    if len(file_paths) != len(cameras):
        raise ShapeError(f"file_paths ({len(file_paths)}) and cameras ({len(cameras)}) must have the same count")
    c2w = (cameras.cam_to_world.detach().double().cpu() @ GL_TO_CV)
    frames = []
    for i, fp in enumerate(file_paths):
        k = cameras.K[i].detach().double().cpu()
        entry = {
            "file_path": fp,
            "transform_matrix": c2w[i].tolist(),
            "fl_x": float(k[0, 0]), "fl_y": float(k[1, 1]),
            "cx": float(k[0, 2]) + 0.5, "cy": float(k[1, 2]) + 0.5,
        }
        if times is not None:
            entry["time"] = float(times[i])
        frames.append(entry)
    meta = {"camera_model": "OPENCV", "w": cameras.width, "h": cameras.height, "frames": frames}
    atomic_write_text(path, json.dumps(meta, indent=1))
    return Path(path)
