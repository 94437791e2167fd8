"""Render Gaussians (``splats.render``): gsplat's CUDA rasteriser for CUDA tensors, our PyTorch one otherwise.

Both backends take the same arguments, produce the same images (pixel centres at integer
coordinates, see :mod:`splats.cameras`) and return a ``meta`` dict with the keys gsplat's
``DefaultStrategy`` reads (``means2d`` [C, N, 2] with the gradient, ``radii`` [C, N, 2], ``width``,
``height``, ``n_cameras``, ``gaussian_ids`` None), so densification works with either.

The CUDA path is chosen only after checking that the tensors live on a CUDA device: calling gsplat
on a CPU-only machine would start a long, failing JIT compile of its CUDA sources. The arguments it
passes to gsplat are built by :mod:`splats.gsplat_bridge`.
"""
from __future__ import annotations

from typing import Any

import torch

from motion4d.checks import check_choice, check_finite, check_positive, check_shape
from motion4d.errors import BackendUnavailableError, InvalidArgumentError, ShapeError

from . import _raster_torch
from .cameras import Cameras, to_gsplat_intrinsics
from .gaussians import Gaussians
from .gsplat_bridge import gsplat_installed, rasterize_gsplat

MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
BACKENDS = ("auto", "torch", "gsplat")

# Real spherical-harmonic constants (degrees 1-3), the basis used by 3DGS and gsplat.
_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def eval_sh(degree: int, sh: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Evaluate real SH of ``degree`` (0-3).

    Args:
        sh: ``[..., K, 3]`` coefficients, ``K >= (degree + 1) ** 2``; dirs: ``[..., 3]`` (any length).
    Returns:
        ``[..., 3]`` (without the +0.5 offset).
    """
    out = 0.28209479177387814 * sh[..., 0, :]
    if degree == 0:
        return out
    d = torch.nn.functional.normalize(dirs, dim=-1)
    x, y, z = (d[..., i: i + 1] for i in range(3))
    out = out + _SH_C1 * (-y * sh[..., 1, :] + z * sh[..., 2, :] - x * sh[..., 3, :])
    if degree == 1:
        return out
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    out = (out + _SH_C2[0] * xy * sh[..., 4, :] + _SH_C2[1] * yz * sh[..., 5, :]
           + _SH_C2[2] * (2 * zz - xx - yy) * sh[..., 6, :] + _SH_C2[3] * xz * sh[..., 7, :]
           + _SH_C2[4] * (xx - yy) * sh[..., 8, :])
    if degree == 2:
        return out
    return (out + _SH_C3[0] * y * (3 * xx - yy) * sh[..., 9, :] + _SH_C3[1] * xy * z * sh[..., 10, :]
            + _SH_C3[2] * y * (4 * zz - xx - yy) * sh[..., 11, :]
            + _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[..., 12, :]
            + _SH_C3[4] * x * (4 * zz - xx - yy) * sh[..., 13, :] + _SH_C3[5] * z * (xx - yy) * sh[..., 14, :]
            + _SH_C3[6] * x * (xx - 3 * yy) * sh[..., 15, :])


def _gsplat_available_for(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available() and gsplat_installed()


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """``"auto"`` -> ``"gsplat"`` for float32 CUDA tensors when gsplat imports, else ``"torch"``."""
    check_choice(backend, "backend", BACKENDS)
    if backend == "gsplat" and dtype != torch.float32:
        raise BackendUnavailableError(f"backend='gsplat' renders float32 only, got {dtype}")
    if backend == "gsplat":
        if device.type != "cuda" or not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"backend='gsplat' needs CUDA tensors on a machine with a GPU; the tensors are on {device}"
            )
        if not _gsplat_available_for(device):
            raise BackendUnavailableError("backend='gsplat' needs the gsplat package (pip install gsplat)")
        return "gsplat"
    if backend == "auto":
        return "gsplat" if dtype == torch.float32 and _gsplat_available_for(device) else "torch"
    return "torch"


def rasterize(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    mode: str = "RGB",
    backgrounds: torch.Tensor | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backend: str = "auto",
    max_pairs: int = 1 << 22,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Rasterise activated Gaussian parameters to C cameras.

    Gaussians are shared by all cameras (``means [N, 3]`` ...) or given per camera with a leading
    ``C`` (``means [C, N, 3]``, e.g. a deformable model evaluated at each view's time); every
    attribute may independently have the leading ``C``.

    Args:
        means ``[(C,) N, 3]``; quats ``[(C,) N, 4]`` wxyz; scales ``[(C,) N, 3]`` linear;
        opacities ``[(C,) N]`` in (0, 1); colors ``[(C,) N, D]`` features, or SH ``[(C,) N, K, 3]``
        with ``sh_degree``; viewmats ``[C, 4, 4]`` world-to-camera; Ks ``[C, 3, 3]`` (integer pixel
        centres); backgrounds ``[C, D]`` or ``[D]`` colour behind the Gaussians (depth gets 0).
        max_pairs: PyTorch backend only: the most (pixel, Gaussian) candidates whose compositing
            state is kept for the backward pass; above it each chunk's pairs are rebuilt in the
            backward pass (slower, memory bounded by one chunk). Results are the same either way.

    Returns:
        ``images [C, H, W, X]`` (X = D, 1 for "D"/"ED", D + 1 for "RGB+D"/"RGB+ED"; "ED" divides the
        accumulated depth by the alpha), ``alphas [C, H, W, 1]`` and ``meta``.
    """
    check_choice(mode, "mode", MODES)
    check_positive(width, "width")
    check_positive(height, "height")
    c = check_shape(viewmats, "viewmats", ("C", 4, 4))["C"]
    check_shape(Ks, "Ks", (c, 3, 3))
    per_camera = means.dim() == 3
    n = check_shape(means, "means", (c, "N", 3) if per_camera else ("N", 3))["N"]
    check_shape(quats, "quats", (*((c,) if quats.dim() == 3 else ()), n, 4))
    check_shape(scales, "scales", (*((c,) if scales.dim() == 3 else ()), n, 3))
    check_shape(opacities, "opacities", (*((c,) if opacities.dim() == 2 else ()), n))
    if sh_degree is None:
        check_shape(colors, "colors", (*((c,) if colors.dim() == 3 else ()), n, "D"))
    else:
        if not 0 <= sh_degree <= 3:
            raise InvalidArgumentError(f"sh_degree must be in 0..3, got {sh_degree}")
        k = check_shape(colors, "colors", (*((c,) if colors.dim() == 4 else ()), n, "K", 3))["K"]
        if (sh_degree + 1) ** 2 > k:
            raise ShapeError(f"sh_degree={sh_degree} needs {(sh_degree + 1) ** 2} SH coefficients, colors has {k}")
    device = means.device
    for name, t in (("quats", quats), ("scales", scales), ("opacities", opacities), ("colors", colors),
                    ("viewmats", viewmats), ("Ks", Ks)):
        if t.device != device:
            raise InvalidArgumentError(f"{name} is on {t.device} but means is on {device}")
    if backgrounds is not None:
        backgrounds = backgrounds.to(device=device, dtype=means.dtype)
        if backgrounds.dim() == 1:
            backgrounds = backgrounds.expand(c, -1)
    if resolve_backend(backend, device, means.dtype) == "gsplat":
        return rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                sh_degree=sh_degree, mode=mode, backgrounds=backgrounds, near_plane=near_plane,
                                far_plane=far_plane, eps2d=eps2d)
    return _rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree,
                            mode, backgrounds, near_plane, far_plane, eps2d, max_pairs)


