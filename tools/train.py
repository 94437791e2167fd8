"""``motion4d train --model NAME --stage things|sintel|kitti --data-root DIR --out DIR``.

Trains any trainable registered flow model with the papers' staged recipe (FlyingThings3D, then the
Sintel mixture ``100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things``, then KITTI). The recipe
and the training loop are :mod:`motion.training`'s (:func:`motion.training.train`, the one loop: sequence
loss, AdamW + OneCycle, gradient clipping, RAFT augmentation applied identically to every frame of a
clip, temporal reversal, automatic mixed precision on CUDA, checkpoints that resume bit-exactly, CSV /
TensorBoard logs, tqdm, distributed data parallel) and its stage presets per model
(:mod:`motion.training.recipes`). This tool adds the command line, the model and the data around it:
weighted data-set mixtures (:mod:`motion.data.mixing`) with the papers' per-data-set zoom ranges,
RAFT's sparse augmentation for KITTI / HD1K. Its :class:`RunConfig` is the library's
:class:`~motion.training.TrainConfig` plus the model, data and output settings.

Scale-out: run it under ``torchrun --nproc_per_node=N -m tools.cli train ...`` (or ``srun``):
every process reads RANK / WORLD_SIZE / LOCAL_RANK, joins an NCCL (GPU) or gloo (CPU) group and
trains a DistributedDataParallel replica on ``batch_size / N`` samples of each global batch; only
rank 0 writes. Every random draw of a sample (reversal, zoom, flips, colour, crop) is seeded by
``(seed, epoch, index)``, so an N-process run sees exactly the samples a single process with the
same global batch sees, and a resumed run the samples the interrupted one would have seen.

Outputs in ``--out``: ``train_config.json``, ``train_log.csv`` (and TensorBoard events when
``tensorboard`` is installed), ``checkpoints/step_NNNNNNN.pt`` + ``checkpoints/last.pt`` (model,
optimizer, scheduler, AMP scaler, data position and every rank's RNG state: ``--resume auto``
continues bit-exactly), ``model_final.pth`` (motion4d checkpoint format for ``motion.create(name,
weights=...)``; the next stage's ``--init``) and ``preview.png`` (a training clip, its ground truth
and the prediction).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from motion import training
from motion.training import AugmentConfig, ClipDataset, TrainConfig, TrainResult
from motion.training.recipes import AUGMENT_RANGES, STAGES, eraser_prob_for, stage_settings
from motion4d.errors import InvalidArgumentError

#: loop settings of a ``--mixture`` run without ``--stage`` where they differ from :class:`TrainConfig`'s
#: (a short fine-tuning run; a stage preset sets its own)
MIXTURE_DEFAULTS: dict[str, Any] = {"steps": 1000, "lr": 1.25e-4, "gamma": 0.85}

#: conventional folder names under ``--data-root`` per reader
DATA_FOLDERS: dict[str, tuple[str, ...]] = {
    "sintel": ("Sintel", "MPI-Sintel-complete", "sintel"),
    "kitti": ("KITTI", "kitti15", "KITTI2015", "kitti"),
    "things": ("FlyingThings3D", "things"),
    "hd1k": ("HD1K", "hd1k"),
    "chairs": ("FlyingChairs_release", "FlyingChairs", "chairs"),
}


@dataclass(kw_only=True)
class RunConfig(TrainConfig):
    """Everything a run depends on (written to ``train_config.json``): the library's
    :class:`~motion.training.TrainConfig` (recipe and loop settings) plus the model, the data and
    the output around it."""

    model: str
    out_dir: str
    mixture: str
    roots: dict[str, str] = field(default_factory=dict)
    stage: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    init_weights: str | None = None
    augment_ranges: dict[str, tuple[float, float, bool]] = field(default_factory=dict)  # overrides AUGMENT_RANGES
    eraser_prob: float | None = None  # None: the model's recipe (recipes.ERASER_PROB, else 0)
    clip_length: int | None = None  # default: the model's frames_per_window
    reader_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    resume: str | None = None  # None, "auto" (out_dir/checkpoints/last.pt if present) or a path

    def validate(self) -> None:
        super().validate()
        if self.eraser_prob is not None and not 0 <= self.eraser_prob <= 1:
            raise InvalidArgumentError(f"eraser_prob must be in [0, 1], got {self.eraser_prob}")

    def resolved_eraser_prob(self) -> float:
        """``eraser_prob``, or the model's recipe value when None."""
        return float(self.eraser_prob) if self.eraser_prob is not None else eraser_prob_for(self.model)

    def recipe(self) -> TrainConfig:
        """The :class:`~motion.training.TrainConfig` part alone: what the loop runs and compares on resume."""
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})


