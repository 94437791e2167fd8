"""3D Gaussian parameters and their INRIA 3DGS PLY file format.

Storage follows the 3DGS / gsplat conventions: quaternions ``w, x, y, z`` (need not be unit),
scales as natural logs, opacities as logits. Colours are either plain RGB ``[N, 3]`` in [0, 1] or
spherical-harmonic coefficients ``[N, K, 3]`` with ``K = (degree + 1) ** 2`` (the DC band plus
``0.5`` gives RGB, as in 3DGS).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from motion4d import ply
from motion4d.checks import check_finite, check_floating, check_shape
from motion4d.errors import InputFileError, InvalidArgumentError, ShapeError

SH_C0 = 0.28209479177387814  # Y_0^0, the constant band of the real spherical harmonics


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> SH DC coefficient (``rgb = 0.5 + SH_C0 * dc``)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    """SH DC coefficient -> RGB (unclamped)."""
    return dc * SH_C0 + 0.5


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of (not necessarily unit) quaternions ``w, x, y, z``.

    Args:
        quats: ``[..., 4]``.
    Returns:
        ``[..., 3, 3]``.
    """
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def covariance_3d(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World covariance ``R S S^T R^T`` of Gaussians.

    Args:
        quats: ``[..., 4]`` wxyz; scales: ``[..., 3]`` linear standard deviations.
    Returns:
        ``[..., 3, 3]``.
    """
    m = quat_to_rotmat(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


@dataclass
class Gaussians:
    """A set of N 3D Gaussians (tensors may require grad; all on one device and dtype).

    Attributes:
        means: ``[N, 3]`` centres in world coordinates.
        quats: ``[N, 4]`` rotations as quaternions ``w, x, y, z``.
        log_scales: ``[N, 3]`` log standard deviations along the rotated axes.
        logit_opacities: ``[N]`` opacity logits.
        colors: ``[N, 3]`` RGB in [0, 1], or ``[N, K, 3]`` SH coefficients, ``K = (d + 1) ** 2``.
    """

    means: torch.Tensor
    quats: torch.Tensor
    log_scales: torch.Tensor
    logit_opacities: torch.Tensor
    colors: torch.Tensor

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, finite: bool = True) -> None:
        """Check shapes, dtypes and (optionally) finiteness; raise ShapeError / NonFiniteError."""
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, torch.Tensor):
                raise ShapeError(f"Gaussians.{f.name} must be a torch.Tensor, got {type(value).__name__}")
            check_floating(value, f"Gaussians.{f.name}")
        n = check_shape(self.means, "Gaussians.means", ("N", 3))["N"]
        check_shape(self.quats, "Gaussians.quats", (n, 4))
        check_shape(self.log_scales, "Gaussians.log_scales", (n, 3))
        check_shape(self.logit_opacities, "Gaussians.logit_opacities", (n,))
        if self.colors.dim() == 2:
            check_shape(self.colors, "Gaussians.colors", (n, 3))
        else:
            k = check_shape(self.colors, "Gaussians.colors", (n, "K", 3))["K"]
            if math.isqrt(k) ** 2 != k or k > 16:
                raise ShapeError(f"Gaussians.colors has K={k} SH coefficients; expected 1, 4, 9 or 16")
        devices = {v.device for v in self.tensors().values()}
        if len(devices) > 1:
            raise InvalidArgumentError(f"Gaussians tensors are on several devices: {sorted(map(str, devices))}")
        if finite:
            for name, value in self.tensors().items():
                check_finite(value.detach(), f"Gaussians.{name}")

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_points(
        cls,
        points: torch.Tensor,
        rgb: torch.Tensor | None = None,
        scale: float | torch.Tensor | None = None,
        opacity: float = 0.5,
        sh_degree: int | None = None,
    ) -> "Gaussians":
        """Isotropic Gaussians at ``points [N, 3]`` with colours ``rgb [N, 3]`` (default grey).

        ``scale`` defaults to the mean distance to the 3 nearest neighbours (as 3DGS initialises).
        ``sh_degree`` set -> SH colours with the higher bands zero.
        """
        check_shape(points, "points", ("N", 3))
        points = torch.as_tensor(points, dtype=torch.float32) if not torch.is_tensor(points) else points.float()
        check_finite(points, "points")
        n = points.shape[0]
        if n == 0:
            raise ShapeError("points must hold at least one point")
        if rgb is None:
            rgb = torch.full((n, 3), 0.5, device=points.device)
        check_shape(rgb, "rgb", (n, 3))
        if scale is None:
            scale = nearest_neighbour_scale(points)
        scales = torch.as_tensor(scale, dtype=torch.float32, device=points.device).expand(n).clamp_min(1e-6)
        colors = rgb.float().clamp(0, 1)
        if sh_degree is not None:
            sh = torch.zeros(n, (sh_degree + 1) ** 2, 3, device=points.device)
            sh[:, 0] = rgb_to_sh0(colors)
            colors = sh
        return cls(
            means=points.clone(),
            quats=torch.tensor([1.0, 0, 0, 0], device=points.device).repeat(n, 1),
            log_scales=scales.log()[:, None].repeat(1, 3),
            logit_opacities=torch.full((n,), float(torch.logit(torch.tensor(opacity))), device=points.device),
            colors=colors,
        )

    # ---------------------------------------------------------------- views
    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def scales(self) -> torch.Tensor:
        """``[N, 3]`` linear standard deviations."""
        return self.log_scales.exp()

    @property
    def opacities(self) -> torch.Tensor:
        """``[N]`` opacities in (0, 1)."""
        return torch.sigmoid(self.logit_opacities)

    @property
    def sh_degree(self) -> int | None:
        """SH degree, or None for plain RGB colours."""
        return None if self.colors.dim() == 2 else math.isqrt(self.colors.shape[1]) - 1

    @property
    def rgb(self) -> torch.Tensor:
        """``[N, 3]`` view-independent colour (the DC band for SH colours)."""
        return self.colors if self.colors.dim() == 2 else sh0_to_rgb(self.colors[:, 0])

    def to(self, *args, **kwargs) -> "Gaussians":
        return Gaussians(**{k: v.to(*args, **kwargs) for k, v in self.tensors().items()})

    def detach(self) -> "Gaussians":
        return Gaussians(**{k: v.detach() for k, v in self.tensors().items()})

    def select(self, index: torch.Tensor) -> "Gaussians":
        """Subset by a boolean mask ``[N]`` or an index tensor."""
        return Gaussians(**{k: v[index] for k, v in self.tensors().items()})

    def replace(self, **changes: torch.Tensor) -> "Gaussians":
        return replace(self, **changes)

    @staticmethod
    def concat(parts: list["Gaussians"]) -> "Gaussians":
        if not parts:
            raise InvalidArgumentError("Gaussians.concat needs at least one part")
        return Gaussians(**{k: torch.cat([p.tensors()[k] for p in parts]) for k in parts[0].tensors()})

    # ---------------------------------------------------------------- files
    def save_ply(self, path: str | os.PathLike) -> Path:
        """Write the INRIA 3DGS PLY layout (binary little-endian float32, zero normals)."""
        return write_ply(path, self)

    @classmethod
    def load_ply(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Gaussians":
        """Read a 3DGS PLY (INRIA, gsplat or SuperSplat-uncompressed layout); fields by name."""
        return read_ply(path).to(device)


def nearest_neighbour_scale(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """``[N]`` mean distance of each point to its ``k`` nearest neighbours (1.0 for a lone point)."""
    from scipy.spatial import cKDTree

    pts = points.detach().cpu().double().numpy()
    if len(pts) < 2:
        return torch.ones(len(pts), device=points.device)
    k_eff = min(k, len(pts) - 1)
    dist, _ = cKDTree(pts).query(pts, k=k_eff + 1)
    mean = np.asarray(dist)[:, 1:].mean(axis=1)
    positive = mean[mean > 0]
    mean = np.where(mean > 0, mean, positive.min() if positive.size else 1.0)
    return torch.as_tensor(mean, dtype=torch.float32, device=points.device)


# -------------------------------------------------------------------- PLY
def read_ply_vertices(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The ``vertex`` element of a PLY file as ``{property name: float64 array [N]}`` (checked by
    :func:`motion4d.ply.read_ply_vertices` before it is read)."""
    vertices = ply.read_ply_vertices(path)
    return {name: vertices[name].astype(np.float64) for name in vertices.dtype.names or ()}


def read_ply(path: str | os.PathLike) -> Gaussians:
    """Read Gaussians from a 3DGS PLY; fields are looked up by name (normals are optional)."""
    v = read_ply_vertices(path)
    n = len(next(iter(v.values()))) if v else 0
    if n == 0:
        raise InputFileError(f"{path}: the PLY holds no Gaussians (0 vertices)")
    required = ["x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [k for k in required if k not in v]
    if missing:
        raise InputFileError(f"{path}: not a 3DGS PLY, missing vertex properties {missing}")

    def stack(keys: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([v[k] for k in keys], axis=-1)).float()

    rest = sorted((k for k in v if k.startswith("f_rest_")), key=lambda k: int(k.split("_")[-1]))
    if all(f"f_dc_{i}" in v for i in range(3)):
        dc = stack([f"f_dc_{i}" for i in range(3)])
        if rest:
            k_rest = len(rest) // 3
            if len(rest) % 3 or math.isqrt(k_rest + 1) ** 2 != k_rest + 1:
                raise InputFileError(f"{path}: {len(rest)} f_rest_* fields do not form whole SH bands")
            # channel-major on disk: all R coefficients, then G, then B
            higher = stack(rest).reshape(n, 3, k_rest).transpose(1, 2)
            colors = torch.cat([dc[:, None], higher], dim=1)
        else:
            colors = sh0_to_rgb(dc)
    elif all(k in v for k in ("red", "green", "blue")):
        colors = stack(["red", "green", "blue"]) / 255.0
    else:
        raise InputFileError(f"{path}: no colour fields (expected f_dc_0..2 or red/green/blue)")
    try:
        return Gaussians(
            means=stack(["x", "y", "z"]),
            quats=stack([f"rot_{i}" for i in range(4)]),
            log_scales=stack([f"scale_{i}" for i in range(3)]),
            logit_opacities=torch.from_numpy(v["opacity"]).float(),
            colors=colors,
        )
    except ShapeError as exc:
        raise InputFileError(f"{path}: {exc}") from exc


def write_ply(path: str | os.PathLike, gaussians: Gaussians, extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write Gaussians in the INRIA layout; ``extra`` adds float vertex properties ``{name: [N]}``.

    RGB colours are stored as the SH DC band (``f_dc = (rgb - 0.5) / SH_C0``) without ``f_rest``.
    """
    g = gaussians.detach().to("cpu", torch.float32)
    n = len(g)
    if n == 0:
        raise InvalidArgumentError("cannot write an empty Gaussian set to PLY")
    cols: dict[str, np.ndarray] = {}
    for i, axis in enumerate("xyz"):
        cols[axis] = g.means[:, i].numpy()
    for axis in ("nx", "ny", "nz"):
        cols[axis] = np.zeros(n, np.float32)
    if g.colors.dim() == 2:
        dc, higher = rgb_to_sh0(g.colors), None
    else:
        dc, higher = g.colors[:, 0], g.colors[:, 1:]
    for i in range(3):
        cols[f"f_dc_{i}"] = dc[:, i].numpy()
    if higher is not None and higher.shape[1]:
        flat = higher.transpose(1, 2).reshape(n, -1).numpy()
        for i in range(flat.shape[1]):
            cols[f"f_rest_{i}"] = flat[:, i]
    cols["opacity"] = g.logit_opacities.numpy()
    for i in range(3):
        cols[f"scale_{i}"] = g.log_scales[:, i].numpy()
    for i in range(4):
        cols[f"rot_{i}"] = g.quats[:, i].numpy()
    for name, values in (extra or {}).items():
        values = np.asarray(values, np.float32)
        if values.shape != (n,):
            raise ShapeError(f"extra PLY property {name!r} must have shape [{n}], got {list(values.shape)}")
        cols[name] = values
    ply.write_ply_vertices(path, {k: np.asarray(col, "<f4") for k, col in cols.items()})
    return Path(path)