def _rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, mode,
                     backgrounds, near_plane, far_plane, eps2d, max_pairs):
    c = viewmats.shape[0]
    ks = to_gsplat_intrinsics(Ks)
    proj = _raster_torch.project(means, quats, scales, viewmats, ks, width, height, eps2d, near_plane, far_plane,
                                 opacities=opacities)
    n = proj.depths.shape[1]
    feats = []
    if mode in ("RGB", "RGB+D", "RGB+ED"):
        if sh_degree is None:
            rgb = colors.expand(c, n, colors.shape[-1])
        else:
            campos = -(viewmats[:, :3, :3].transpose(-1, -2) @ viewmats[:, :3, 3:4])[..., 0]  # [C, 3]
            m = means if means.dim() == 3 else means[None]
            dirs = m - campos[:, None, :]
            rgb = torch.clamp_min(eval_sh(sh_degree, colors.expand(c, n, -1, 3), dirs) + 0.5, 0.0)
        feats.append(rgb)
    if mode != "RGB":
        feats.append(proj.depths[..., None])
    features = torch.cat(feats, dim=-1) if len(feats) > 1 else feats[0]
    images, alphas = _raster_torch.composite(proj, opacities, features, width, height, max_pairs=max_pairs)
    images = _finish(images, alphas, mode, backgrounds)
    meta = {
        "means2d": proj.means2d,
        "radii": proj.radii,
        "depths": proj.depths,
        "conics": proj.conics,
        "opacities": opacities.expand(c, n),
        "gaussian_ids": None,
        "camera_ids": None,
        "width": width,
        "height": height,
        "n_cameras": c,
        "n_batches": 1,
        "backend": "torch",
    }
    return images, alphas, meta


