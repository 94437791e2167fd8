"""``motion4d train --model NAME --stage things|sintel|kitti --data-root DIR --out DIR``.

Trains any trainable registered flow model with the papers' staged recipe (FlyingThings3D, then the
Sintel mixture ``100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things``, then KITTI). The recipe
and the training loop are :mod:`motion.train`'s (:func:`motion.train.train`, the one loop: sequence
loss, AdamW + OneCycle, gradient clipping, RAFT augmentation applied identically to every frame of a
clip, temporal reversal, automatic mixed precision on CUDA, checkpoints that resume bit-exactly, CSV /
TensorBoard logs, tqdm, distributed data parallel). This tool adds the model and the data around it:
stage presets per model, weighted data-set mixtures (:mod:`motion.data.mixing`) with the papers'
per-data-set zoom ranges, RAFT's sparse augmentation for KITTI / HD1K.

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
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import motion.train as motion_train
from motion.train import AugmentConfig, ClipDataset, TrainResult
from motion4d.errors import InvalidArgumentError

#: The stages of the RAFT-family recipe (VideoFlow-BOF's numbers; per-model changes below).
#: ``amp``: False where the official recipe trains in fp32, "auto" (on CUDA) where it uses AMP.
STAGES: dict[str, dict[str, Any]] = {
    "things": {"mixture": "things_clean+things_final", "steps": 120_000, "lr": 2.5e-4, "batch_size": 8,
               "crop": (432, 960), "gamma": 0.8, "weight_decay": 1e-4, "amp": False},
    "sintel": {"mixture": "100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things", "steps": 120_000,
               "lr": 1.25e-4, "batch_size": 8, "crop": (432, 960), "gamma": 0.85, "weight_decay": 1e-4, "amp": False},
    "kitti": {"mixture": "kitti", "steps": 80_000, "lr": 1.25e-4, "batch_size": 8, "crop": (432, 960),
              "gamma": 0.85, "weight_decay": 1e-4, "amp": False, "augment_ranges": {"kitti": (-0.2, 0.4, False)}},
}

#: registered-name prefix -> stage -> settings that differ from :data:`STAGES` (research notes 2.7, 3.6, 4.6).
MODEL_STAGES: dict[str, dict[str, dict[str, Any]]] = {
    "videoflow-mof": {
        "things": {"steps": 125_000, "amp": "auto", "iters": 6},
        "sintel": {"mixture": "100*sintel_clean+100*sintel_final+50*kitti+5*hd1k+things", "steps": 40_000, "amp": "auto"},
        "kitti": {"steps": 25_000},
    },
    "splatflow": {
        "things": {"steps": 100_000, "lr": 1.25e-4, "crop": (400, 720), "weight_decay": 1e-5},
        "sintel": {"lr": 1.25e-4, "batch_size": 6, "crop": (368, 768), "gamma": 0.8, "weight_decay": 1e-5},
        "kitti": {"mixture": "20*sintel_clean+420*kitti+10*hd1k+things", "steps": 50_000, "batch_size": 6,
                  "crop": (368, 768), "gamma": 0.8, "weight_decay": 1e-5},
    },
    "streamflow": {
        "things": {"steps": 300_000, "lr": 6e-4, "batch_size": 16, "crop": (400, 720), "weight_decay": 1e-5, "amp": "auto"},
        "sintel": {"mixture": "100*sintel_clean+100*sintel_final+50*kitti+5*hd1k+things", "steps": 180_000,
                   "lr": 1.75e-4, "weight_decay": 1e-5},
    },
}

#: registered-name prefix -> probability of RAFT's eraser (occlusion) augmentation in its recipe
#: (research note 1: on in VideoFlow-BOF's 3-frame augmentor, off in the multi-frame ones)
ERASER_PROB: dict[str, float] = {"videoflow-bof": 0.5}

#: conventional folder names under ``--data-root`` per reader
DATA_FOLDERS: dict[str, tuple[str, ...]] = {
    "sintel": ("Sintel", "MPI-Sintel-complete", "sintel"),
    "kitti": ("KITTI", "kitti15", "KITTI2015", "kitti"),
    "things": ("FlyingThings3D", "things"),
    "hd1k": ("HD1K", "hd1k"),
    "chairs": ("FlyingChairs_release", "FlyingChairs", "chairs"),
}

#: mixture component -> (min, max log2 zoom, flips) of the papers' augmentation (research notes 2.7)
AUGMENT_RANGES: dict[str, tuple[float, float, bool]] = {
    "things": (-0.4, 0.8, True), "things_clean": (-0.4, 0.8, True), "things_final": (-0.4, 0.8, True),
    "sintel_clean": (-0.2, 0.6, True), "sintel_final": (-0.2, 0.6, True),
    "kitti": (-0.3, 0.5, True), "hd1k": (-0.5, 0.2, True), "chairs": (-0.1, 1.0, True),
}


@dataclass
class TrainConfig:
    """Everything a run depends on (written to ``train_config.json``)."""

    model: str
    out_dir: str
    mixture: str
    roots: dict[str, str] = field(default_factory=dict)
    stage: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    init_weights: str | None = None
    steps: int = 1000
    batch_size: int = 8  # global: divided over the processes
    lr: float = 1.25e-4
    weight_decay: float = 1e-4
    epsilon: float = 1e-8
    gamma: float = 0.85
    clip_grad: float = 1.0
    max_flow: float = 400.0
    iters: int = 12  # refinement iterations in training (VideoFlow-MOF on Things: 6)
    crop: tuple[int, int] = (432, 960)
    augment: bool = True  # RAFT augmentation; False: random crops only
    reverse_prob: float = 0.3  # temporal reversal of a clip
    augment_ranges: dict[str, tuple[float, float, bool]] = field(default_factory=dict)  # overrides AUGMENT_RANGES
    eraser_prob: float | None = None  # None: the model's recipe (ERASER_PROB, else 0)
    clip_length: int | None = None  # default: the model's frames_per_window
    reader_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    amp: bool | str = "auto"  # "auto": on CUDA only
    seed: int = 1234
    num_workers: int = 0
    log_every: int = 100
    checkpoint_every: int = 5000
    device: str = "auto"
    resume: str | None = None  # None, "auto" (out_dir/checkpoints/last.pt if present) or a path
    progress: bool = True

    def validate(self) -> None:
        self.recipe().validate()
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("lr", "gamma", "clip_grad", "max_flow"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
        if len(self.crop) != 2 or min(self.crop) < 1:
            raise InvalidArgumentError(f"crop must be (H, W), got {self.crop!r}")
        if self.num_workers < 0:
            raise InvalidArgumentError(f"num_workers must be >= 0, got {self.num_workers}")
        if not 0 <= self.reverse_prob <= 1:
            raise InvalidArgumentError(f"reverse_prob must be in [0, 1], got {self.reverse_prob}")
        if self.eraser_prob is not None and not 0 <= self.eraser_prob <= 1:
            raise InvalidArgumentError(f"eraser_prob must be in [0, 1], got {self.eraser_prob}")

    def resolved_eraser_prob(self) -> float:
        """``eraser_prob``, or the model's recipe value when None."""
        if self.eraser_prob is not None:
            return float(self.eraser_prob)
        return next((p for prefix, p in ERASER_PROB.items() if self.model.startswith(prefix)), 0.0)

    def recipe(self) -> motion_train.TrainConfig:
        """The :class:`motion.train.TrainConfig` of this run (recipe and loop settings)."""
        return motion_train.TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                      epsilon=self.epsilon, gamma=self.gamma, max_flow=self.max_flow, iters=self.iters,
                      clip=self.clip_grad, reverse_prob=self.reverse_prob, crop=tuple(self.crop),
                      augment=self.augment, amp=self.amp, seed=self.seed, num_workers=self.num_workers,
                      log_every=self.log_every, checkpoint_every=self.checkpoint_every, progress=self.progress,
                      preview=True)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["crop"] = list(self.crop)
        data["augment_ranges"] = {k: list(v) for k, v in self.augment_ranges.items()}
        return data


