"""Point clouds: the ``PointCloud`` container, file IO, depth unprojection and padded batches.

Conventions: points are ``float32 [N, 3]`` in metres; colours are ``float32 [N, 3]`` in [0, 1]
(uint8 input is divided by 255 on the way in; ``.pcd`` files store what open3d stores); intensity is ``float32 [N]``; normals are ``float32 [N, 3]``. Batches of clouds of
different sizes travel as ``padded [B, N_max, 3]`` plus ``lengths [B]``.

File formats (dispatch on the extension):

========== ================================================================================
``.ply``   plyfile (positions, colours as uint8 or float, normals, intensity); binary little-endian
``.pcd``   open3d tensor IO (colours are stored as uint8 by open3d: 1/255 precision)
``.npz``   keys ``points`` and, when present, ``colors``, ``intensity``, ``normals``
``.npy``   a bare ``[N, 3]`` array of points (no attributes)
``.bin``   KITTI velodyne scan: little-endian float32 records ``x, y, z, intensity``
========== ================================================================================
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from motion4d.atomic import atomic_path
from motion4d.checks import check_file, check_finite, check_positive, check_shape, require
from motion4d.errors import InputFileError, InvalidArgumentError, ShapeError
from motion4d.limits import check_declared_size
from motion4d.numpy_io import load_npy, load_npz, npz_keys
from motion4d.ply import read_ply_vertices, write_ply_vertices

ArrayLike = Any  # np.ndarray | torch.Tensor

CLOUD_SUFFIXES = (".ply", ".pcd", ".npz", ".npy", ".bin")


def _as_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _float_array(x: ArrayLike, name: str, pattern: Sequence[int | str]) -> np.ndarray:
    arr = _as_numpy(x)
    check_shape(arr, name, pattern)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ShapeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    check_finite(arr, name)
    return arr


def _colors_array(x: ArrayLike, n: int) -> np.ndarray:
    arr = _as_numpy(x)
    check_shape(arr, "colors", (n, 3))
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ShapeError(f"colors must be uint8 or floating point in [0, 1], got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    check_finite(arr, "colors")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise InvalidArgumentError(
            f"float colors must lie in [0, 1], got range [{arr.min():.4g}, {arr.max():.4g}] "
            "(pass uint8 for 0..255 values)"
        )
    return arr


@dataclass(eq=False)
class PointCloud:
    """A point cloud with optional per-point attributes (all numpy, float32).

    Attributes:
        points: ``[N, 3]`` positions in metres (finite).
        colors: ``[N, 3]`` RGB in [0, 1] or None (uint8 input is converted).
        intensity: ``[N]`` lidar return strength or None.
        normals: ``[N, 3]`` or None (not renormalised on input).
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    intensity: np.ndarray | None = None
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points = _float_array(self.points, "points", ("N", 3))
        n = self.points.shape[0]
        if self.colors is not None:
            self.colors = _colors_array(self.colors, n)
        if self.intensity is not None:
            self.intensity = _float_array(self.intensity, "intensity", (n,))
        if self.normals is not None:
            self.normals = _float_array(self.normals, "normals", (n, 3))

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __repr__(self) -> str:
        attrs = [a for a in ("colors", "intensity", "normals") if getattr(self, a) is not None]
        return f"PointCloud(N={len(self)}, attributes={attrs})"

    # ----------------------------------------------------------------------------- conversion
    def to_tensor(self, device: str | torch.device | None = None) -> torch.Tensor:
        """Points as a ``float32 [N, 3]`` torch tensor (shares memory on the CPU)."""
        t = torch.from_numpy(self.points)
        return t if device is None else t.to(device)

    def to_open3d(self) -> Any:
        """A legacy ``open3d.geometry.PointCloud`` (points, colours, normals; intensity is dropped:
        use :meth:`to_open3d_tensor` to keep it)."""
        o3d = require("open3d", "PointCloud.to_open3d", extra="3d")
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(self.points.astype(np.float64)))
        if self.colors is not None:
            pcd.colors = o3d.utility.Vector3dVector(self.colors.astype(np.float64))
        if self.normals is not None:
            pcd.normals = o3d.utility.Vector3dVector(self.normals.astype(np.float64))
        return pcd

    def to_open3d_tensor(self) -> Any:
        """An ``open3d.t.geometry.PointCloud`` with every attribute (intensity as ``[N, 1]``)."""
        o3d = require("open3d", "PointCloud.to_open3d_tensor", extra="3d")
        pcd = o3d.t.geometry.PointCloud()
        pcd.point.positions = o3d.core.Tensor(self.points)
        if self.colors is not None:
            pcd.point.colors = o3d.core.Tensor(self.colors)
        if self.normals is not None:
            pcd.point.normals = o3d.core.Tensor(self.normals)
        if self.intensity is not None:
            pcd.point.intensity = o3d.core.Tensor(self.intensity[:, None].copy())
        return pcd

    @classmethod
    def from_open3d(cls, pcd: Any) -> "PointCloud":
        """Build from a legacy ``open3d.geometry.PointCloud`` or an ``open3d.t.geometry.PointCloud``."""
        o3d = require("open3d", "PointCloud.from_open3d", extra="3d")
        if isinstance(pcd, o3d.geometry.PointCloud):
            return cls(
                np.asarray(pcd.points),
                colors=np.asarray(pcd.colors) if pcd.has_colors() else None,
                normals=np.asarray(pcd.normals) if pcd.has_normals() else None,
            )
        if isinstance(pcd, o3d.t.geometry.PointCloud):
            attrs = pcd.point
            if "positions" not in attrs:
                return cls(np.zeros((0, 3), np.float32))

            def get(key: str) -> np.ndarray | None:
                return attrs[key].cpu().numpy() if key in attrs else None

            intensity = get("intensity")
            return cls(
                get("positions"),
                colors=get("colors"),
                intensity=None if intensity is None else intensity.reshape(-1),
                normals=get("normals"),
            )
        raise InvalidArgumentError(
            f"pcd must be an open3d.geometry.PointCloud or open3d.t.geometry.PointCloud, got {type(pcd).__name__}"
        )

    # ----------------------------------------------------------------------------- operations
    def select(self, index: ArrayLike) -> "PointCloud":
        """The sub-cloud at ``index`` (bool mask ``[N]`` or integer indices), attributes included."""
        idx = _as_numpy(index)
        if idx.dtype == bool:
            check_shape(idx, "index", (len(self),))
        elif not np.issubdtype(idx.dtype, np.integer):
            raise ShapeError(f"index must be a bool mask or integer indices, got dtype {idx.dtype}")
        elif idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise InvalidArgumentError(
                f"index values must lie in [-{len(self)}, {len(self)}), got [{idx.min()}, {idx.max()}]"
            )

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[idx]

        return PointCloud(self.points[idx], pick(self.colors), pick(self.intensity), pick(self.normals))

    def transform(self, T: ArrayLike) -> "PointCloud":
        """Apply a rigid/affine ``[4, 4]`` transform: ``p' = R p + t``; normals are rotated by ``R``."""
        T64 = _as_numpy(T).astype(np.float64)
        check_shape(T64, "T", (4, 4))
        check_finite(T64, "T")
        if not np.allclose(T64[3], [0, 0, 0, 1]):
            raise InvalidArgumentError(f"T must have last row [0, 0, 0, 1], got {T64[3].tolist()}")
        R, t = T64[:3, :3], T64[:3, 3]
        points = self.points.astype(np.float64) @ R.T + t
        normals = None if self.normals is None else self.normals.astype(np.float64) @ R.T
        return PointCloud(points, self.colors, self.intensity, normals)

    def crop(self, min_bound: Sequence[float], max_bound: Sequence[float]) -> "PointCloud":
        """Keep points inside the axis-aligned box ``min_bound <= p <= max_bound`` (inclusive)."""
        lo = np.asarray(min_bound, np.float64).reshape(-1)
        hi = np.asarray(max_bound, np.float64).reshape(-1)
        if lo.shape != (3,) or hi.shape != (3,):
            raise ShapeError(f"min_bound and max_bound must have 3 values, got {lo.shape} and {hi.shape}")
        if np.any(lo > hi):
            raise InvalidArgumentError(f"min_bound {lo.tolist()} must be <= max_bound {hi.tolist()}")
        inside = np.all((self.points >= lo) & (self.points <= hi), axis=1)
        return self.select(inside)

    def voxel_down_sample(self, voxel_size: float) -> "PointCloud":
        """Average all points (and attributes) falling into each cubic voxel of ``voxel_size`` m.

        The grid is anchored like open3d's: voxel ``i`` covers
        ``[min_bound - size / 2 + i * size, ... + size)`` on each axis. Output order is the sorted
        voxel key order. Runs in numpy (``bench/neighbors.py`` measures it against open3d).
        """
        check_positive(float(voxel_size), "voxel_size")
        if len(self) == 0:
            return PointCloud(self.points.copy(), self.colors, self.intensity, self.normals)
        pts = self.points.astype(np.float64)
        origin = pts.min(axis=0) - 0.5 * voxel_size
        cells = np.floor((pts - origin) / voxel_size).astype(np.int64)
        dims = cells.max(axis=0) + 1
        if float(dims[0]) * float(dims[1]) * float(dims[2]) >= 2.0**62:
            raise InvalidArgumentError(f"voxel_size {voxel_size} is too small for a cloud this large")
        keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)

        def mean(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            flat = a.reshape(len(a), -1).astype(np.float64)
            sums = np.zeros((len(counts), flat.shape[1]))
            for c in range(flat.shape[1]):
                sums[:, c] = np.bincount(inverse, weights=flat[:, c], minlength=len(counts))
            out = sums / counts[:, None]
            return out.reshape((len(counts),) + a.shape[1:])

        colors = mean(self.colors)
        if colors is not None:
            colors = np.clip(colors, 0.0, 1.0)
        return PointCloud(mean(pts), colors, mean(self.intensity), mean(self.normals))


# ------------------------------------------------------------------------------------ file IO
def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in CLOUD_SUFFIXES:
        raise InvalidArgumentError(
            f"{path}: unknown point-cloud extension {suffix!r}; expected one of {list(CLOUD_SUFFIXES)}"
        )
    return suffix


@contextlib.contextmanager
def _quiet_open3d(o3d: Any) -> Iterator[None]:
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        yield


def read_cloud(path: str | os.PathLike, max_bytes: int | None = None) -> PointCloud:
    """Read a point cloud from ``.ply``, ``.pcd``, ``.npz``, ``.npy`` or KITTI ``.bin``.

    What the file's header declares is checked before anything is allocated (:mod:`motion4d.limits`;
    ``max_bytes`` raises the decoded-size limit).

    Raises:
        MissingFileError: the file does not exist.
        InputFileError: the file is empty, corrupt, truncated, shorter than its header says, or holds no points.
        InputTooLargeError: it declares more points than the limit allows.
        NonFiniteError: the file holds NaN/inf coordinates (with their count).
        MissingDependencyError: ``.pcd`` without open3d installed.
    """
    p = check_file(path)
    suffix = _suffix(p)
    if p.is_dir():
        raise InputFileError(f"{p} is a folder, not a point-cloud file")
    if p.stat().st_size == 0:
        raise InputFileError(f"{p} is empty (0 bytes)")
    try:
        if suffix == ".ply":
            cloud = _read_ply(p, max_bytes)
        elif suffix == ".pcd":
            cloud = _read_pcd(p, max_bytes)
        elif suffix == ".bin":
            cloud = _read_kitti_bin(p, max_bytes)
        elif suffix == ".npy":
            cloud = PointCloud(load_npy(p, max_bytes))
        else:
            cloud = _read_npz(p, max_bytes)
    except ShapeError as exc:
        raise type(exc)(f"{p}: {exc}") from exc
    if len(cloud) == 0:
        raise InputFileError(f"{p} holds no points")
    return cloud


_PLY_COLOURS = ("red", "green", "blue")
_PLY_NORMALS = ("nx", "ny", "nz")


def _read_ply(p: Path, max_bytes: int | None) -> PointCloud:
    vertices = read_ply_vertices(p, max_bytes)
    names = vertices.dtype.names or ()
    missing = [a for a in "xyz" if a not in names]
    if missing:
        raise InputFileError(f"{p}: PLY vertices have no {missing} properties (properties: {list(names)})")

    def stack(keys: Sequence[str]) -> np.ndarray | None:
        return np.stack([vertices[k] for k in keys], axis=1) if all(k in names for k in keys) else None

    colors = stack(_PLY_COLOURS)
    if colors is not None and np.issubdtype(colors.dtype, np.integer) and colors.dtype != np.uint8:
        raise InputFileError(f"{p}: PLY colours must be uchar (0-255) or float (0-1), got {colors.dtype}")
    return PointCloud(
        stack("xyz"),
        colors=colors,
        intensity=vertices["intensity"] if "intensity" in names else None,
        normals=stack(_PLY_NORMALS),
    )


def _write_ply(path: Path, cloud: PointCloud) -> None:
    columns = {axis: cloud.points[:, i] for i, axis in enumerate("xyz")}
    if cloud.normals is not None:
        columns.update({name: cloud.normals[:, i] for i, name in enumerate(_PLY_NORMALS)})
    if cloud.colors is not None:  # float: exact, whereas uchar would round to 1/255
        columns.update({name: cloud.colors[:, i] for i, name in enumerate(_PLY_COLOURS)})
    if cloud.intensity is not None:
        columns["intensity"] = cloud.intensity
    write_ply_vertices(path, columns)


_PCD_SIZES = {"ascii": None, "binary": 1, "binary_compressed": None}


def _pcd_declared_points(p: Path) -> tuple[int, int, str, int]:
    """``(points, bytes per point, data kind, header bytes)`` from a PCD header."""
    with open(p, "rb") as f:
        head = f.read(1 << 16)
    fields: dict[str, list[str]] = {}
    offset = 0
    for line in head.split(b"\n"):
        offset += len(line) + 1
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0].startswith("#"):
            continue
        fields[words[0].upper()] = words[1:]
        if words[0].upper() == "DATA":
            break
    else:
        raise InputFileError(f"{p}: not a PCD file (no DATA line in its header)")
    try:
        points = int(fields.get("POINTS", fields.get("WIDTH", ["0"]))[0])
        sizes = [int(v) for v in fields["SIZE"]]
        counts = [int(v) for v in fields.get("COUNT", ["1"] * len(sizes))]
    except (KeyError, ValueError, IndexError) as exc:
        raise InputFileError(f"{p}: malformed PCD header ({exc})") from None
    return points, sum(s * c for s, c in zip(sizes, counts)), fields["DATA"][0].lower(), offset


