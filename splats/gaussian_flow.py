"""Gaussian-Flow (Lin et al., CVPR 2024): 4D Gaussians with a Dual-Domain Deformation Model.

Every Gaussian keeps a canonical state (3DGS parameters) plus, for its position, rotation and
colour, a time-domain polynomial and a frequency-domain Fourier residual:

    S(t) = S0 + sum_{n=1..N} a_n t^n + sum_{l=1..L} (b_l sin(2 pi l t) + c_l cos(2 pi l t))

with orders chosen per attribute (scale and opacity stay static). Times are normalised to
``tau = (t - t_min) / (t_max - t_min) * time_scale + time_shift`` and each Gaussian evaluates its
basis at ``tau - dt_i`` with a learnable offset ``dt_i``. Coefficients start at zero, so training
begins as a static 3DGS fit. Training follows the paper's two stages: stage 1 optimises with 3DGS
densification (clone / split / prune, extended to the coefficients); stage 2 stops densifying and
adds a temporal-smoothness term (trajectory at tau vs tau + eps) and a kNN rigidity term
(neighbour offsets must follow each Gaussian's own rotation between two times; the kNN graph is
built once when stage 2 starts and is part of the checkpoint). Each step renders a batch of
(camera, time) samples, optionally with annealed noise on their times (``time_jitter``).

Use::

    model = GaussianFlow(GaussianFlowConfig(iterations=3000)).fit(frames, cameras, times, out_dir="run")
    image = model.render(0.5, cameras[0])          # [H, W, 3]
    model.export("run/export")                      # per-frame PLYs, manifest, coefficient PLY
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from motion4d.atomic import atomic_path, atomic_write_text
from motion4d.checks import check_finite, check_positive, check_shape
from motion4d.device import resolve_device
from motion4d.errors import CheckpointError, InputFileError, InvalidArgumentError, ShapeError
from motion4d.imaging import frames_to_tensor

from .cameras import Cameras, write_transforms_json
from .cards import GAUSSIAN_FLOW_CARD
from .densify import Densifier, DensifyConfig
from .gaussians import Gaussians, nearest_neighbour_scale, quat_to_rotmat, read_ply_vertices, write_ply
from .methods import register_gaussian_method
from .rendering import rasterize

CHECKPOINT_NAME = "checkpoint.pt"
_ATTRIBUTES = {"pos": ("means", 3), "rot": ("quats", 4), "col": ("colors", 3)}


@dataclass
class GaussianFlowConfig:
    """Hyper-parameters (defaults sized for small CPU runs; the paper trains 10k-30k steps on a GPU)."""

    # Dual-Domain Deformation orders: polynomial degree N and number of Fourier frequencies L
    position_poly: int = 2
    position_fourier: int = 2
    rotation_poly: int = 1
    rotation_fourier: int = 1
    color_poly: int = 1
    color_fourier: int = 0
    time_scale: float = 1.0  # tau = t_norm * time_scale + time_shift
    time_shift: float = 0.0
    learn_time_offset: bool = True
    # annealed time noise on training samples (the paper code's "random_noise"): std = time_jitter x the
    # mean gap between distinct training times x (1 - step / iterations); 0 disables it
    time_jitter: float = 0.0
    # optimisation
    iterations: int = 3000
    batch_size: int = 2  # (camera, time) samples rendered per step
    lr_means: float = 1.6e-4  # x scene scale, decays exponentially to lr_means_final
    lr_means_final: float = 1.6e-6
    lr_position_coeffs: float = 1.6e-4  # x scene scale, same decay as the means
    lr_rotation_coeffs: float = 1e-3
    lr_color_coeffs: float = 2.5e-3
    lr_colors: float = 2.5e-3
    lr_opacities: float = 0.05
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_time_offset: float = 1e-3
    lambda_dssim: float = 0.2
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # densification (stage 1); stage 2 starts at densify.stop
    densify: DensifyConfig = field(default_factory=lambda: DensifyConfig(start=200, stop=1500, every=100,
                                                                         reset_every=100_000))
    # stage-2 regularisers
    lambda_smooth: float = 0.05
    smooth_sigma: float = 0.02  # std of the time perturbation eps (normalised time)
    lambda_rigid: float = 1.0  # residuals are relative to the typical neighbour distance
    rigid_k: int = 8
    rigid_max_gaussians: int = 20_000  # rigidity on a random subset of at most this many anchors
    # initialisation: random points along random pixel rays of the training frames
    n_init: int = 5000
    init_depth_range: tuple[float, float] = (0.5, 1.5)  # x camera-to-scene-centre distance
    init_scale: float | None = None  # default: min(nearest-neighbour distance, init_pixel_footprint px)
    init_pixel_footprint: float = 1.5
    init_opacity: float = 0.1
    # bookkeeping
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available: gsplat renders), "cpu", "cuda", "cuda:1", ...

    def validate(self) -> None:
        for name in ("position_poly", "position_fourier", "rotation_poly", "rotation_fourier", "color_poly",
                     "color_fourier"):
            if int(getattr(self, name)) < 0:
                raise InvalidArgumentError(f"GaussianFlowConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("iterations", "batch_size", "n_init", "checkpoint_every", "time_scale"):
            check_positive(getattr(self, name), f"GaussianFlowConfig.{name}")
        for name in ("time_jitter", "lambda_smooth", "lambda_rigid", "lambda_dssim"):
            if not float(getattr(self, name)) >= 0:
                raise InvalidArgumentError(f"GaussianFlowConfig.{name} must be >= 0, got {getattr(self, name)}")
        if isinstance(self.densify, dict):
            self.densify = DensifyConfig(**self.densify)

    def orders(self, attribute: str) -> tuple[int, int]:
        name = {"pos": "position", "rot": "rotation", "col": "color"}[attribute]
        return int(getattr(self, f"{name}_poly")), int(getattr(self, f"{name}_fourier"))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GaussianFlowConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgumentError(f"unknown GaussianFlowConfig keys: {unknown}")
        values = dict(values)
        if isinstance(values.get("densify"), dict):
            values["densify"] = DensifyConfig(**values["densify"])
        for key in ("background", "init_depth_range"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def dddm_basis(tau: torch.Tensor, n_poly: int, n_fourier: int) -> torch.Tensor:
    """Dual-domain basis ``[t, t^2, .., t^N, sin(2 pi t), cos(2 pi t), .., sin(2 pi L t), cos(2 pi L t)]``.

    Args:
        tau: ``[...]`` normalised times.
    Returns:
        ``[..., N + 2 L]``.
    """
    terms = [tau ** n for n in range(1, n_poly + 1)]
    for l in range(1, n_fourier + 1):
        angle = 2 * math.pi * l * tau
        terms += [torch.sin(angle), torch.cos(angle)]
    if not terms:
        return tau.new_zeros(tau.shape + (0,))
    return torch.stack(terms, dim=-1)


@dataclass
class TimeNormalizer:
    """Maps user times to the normalised ``tau`` the basis is evaluated at."""

    t_min: float
    t_max: float
    scale: float = 1.0
    shift: float = 0.0

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        span = self.t_max - self.t_min
        t_norm = (t - self.t_min) / span if span > 0 else torch.zeros_like(t)
        return t_norm * self.scale + self.shift

    @property
    def step(self) -> float:
        return self.scale


def _as_float_frames(frames: Any) -> torch.Tensor:
    """``[M, H, W, 3]`` uint8 / float array -> float tensor in [0, 1]."""
    tensor = frames_to_tensor(frames, channels_first=False)
    check_shape(tensor, "frames", ("M", "H", "W", 3))
    check_finite(tensor, "frames")
    return tensor


@register_gaussian_method("gaussian-flow", GaussianFlowConfig,
                         "Gaussian-Flow (CVPR 2024): 4D Gaussians with dual-domain deformation, from posed video",
                         card=GAUSSIAN_FLOW_CARD)
class GaussianFlow:
    """Gaussian-Flow 4D reconstruction from posed multi-view or monocular video."""

    def __init__(self, config: GaussianFlowConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        if isinstance(config, dict):
            config = GaussianFlowConfig.from_dict(config)
        config = config or GaussianFlowConfig()
        if overrides:
            config = GaussianFlowConfig.from_dict({**asdict(config), **overrides})
        config.validate()
        self.config = config
        self.params: dict[str, torch.nn.Parameter] = {}
        self.time_norm: TimeNormalizer | None = None
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._knn: tuple[torch.Tensor, ...] | None = None  # stage-2 rigidity graph (see _neighbours)

    # ---------------------------------------------------------------- deformation
    def _coeff_keys(self) -> list[str]:
        return [f"{a}_coeffs" for a in _ATTRIBUTES if sum(self.config.orders(a)) > 0]

    def _basis(self, attribute: str, tau: torch.Tensor) -> torch.Tensor:
        n_poly, n_fourier = self.config.orders(attribute)
        return dddm_basis(tau, n_poly, n_fourier)

    def deformed(self, tau: torch.Tensor, params: dict[str, torch.Tensor] | None = None
                 ) -> dict[str, torch.Tensor]:
        """Time-dependent attributes at normalised times ``tau [B]``.

        Returns:
            ``means [B, N, 3]``, ``quats [B, N, 4]``, ``colors [B, N, 3]``.
        """
        p = self.params if params is None else params
        local = tau[:, None] - p["time_offset"][None]  # [B, N]
        out = {}
        for attribute, (key, dim) in _ATTRIBUTES.items():
            base = p[key][None]
            coeff_key = f"{attribute}_coeffs"
            if coeff_key in p:
                out[key] = base + torch.einsum("bnk,nkd->bnd", self._basis(attribute, local), p[coeff_key])
            else:
                out[key] = base.expand(len(tau), -1, -1)
        return out

    def gaussians_at(self, t: float) -> Gaussians:
        """The Gaussians at time ``t`` (user time units), detached."""
        self._require_fitted()
        with torch.no_grad():
            tau = self.time_norm(torch.tensor([float(t)], device=self.params["means"].device))
            d = self.deformed(tau)
            return Gaussians(d["means"][0], d["quats"][0], self.params["scales"].detach().clone(),
                             self.params["opacities"].detach().clone(), d["colors"][0].clamp(0, 1))

    def render(self, t: float, camera: Cameras, mode: str = "RGB") -> torch.Tensor:
        """Render time ``t`` from the first camera of ``camera`` -> ``[H, W, X]`` (X = 3 for RGB)."""
        self._require_fitted()
        if not isinstance(camera, Cameras):
            raise InvalidArgumentError(f"camera must be splats.Cameras, got {type(camera).__name__}")
        g = self.gaussians_at(t)
        camera = camera.to(g.device, torch.float32)
        with torch.no_grad():
            img, _, _ = rasterize(g.means, g.quats, g.scales, g.opacities, g.colors, camera.world_to_cam[:1],
                                  camera.K[:1], camera.width, camera.height, mode=mode,
                                  backgrounds=torch.tensor(self.config.background, device=g.device))
        return img[0].cpu()

    def _require_fitted(self) -> None:
        if not self.params or self.time_norm is None:
            raise InvalidArgumentError("GaussianFlow is not fitted: call fit() or load() first")

    # ---------------------------------------------------------------- set-up
    def _initial_params(self, frames: torch.Tensor, cameras: Cameras, init_points: torch.Tensor | None,
                        init_colors: torch.Tensor | None, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], float]:
        cfg = self.config
        center, distance = _scene_center(cameras)
        if init_points is None:
            m, h, w = frames.shape[:3]
            idx = torch.randint(0, m, (cfg.n_init,), generator=gen)
            px = torch.rand(cfg.n_init, generator=gen) * (w - 1)
            py = torch.rand(cfg.n_init, generator=gen) * (h - 1)
            lo, hi = cfg.init_depth_range
            depth = distance[idx] * (lo + (hi - lo) * torch.rand(cfg.n_init, generator=gen))
            k = cameras.K[idx]
            rays = torch.stack([(px - k[:, 0, 2]) / k[:, 0, 0], (py - k[:, 1, 2]) / k[:, 1, 1],
                                torch.ones_like(px)], dim=-1) * depth[:, None]
            c2w = cameras.cam_to_world[idx]
            init_points = (c2w[:, :3, :3] @ rays[..., None])[..., 0] + c2w[:, :3, 3]
            init_colors = frames[idx, py.round().long(), px.round().long()]
            footprint = cfg.init_pixel_footprint * depth / k[:, 0, 0]
        else:
            footprint = None
        check_shape(init_points, "init_points", ("P", 3))
        check_finite(init_points, "init_points")
        n = len(init_points)
        colors = torch.full((n, 3), 0.5) if init_colors is None else init_colors.float()
        check_shape(colors, "init_colors", (n, 3))
        if cfg.init_scale is not None:
            scale = torch.full((n,), float(cfg.init_scale))
        else:
            scale = nearest_neighbour_scale(init_points)
            if footprint is not None:
                scale = torch.minimum(scale, footprint)
        params = {
            "means": init_points.detach().float().clone(),  # never train the caller's tensor in place
            "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1),
            "scales": scale.clamp_min(1e-4).log()[:, None].repeat(1, 3),
            "opacities": torch.full((n,), math.log(cfg.init_opacity / (1 - cfg.init_opacity))),
            "colors": colors.clamp(0, 1),
            "time_offset": torch.zeros(n),
        }
        for attribute, (_, dim) in _ATTRIBUTES.items():
            k = sum(o if i == 0 else 2 * o for i, o in enumerate(cfg.orders(attribute)))
            if k:
                params[f"{attribute}_coeffs"] = torch.zeros(n, k, dim)
        return params, float(distance.median())

    def _learning_rates(self, scene_scale: float) -> dict[str, float]:
        cfg = self.config
        return {
            "means": cfg.lr_means * scene_scale, "quats": cfg.lr_quats, "scales": cfg.lr_scales,
            "opacities": cfg.lr_opacities, "colors": cfg.lr_colors,
            "time_offset": cfg.lr_time_offset if cfg.learn_time_offset else 0.0,
            "pos_coeffs": cfg.lr_position_coeffs * scene_scale, "rot_coeffs": cfg.lr_rotation_coeffs,
            "col_coeffs": cfg.lr_color_coeffs,
        }

    def _make_optimizers(self, scene_scale: float) -> dict[str, torch.optim.Optimizer]:
        lrs = self._learning_rates(scene_scale)
        return {k: torch.optim.Adam([p], lr=lrs[k], eps=1e-15) for k, p in self.params.items()}

    def _position_lr_factor(self, step: int) -> float:
        cfg = self.config
        frac = min(step / max(cfg.iterations, 1), 1.0)
        return (cfg.lr_means_final / cfg.lr_means) ** frac

    # ---------------------------------------------------------------- training
    def fit(
        self,
        frames: Any,
        cameras: Cameras,
        times: Any,
        out_dir: str | os.PathLike | None = None,
        resume: bool = True,
        init_points: torch.Tensor | None = None,
        init_colors: torch.Tensor | None = None,
        progress: bool = True,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> "GaussianFlow":
        """Fit to posed images.

        Args:
            frames: ``[M, H, W, 3]`` uint8 or float in [0, 1]; image i is seen by ``cameras[i]`` at
                ``times[i]`` (multi-view: several images share a time; monocular: one per time).
            cameras: M cameras of size W x H.
            times: ``[M]`` timestamps (any units; normalised internally).
            out_dir: where ``checkpoint.pt`` is written every ``checkpoint_every`` steps (and at the
                end); an existing checkpoint there is resumed when ``resume``.
            init_points, init_colors: optional ``[P, 3]`` start points and RGB (default: random points
                along random pixel rays, coloured by the pixel).
            callback: called as ``callback(step, losses)`` after every step.
        """
        cfg = self.config
        images = _as_float_frames(frames)
        if not isinstance(cameras, Cameras):
            raise InvalidArgumentError(f"cameras must be splats.Cameras, got {type(cameras).__name__}")
        m, h, w = images.shape[:3]
        if len(cameras) != m:
            raise ShapeError(f"cameras ({len(cameras)}) and frames ({m}) must have the same count")
        if (cameras.width, cameras.height) != (w, h):
            raise ShapeError(f"cameras are {cameras.width}x{cameras.height} but frames are {w}x{h}")
        times_t = torch.as_tensor(np.asarray(times, dtype=np.float64)).float()
        check_shape(times_t, "times", (m,))
        check_finite(times_t, "times")
        device = resolve_device(cfg.device, "GaussianFlowConfig.device")
        cameras = cameras.to("cpu", torch.float32)
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self._sampler = {"gen": gen, "order": torch.randperm(m, generator=gen), "cursor": 0}

        checkpoint_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
        signature = _data_signature(images, cameras, times_t)
        densifier: Densifier
        self._knn = None
        if checkpoint_path is not None and resume and checkpoint_path.exists():
            optimizers, densifier = self._load_checkpoint(checkpoint_path, signature)
        else:
            params, scene_scale = self._initial_params(images, cameras, init_points, init_colors, gen)
            self.params = {k: torch.nn.Parameter(v.to(device)) for k, v in params.items()}
            self.time_norm = TimeNormalizer(float(times_t.min()), float(times_t.max()), cfg.time_scale, cfg.time_shift)
            self.step = 0
            self.history = []
            self.scene_scale = scene_scale
            optimizers = self._make_optimizers(scene_scale)
            densifier = Densifier(cfg.densify, scene_scale)
        taus = self.time_norm(times_t).to(device)
        images = images.to(device)
        cameras = cameras.to(device)
        background = torch.tensor(cfg.background, dtype=torch.float32, device=device)
        lrs = self._learning_rates(self.scene_scale)
        distinct = torch.unique(taus)
        time_gap = float(distinct[-1] - distinct[0]) / (len(distinct) - 1) if len(distinct) > 1 else 0.0

        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.iterations, initial=self.step, desc="gaussian-flow", disable=not progress,
                   dynamic_ncols=True)
        gen = self._sampler["gen"]
        try:
            while self.step < cfg.iterations:
                step = self.step
                factor = self._position_lr_factor(step)
                for key in ("means", "pos_coeffs"):
                    if key in optimizers:
                        optimizers[key].param_groups[0]["lr"] = lrs[key] * factor
                batch = self._next_batch(m).to(device)
                stage2 = step >= cfg.densify.stop
                batch_taus = taus[batch]
                if cfg.time_jitter > 0 and time_gap > 0:
                    noise = torch.randn(len(batch), generator=gen).to(device)
                    batch_taus = batch_taus + noise * (cfg.time_jitter * time_gap * (1 - step / cfg.iterations))
                losses, meta = self._step_losses(images[batch], cameras[batch], batch_taus, background, stage2,
                                                 self._knn, gen)
                meta["means2d"].retain_grad()
                losses["total"].backward()
                for opt in optimizers.values():
                    opt.step()
                n_before = len(self.params["means"])
                if not stage2:
                    densifier.accumulate(meta, n_before)
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                if not stage2:
                    densifier.step(step + 1, self.params, optimizers)
                if stage2 and self._knn is None and (cfg.lambda_rigid > 0):
                    self._knn = self._neighbours(gen)
                self.step = step + 1
                record = {k: float(v.detach()) for k, v in losses.items()}
                record["n_gaussians"] = float(len(self.params["means"]))
                if self.step % 10 == 0 or self.step == cfg.iterations:
                    self.history.append({"step": float(self.step), **record})
                    bar.set_postfix(loss=f"{record['total']:.4f}", n=int(record["n_gaussians"]))
                bar.update(1)
                if callback is not None:
                    callback(self.step, record)
                if checkpoint_path is not None and (self.step % cfg.checkpoint_every == 0 or self.step == cfg.iterations):
                    self._save_checkpoint(checkpoint_path, optimizers, densifier, signature)
        finally:
            bar.close()
        return self

    def _next_batch(self, m: int) -> torch.Tensor:
        """The next ``batch_size`` image indices of a reshuffled pass over all images."""
        s = self._sampler
        size = min(self.config.batch_size, m)
        if s["cursor"] + size > m:
            s["order"], s["cursor"] = torch.randperm(m, generator=s["gen"]), 0
        batch = s["order"][s["cursor"]: s["cursor"] + size]
        s["cursor"] += size
        return batch

    def _step_losses(self, images, cameras, taus, background, stage2, neighbours, gen):
        from kornia.losses import ssim_loss

        cfg = self.config
        d = self.deformed(taus)
        scales = self.params["scales"].exp()
        opac = torch.sigmoid(self.params["opacities"])
        pred, _, meta = rasterize(d["means"], d["quats"], scales, opac, d["colors"], cameras.world_to_cam,
                                  cameras.K, cameras.width, cameras.height, backgrounds=background)
        l1 = (pred - images).abs().mean()
        losses = {"l1": l1}
        total = (1 - cfg.lambda_dssim) * l1
        if cfg.lambda_dssim > 0:
            dssim = 2 * ssim_loss(pred.permute(0, 3, 1, 2), images.permute(0, 3, 1, 2), window_size=11)
            losses["dssim"] = dssim
            total = total + cfg.lambda_dssim * dssim
        if stage2 and cfg.lambda_smooth > 0:
            eps = (torch.randn(taus.shape, generator=gen) * cfg.smooth_sigma).to(taus.device)
            d2 = self.deformed(taus + eps)
            smooth = (d2["means"] - d["means"].detach()).abs().mean() / self.scene_scale
            smooth = smooth + (F.normalize(d2["quats"], dim=-1) - F.normalize(d["quats"], dim=-1).detach()).abs().mean()
            losses["smooth"] = smooth
            total = total + cfg.lambda_smooth * smooth
        if stage2 and cfg.lambda_rigid > 0 and neighbours is not None:
            rigid = self._rigidity(taus, neighbours, gen)
            losses["rigid"] = rigid
            total = total + cfg.lambda_rigid * rigid
        losses["total"] = total
        return losses, meta

    @torch.no_grad()
    def _neighbours(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """kNN of a subset of anchors at the canonical time: (anchor ids [A], neighbour ids [A, k],
        weights [A, k], typical neighbour distance [])"""
        from scipy.spatial import cKDTree

        cfg = self.config
        means = self.params["means"].detach().cpu()
        n = len(means)
        anchors = torch.randperm(n, generator=gen)[: cfg.rigid_max_gaussians]
        k = min(cfg.rigid_k, n - 1)
        if k < 1:
            return anchors[:0], torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1), torch.ones(())
        dist, idx = cKDTree(means.numpy()).query(means[anchors].numpy(), k=k + 1)
        dist = torch.from_numpy(np.asarray(dist)[:, 1:]).float()
        idx = torch.from_numpy(np.asarray(idx)[:, 1:]).long()
        scale = dist.median().clamp_min(1e-8)
        weights = torch.exp(-(dist / scale) ** 2)
        device = self.params["means"].device
        return anchors.to(device), idx.to(device), weights.to(device), scale.to(device)

    def _rigidity(self, taus, neighbours, gen) -> torch.Tensor:
        """Neighbour offsets at two times must be related by the anchor's own rotation.

        The squared residual is measured relative to the typical neighbour distance, so the weight
        means the same at any scene scale and Gaussian density."""
        anchors, idx, weights, spacing = neighbours
        if len(anchors) == 0:
            return taus.new_zeros(())
        t1 = taus[:1]
        t2 = t1 + (torch.randn(1, generator=gen) * 0.1 * self.time_norm.step).to(t1.device)
        sub = torch.unique(torch.cat([anchors, idx.reshape(-1)]))
        remap = torch.full((len(self.params["means"]),), -1, dtype=torch.long, device=sub.device)
        remap[sub] = torch.arange(len(sub), device=sub.device)
        p = {k: v[sub] for k, v in self.params.items()}
        d1, d2 = self.deformed(t1, p), self.deformed(t2, p)
        a, nb = remap[anchors], remap[idx]
        x1, x2 = d1["means"][0], d2["means"][0]
        r1, r2 = quat_to_rotmat(d1["quats"][0][a]), quat_to_rotmat(d2["quats"][0][a])
        off1 = x1[nb] - x1[a][:, None]  # [A, k, 3]
        off2 = x2[nb] - x2[a][:, None]
        rel = r1 @ r2.transpose(-1, -2)  # rotation taking time-2 offsets to time 1
        pred = (rel[:, None] @ off2[..., None])[..., 0]
        err = ((off1 - pred) ** 2).sum(-1)
        return (weights * err).sum() / weights.sum().clamp_min(1e-8) / spacing ** 2

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, path: Path, optimizers, densifier: Densifier, signature: str) -> None:
        state = {
            "format": "motion4d.gaussian_flow.v1",
            "config": asdict(self.config),
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "densifier": densifier.state_dict(),
            "step": self.step,
            "time_norm": asdict(self.time_norm),
            "scene_scale": self.scene_scale,
            "history": self.history,
            "rng": torch.get_rng_state(),
            "sampler": {"gen": self._sampler["gen"].get_state(), "order": self._sampler["order"],
                        "cursor": self._sampler["cursor"]},
            "signature": signature,
            "knn": None if self._knn is None else [x.detach().cpu() for x in self._knn],
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def _load_checkpoint(self, path: Path, signature: str):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only
        except Exception as exc:  # torch raises many types for corrupt files
            raise CheckpointError(f"{path}: cannot read the checkpoint ({exc})") from exc
        if not isinstance(state, dict) or state.get("format") != "motion4d.gaussian_flow.v1":
            raise CheckpointError(f"{path}: not a Gaussian-Flow checkpoint")
        if state["signature"] != signature:
            raise CheckpointError(f"{path}: the checkpoint was made for other frames/cameras/times; "
                                  f"use another out_dir or resume=False")
        saved = GaussianFlowConfig.from_dict(state["config"])
        if asdict(saved) != asdict(self.config):
            changed = sorted(k for k, v in asdict(self.config).items() if asdict(saved)[k] != v)
            raise CheckpointError(f"{path}: the checkpoint was made with a different config ({changed})")
        device = resolve_device(self.config.device, "GaussianFlowConfig.device")
        self.params = {k: torch.nn.Parameter(v.clone().to(device)) for k, v in state["params"].items()}
        self.time_norm = TimeNormalizer(**state["time_norm"])
        self.step = int(state["step"])
        self.scene_scale = float(state["scene_scale"])
        self.history = list(state["history"])
        optimizers = self._make_optimizers(self.scene_scale)
        for k, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        densifier = Densifier(self.config.densify, self.scene_scale)
        densifier.load_state_dict({k: v.to(device) if isinstance(v, torch.Tensor) else v
                                   for k, v in state["densifier"].items()})
        if state.get("knn") is not None:
            self._knn = tuple(x.to(device) for x in state["knn"])
        torch.set_rng_state(state["rng"])
        self._sampler["gen"].set_state(state["sampler"]["gen"])
        self._sampler["order"] = state["sampler"]["order"]
        self._sampler["cursor"] = int(state["sampler"]["cursor"])
        return optimizers, densifier

    # ---------------------------------------------------------------- export / load
    def export(self, out_dir: str | os.PathLike, times: Any = None, cameras: Cameras | None = None) -> Path:
        """Write ``frame_00000.ply``, ... per time, ``gaussian_flow.ply`` (canonical Gaussians with the
        deformation coefficients and time offsets as extra vertex properties) and ``manifest.json``.

        ``times`` default to 0..1 in the training time range split into as many steps as were seen
        (or 10). ``cameras`` (optional) are written as ``transforms.json``.
        """
        self._require_fitted()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if times is None:
            times = np.linspace(self.time_norm.t_min, self.time_norm.t_max, 10)
        times = [float(t) for t in np.asarray(times, dtype=np.float64).reshape(-1)]
        files = []
        for i, t in enumerate(times):
            name = f"frame_{i:05d}.ply"
            self.gaussians_at(t).save_ply(out / name)
            files.append({"time": t, "file": name})
        canonical, extra = self._canonical_with_coefficients()
        write_ply(out / "gaussian_flow.ply", canonical, extra=extra)
        manifest = {
            "format": "motion4d.gaussian_flow.v1",
            "method": "gaussian-flow",
            "frames": files,
            "coefficients_file": "gaussian_flow.ply",
            "config": asdict(self.config),
            "time_norm": asdict(self.time_norm),
            "scene_scale": self.scene_scale,
            "n_gaussians": len(canonical),
        }
        if cameras is not None:
            write_transforms_json(out / "transforms.json", cameras, [f"view_{i:04d}.png" for i in range(len(cameras))])
            manifest["cameras_file"] = "transforms.json"
        atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1))
        return out

    def _canonical_with_coefficients(self) -> tuple[Gaussians, dict[str, np.ndarray]]:
        p = {k: v.detach().cpu() for k, v in self.params.items()}
        canonical = Gaussians(p["means"], p["quats"], p["scales"], p["opacities"], p["colors"])
        extra = {"time_offset": p["time_offset"].numpy()}
        for attribute in _ATTRIBUTES:
            key = f"{attribute}_coeffs"
            if key in p:
                c = p[key].numpy()
                for j in range(c.shape[1]):
                    for d in range(c.shape[2]):
                        extra[f"{attribute}_c{j}_{d}"] = c[:, j, d]
        return canonical, extra

    @classmethod
    def load(cls, export_dir: str | os.PathLike) -> "GaussianFlow":
        """Rebuild a fitted model from :meth:`export`'s ``manifest.json`` + ``gaussian_flow.ply``."""
        folder = Path(export_dir)
        manifest_path = folder / "manifest.json"
        if not manifest_path.exists():
            raise InputFileError(f"{folder}: no manifest.json (not a Gaussian-Flow export)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != "motion4d.gaussian_flow.v1":
            raise InputFileError(f"{manifest_path}: not a Gaussian-Flow export manifest")
        model = cls(GaussianFlowConfig.from_dict(manifest["config"]))
        v = read_ply_vertices(folder / manifest["coefficients_file"])
        n = len(v["x"])
        if n == 0:
            raise InputFileError(f"{folder / manifest['coefficients_file']}: the PLY holds no Gaussians")

        def col(names: list[str]) -> torch.Tensor:
            missing = [k for k in names if k not in v]
            if missing:
                raise InputFileError(f"{folder / manifest['coefficients_file']}: missing properties {missing[:5]}")
            return torch.from_numpy(np.stack([v[k] for k in names], -1)).float()

        from .gaussians import sh0_to_rgb

        params = {
            "means": col(["x", "y", "z"]), "quats": col([f"rot_{i}" for i in range(4)]),
            "scales": col([f"scale_{i}" for i in range(3)]), "opacities": col(["opacity"])[:, 0],
            "colors": sh0_to_rgb(col([f"f_dc_{i}" for i in range(3)])), "time_offset": col(["time_offset"])[:, 0],
        }
        for attribute, (_, dim) in _ATTRIBUTES.items():
            n_poly, n_fourier = model.config.orders(attribute)
            k = n_poly + 2 * n_fourier
            if k:
                params[f"{attribute}_coeffs"] = col([f"{attribute}_c{j}_{d}" for j in range(k) for d in range(dim)]
                                                    ).reshape(n, k, dim)
        model.params = {k: torch.nn.Parameter(t) for k, t in params.items()}
        model.time_norm = TimeNormalizer(**manifest["time_norm"])
        model.scene_scale = float(manifest["scene_scale"])
        return model


def _scene_center(cameras: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """Point closest (least squares) to all optical axes, and each camera's distance to it.

    For (nearly) parallel axes, e.g. a forward-moving monocular camera, falls back to one unit ahead of
    the mean camera centre along the mean viewing direction.
    """
    c2w = cameras.cam_to_world.double()
    origins = c2w[:, :3, 3]
    dirs = F.normalize(c2w[:, :3, 2], dim=-1)
    eye = torch.eye(3, dtype=torch.float64)
    proj = eye - dirs[:, :, None] * dirs[:, None, :]
    a = proj.sum(0)
    b = (proj @ origins[..., None]).sum(0)[:, 0]
    if torch.linalg.cond(a) < 1e6:
        center = torch.linalg.solve(a, b)
        ahead = ((center - origins) * dirs).sum(-1)
        if (ahead > 0).all():
            dist = (center - origins).norm(dim=-1)
            return center.float(), dist.float()
    center = origins.mean(0) + dirs.mean(0)
    return center.float(), torch.ones(len(origins))


def _data_signature(images: torch.Tensor, cameras: Cameras, times: torch.Tensor) -> str:
    import hashlib

    h = hashlib.sha1()
    h.update(str(tuple(images.shape)).encode())
    h.update(images[:, ::7, ::7].numpy().tobytes())
    h.update(cameras.world_to_cam.numpy().tobytes())
    h.update(cameras.K.numpy().tobytes())
    h.update(times.numpy().tobytes())
    return h.hexdigest()
