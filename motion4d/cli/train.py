"""``motion4d train --model NAME --stage things|sintel|kitti --data-root DIR --out DIR`` (:mod:`motion.training.run`).

Trains any trainable registered flow model with the papers' staged recipe (FlyingThings3D, then the
Sintel mixture ``100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things``, then KITTI) or a
``--mixture`` of your own. Scale-out: ``torchrun --nproc_per_node=N -m motion4d train ...`` (or
``torchrun ... tools/train.py ...``), or ``srun`` with one Slurm task per GPU (ranks, ``MASTER_ADDR``
and ``MASTER_PORT`` come from Slurm's variables; see :mod:`motion.launch`); ``--batch-size`` is the
global batch, and a checkpoint resumes on any number of processes that divides it. Outputs in ``--out``:
``train_config.json``, ``train_log.csv``, ``checkpoints/`` (``--resume auto`` continues
bit-exactly), ``model_final.pth`` (the next stage's ``--init``) and ``preview.png``.
"""
from __future__ import annotations

import argparse
import math

from motion4d.cli.arguments import parse_options
from motion4d.errors import InvalidArgumentError


def resolve_roots(data_root: str | None, overrides: list[str] | None) -> dict[str, str]:
    """Reader name -> root: conventional folders under ``data_root``, then ``NAME=PATH`` overrides."""
    from motion.training.data_roots import DATA_FOLDERS, find_data_roots

    roots = find_data_roots(data_root, "--data-root") if data_root is not None else {}
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
    from motion.training.recipes import STAGES

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


def config_from_args(args: argparse.Namespace):  # -> motion.training.RunConfig
    from motion.training.run_config import MIXTURE_DEFAULTS, RunConfig, stage_config

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
    from motion.training.run import run_training

    config = config_from_args(args)
    ctx = setup_distributed(device=config.device)
    try:
        result = run_training(config, ctx)
    finally:
        teardown_distributed(ctx)
    if ctx.is_main:
        tail = result.losses[-min(len(result.losses), 10):]
        mean = sum(tail) / len(tail) if tail else math.nan
        print(f"train {config.model}: step {result.step}/{config.steps}, recent loss {mean:.4f}, "
              f"final model {result.out_dir / 'model_final.pth'}")
    return 0