def _read_pcd(p: Path, max_bytes: int | None) -> PointCloud:
    points, point_bytes, kind, offset = _pcd_declared_points(p)
    available = p.stat().st_size - offset if kind == "binary" else None
    check_declared_size(p, "the PCD header", (points, max(point_bytes, 1)), 1, available=available, max_bytes=max_bytes)
    o3d = require("open3d", "reading .pcd point clouds", extra="3d")
    with _quiet_open3d(o3d):
        pcd = o3d.t.io.read_point_cloud(str(p))
    # open3d reports a parse failure only as a log line and an empty or short cloud.
    read = pcd.point.positions.shape[0] if "positions" in pcd.point else 0
    if read != points:
        raise InputFileError(f"{p}: could not be parsed as .pcd: its header declares {points} points, {read} were read")
    return PointCloud.from_open3d(pcd)


def _read_kitti_bin(p: Path, max_bytes: int | None) -> PointCloud:
    size = p.stat().st_size
    if size % 16:
        raise InputFileError(
            f"{p} is not a KITTI velodyne scan: {size} bytes is not a multiple of 16 (4 float32 per point)"
        )
    check_declared_size(p, "the file size", (size // 16, 4), 4, max_bytes=max_bytes)
    data = np.fromfile(p, dtype="<f4").reshape(-1, 4)
    return PointCloud(data[:, :3], intensity=data[:, 3])


def _read_npz(p: Path, max_bytes: int | None) -> PointCloud:
    fields = load_npz(p, ("points", "colors", "intensity", "normals"), max_bytes)
    if "points" not in fields:
        raise InputFileError(f"{p} has no 'points' array (keys: {npz_keys(p)})")
    return PointCloud(**fields)


def write_cloud(path: str | os.PathLike, cloud: PointCloud) -> Path:
    """Write ``cloud`` atomically; the format follows the extension (see the module docstring).

    ``.npy`` stores points only and ``.bin`` stores points + intensity (zeros when absent); both
    refuse clouds whose other attributes would be lost silently.
    """
    if not isinstance(cloud, PointCloud):
        raise InvalidArgumentError(f"cloud must be a PointCloud, got {type(cloud).__name__}")
    p = Path(path)
    suffix = _suffix(p)
    lost = {
        ".npy": ("colors", "intensity", "normals"),
        ".bin": ("colors", "normals"),
    }.get(suffix, ())
    dropped = [a for a in lost if getattr(cloud, a) is not None]
    if dropped:
        raise InvalidArgumentError(f"{p}: {suffix} cannot store {dropped}; use .npz, .ply or .pcd")
    if suffix == ".ply":
        _write_ply(p, cloud)
        return p
    with atomic_path(p) as tmp:
        if suffix == ".pcd":
            o3d = require("open3d", f"writing {suffix} point clouds", extra="3d")
            with _quiet_open3d(o3d):
                ok = o3d.t.io.write_point_cloud(str(tmp), cloud.to_open3d_tensor())
            if not ok:
                raise InputFileError(f"open3d failed to write {p}")
        elif suffix == ".bin":
            intensity = cloud.intensity if cloud.intensity is not None else np.zeros(len(cloud), np.float32)
            np.concatenate([cloud.points, intensity[:, None]], axis=1).astype("<f4").tofile(tmp)
        elif suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, cloud.points)
        else:
            fields = {k: getattr(cloud, k) for k in ("points", "colors", "intensity", "normals")}
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: v for k, v in fields.items() if v is not None})
    return p