def stage_config(model: str, stage: str, **overrides: Any) -> RunConfig:
    """The recipe of ``stage`` for ``model`` (:func:`motion.training.recipes.stage_settings`), with
    ``overrides`` (None values ignored)."""
    settings = stage_settings(model, stage)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(model=model, stage=stage, **settings)


# --------------------------------------------------------------------------------------------------
# Training clips


class TrainClips(ClipDataset):
    """Mixture samples as :mod:`motion.training` clips, every random draw seeded by ``(seed, epoch, index)``.

    Each component gets the papers' zoom range and flips (:data:`AUGMENT_RANGES`, overridable):
    dense ground truth RAFT's dense augmentation, sparse ground truth (KITTI, HD1K) RAFT's sparse one
    (valid pixels scattered to the new grid, never interpolated). ``augment=False``: random crops.
    """

    def __init__(self, mixture, config: RunConfig) -> None:
        super().__init__(mixture, config.recipe())
        self.mixture = mixture
        self.ranges = {**AUGMENT_RANGES, **{k: tuple(v) for k, v in config.augment_ranges.items()}}
        self.eraser_prob = config.resolved_eraser_prob()

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.mixture.set_epoch(epoch)

    def summary(self) -> str:
        return self.mixture.summary()

    def augment_config(self, index: int, sparse: bool) -> AugmentConfig:
        part, _ = self.mixture.locate(int(index))
        min_scale, max_scale, flips = self.ranges.get(self.mixture.names[part], (-0.2, 0.6, True))
        crop = tuple(self.config.crop)
        if sparse:
            return AugmentConfig.sparse(crop, min_scale, max_scale, flips=flips, eraser_prob=self.eraser_prob)
        return AugmentConfig(crop=crop, min_scale=min_scale, max_scale=max_scale,
                             h_flip_prob=0.5 if flips else 0.0, v_flip_prob=0.1 if flips else 0.0,
                             eraser_prob=self.eraser_prob)


# --------------------------------------------------------------------------------------------------
# Training


def build_dataset(config: RunConfig, clip_length: int) -> TrainClips:
    """The :class:`TrainClips` of ``config.mixture`` with clips of ``clip_length`` frames."""
    from motion.data.mixing import build_mixture

    mixture = build_mixture(config.mixture, config.roots, clip_length=clip_length, seed=config.seed,
                            reader_options=config.reader_options)
    return TrainClips(mixture, config)


def train(config: RunConfig, ctx=None) -> TrainResult:
    """Run (or resume) the training described by ``config`` in this process of the job ``ctx``.

    Builds the model and the mixture, then runs :func:`motion.training.train` (the one training loop).
    ``ctx`` defaults to :func:`motion.distributed.setup_distributed` from the environment (torchrun).
    Returns its :class:`motion.training.TrainResult`.
    """
    import motion
    from motion.distributed import seed_everything, setup_distributed

    config.validate()
    ctx = ctx or setup_distributed(device=config.device)
    if config.batch_size % ctx.world_size:
        raise InvalidArgumentError(f"batch_size {config.batch_size} must be divisible by the {ctx.world_size} processes")
    seed_everything(config.seed)  # identical initial weights on every rank
    model = motion.create(config.model, weights=config.init_weights, device=ctx.device, **config.model_options)
    if not getattr(model, "trainable", False) or not any(p.requires_grad for p in model.parameters()):
        raise InvalidArgumentError(f"model {config.model!r} has no learnable parameters (training-free); nothing to train")
    clip_length = config.clip_length or int(getattr(model, "frames_per_window", 2))
    dataset = build_dataset(config, clip_length)
    run_info = {"model_options": config.model_options, "mixture": config.mixture, "clip_length": config.clip_length,
                "augment_ranges": {k: list(v) for k, v in config.augment_ranges.items()},
                "clip_length_resolved": clip_length, "eraser_prob": config.resolved_eraser_prob()}
    return training.train(model, dataset, config.recipe(), config.out_dir, model_name=config.model,
                          resume=config.resume, device=ctx.device, ctx=ctx, run_info=run_info)


# --------------------------------------------------------------------------------------------------
# Command line


def resolve_roots(data_root: str | None, overrides: list[str] | None) -> dict[str, str]:
    """Reader name -> root: conventional folders under ``data_root``, then ``NAME=PATH`` overrides."""
    roots: dict[str, str] = {}
    if data_root is not None:
        base = Path(data_root)
        if not base.is_dir():
            raise InvalidArgumentError(f"--data-root {base} is not a folder")
        for reader, names in DATA_FOLDERS.items():
            found = next((base / n for n in names if (base / n).is_dir()), None)
            if found is not None:
                roots[reader] = str(found)
    for item in overrides or []:
        if "=" not in item:
            raise InvalidArgumentError(f"--root expects NAME=PATH, got {item!r}")
        name, path = item.split("=", 1)
        if name not in DATA_FOLDERS:
            raise InvalidArgumentError(f"--root name must be one of {sorted(DATA_FOLDERS)}, got {name!r}")
        roots[name] = path
    return roots


