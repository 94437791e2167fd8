"""GFlow (Wang et al., "GFlow: Recovering 4D World from Monocular Video", AAAI 2025).

From one video with no camera parameters, GFlow fits a set of 3D Gaussians to the first frame and
then, frame after frame, moves the camera and the Gaussians so that the renders keep matching the
video while respecting a depth prior and an optical-flow prior. Camera poses, point tracks and
moving-object masks fall out of the result (:class:`splats.scene4d.Scene4D`).

Per video (AAAI version, see ``shared/research/gaussians.md`` §1):

* **initialisation** (frame 0): pixels drawn with an edge-weighted probability become Gaussians on
  the prior depth surface (:mod:`splats.gflow_init`), optimised with photometric (L2 + SSIM), depth
  and isotropy losses, with error densification twice.
* **still / moving split**: a pixel is moving where its flow breaks the pair's epipolar geometry
  (Sampson distance, :mod:`splats.epipolar`); Gaussians take the label of the pixel they are created
  at. ``split="kmeans"`` is the first arXiv version's rule instead (K-means, k = 2, on the flow at the
  projected centres). With ``rigid_refine`` a still Gaussian also becomes moving when, after the
  camera stage, its flow disagrees with the flow its depth and the two camera poses predict — that
  catches objects moving along their epipolar lines, which the Sampson test cannot see.
* **per frame t >= 1**: (1) camera-only stage: the pose (unit quaternion + translation, from the
  previous pose) is optimised through the renderer by a photometric loss outside the moving regions
  and a flow loss on still Gaussians (the paper adds a depth loss: ``lambda_depth_camera``); then
  frame t's prior is rescaled to the depth rendered from the Gaussians so far (``depth_align``);
  (2) moving Gaussians are relocated along the flow and onto the prior depth of frame t; (3)
  new-content densification where the forward-backward flow check fails (or nothing is rendered);
  (4) Gaussian stage: photometric, depth (``lambda_depth``: not for priors made from the flow itself),
  flow (moving Gaussians) and isotropy losses, still centres and all colours frozen, error
  densification twice.
* the prior depth may have any scale: the depth loss compares ``a * rendered + b`` with it, ``a, b``
  learnable. Internally the scene is measured in units of the median prior depth of frame 0; the
  returned scene is converted back to the prior's units.

Each finished frame is written to ``checkpoint_dir/frame_00012.pt`` (atomically); a new ``fit`` with
the same inputs and configuration resumes after the last finished frame.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from motion.flow_geometry import sample_at_points
from motion4d.atomic import atomic_write_bytes
from motion4d.checks import check_choice, check_positive
from motion4d.device import resolve_device
from motion4d.errors import CheckpointError, InvalidArgumentError
from motion4d.imaging import psnr

from . import epipolar
from .cards import GFLOW_CARD
from .gflow_init import density_footprint, edge_probability, masked_probability, pixel_gaussians, sample_pixels
from .gflow_inputs import Priors, load_priors
from .gflow_losses import depth_loss, flow_loss, isotropy_loss, photometric_loss
from .gflow_schedule import SCHEDULES, iteration_schedule
from .methods import register_gaussian_method
from .rendering import rasterize
from .scene4d import Scene4D, project

__all__ = ["GFlow", "GFlowConfig", "Scene4D"]

_KEYS = ("means", "quats", "log_scales", "logit_opacities", "colors")
CHECKPOINT_FORMAT = "motion4d-gflow-frame"


@dataclass
class GFlowConfig:
    """Hyper-parameters. Defaults follow the AAAI paper / released script; tests use fewer iterations.

    Attributes:
        n_init: Gaussians drawn for frame 0 (None: half the pixels, at most 50,000 as in the paper).
        schedule: iteration budgets left at None come from :func:`splats.gflow_schedule.iteration_schedule`:
            ``"paper"`` (500 / 150 / 300), ``"cpu"`` (scaled to the image size: a fixed time per frame)
            or ``"auto"`` (``paper`` on CUDA, ``cpu`` on a CPU).
        init_iterations, init_densify_at: frame-0 optimisation and its error-densification steps
            (None: from ``schedule``; densification at 30% and 60% of the iterations, as 150 / 300 of 500).
        camera_iterations, camera_lr: camera-only stage (Adam on quaternion + translation).
        gaussian_iterations, gaussian_lr: Gaussian stage (Adam on every Gaussian parameter).
        densify_fractions: error densification at these fractions of the Gaussian stage.
        lr_final_factor: learning rates decay linearly to this factor over each stage.
        lambda_photo, lambda_ssim, lambda_depth, lambda_flow, lambda_iso: loss weights. ``lambda_depth``
            None: the paper's 0.1 for depth measured apart from the flow (arrays, folders, a depth
            network) and 0 for priors made from the video's own flow (``"two-view"``, ``"constant"``):
            such a prior adds no information the flow loss lacks, only its densification's errors,
            which the depth term then fits (tune scene of ``bench/gflow_quality.py``, two-view prior:
            ATE / path 0.071 -> 0.010, AJ 0.520 -> 0.548, held-out PSNR 20.45 -> 20.86 dB without it).
        lambda_depth_camera: depth-loss weight of the camera stage (the paper uses ``lambda_depth``).
            0 by default: the camera is placed by the photometric and flow losses on the geometry built
            so far, and a prior that is not consistent across frames pulls it off — with the two-view
            prior on the tune scene of ``bench/gflow_quality.py`` the depth term made the steps along the
            path 20-80 % short on three frames (ATE / path 0.086 with it, 0.010 without).
        depth_loss: "l1" (paper) or "relative" (released code).
        depth_align: "scale" rescales each later frame's prior so that its median agrees with the depth
            rendered from the Gaussians so far on the still pixels both see (at the pose the camera stage
            found; also at its starting pose when that stage fits depth); "none" uses every prior as given (paper,
            whose MASt3R depth is consistent across frames; a per-video or per-pair monocular prior is not:
            the two-view prior's frames differ in scale by up to ~15 %).
        split: "epipolar" (AAAI) or "kmeans" (arXiv v1).
        epipolar_threshold: Sampson distance (px) above which a pixel moves; with
            ``epipolar_normalize`` a fraction of the image's maximum error (the paper's 0.01).
        opening_radius: morphological opening of the motion masks (px).
        rigid_refine, rigid_threshold: relabel still Gaussians whose flow departs from the rigid flow
            by more than ``max(rigid_threshold, 3 x median residual)`` px after each camera stage.
        mask_relabel: with ``rigid_refine``, still Gaussians seen inside frame t-1's motion mask become
            moving too (not only the new ones created there): a Gaussian made still on the object's
            edge otherwise stays behind and smears it (tune scene of ``bench/gflow_quality.py``,
            two-view prior: mask IoU 0.449 -> 0.533, held-out PSNR unchanged).
        mask_dilation: dilation (px) of the moving regions excluded from the camera stage.
        new_content_fraction: new Gaussians = n_init x masked area fraction x this (paper 0.5).
        error_fraction, error_threshold: the same for error densification (per-pixel squared error
            averaged over channels above ``error_threshold``).
        max_gaussians: cap on the total number of Gaussians.
        pose_init: "previous" (paper) or "constant_velocity" start of each camera stage.
        freeze_colors: colours are optimised on frame 0 only (paper).
        occlusion_tolerance: relative depth tolerance of the visibility test used while fitting (which
            Gaussians carry the flow loss and are relabelled).
        track_occlusion_tolerance: relative depth tolerance of the returned scene's depth test (tracks'
            visibility). Looser than the fit's: a monocular prior's depth is not consistent to a few
            percent across frames (the two-view prior's AbsRel is ~0.25), so later frames' Gaussians sit
            some percent in front of a surface's older ones; 0.05 hid half of the visible tracks by frame 7
            of the tune scene (AJ 0.471 -> 0.520 with 0.2, constant depth unchanged 0.467 -> 0.466).
        default_fov_degrees: horizontal field of view when no intrinsics are given.
        flow_model: ``motion`` flow method used when no flow is given.
        background: colour behind the Gaussians.
        device: "auto" (CUDA with gsplat when available), "cpu", "cuda", ...
        cpu_threads: torch intra-op threads during a CPU fit (restored afterwards; None: torch's own
            setting). The rasteriser's many small operations gain little from threads and lose badly
            when the cores are busy: ``bench/gflow_quality.py --threads`` measured, at 160x68 px with load
            ~7.5 on 2 cores, 0.12 s per iteration with 1 thread and 0.7-1.5 s with 2.
        seed: random seed of pixel sampling.
    """

    n_init: int | None = None
    schedule: str = "auto"
    init_iterations: int | None = None
    init_densify_at: tuple[int, ...] | None = None
    camera_iterations: int | None = None
    camera_lr: float = 1e-3
    gaussian_iterations: int | None = None
    gaussian_lr: float = 4e-3
    densify_fractions: tuple[float, ...] = (1 / 3, 2 / 3)
    lr_final_factor: float = 0.1
    lambda_photo: float = 1.0
    lambda_ssim: float = 1.0
    lambda_depth: float | None = None
    lambda_flow: float = 0.01
    lambda_iso: float = 50.0
    lambda_depth_camera: float = 0.0
    depth_loss: str = "l1"
    depth_align: str = "scale"
    split: str = "epipolar"
    epipolar_threshold: float = 1.0
    epipolar_normalize: bool = False
    opening_radius: int = 1
    rigid_refine: bool = True
    mask_relabel: bool = True
    rigid_threshold: float = 1.0
    mask_dilation: int = 2
    new_content_fraction: float = 0.5
    error_fraction: float = 1.0
    error_threshold: float = 0.01
    max_gaussians: int = 500_000
    pose_init: str = "previous"
    freeze_colors: bool = True
    occlusion_tolerance: float = 0.05
    track_occlusion_tolerance: float = 0.2
    default_fov_degrees: float = 90.0
    flow_model: str = "dis"
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    device: str = "auto"
    cpu_threads: int | None = 1
    seed: int = 0

    def validate(self) -> "GFlowConfig":
        for name in ("init_iterations", "camera_iterations", "gaussian_iterations"):
            if getattr(self, name) is not None:
                check_positive(int(getattr(self, name)), f"GFlowConfig.{name}", allow_zero=True)
        check_choice(self.schedule, "GFlowConfig.schedule", SCHEDULES)
        for name in ("camera_lr", "gaussian_lr", "lr_final_factor", "epipolar_threshold", "max_gaussians",
                     "occlusion_tolerance", "track_occlusion_tolerance"):
            check_positive(getattr(self, name), f"GFlowConfig.{name}")
        for name in ("lambda_photo", "lambda_ssim", "lambda_flow", "lambda_iso", "lambda_depth_camera",
                     "new_content_fraction", "error_fraction", "error_threshold", "rigid_threshold"):
            check_positive(getattr(self, name), f"GFlowConfig.{name}", allow_zero=True)
        if self.lambda_depth is not None:
            check_positive(self.lambda_depth, "GFlowConfig.lambda_depth", allow_zero=True)
        if self.n_init is not None:
            check_positive(int(self.n_init), "GFlowConfig.n_init")
        if self.cpu_threads is not None:
            check_positive(int(self.cpu_threads), "GFlowConfig.cpu_threads")
        check_choice(self.depth_loss, "GFlowConfig.depth_loss", ("l1", "relative"))
        check_choice(self.depth_align, "GFlowConfig.depth_align", ("scale", "none"))
        check_choice(self.split, "GFlowConfig.split", ("epipolar", "kmeans"))
        check_choice(self.pose_init, "GFlowConfig.pose_init", ("previous", "constant_velocity"))
        if any(not 0 < f < 1 for f in self.densify_fractions):
            raise InvalidArgumentError(f"GFlowConfig.densify_fractions must lie in (0, 1), got {self.densify_fractions}")
        if self.init_densify_at is not None:
            self.init_densify_at = tuple(int(i) for i in self.init_densify_at)
        self.densify_fractions = tuple(float(f) for f in self.densify_fractions)
        self.background = tuple(float(b) for b in self.background)
        return self

    def resolved(self, height: int, width: int, device_type: str) -> "GFlowConfig":
        """A copy with every iteration budget set (from ``schedule`` for frames of ``height x width``)."""
        values = asdict(self)
        budget = iteration_schedule(height, width, self.schedule, device_type)
        for key, value in budget.items():
            if values[key] is None:
                values[key] = value
        if values["init_densify_at"] is None:
            n = values["init_iterations"]
            values["init_densify_at"] = tuple(sorted({int(round(0.3 * n)), int(round(0.6 * n))} - {0}))
        return GFlowConfig(**values).validate()

    @property
    def iterations_per_frame(self) -> int:
        """Camera + Gaussian iterations of a frame after the first (resolved configurations only)."""
        return int(self.camera_iterations) + int(self.gaussian_iterations)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GFlowConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgumentError(f"unknown GFlowConfig keys: {unknown} (known: {sorted(known)})")
        return cls(**values).validate()


# ---------------------------------------------------------------------------------------------
# small helpers

@contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise it: a frame's checkpoint and its
    ``on_frame`` outputs (PLY, poses, progress) are written together or not at all. A held signal is
    delivered again under the handler that was in place (Python's: KeyboardInterrupt). Main thread
    only (signal handlers cannot be installed elsewhere); elsewhere, and where SIGINT is ignored
    (``nohup ... &``) or handled outside Python, the block runs as it is."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation ``[3, 3]`` of a (not necessarily unit) wxyz quaternion ``[4]``."""
    from .gaussians import quat_to_rotmat

    return quat_to_rotmat(q[None])[0]


def pose_matrix(q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """World-to-camera ``[4, 4]`` from a wxyz quaternion and a translation (differentiable)."""
    top = torch.cat([quat_to_matrix(q), t[:, None]], dim=1)
    bottom = torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=top.dtype, device=top.device)
    return torch.cat([top, bottom], dim=0)


def matrix_to_quat(r: torch.Tensor) -> torch.Tensor:
    from kornia.geometry.conversions import rotation_matrix_to_quaternion

    return rotation_matrix_to_quaternion(r.double().contiguous()).to(r.dtype)


def _set_lr(optimizer: torch.optim.Optimizer, base: float, step: int, steps: int, final: float) -> None:
    """Linear decay from ``base`` to ``final * base`` over ``steps``."""
    for group in optimizer.param_groups:
        group["lr"] = base * (1.0 - (1.0 - final) * min(step, steps) / max(steps, 1))


# ---------------------------------------------------------------------------------------------
# the optimiser

@register_gaussian_method("gflow", GFlowConfig, "GFlow (AAAI 2025): 4D Gaussians, camera poses and tracks from monocular video",
                         card=GFLOW_CARD)
class GFlow:
    """Fit 4D Gaussians, camera poses, tracks and motion masks to a monocular video.

    Example::

        scene = GFlow(GFlowConfig(camera_iterations=50)).fit(frames, depth="depth_dir")
        scene.export("out")
    """

    def __init__(self, config: GFlowConfig | dict[str, Any] | None = None, **overrides: Any) -> None:
        if config is None:
            config = GFlowConfig()
        elif isinstance(config, dict):
            config = GFlowConfig.from_dict(config)
        elif not isinstance(config, GFlowConfig):
            raise InvalidArgumentError(f"config must be a GFlowConfig or dict, got {type(config).__name__}")
        if overrides:
            config = GFlowConfig.from_dict({**asdict(config), **overrides})
        self.config = config.validate()

    # ------------------------------------------------------------------ public
    def fit(self, frames: Any, depth: Any = None, flow: Any = None, intrinsics: Any = None, *,
            checkpoint_dir: str | os.PathLike | None = None, resume: bool = True, progress: bool = True,
            callback: Callable[[dict[str, Any]], None] | None = None,
            on_frame: Callable[[int, Scene4D], None] | None = None) -> Scene4D:
        """Reconstruct ``frames`` (``uint8 [T, H, W, 3]`` or a video path; T >= 2).

        Args:
            depth: prior depth — None (the training-free two-view prior made from the video's own flow,
                :mod:`splats.depth_prior`), a :class:`splats.depth_providers.DepthProvider` or its name
                (``"two-view"``, ``"constant"``, ``"depth-anything[:MODEL]"``), ``[T, H, W]`` maps, a folder
                of ``.npy`` / 16-bit ``.png`` maps, or a callable ``frame -> [H, W]`` (any scale).
            flow: None (estimate with ``config.flow_model``), a ``motion`` model name or FlowModel,
                ``(forward, backward)`` arrays ``[T-1, 2, H, W]``, a ``FlowResult`` or a flow folder.
            intrinsics: ``K [3, 3]`` / ``(fx, fy, cx, cy)`` or None (``default_fov_degrees``).
            checkpoint_dir: per-frame checkpoints; with ``resume`` a matching run continues from them.
            progress: tqdm bar that moves every iteration (frame, stage, loss, PSNR, Gaussians).
            callback: called after every iteration with ``{"frame", "stage", "iteration", "loss", "psnr"}``.
            on_frame: called as ``on_frame(t, scene)`` when frame ``t`` is finished (and checkpointed),
                with the :class:`Scene4D` of frames ``0..t``.

        A ``KeyboardInterrupt`` stops the fit after the frames finished so far, which stay in
        ``checkpoint_dir``; a new ``fit`` resumes from them.

        Raises:
            Motion4DError subclasses for bad inputs (frame / depth / flow count or size mismatch,
            non-finite depth, a video of one frame, unreadable files) and foreign checkpoints.
        """
        device = resolve_device(self.config.device, "GFlowConfig.device")
        frames_u8, priors = load_priors(frames, depth, flow, intrinsics, flow_model=self.config.flow_model,
                                        default_fov_degrees=self.config.default_fov_degrees, device=str(device))
        if priors.depth_notice:
            warnings.warn(f"GFlow depth prior: {priors.depth_notice}", stacklevel=2)
        cfg = self.config.resolved(*priors.size, device.type)
        run = _Run(cfg, priors, device)
        signature = _signature(cfg, priors)
        ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
        start = 0
        if ckpt is not None and resume:
            start = run.restore(ckpt, signature)
        from tqdm.auto import tqdm

        per_frame = cfg.iterations_per_frame
        total = cfg.init_iterations + (priors.num_frames - 1) * per_frame
        done = 0 if start == 0 else cfg.init_iterations + (start - 1) * per_frame
        started = time.perf_counter()
        bar = tqdm(total=total, initial=done, desc="gflow", unit="it", disable=not progress, dynamic_ncols=True)

        def tick(record: dict[str, Any]) -> None:
            bar.update(1)
            bar.set_postfix_str(f"frame {record['frame'] + 1}/{priors.num_frames} {record['stage']} "
                                f"loss {record['loss']:.4f} psnr {record['psnr']:.2f} n {record['gaussians']}",
                                refresh=False)
            if callback is not None:
                callback(record)

        run.tick = tick
        info = {"config": _jsonable(asdict(cfg)), "resumed_from_frame": start, "depth_unit": priors.depth_unit,
                "depth_method": priors.depth_method, "depth_notice": priors.depth_notice,
                "depth_info": _jsonable(priors.depth_info), "device": str(device)}
        threads = torch.get_num_threads()
        if device.type == "cpu" and cfg.cpu_threads is not None:
            torch.set_num_threads(int(cfg.cpu_threads))
        try:
            for t in range(start, priors.num_frames):
                run.fit_frame(t)
                with _deferred_interrupt():
                    if ckpt is not None:
                        run.save_frame(ckpt, t, signature)
                    if on_frame is not None:
                        on_frame(t, run.scene(frames_u8[: t + 1], {**info, "frame_stats": run.stats, "partial": True}))
        finally:
            torch.set_num_threads(threads)
            bar.close()
        info.update({"seconds": time.perf_counter() - started, "frame_stats": run.stats})
        return run.scene(frames_u8, info)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _signature(cfg: GFlowConfig, priors: Priors) -> str:
    """Hash of everything that changes the result (inputs and configuration except device)."""
    h = hashlib.sha1()
    conf = {k: v for k, v in asdict(cfg).items() if k not in ("device", "cpu_threads")}
    h.update(json.dumps(conf, sort_keys=True, default=str).encode())
    for x in (priors.images, priors.depth, priors.forward, priors.backward, priors.K):
        if x is not None:
            h.update(np.ascontiguousarray(x.numpy()).tobytes())
    return h.hexdigest()


#: depth priors computed from the video's own flow (no information the flow loss lacks)
FLOW_DERIVED_PRIORS = ("two-view", "constant")


def resolve_lambda_depth(value: float | None, depth_method: str) -> float:
    """``GFlowConfig.lambda_depth``, or its default for depth made by ``depth_method`` (see the config)."""
    if value is not None:
        return float(value)
    return 0.0 if depth_method in FLOW_DERIVED_PRIORS else 0.1


class _Run:
    """State of one fit: the growing Gaussian set, labels, poses and per-frame records."""

    def __init__(self, cfg: GFlowConfig, priors: Priors, device: torch.device) -> None:
        self.cfg = cfg
        self.priors = priors
        self.device = device
        self.T = priors.num_frames
        self.H, self.W = priors.size
        self.K = priors.K.to(device)
        self.images = priors.images.to(device)
        self.depth = priors.depth.to(device)
        self.forward = priors.forward.to(device)
        self.backward = None if priors.backward is None else priors.backward.to(device)
        self.bg = torch.tensor(cfg.background, dtype=torch.float32, device=device)
        self.n_init = int(cfg.n_init) if cfg.n_init is not None else min(50_000, self.H * self.W // 2)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.params: dict[str, torch.Tensor] = {}
        self.moving = torch.zeros(0, dtype=torch.bool, device=device)
        self.birth = torch.zeros(0, dtype=torch.long, device=device)
        self.poses: list[torch.Tensor] = []
        self.depth_ab = torch.tensor([1.0, 0.0], device=device)
        self.depth_scale = 1.0  # the current frame's prior alignment (depth_align)
        self.lambda_depth = resolve_lambda_depth(cfg.lambda_depth, priors.depth_method)
        self.states: list[dict[str, torch.Tensor]] = []
        self.stats: list[dict[str, Any]] = []
        self.masks = self._motion_masks()
        self.prev: dict[str, torch.Tensor] | None = None  # projection / visibility at the last frame
        self.tick: Callable[[dict[str, Any]], None] | None = None  # called after every iteration

    def _report(self, t: int, stage: str, iteration: int, loss: torch.Tensor, rgb: torch.Tensor,
                mask: torch.Tensor | None = None) -> None:
        """Per-iteration record for the progress bar (PSNR of the current render over ``mask``)."""
        if self.tick is None:
            return
        with torch.no_grad():
            err = (rgb.detach().clamp(0, 1) - self.images[t]).pow(2).mean(0)
            mse = float(err[mask].mean()) if mask is not None and mask.any() else float(err.mean())
        self.tick({"frame": t, "stage": stage, "iteration": iteration, "loss": float(loss.detach()),
                   "psnr": 10 * math.log10(1.0 / max(mse, 1e-10)), "gaussians": len(self.moving)})

    # ------------------------------------------------------------------ masks
    def _motion_masks(self) -> torch.Tensor:
        """``bool [T, H, W]`` Sampson masks: frame t from the flow t -> t+1 (the last from t -> t-1)."""
        cfg = self.cfg
        masks = []
        for t in range(self.T):
            if t < self.T - 1:
                flow = self.forward[t]
            elif self.backward is not None:
                flow = self.backward[t - 1]
            else:
                masks.append(masks[-1].clone())
                continue
            masks.append(epipolar.epipolar_moving_mask(flow, cfg.epipolar_threshold, cfg.epipolar_normalize,
                                                       cfg.opening_radius, seed=cfg.seed))
        return torch.stack(masks)

    # ------------------------------------------------------------------ rendering
    def _render(self, params: dict[str, torch.Tensor], w2c: torch.Tensor, colors: torch.Tensor | None = None,
                mode: str = "RGB+ED", background: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``image [H, W, C]`` and ``alpha [H, W]`` of ``params`` seen from ``w2c``."""
        cols = params["colors"] if colors is None else colors
        bg = None
        if background and colors is None:
            bg = self.bg
        img, alpha, _ = rasterize(params["means"], params["quats"], params["log_scales"].exp(),
                                  torch.sigmoid(params["logit_opacities"]), cols, w2c[None], self.K[None],
                                  self.W, self.H, mode=mode, backgrounds=bg)
        return img[0], alpha[0, ..., 0]

    def _visibility(self, params: dict[str, torch.Tensor], w2c: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            img, alpha = self._render(params, w2c)
            depth = img[..., 3]
            uv, z = project(params["means"], w2c, self.K)
            px = uv.round().long()
            inside = (px[:, 0] >= 0) & (px[:, 0] < self.W) & (px[:, 1] >= 0) & (px[:, 1] < self.H) & (z > 0)
            px[:, 0].clamp_(0, self.W - 1)
            px[:, 1].clamp_(0, self.H - 1)
            surface = depth[px[:, 1], px[:, 0]]
            visible = inside & (alpha[px[:, 1], px[:, 0]] > 0.5) & \
                ((z - surface).abs() <= self.cfg.occlusion_tolerance * surface.abs())
        return {"uv": uv, "z": z, "visible": visible, "depth": depth, "alpha": alpha, "rgb": img[..., :3]}

    # ------------------------------------------------------------------ Gaussian creation
    def _prior(self, t: int) -> torch.Tensor:
        """Prior depth ``[H, W]`` of frame t times its alignment scale (0 where the prior has no depth)."""
        return self.depth[t] * self.depth_scale if self.depth_scale != 1.0 else self.depth[t]

    def _still_pixels(self, t: int, w2c: torch.Tensor) -> torch.Tensor:
        """``bool [H, W]``: pixels of frame t outside its motion mask and the moving Gaussians seen from
        ``w2c`` (dilated by ``mask_dilation``) — what the camera stage fits."""
        with torch.no_grad():
            label, label_alpha = self._render(self.params, w2c, colors=self.moving.float()[:, None], mode="RGB",
                                              background=False)
            previous_moving = (label[..., 0] > 0.1) & (label_alpha > 0.1)
        return ~epipolar.dilate_mask(self.masks[t] | previous_moving, self.cfg.mask_dilation)

    def _align_prior(self, t: int, w2c: torch.Tensor, still: torch.Tensor) -> float:
        """Scale making frame t's prior agree with the rendered depth: the median of ``(a R + b) / D`` over
        ``still`` pixels covered by Gaussians (1 when under 2 % of the image qualifies)."""
        with torch.no_grad():
            img, alpha = self._render(self.params, w2c)
            a, b = self.depth_ab.tolist()
            mapped, prior = a * img[..., 3] + b, self.depth[t]
            ok = still & (alpha > 0.5) & (prior > 0) & (mapped > 0)
            if int(ok.sum()) < max(64, 0.02 * self.H * self.W):
                return 1.0
            return float((mapped[ok] / prior[ok]).log().median().exp())

    def _scene_depth(self, t: int) -> torch.Tensor:
        """Prior depth of frame t mapped into the rendered-depth scale: ``(D - b) / a``."""
        a, b = self.depth_ab.tolist()
        d = self._prior(t)
        return torch.where(d > 0, (d - b) / max(a, 1e-6), torch.zeros_like(d))

    def _add(self, t: int, probability: torch.Tensor | None, count: int, w2c: torch.Tensor,
             density: bool = False) -> int:
        """Create ``count`` Gaussians at pixels of frame t drawn from ``probability``; returns the number added."""
        room = self.cfg.max_gaussians - len(self.moving)
        count = min(count, room)
        if probability is None or count < 1:
            return 0
        depth = self._scene_depth(t)
        probability = probability * (depth > 0)
        if probability.sum() <= 0:
            return 0
        probability = probability / probability.sum()
        xy, p = sample_pixels(probability, count, self.gen)
        footprint = density_footprint(p, count) if density else torch.full((count,), 0.7, device=xy.device)
        new = pixel_gaussians(self.images[t], depth, self.K, w2c, xy.to(self.device), footprint.to(self.device))
        px = xy.round().long()
        labels = self.masks[t][px[:, 1], px[:, 0]].to(self.device)
        if self.cfg.split == "kmeans":
            labels = torch.zeros_like(labels)
        if not self.params:
            self.params = {k: v.detach() for k, v in new.items()}
        else:
            self.params = {k: torch.cat([self.params[k].detach(), new[k]]) for k in _KEYS}
        self.moving = torch.cat([self.moving, labels])
        self.birth = torch.cat([self.birth, torch.full((count,), t, dtype=torch.long, device=self.device)])
        return count

    def _densify_error(self, t: int, rendered: torch.Tensor, w2c: torch.Tensor) -> int:
        err = (rendered.detach() - self.images[t]).pow(2).mean(0)
        mask = err > self.cfg.error_threshold
        area = float(mask.float().mean())
        count = int(round(self.n_init * area * self.cfg.error_fraction))
        return self._add(t, masked_probability(mask, err), count, w2c)

    def _densify_new_content(self, t: int, w2c: torch.Tensor) -> int:
        """New Gaussians where frame t shows content frame t-1 did not (flow check) or nothing is rendered."""
        with torch.no_grad():
            _, alpha = self._render(self.params, w2c)
        mask = alpha < 0.5
        if self.backward is not None:
            mask |= epipolar.forward_backward_occlusion(self.backward[t - 1], self.forward[t - 1])
        area = float(mask.float().mean())
        count = int(round(self.n_init * area * self.cfg.new_content_fraction))
        return self._add(t, masked_probability(mask), count, w2c)

    # ------------------------------------------------------------------ optimisation stages
    def _trainable(self, t: int) -> dict[str, torch.Tensor]:
        train_colors = t == 0 or not self.cfg.freeze_colors
        return {k: v.detach().clone().requires_grad_(k != "colors" or train_colors) for k, v in self.params.items()}

    def _gaussian_stage(self, t: int, w2c: torch.Tensor, iterations: int, densify_at: tuple[int, ...]) -> float:
        cfg = self.cfg
        ab = self.depth_ab.clone().requires_grad_(True)
        flow_ids = None
        if t > 0 and self.prev is not None:
            n_prev = len(self.prev["uv"])
            flow_ids = torch.nonzero(self.moving[:n_prev] & self.prev["visible"]).squeeze(1)

        def build() -> tuple[dict[str, torch.Tensor], torch.optim.Optimizer]:
            params = self._trainable(t)
            opt = torch.optim.Adam([p for p in params.values() if p.requires_grad] + [ab], lr=cfg.gaussian_lr)
            return params, opt

        params, opt = build()
        target = self.images[t]
        prior = self._prior(t)
        valid_depth = prior > 0
        still = ~self.moving if t > 0 else torch.zeros_like(self.moving)
        loss_value = float("nan")
        for it in range(iterations):
            _set_lr(opt, cfg.gaussian_lr, it, iterations, cfg.lr_final_factor)
            img, alpha = self._render(params, w2c)
            rgb = img[..., :3].permute(2, 0, 1)
            loss = cfg.lambda_photo * photometric_loss(rgb, target, None, cfg.lambda_ssim)
            if self.lambda_depth > 0:
                loss = loss + self.lambda_depth * depth_loss(img[..., 3], prior, ab[0], ab[1],
                                                            valid_depth & (alpha > 0.5), cfg.depth_loss)
            if flow_ids is not None and len(flow_ids) and cfg.lambda_flow > 0:
                uv_now, _ = project(params["means"][flow_ids], w2c, self.K)
                loss = loss + cfg.lambda_flow * flow_loss(self.prev["uv"][flow_ids], uv_now, self.forward[t - 1])
            if cfg.lambda_iso > 0:
                loss = loss + cfg.lambda_iso * isotropy_loss(params["log_scales"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if params["means"].grad is not None and still.any():
                params["means"].grad[still] = 0
            opt.step()
            loss_value = float(loss.detach())
            self._report(t, "init" if t == 0 else "gaussians", it, loss, rgb)
            if it + 1 in densify_at and it + 1 < iterations:
                self.params = {k: v.detach() for k, v in params.items()}
                added = self._densify_error(t, rgb, w2c)
                if added:  # new rows: rebuild the optimiser (Adam state reset, as in the paper)
                    still = torch.cat([still, torch.zeros(added, dtype=torch.bool, device=self.device)])
                    params, opt = build()
        self.params = {k: v.detach() for k, v in params.items()}
        with torch.no_grad():
            ab[0].clamp_(min=1e-3)
        self.depth_ab = ab.detach()
        return loss_value

    def _camera_stage(self, t: int) -> torch.Tensor:
        cfg = self.cfg
        prev = self.poses[-1]
        if cfg.pose_init == "constant_velocity" and len(self.poses) >= 2:
            init = prev @ torch.linalg.inv(self.poses[-2]) @ prev
        else:
            init = prev
        q = matrix_to_quat(init[:3, :3]).clone().requires_grad_(True)
        tr = init[:3, 3].clone().requires_grad_(True)
        params = {k: v.detach() for k, v in self.params.items()}
        keep = self._still_pixels(t, init)
        if cfg.depth_align == "scale" and cfg.lambda_depth_camera > 0:
            self.depth_scale = self._align_prior(t, init, keep)
        n_prev = len(self.prev["uv"])
        still_ids = torch.nonzero(~self.moving[:n_prev] & self.prev["visible"]).squeeze(1)
        opt = torch.optim.Adam([q, tr], lr=cfg.camera_lr)
        target = self.images[t]
        prior = self._prior(t)
        valid_depth = prior > 0
        for it in range(cfg.camera_iterations):
            _set_lr(opt, cfg.camera_lr, it, cfg.camera_iterations, cfg.lr_final_factor)
            w2c = pose_matrix(q / q.norm(), tr)
            img, alpha = self._render(params, w2c)
            loss = cfg.lambda_photo * photometric_loss(img[..., :3].permute(2, 0, 1), target, keep, cfg.lambda_ssim)
            if cfg.lambda_depth_camera > 0:
                loss = loss + cfg.lambda_depth_camera * depth_loss(img[..., 3], prior, self.depth_ab[0],
                                                            self.depth_ab[1], keep & valid_depth & (alpha > 0.5),
                                                            cfg.depth_loss)
            if len(still_ids) and cfg.lambda_flow > 0:
                uv_now, _ = project(params["means"][still_ids], w2c, self.K)
                loss = loss + cfg.lambda_flow * flow_loss(self.prev["uv"][still_ids], uv_now, self.forward[t - 1])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self._report(t, "camera", it, loss, img[..., :3].permute(2, 0, 1), keep)
        with torch.no_grad():
            return pose_matrix(q / q.norm(), tr).detach()

    # ------------------------------------------------------------------ labels and relocation
    def _refine_labels(self, t: int, w2c: torch.Tensor) -> None:
        """Still Gaussians whose flow t-1 -> t departs from the rigid-scene flow become moving."""
        cfg = self.cfg
        prev = self.prev
        residual = epipolar.rigid_flow_residual(self.forward[t - 1], prev["depth"], self.K, self.poses[-1], w2c)
        trusted = prev["alpha"] > 0.5
        if self.backward is not None:
            trusted &= ~epipolar.forward_backward_occlusion(self.forward[t - 1], self.backward[t - 1])
        if trusted.sum() < 16:
            return
        threshold = max(cfg.rigid_threshold, 3.0 * float(residual[trusted].median()))
        moving_px = epipolar.open_mask((residual > threshold) & trusted, cfg.opening_radius)
        if cfg.mask_relabel:
            moving_px |= self.masks[t - 1]
        n_prev = len(prev["uv"])
        px = prev["uv"].round().long()
        px[:, 0].clamp_(0, self.W - 1)
        px[:, 1].clamp_(0, self.H - 1)
        hit = moving_px[px[:, 1], px[:, 0]] & prev["visible"]
        self.moving[:n_prev] |= hit

    def _kmeans_labels(self, t: int) -> None:
        """arXiv-v1 split: K-means (k = 2) on the flow at the visible Gaussians' projected centres."""
        from scipy.cluster.vq import kmeans2
        from scipy.spatial import ConvexHull, QhullError

        if t >= self.T - 1:
            return
        vis = self.prev
        ids = torch.nonzero(vis["visible"]).squeeze(1)
        if len(ids) < 8:
            return
        uv = vis["uv"][ids]
        vectors = sample_at_points(self.forward[t], uv).cpu().double().numpy()
        _, assign = kmeans2(vectors, 2, seed=self.cfg.seed, minit="++")
        assign = torch.from_numpy(assign).to(self.device)
        if t == 0:
            areas = []
            for c in (0, 1):
                pts = uv[assign == c].cpu().numpy()
                try:
                    areas.append(ConvexHull(pts).volume if len(pts) >= 3 else 0.0)
                except QhullError:
                    areas.append(0.0)
            still_cluster = int(np.argmax(areas))
        else:
            previous_still = ~self.moving[ids]
            overlap = [int((previous_still & (assign == c)).sum()) for c in (0, 1)]
            still_cluster = int(np.argmax(overlap))
        still_now = assign == still_cluster
        born_now = self.birth[ids] == t
        labels = self.moving[ids].clone()
        labels[born_now] = ~still_now[born_now]
        labels[~born_now] = self.moving[ids][~born_now] & ~still_now[~born_now]
        self.moving[ids] = labels

    def _relocate(self, t: int, w2c: torch.Tensor) -> None:
        """Move moving Gaussians along the flow t-1 -> t onto the prior depth of frame t."""
        from scipy.spatial import cKDTree

        from .gflow_init import unproject

        prev = self.prev
        n_prev = len(prev["uv"])
        moving = torch.nonzero(self.moving[:n_prev]).squeeze(1)
        if len(moving) == 0:
            return
        uv0 = prev["uv"][moving]
        uv1 = uv0 + sample_at_points(self.forward[t - 1], uv0)
        depth = self._scene_depth(t)
        inside = (uv1[:, 0] >= 0) & (uv1[:, 0] <= self.W - 1) & (uv1[:, 1] >= 0) & (uv1[:, 1] <= self.H - 1)
        z1 = sample_at_points(depth[None], uv1.clamp(min=0)).squeeze(1)
        ok = prev["visible"][moving] & inside & (z1 > 0)
        means = self.params["means"].clone()
        placed = moving[ok]
        if len(placed) == 0:
            return
        means[placed] = unproject(uv1[ok], z1[ok], self.K, w2c)
        shift = means[placed] - self.params["means"][placed]
        rest = moving[~ok]
        if len(rest):
            tree = cKDTree(self.params["means"][placed].cpu().numpy())
            _, nearest = tree.query(self.params["means"][rest].cpu().numpy())
            means[rest] = self.params["means"][rest] + shift[torch.as_tensor(nearest, device=self.device)]
        self.params["means"] = means

    # ------------------------------------------------------------------ one frame
    def fit_frame(self, t: int) -> dict[str, Any]:
        cfg = self.cfg
        t0, cpu0 = time.perf_counter(), time.process_time()
        record: dict[str, Any] = {"frame": t}
        if t == 0:
            w2c = torch.eye(4, device=self.device)
            prob = edge_probability(self.images[0])
            self._add(0, prob, self.n_init, w2c, density=True)
            iterations, densify_at = cfg.init_iterations, cfg.init_densify_at
        else:
            self.depth_scale = 1.0
            w2c = self._camera_stage(t)
            if cfg.depth_align == "scale":
                self.depth_scale = self._align_prior(t, w2c, self._still_pixels(t, w2c))
                record["depth_scale"] = self.depth_scale
            if cfg.split == "epipolar" and cfg.rigid_refine:
                self._refine_labels(t, w2c)
            self._relocate(t, w2c)
            record["new_content"] = self._densify_new_content(t, w2c)
            iterations = cfg.gaussian_iterations
            densify_at = tuple(int(round(f * iterations)) for f in cfg.densify_fractions)
        record["loss"] = self._gaussian_stage(t, w2c, iterations, densify_at)
        self.poses.append(w2c)
        self.prev = self._visibility(self.params, w2c)
        if cfg.split == "kmeans":
            self._kmeans_labels(t)
        record["psnr"] = psnr(self.prev["rgb"].permute(2, 0, 1).clamp(0, 1), self.images[t])
        record["gaussians"] = len(self.moving)
        record["moving"] = int(self.moving.sum())
        record["seconds"] = time.perf_counter() - t0
        record["cpu_seconds"] = time.process_time() - cpu0  # all threads: comparable on a busy machine
        self.states.append({k: v.detach().cpu().clone() for k, v in self.params.items()})
        self.stats.append(record)
        return record

    # ------------------------------------------------------------------ checkpoints
    def save_frame(self, folder: Path, t: int, signature: str) -> None:
        data = {
            "format": CHECKPOINT_FORMAT, "signature": signature, "frame": t,
            "state": self.states[t], "pose": self.poses[t].cpu(), "moving": self.moving.cpu(),
            "birth": self.birth.cpu(), "depth_ab": self.depth_ab.cpu(), "stats": json.dumps(self.stats[t]),
            "generator": self.gen.get_state(),
        }
        buffer = io.BytesIO()
        torch.save(data, buffer)
        atomic_write_bytes(folder / f"frame_{t:05d}.pt", buffer.getvalue())

    def restore(self, folder: Path, signature: str) -> int:
        """Load the finished frames 0..k from ``folder``; returns k + 1 (0 when nothing matches)."""
        if not folder.exists():
            return 0
        loaded = []
        for t in range(self.T):
            path = folder / f"frame_{t:05d}.pt"
            if not path.exists():
                break
            try:
                data = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # corrupt / foreign files raise several types
                raise CheckpointError(f"{path}: cannot read the GFlow checkpoint ({exc})") from exc
            if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
                raise CheckpointError(f"{path}: not a GFlow frame checkpoint")
            if data.get("signature") != signature:
                raise CheckpointError(f"{path}: written for other inputs or another configuration; use another "
                                      "checkpoint folder or resume=False")
            loaded.append(data)
        if not loaded:
            return 0
        self.states = [d["state"] for d in loaded]
        self.poses = [d["pose"].to(self.device) for d in loaded]
        self.stats = [json.loads(d["stats"]) for d in loaded]
        last = loaded[-1]
        self.params = {k: v.to(self.device) for k, v in last["state"].items()}
        self.moving = last["moving"].to(self.device)
        self.birth = last["birth"].to(self.device)
        self.depth_ab = last["depth_ab"].to(self.device)
        self.gen.set_state(last["generator"])
        self.prev = self._visibility(self.params, self.poses[-1])
        return len(loaded)

    # ------------------------------------------------------------------ result
    def scene(self, frames: np.ndarray, info: dict[str, Any]) -> Scene4D:
        """The :class:`Scene4D` of the frames finished so far (``frames`` holds them), in the depth prior's units."""
        unit = self.priors.depth_unit
        done = len(self.states)
        states = []
        for s in self.states:
            s = {k: v.cpu() for k, v in s.items()}
            s["means"] = s["means"] * unit
            s["log_scales"] = s["log_scales"] + math.log(unit)
            states.append(s)
        poses = torch.stack([p.cpu() for p in self.poses]).clone()
        poses[:, :3, 3] *= unit
        return Scene4D(states, poses, self.K.cpu(), self.W, self.H, self.moving.cpu(), self.birth.cpu(), frames[:done],
                       self.masks[:done].cpu(), info, self.cfg.background,
                       self.cfg.track_occlusion_tolerance)
