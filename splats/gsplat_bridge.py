"""The gsplat backend of :func:`splats.rendering.rasterize`: our arguments -> ``gsplat.rasterization``.

:func:`gsplat_arguments` builds the call without touching CUDA, so the exact arguments a GPU run
passes can be checked on a CPU-only machine (``tests/splats/test_gsplat_bridge.py`` feeds them to a
pure-PyTorch rendering with gsplat's conventions and compares it with our CPU renderer).

Conventions translated here:

- intrinsics: ours put pixel centres at integer coordinates, gsplat's at ``i + 0.5``
  (:func:`splats.cameras.to_gsplat_intrinsics`);
- ``viewmats`` world-to-camera ``[C, 4, 4]`` with the translation in the last column, quaternions
  ``w, x, y, z`` and linear scales: the same as ours, passed unchanged;
- colours: features ``[N, D]`` with ``sh_degree=None``, or SH coefficients ``[N, K, 3]`` with the
  Gaussians' degree;
- ``packed=False``: ``meta["means2d"]`` / ``meta["radii"]`` keep the dense ``[C, N, ...]`` layout the
  densifier reads (gsplat's default, packed, would give ``[nnz, ...]``);
- per-camera Gaussians (``means [C, N, 3]``, e.g. a deformable model at each view's time) become C
  gsplat batch entries of one camera each.

Importing gsplat compiles nothing; its first CUDA call JIT-builds the kernels (minutes), so
:func:`load_rasterization` is only reached for CUDA tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .cameras import to_gsplat_intrinsics


def gsplat_installed() -> bool:
    """Whether ``import gsplat`` works (no CUDA build is triggered by the import)."""
    try:
        import gsplat  # noqa: F401
    except ImportError:
        return False
    return True


def load_rasterization() -> Callable[..., tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]:
    """``gsplat.rasterization`` (the one place the gsplat backend is reached)."""
    from gsplat import rasterization

    return rasterization


@dataclass(frozen=True)
class GsplatCall:
    """One ``gsplat.rasterization(**kwargs)`` call and how to read its outputs back.

    Attributes:
        kwargs: the keyword arguments of ``gsplat.rasterization``.
        n_cameras: C, the number of views rendered.
        per_camera: the Gaussians differ per camera, so gsplat renders C batch entries of one
            camera each (outputs ``[C, 1, H, W, X]``).
    """

    kwargs: dict[str, Any]
    n_cameras: int
    per_camera: bool

    def outputs(
        self, images: torch.Tensor, alphas: torch.Tensor, meta: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """gsplat's outputs -> ours: ``images [C, H, W, X]``, ``alphas [C, H, W, 1]``, ``meta``."""
        meta["backend"] = "gsplat"
        if not self.per_camera:
            return images, alphas, meta
        c = self.n_cameras
        n = self.kwargs["means"].shape[-2]
        # meta["means2d"] stays [C, 1, N, 2]: it is the tensor whose .grad autograd fills (a reshaped
        # view would not receive it); readers reshape the gradient to [C, N, 2].
        meta["radii"] = meta["radii"].reshape(c, n, 2)
        meta["n_cameras"] = c
        return images[:, 0], alphas[:, 0], meta


def gsplat_arguments(
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
    sh_degree: int | None,
    mode: str,
    backgrounds: torch.Tensor | None,
    near_plane: float,
    far_plane: float,
    eps2d: float,
) -> GsplatCall:
    """The ``gsplat.rasterization`` call rendering what :func:`splats.rendering.rasterize` was given.

    Args (already validated by ``rasterize``):
        means ``[(C,) N, 3]``; quats ``[(C,) N, 4]`` wxyz; scales ``[(C,) N, 3]``; opacities
        ``[(C,) N]``; colors ``[(C,) N, D]`` or SH ``[(C,) N, K, 3]``; viewmats ``[C, 4, 4]``
        world-to-camera; Ks ``[C, 3, 3]`` with integer pixel centres; backgrounds ``[C, D]`` or None.
    """
    c = viewmats.shape[0]
    common = dict(width=width, height=height, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
                  sh_degree=sh_degree, packed=False, render_mode=mode, rasterize_mode="classic")
    colour_dims = 2 if sh_degree is None else 3
    shared = (means.dim() == 2 and quats.dim() == 2 and scales.dim() == 2 and opacities.dim() == 1
              and colors.dim() == colour_dims)
    ks = to_gsplat_intrinsics(Ks)
    if shared:
        kwargs = dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                      viewmats=viewmats, Ks=ks, backgrounds=backgrounds, **common)
        return GsplatCall(kwargs=kwargs, n_cameras=c, per_camera=False)

    def per_cam(x: torch.Tensor, base_dims: int) -> torch.Tensor:
        return x if x.dim() > base_dims else x.expand(c, *x.shape)

    kwargs = dict(
        means=per_cam(means, 2), quats=per_cam(quats, 2), scales=per_cam(scales, 2),
        opacities=per_cam(opacities, 1), colors=per_cam(colors, colour_dims),
        viewmats=viewmats[:, None], Ks=ks[:, None],
        backgrounds=None if backgrounds is None else backgrounds[:, None], **common)
    return GsplatCall(kwargs=kwargs, n_cameras=c, per_camera=True)


def rasterize_gsplat(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Render with gsplat (CUDA tensors); ``options`` as :func:`gsplat_arguments`."""
    call = gsplat_arguments(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **options)
    return call.outputs(*load_rasterization()(**call.kwargs))