def _parse_crop(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise InvalidArgumentError(f"--crop must be HxW, e.g. 432x960; got {text!r}") from exc
    return h, w


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="trainable registered model (e.g. videoflow-bof, tiny-flow)")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option, repeatable")
    parser.add_argument("--stage", choices=sorted(STAGES), default=None, help="recipe preset: things | sintel | kitti")
    parser.add_argument("--mixture", default=None, help="data mixture, e.g. 100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things")
    parser.add_argument("--data-root", default=None, help="folder holding Sintel/, KITTI/, FlyingThings3D/, HD1K/, ...")
    parser.add_argument("--root", action="append", metavar="NAME=PATH", help="root of one data set (sintel, kitti, things, hd1k, chairs)")
    parser.add_argument("--kitti-multiview-root", default=None, help="KITTI multi-view extension for clips longer than 2")
    parser.add_argument("--init", default=None, help="initial weights (the previous stage's model_final.pth or a release)")
    parser.add_argument("--out", required=True, help="output folder (logs, checkpoints, final model)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch size (split over processes)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of the OneCycle schedule")
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--gamma", type=float, default=None, help="sequence-loss decay over iterations")
    parser.add_argument("--crop", default=None, help="HxW training crop, e.g. 432x960")
    parser.add_argument("--clip-length", type=int, default=None, help="frames per training clip (default: the model's window)")
    parser.add_argument("--iters", type=int, default=None, help="refinement iterations in training (default 12)")
    parser.add_argument("--no-augment", action="store_true", help="random crops only (no zoom, flips, colour jitter)")
    parser.add_argument("--eraser-prob", type=float, default=None,
                        help="probability of RAFT's occlusion eraser per target frame (default: the model's recipe, 0.5 for videoflow-bof)")
    parser.add_argument("--reverse-prob", type=float, default=None, help="probability of playing a clip backwards (0.3)")
    parser.add_argument("--amp", choices=("auto", "on", "off"), default=None, help="mixed precision (default auto: CUDA only)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="data-loader workers per process")
    parser.add_argument("--log-every", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--resume", default="auto", help="auto (continue from OUT/checkpoints/last.pt) | none | PATH")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (each process takes cuda:LOCAL_RANK)")
    parser.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    from tools._common import parse_options

    if args.stage is None and args.mixture is None:
        raise InvalidArgumentError("give --stage (things | sintel | kitti) or --mixture")
    amp = {None: None, "auto": "auto", "on": True, "off": False}[args.amp]
    overrides = {
        "mixture": args.mixture, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "weight_decay": args.weight_decay, "gamma": args.gamma, "crop": _parse_crop(args.crop), "amp": amp,
        "seed": args.seed, "num_workers": args.workers, "log_every": args.log_every,
        "checkpoint_every": args.checkpoint_every, "iters": args.iters, "reverse_prob": args.reverse_prob,
        "augment": False if args.no_augment else None, "eraser_prob": args.eraser_prob,
    }
    common = {
        "out_dir": args.out, "roots": resolve_roots(args.data_root, args.root), "model_options": parse_options(args.option),
        "init_weights": args.init, "clip_length": args.clip_length, "device": args.device,
        "resume": None if args.resume == "none" else args.resume, "progress": not args.no_progress,
        "reader_options": {"kitti": {"multiview_root": args.kitti_multiview_root}} if args.kitti_multiview_root else {},
    }
    if args.stage is not None:
        return stage_config(args.model, args.stage, **overrides, **common)
    settings = {**MIXTURE_DEFAULTS, **{k: v for k, v in overrides.items() if v is not None}}
    return RunConfig(model=args.model, **settings, **common)


def run(args: argparse.Namespace) -> int:
    from motion.distributed import setup_distributed, teardown_distributed

    config = config_from_args(args)
    ctx = setup_distributed(device=config.device)
    try:
        result = train(config, ctx)
    finally:
        teardown_distributed(ctx)
    if ctx.is_main:
        tail = result.losses[-min(len(result.losses), 10):]
        mean = sum(tail) / len(tail) if tail else math.nan
        print(f"train {config.model}: step {result.step}/{config.steps}, recent loss {mean:.4f}, "
              f"final model {result.out_dir / 'model_final.pth'}")
    return 0