# ------------------------------------------------------------------------------ depth -> points
def depth_to_points(
    depth: ArrayLike,
    K: ArrayLike,
    mask: ArrayLike | None = None,
    image: ArrayLike | None = None,
) -> PointCloud:
    """Unproject a depth map to a camera-frame point cloud (OpenCV axes: x right, y down, z forward).

    ``p = depth[v, u] * K^-1 [u, v, 1]^T`` for every pixel with finite depth > 0 (and ``mask``
    true), in row-major pixel order; pixel centres are integer coordinates.

    Args:
        depth: ``[H, W]`` z-depth in metres (0, negative or non-finite = no measurement).
        K: ``[3, 3]`` intrinsics.
        mask: optional ``bool [H, W]`` of pixels to keep.
        image: optional ``[H, W, 3]`` RGB (uint8 or float in [0, 1]) giving the point colours.
    """
    kornia_depth = require("kornia.geometry.depth", "depth_to_points")
    d = torch.as_tensor(_as_numpy(depth)).float()
    hw = check_shape(d, "depth", ("H", "W"))
    Kt = torch.as_tensor(_as_numpy(K)).float()
    check_shape(Kt, "K", (3, 3))
    check_finite(Kt, "K")
    if Kt[0, 0] == 0 or Kt[1, 1] == 0:
        raise InvalidArgumentError(f"K must have non-zero focal lengths, got fx={Kt[0, 0]}, fy={Kt[1, 1]}")
    valid = torch.isfinite(d) & (d > 0)
    if mask is not None:
        m = torch.as_tensor(_as_numpy(mask))
        check_shape(m, "mask", (hw["H"], hw["W"]))
        if m.dtype != torch.bool:
            raise ShapeError(f"mask must be bool, got {m.dtype}")
        valid &= m
    colors = None
    if image is not None:
        img = _as_numpy(image)
        check_shape(img, "image", (hw["H"], hw["W"], 3))
        colors = img[valid.numpy()]
    safe = torch.where(valid, d, torch.zeros_like(d))
    xyz = kornia_depth.depth_to_3d_v2(safe[None], Kt[None])[0]  # [H, W, 3]
    return PointCloud(xyz[valid].numpy(), colors=colors)