def stage_config(model: str, stage: str, **overrides: Any) -> TrainConfig:
    """The recipe of ``stage`` for ``model``, with ``overrides`` (None values ignored)."""
    if stage not in STAGES:
        raise InvalidArgumentError(f"stage must be one of {sorted(STAGES)}, got {stage!r}")
    settings = dict(STAGES[stage])
    for prefix in sorted(MODEL_STAGES, key=len, reverse=True):
        if model.startswith(prefix):
            settings.update(MODEL_STAGES[prefix].get(stage, {}))
            break
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(model=model, stage=stage, **settings)


# --------------------------------------------------------------------------------------------------
# Training clips


def sample_to_item(sample) -> dict[str, Any]:
    """A :class:`~motion.data.FlowSample` as a :mod:`motion.train` item (pairs without ground truth
    and missing backward flow get all-invalid masks, so every item of a mixture has the same keys)."""
    frames = sample.frames.transpose(0, 3, 1, 2)
    has = sample.has_flow[:, None, None]
    item = {"frames": frames, "flow_forward": sample.flow.transpose(0, 3, 1, 2),
            "valid_forward": (sample.valid & has).astype(np.float32)}
    if sample.flow_backward is not None:
        has_bw = sample.has_flow_backward[:, None, None]
        item["flow_backward"] = sample.flow_backward.transpose(0, 3, 1, 2)
        item["valid_backward"] = (sample.valid_backward & has_bw).astype(np.float32)
    else:
        item["flow_backward"] = np.zeros_like(item["flow_forward"])
        item["valid_backward"] = np.zeros_like(item["valid_forward"])
    return item


