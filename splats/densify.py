"""3DGS adaptive density control (clone / split / prune / opacity reset) for any per-Gaussian tensors.

Follows Kerbl et al. 2023 and gsplat's ``DefaultStrategy`` (same defaults and screen-space gradient
normalisation), but works on a plain dict of parameters with one Adam optimiser per key and on
rasteriser ``meta`` from renders with per-view Gaussians (``means2d [V, N, 2]`` or ``[V, 1, N, 2]``),
which a deformable model needs when one step renders several timestamps. Every extra per-Gaussian
tensor in ``params`` (deformation coefficients, time offsets, ...) is cloned, split and pruned
with the Gaussians, and its Adam moments follow.

Parameter keys it needs: ``means [N, 3]``, ``quats [N, 4]``, ``scales [N, 3]`` (log),
``opacities [N]`` (logit).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .gaussians import quat_to_rotmat


@dataclass
class DensifyConfig:
    grow_grad2d: float = 2e-4  # mean screen-space gradient (normalised to [-1, 1]) that triggers growth
    grow_scale3d: float = 0.01  # clone below, split above this max scale (x scene scale)
    prune_opacity: float = 0.005
    prune_scale3d: float = 0.1  # prune Gaussians larger than this (x scene scale) after the first reset
    start: int = 500
    stop: int = 15_000
    every: int = 100
    reset_every: int = 3000
    max_gaussians: int = 1_000_000


class Densifier:
    """Accumulates screen-space gradients and grows / prunes ``params`` in place."""

    def __init__(self, config: DensifyConfig, scene_scale: float) -> None:
        self.config = config
        self.scene_scale = float(scene_scale)
        self.grad2d: torch.Tensor | None = None
        self.count: torch.Tensor | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"grad2d": self.grad2d, "count": self.count, "scene_scale": self.scene_scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.grad2d, self.count, self.scene_scale = state["grad2d"], state["count"], state["scene_scale"]

    @torch.no_grad()
    def accumulate(self, meta: dict[str, Any], n_gaussians: int) -> None:
        """Add this step's per-view 2D mean gradients (call after ``backward``)."""
        means2d = meta["means2d"]
        if means2d.grad is None:
            return
        grads = means2d.grad.reshape(-1, n_gaussians, 2).clone()
        n_views = grads.shape[0]
        grads[..., 0] *= meta["width"] / 2.0 * n_views
        grads[..., 1] *= meta["height"] / 2.0 * n_views
        visible = (meta["radii"].reshape(-1, n_gaussians, 2) > 0).all(-1)
        if self.grad2d is None or len(self.grad2d) != n_gaussians:
            self.grad2d = torch.zeros(n_gaussians, device=grads.device)
            self.count = torch.zeros(n_gaussians, device=grads.device)
        self.grad2d += (grads.norm(dim=-1) * visible).sum(0)
        self.count += visible.sum(0)

    @torch.no_grad()
    def step(self, step: int, params: dict[str, torch.nn.Parameter], optimizers: dict[str, torch.optim.Optimizer]
             ) -> dict[str, int]:
        """Grow and prune at the scheduled steps; reset opacities every ``reset_every`` steps."""
        cfg = self.config
        report = {"cloned": 0, "split": 0, "pruned": 0}
        if step >= cfg.stop or self.grad2d is None:
            return report
        if step > cfg.start and step % cfg.every == 0:
            avg = self.grad2d / self.count.clamp_min(1)
            high = avg > cfg.grow_grad2d
            small = params["scales"].exp().max(-1).values <= cfg.grow_scale3d * self.scene_scale
            room = cfg.max_gaussians - len(avg)
            clone = high & small
            split = high & ~small
            if int(clone.sum() + 2 * split.sum()) > room:  # keep the highest gradients within the cap
                ranked = torch.argsort(avg * high, descending=True)
                keep = torch.zeros_like(high)
                keep[ranked[: max(room // 2, 0)]] = True
                clone, split = clone & keep, split & keep
            report["cloned"] = int(clone.sum())
            report["split"] = int(split.sum())
            if report["cloned"]:
                _apply(params, optimizers, lambda k, p: torch.cat([p, p[clone]]), grow=int(clone.sum()))
            split = torch.cat([split, torch.zeros(report["cloned"], dtype=torch.bool, device=split.device)])
            if report["split"]:
                _split(params, optimizers, split)
            prune = torch.sigmoid(params["opacities"]) < cfg.prune_opacity
            if step > cfg.reset_every:
                prune |= params["scales"].exp().max(-1).values > cfg.prune_scale3d * self.scene_scale
            if prune.all():
                prune[torch.argmax(params["opacities"])] = False
            report["pruned"] = int(prune.sum())
            if report["pruned"]:
                keep = ~prune
                _apply(params, optimizers, lambda k, p: p[keep], select=keep)
            n = len(params["means"])
            self.grad2d = torch.zeros(n, device=params["means"].device)
            self.count = torch.zeros(n, device=params["means"].device)
        if step > 0 and step % cfg.reset_every == 0:
            limit = torch.logit(torch.tensor(cfg.prune_opacity * 2.0)).item()
            new = params["opacities"].clamp_max(limit)
            _replace(params, optimizers, "opacities", new, reset_state=True)
        return report


def _replace(params, optimizers, key: str, value: torch.Tensor, reset_state: bool = False,
             state_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
    """Swap ``params[key]`` for a new Parameter holding ``value`` and carry its Adam moments."""
    old = params[key]
    new = torch.nn.Parameter(value.detach().clone(), requires_grad=old.requires_grad)
    opt = optimizers[key]
    state = opt.state.pop(old, None)
    for group in opt.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    if state is not None:
        for name in ("exp_avg", "exp_avg_sq"):
            if name in state:
                state[name] = torch.zeros_like(new) if reset_state else state_fn(state[name])
        opt.state[new] = state
    params[key] = new


def _apply(params, optimizers, fn: Callable[[str, torch.Tensor], torch.Tensor], grow: int = 0,
           select: torch.Tensor | None = None) -> None:
    """Apply a row operation to every parameter; Adam moments get zeros for new rows."""
    for key in list(params.keys()):
        value = fn(key, params[key].detach())
        if select is not None:
            state_fn = lambda s: s[select]  # noqa: E731
        else:
            state_fn = lambda s: torch.cat([s, torch.zeros((grow,) + s.shape[1:], dtype=s.dtype, device=s.device)])  # noqa: E731
        _replace(params, optimizers, key, value, state_fn=state_fn)


def _split(params, optimizers, mask: torch.Tensor) -> None:
    """Replace each masked Gaussian by two samples from it, scales divided by 1.6 (3DGS)."""
    n_split = int(mask.sum())
    scales = params["scales"].detach()[mask].exp()
    rot = quat_to_rotmat(params["quats"].detach()[mask])
    offsets = (rot @ (torch.randn(2, n_split, 3, device=scales.device) * scales)[..., None])[..., 0]
    keep = ~mask

    def rows(key: str, p: torch.Tensor) -> torch.Tensor:
        if key == "means":
            new = (p[mask] + offsets).reshape(-1, 3)
        elif key == "scales":
            new = torch.log(scales / 1.6).repeat(2, 1)
        else:
            new = p[mask].repeat(2, *([1] * (p.dim() - 1)))
        return torch.cat([p[keep], new])

    for key in list(params.keys()):
        value = rows(key, params[key].detach())
        _replace(params, optimizers, key, value,
                 state_fn=lambda s: torch.cat([s[keep], torch.zeros((2 * n_split,) + s.shape[1:], dtype=s.dtype,
                                                                     device=s.device)]))