def _finish(images, alphas, mode, backgrounds):
    """Background blend and the expected-depth division (same order as gsplat)."""
    if backgrounds is not None:
        if mode in ("D", "ED"):
            bg = torch.zeros_like(images[:, 0, 0])
        elif mode in ("RGB+D", "RGB+ED"):
            bg = torch.cat([backgrounds, torch.zeros_like(backgrounds[:, :1])], dim=-1)
        else:
            bg = backgrounds
        images = images + bg[:, None, None, :] * (1 - alphas)
    if mode in ("ED", "RGB+ED"):
        images = torch.cat([images[..., :-1], images[..., -1:] / alphas.clamp_min(1e-10)], dim=-1)
    return images


def render(
    gaussians: Gaussians,
    cameras: Cameras,
    width: int | None = None,
    height: int | None = None,
    mode: str = "RGB",
    background: torch.Tensor | tuple[float, ...] | None = None,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Render ``gaussians`` from every camera.

    Args:
        gaussians: N Gaussians (RGB or SH colours).
        cameras: C cameras on the same device as the Gaussians.
        width, height: image size (default: the cameras' size).
        mode: "RGB", "D" (accumulated depth), "ED" (expected depth), "RGB+D" or "RGB+ED".
        background: RGB ``[3]`` or ``[C, 3]`` behind the Gaussians (default black).
        backend: "auto" (gsplat for CUDA tensors, else PyTorch), "torch" or "gsplat".

    Returns:
        ``images [C, H, W, X]``, ``alphas [C, H, W, 1]``, ``meta`` (see module docstring).
    """
    if not isinstance(gaussians, Gaussians):
        raise InvalidArgumentError(f"gaussians must be splats.Gaussians, got {type(gaussians).__name__}")
    if not isinstance(cameras, Cameras):
        raise InvalidArgumentError(f"cameras must be splats.Cameras, got {type(cameras).__name__}")
    for name, value in gaussians.tensors().items():
        check_finite(value.detach(), f"gaussians.{name}")
    if cameras.device != gaussians.device:
        raise InvalidArgumentError(f"cameras are on {cameras.device} but gaussians are on {gaussians.device}")
    width = cameras.width if width is None else int(width)
    height = cameras.height if height is None else int(height)
    bg = None
    if background is not None:
        bg = torch.as_tensor(background, dtype=gaussians.means.dtype, device=gaussians.device)
        check_shape(bg, "background", (3,) if bg.dim() == 1 else (len(cameras), 3))
    return rasterize(
        gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, gaussians.colors,
        cameras.world_to_cam.to(gaussians.means.dtype), cameras.K.to(gaussians.means.dtype), width, height,
        sh_degree=gaussians.sh_degree, mode=mode, backgrounds=bg, near_plane=near_plane, far_plane=far_plane,
        eps2d=eps2d, backend=backend,
    )