class TrainClips(ClipDataset):
    """Mixture samples as :mod:`motion.train` clips, every random draw seeded by ``(seed, epoch, index)``.

    Each component gets the papers' zoom range and flips (:data:`AUGMENT_RANGES`, overridable):
    dense ground truth RAFT's dense augmentation, sparse ground truth (KITTI, HD1K) RAFT's sparse one
    (valid pixels scattered to the new grid, never interpolated). ``augment=False``: random crops.
    """

    def __init__(self, mixture, config: TrainConfig) -> None:
        super().__init__(mixture, config.recipe())
        self.mixture = mixture
        self.ranges = {**AUGMENT_RANGES, **{k: tuple(v) for k, v in config.augment_ranges.items()}}
        self.eraser_prob = config.resolved_eraser_prob()

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.mixture.set_epoch(epoch)

    def summary(self) -> str:
        return self.mixture.summary()

    def item(self, index: int) -> dict[str, Any]:
        return sample_to_item(self.mixture[index])

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


def build_dataset(config: TrainConfig, clip_length: int):
    """The :class:`TrainClips` of ``config.mixture`` with clips of ``clip_length`` frames."""
    from motion.data.mixing import build_mixture

    mixture = build_mixture(config.mixture, config.roots, clip_length=clip_length, seed=config.seed,
                            reader_options=config.reader_options)
    return TrainClips(mixture, config)


def train(config: TrainConfig, ctx=None) -> TrainResult:
    """Run (or resume) the training described by ``config`` in this process of the job ``ctx``.

    Builds the model and the mixture, then runs :func:`motion.train.train` (the one training loop).
    ``ctx`` defaults to :func:`motion.distributed.setup_distributed` from the environment (torchrun).
    Returns its :class:`motion.train.TrainResult`.
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
    return motion_train.train(model, dataset, config.recipe(), config.out_dir, model_name=config.model,
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


def config_from_args(args: argparse.Namespace) -> TrainConfig:
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
    settings = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(model=args.model, **settings, **common)


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
