"""``motion4d train-scoop --out DIR [--dataset ...]``: self-supervised SCOOP training (:mod:`pointclouds.methods.scoop_train`).

Data: ``synthetic`` (default; seeded pairs from ``pointclouds.synthetic``), ``ft3d_s`` / ``kitti_s``
(HPLFlowNet layouts), ``kitti_o`` (FlowNet3D KITTI; ``--split train`` is SCOOP's KITTI_v) or ``npz``
(generic pairs; FT3D_o files via ``--keys points1,points2,flow,valid_mask1 --pattern 'TRAIN_*.npz'``).
Writes ``DIR/last.pt`` (resumable), ``DIR/model.pt``, ``DIR/log.jsonl`` and ``DIR/train_config.json``;
run the same command again to resume. The checkpoint loads with
``estimate_scene_flow(..., method="scoop", weights="DIR/model.pt")``.
"""
from __future__ import annotations

import argparse


def build_parser(parser: argparse.ArgumentParser) -> None:
    from pointclouds.methods.scoop_train import TRAINING_SETS

    parser.add_argument("--out", required=True, help="output folder (resumes when it holds last.pt)")
    parser.add_argument("--dataset", choices=TRAINING_SETS, default="synthetic")
    parser.add_argument("--root", default=None, help="data-set folder (not for synthetic)")
    parser.add_argument("--split", default=None, help="ft3d_s: train|train_all; kitti_o: train|all")
    parser.add_argument("--keys", default=None, help="npz: source,target,flow[,mask] array names")
    parser.add_argument("--pattern", default="*.npz", help="npz: file pattern")
    parser.add_argument("--num-points", type=int, default=2048, help="points per cloud (SCOOP: 2048 FT3D_o/KITTI_v, 8192 FT3D_s)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ot-lr", type=float, default=0.2,
                        help="learning rate of SCOOP's epsilon and gamma (give the --lr value for the released single-lr recipe)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after this long")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--val-scenes", type=int, default=4, help="synthetic validation pairs for the logged EPE")
    parser.add_argument("--confidence-weight", type=float, default=0.1, help="0 disables the confidence loss")
    parser.add_argument("--backward-weight", type=float, default=0.0, help="chamfer target->recon weight (FT3D_s: 1)")
    parser.add_argument("--smooth-weight", type=float, default=10.0)
    parser.add_argument("--init-weights", default=None, help="start from this checkpoint")
    parser.add_argument("--normalize", action="store_true",
                        help="a scene-normalised network (centred, scaled by the point spacing): one model for any scene size")
    parser.add_argument("--rotate", action="store_true", help="synthetic: turn every training pair by a random rotation")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)


def training_set(args: argparse.Namespace):
    """The training pairs the arguments name (:func:`pointclouds.methods.scoop_train.open_training_set`)."""
    from motion4d.errors import InvalidArgumentError
    from pointclouds.methods.scoop_train import open_training_set

    if args.dataset != "synthetic" and args.root is None:
        raise InvalidArgumentError(f"--dataset {args.dataset} needs --root")
    keys = None
    if args.dataset == "npz" and args.keys:
        names = [k.strip() for k in args.keys.split(",")]
        if len(names) not in (3, 4):
            raise InvalidArgumentError(f"--keys needs 3 or 4 comma-separated names, got {args.keys!r}")
        keys = dict(zip(("source", "target", "flow", "mask"), names))
    if args.rotate and args.dataset != "synthetic":
        raise InvalidArgumentError("--rotate applies to --dataset synthetic only")
    return open_training_set(args.dataset, args.root, num_points=args.num_points, seed=args.seed, split=args.split,
                             keys=keys, pattern=args.pattern, rotate=args.rotate)


def run(args: argparse.Namespace) -> int:
    import torch

    from pointclouds.methods.scoop import LossConfig
    from pointclouds.methods.scoop_train import SyntheticPairs, TrainConfig, train_scoop

    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    loss = LossConfig(
        use_confidence=args.confidence_weight > 0,
        confidence_weight=args.confidence_weight,
        backward_weight=args.backward_weight,
        smooth_weight=args.smooth_weight,
    )
    cfg = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        ot_lr=args.ot_lr,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60.0,
        loss=loss,
    )
    validation = [SyntheticPairs(args.num_points, seed=args.seed + 1000, rotate=args.rotate)[i]
                  for i in range(args.val_scenes)]
    result = train_scoop(
        training_set(args),
        args.out,
        cfg,
        model_options={"normalize": True} if args.normalize else None,
        init_weights=args.init_weights,
        validation=validation,
        device=args.device,
        progress=not args.no_progress,
        log=print,
    )
    print(f"train_scoop: {result['steps']} steps, loss {result['last_loss']:.4f} -> {result['checkpoint']}")
    return 0