# ------------------------------------------------------------------------------ padded batches
def pad_batch(
    clouds: Sequence[ArrayLike | PointCloud], pad_value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack clouds of different sizes into ``padded [B, N_max, C]`` and ``lengths int64 [B]``.

    Accepts ``[N_i, C]`` tensors/arrays (C is usually 3, e.g. points or flows) or PointClouds.
    Dtype and device follow the first torch input (float32 on the CPU for numpy input).
    """
    if len(clouds) == 0:
        raise InvalidArgumentError("pad_batch needs at least one cloud")
    tensors = []
    for i, c in enumerate(clouds):
        t = c.to_tensor() if isinstance(c, PointCloud) else c
        if not isinstance(t, torch.Tensor):
            t = torch.as_tensor(np.asarray(t, dtype=np.float32))
        check_shape(t, f"clouds[{i}]", ("N", None))
        tensors.append(t)
    channels = {t.shape[1] for t in tensors}
    if len(channels) != 1:
        raise ShapeError(f"all clouds must have the same number of channels, got {sorted(channels)}")
    ref = tensors[0]
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long, device=ref.device)
    padded = ref.new_full((len(tensors), int(lengths.max()), ref.shape[1]), pad_value)
    for i, t in enumerate(tensors):
        padded[i, : t.shape[0]] = t.to(device=ref.device, dtype=ref.dtype)
    return padded, lengths


def unpad_batch(padded: torch.Tensor, lengths: ArrayLike) -> list[torch.Tensor]:
    """Inverse of :func:`pad_batch`: ``padded [B, N, C]`` + ``lengths [B]`` -> list of ``[N_i, C]``."""
    dims = check_shape(padded, "padded", ("B", "N", None))
    lens = torch.as_tensor(_as_numpy(lengths) if not isinstance(lengths, torch.Tensor) else lengths)
    check_shape(lens, "lengths", (dims["B"],))
    if lens.numel() and (int(lens.min()) < 0 or int(lens.max()) > dims["N"]):
        raise InvalidArgumentError(f"lengths must lie in [0, {dims['N']}], got {lens.tolist()}")
    return [padded[i, : int(n)] for i, n in enumerate(lens.tolist())]


__all__ = [
    "PointCloud",
    "read_cloud",
    "write_cloud",
    "depth_to_points",
    "pad_batch",
    "unpad_batch",
    "CLOUD_SUFFIXES",
]
