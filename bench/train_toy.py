"""A toy VideoFlow training run on synthetic clips: does the network learn motion in a few minutes of CPU?

The recipe of ``tests/motion/test_train_toy.py`` with every setting as an argument (the defaults are the
test's). Training clips are :class:`motion.training.SyntheticClips` scenes (by default only the moving
background: a global motion in a random direction per clip; ``--layers`` adds foreground layers),
rendered once before training and randomly cropped; held-out clips use scene seeds never trained on.
Printed: the training loss and EPE per logged window, the held-out end-point error of the untrained
network, of the trained one, of the zero flow and of the mean training flow as a constant (the best a
network blind to the images could do: random directions make it no better than zero), seconds per
step and the load average.

Measured (load 4-7, one thread, 300 steps): VideoFlow-BOF stays at the blind median flow for ~160-220
steps, then starts using the correlation; lr >= 2e-4 (VideoFlow's 2.5e-4 .. 4e-4 and the 1e-3 .. 4e-3
tried) stayed at the blind level for all 600 steps tried.

    python bench/train_toy.py                          # the test's recipe, training seed 0
    python bench/train_toy.py --seed 1 --lr 1.5e-4
    python bench/train_toy.py --layers 2 --speed 16 --steps 600 --out runs/toy   # runs/toy/train_log.csv grows
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import motion  # noqa: E402
from motion.training import AugmentConfig, SyntheticClips, TrainConfig, evaluate_epe, train  # noqa: E402


def constant_flow_epe(clips: list[dict], flow: np.ndarray) -> float:
    """EPE of predicting the constant ``flow [2]`` everywhere, scored as ``evaluate_epe`` scores a network
    (interior forward flows); ``flow = 0`` gives the zero-flow EPE."""
    return float(np.mean([np.linalg.norm(c["flow_forward"][1:] - flow.reshape(1, 2, 1, 1), axis=1).mean()
                          for c in clips]))


def mean_flow(clips: list[dict]) -> np.ndarray:
    """``[2]``: the mean forward flow over clips (the best constant a network blind to the images could learn)."""
    return np.mean([c["flow_forward"].mean(axis=(0, 2, 3)) for c in clips], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="videoflow-bof", choices=("videoflow-bof", "videoflow-mof"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", default="64x64", help="HxW of the training crops and held-out clips (>= 57x57)")
    parser.add_argument("--margin", type=int, default=8,
                        help="training clips are rendered this much larger, then cropped")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed (initial weights, sample order, augmentation)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4,
                        help="peak of the OneCycle schedule (>= 1e-3 collapses to the blind median flow here)")
    parser.add_argument("--iters", type=int, default=2, help="refinement iterations in training and evaluation")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--gamma", type=float, default=0.8)
    parser.add_argument("--clips", type=int, default=128, help="training clips (scene seeds 1000..)")
    parser.add_argument("--held-out", type=int, default=8, help="held-out clips (scene seeds 0..)")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--layers", type=int, default=0, help="foreground layers over the moving background")
    parser.add_argument("--speed", type=float, default=24.0,
                        help="max_speed of make_sequence in px/frame (the background moves at up to half of it)")
    parser.add_argument("--augment", default="crop", choices=("crop", "full"),
                        help="crop: random crops only; full: RAFT's augmentation (zoom, flips, colour)")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--out", default=None, help="optional run folder: train_log.csv grows while training")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    scene = {"num_layers": args.layers, "max_speed": args.speed}

    start = time.perf_counter()
    training = SyntheticClips(args.clips, args.frames, h + args.margin, w + args.margin, seed=1000, **scene)
    clips = [training[i] for i in range(len(training))]
    render_s = time.perf_counter() - start
    held_source = SyntheticClips(args.held_out, args.frames, h, w, seed=0, **scene)
    held_out = [held_source[i] for i in range(len(held_source))]
    zero = constant_flow_epe(held_out, np.zeros(2))
    blind = constant_flow_epe(held_out, mean_flow(clips))

    torch.manual_seed(args.seed)
    model = motion.create(args.model, device="cpu", encoder="basic", iters=args.iters, train_iters=args.iters)
    before = evaluate_epe(model, held_out)
    config = TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, iters=args.iters, crop=(h, w),
                         gamma=args.gamma, seed=args.seed, log_every=args.log_every, progress=False, preview=False)
    augment = AugmentConfig.crop_only((h, w)) if args.augment == "crop" else AugmentConfig(
        crop=(h, w), min_scale=-0.1, max_scale=0.3)
    start = time.perf_counter()
    result = train(model, clips, config, args.out, augment=augment, resume=None)
    train_s = time.perf_counter() - start
    after = evaluate_epe(model, held_out)

    losses = np.array(result.losses)
    fifth = max(1, len(losses) // 5)
    print(f"{args.model} encoder=basic iters={args.iters} | {args.clips} clips {h + args.margin}x{w + args.margin} "
          f"-> crops {h}x{w}, {args.frames} frames, layers={args.layers}, max_speed={args.speed} | steps={args.steps} "
          f"batch={args.batch} lr={args.lr:g} augment={args.augment} seed={args.seed} threads={args.threads}")
    print("training loss per window of", args.log_every, "steps:",
          " ".join(f"{row['loss']:.2f}" for row in result.history))
    print("training EPE per window:", " ".join(f"{row['epe']:.2f}" for row in result.history))
    print(f"loss mean first 20 %: {losses[:fifth].mean():.3f}, last 20 %: {losses[-fifth:].mean():.3f} "
          f"(ratio {losses[-fifth:].mean() / losses[:fifth].mean():.2f})")
    print(f"held-out EPE: untrained {before:.3f}, trained {after:.3f}, zero flow {zero:.3f} "
          f"(trained / zero = {after / zero:.2f}); mean training flow as a constant {blind:.3f}")
    print(f"rendering {render_s:.1f} s ({1000 * render_s / args.clips:.0f} ms per clip); training "
          f"{train_s:.1f} s = {train_s / args.steps:.3f} s/step; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
