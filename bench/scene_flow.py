"""Scene-flow methods side by side on synthetic pairs with exact flow, plus NSFP vs its fast mode.

Usage::

    python bench/scene_flow.py [--points 2048 4096] [--pairs 2] [--threads 2] [--fast-pairs 4]
                               [--scoop-weights CKPT | --scoop-minutes 3] [--fast-points 8192]

1. Quality table: for every point count, ``--pairs`` synthetic scenes (rigid movers over ground
   with ego motion; every second scene with non-rigid movers; 90 % overlap; 1 cm noise) are solved
   by zero, nearest-neighbour, ICP, NSFP, NSFP fast mode and SCOOP (network + refinement). EPE3D,
   AccS, AccR, Outliers are scene-averaged; time is per pair. Without ``--scoop-weights`` SCOOP is
   first trained self-supervised on other synthetic scenes for ``--scoop-minutes`` (CPU).
2. NSFP vs fast mode at ``--fast-points`` (8,192) on ``--fast-pairs`` scenes (alternately rigid and
   non-rigid), each scene solved by both back to back: time per pair, EPE3D, iterations, DT build
   time, per scene and averaged, and the two ratios (target: >= 10x faster, EPE3D within 10 %).
3. Build time of fast mode's lookup grid (closest-point transform, 0.1 m) for a KITTI-sized scene
   (40 x 35 m, 8,192 points) and a 70 x 70 m lidar sweep.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motion4d.atomic import atomic_write_text  # noqa: E402
from pointclouds import estimate_scene_flow  # noqa: E402
from pointclouds.methods.dt import DistanceGrid  # noqa: E402
from pointclouds.metrics import SceneFlowMetricAccumulator, scene_flow_metrics  # noqa: E402
from pointclouds.synthetic import make_scene_flow_pair  # noqa: E402


def scenes(points: int, pairs: int, seed: int) -> list[Any]:
    return [
        make_scene_flow_pair(points, seed=seed + i, nonrigid=bool(i % 2), overlap=0.9, noise=0.01, extent=15.0)
        for i in range(pairs)
    ]


def evaluate(method: str, samples: list[Any], options: dict[str, Any]) -> dict[str, float]:
    acc = SceneFlowMetricAccumulator()
    times = []
    for s in samples:
        start = time.perf_counter()
        out = estimate_scene_flow(s.source, s.target, method=method, **options)
        times.append(time.perf_counter() - start)
        acc.update(out.flow, s.flow, s.mask)
    return {**acc.compute(), "time_s": float(np.mean(times))}


def fast_vs_nsfp(points: int, pairs: int, seed: int, cap: dict[str, Any], threads: int) -> dict[str, Any]:
    """NSFP and its fast mode on the same scenes, run back to back per scene (so that a change of
    machine load hits both), with per-scene and overall time and EPE3D ratios."""
    samples = scenes(points, pairs, seed)
    per_scene = []
    for i, s in enumerate(samples):
        result = {}
        for method in ("nsfp", "nsfp-fast"):
            start = time.perf_counter()
            out = estimate_scene_flow(s.source, s.target, method=method, device="cpu", **cap)
            seconds = time.perf_counter() - start
            epe = scene_flow_metrics(out.flow, s.flow, s.mask)["epe3d"]
            result[method] = {"time_s": seconds, "epe3d": epe, "iterations": out.iterations,
                              "dt_build_s": out.extras["dt_build_s"]}
        kind = "non-rigid" if i % 2 else "rigid"
        per_scene.append({"scene": s.name, "kind": kind, **result,
                          "speedup": result["nsfp"]["time_s"] / result["nsfp-fast"]["time_s"],
                          "epe_ratio": result["nsfp-fast"]["epe3d"] / result["nsfp"]["epe3d"]})
        print(f"  {s.name} ({kind}): nsfp {result['nsfp']['time_s']:.1f} s / EPE3D {result['nsfp']['epe3d']:.3f} "
              f"({result['nsfp']['iterations']} it), fast {result['nsfp-fast']['time_s']:.2f} s / EPE3D "
              f"{result['nsfp-fast']['epe3d']:.3f} ({result['nsfp-fast']['iterations']} it)", flush=True)
    keys = ("time_s", "epe3d", "iterations", "dt_build_s")
    mean = {m: {k: float(np.mean([r[m][k] for r in per_scene])) for k in keys} for m in ("nsfp", "nsfp-fast")}
    speedup = mean["nsfp"]["time_s"] / mean["nsfp-fast"]["time_s"]
    epe_ratio = mean["nsfp-fast"]["epe3d"] / mean["nsfp"]["epe3d"]
    print(f"\n== NSFP vs fast mode at {points} points ({pairs} scenes, {threads} thread(s)) ==")
    lines = ["| scene | kind | NSFP time (s) | fast time (s) | speed-up | NSFP EPE3D | fast EPE3D | EPE ratio | "
             "NSFP it | fast it | DT build (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in per_scene + [{"scene": "mean", "kind": "", **mean, "speedup": speedup, "epe_ratio": epe_ratio}]:
        n, f = r["nsfp"], r["nsfp-fast"]
        lines.append(f"| {r['scene']} | {r['kind']} | {n['time_s']:.1f} | {f['time_s']:.2f} | {r['speedup']:.1f}x | "
                     f"{n['epe3d']:.3f} | {f['epe3d']:.3f} | {r['epe_ratio']:.3f} | {n['iterations']:.0f} | "
                     f"{f['iterations']:.0f} | {f['dt_build_s']:.2f} |")
    print("\n".join(lines))
    print(f"fast mode: {speedup:.1f}x faster (mean time per pair), EPE3D ratio fast/nsfp = {epe_ratio:.3f} "
          f"(target: >= 10x faster, ratio <= 1.10)")
    return {"scenes": per_scene, "mean": mean, "speedup": speedup, "epe_ratio": epe_ratio}


def train_scoop_model(minutes: float, points: int, threads: int) -> tuple[str, dict[str, Any]]:
    from pointclouds.methods.scoop import untrained_scoop
    from pointclouds.methods.scoop_train import SyntheticPairs, TrainConfig, evaluate_network, train_scoop

    out = Path(tempfile.mkdtemp(prefix="scoop_bench_"))
    val = [SyntheticPairs(points, seed=10_000)[i] for i in range(3)]
    before = evaluate_network(untrained_scoop(42), val, "cpu")["epe3d"]
    result = train_scoop(SyntheticPairs(points, seed=1), out, TrainConfig(steps=100_000, batch_size=2,
                         max_seconds=minutes * 60.0, checkpoint_every=25), device="cpu", progress=False)
    from pointclouds.methods.scoop import load_scoop

    after = evaluate_network(load_scoop(result["checkpoint"]), val, "cpu")["epe3d"]
    return result["checkpoint"], {"steps": result["steps"], "val_epe_untrained": before, "val_epe_trained": after}


def table(rows: list[tuple[str, int, dict[str, float]]]) -> str:
    lines = ["| method | points | EPE3D (m) | AccS | AccR | Outliers | time / pair (s) |", "|---|---|---|---|---|---|---|"]
    for name, n, m in rows:
        lines.append(f"| {name} | {n} | {m['epe3d']:.4f} | {m['acc_strict']:.3f} | {m['acc_relax']:.3f} | "
                     f"{m['outliers']:.3f} | {m['time_s']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, nargs="*", default=[2048], help="point counts of the table (none: skip it)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scoop-weights", default=None)
    parser.add_argument("--scoop-minutes", type=float, default=3.0)
    parser.add_argument("--scoop-train-points", type=int, default=512)
    parser.add_argument("--scoop-steps", type=int, default=300, help="refinement steps")
    parser.add_argument("--fast-points", type=int, default=8192)
    parser.add_argument("--fast-pairs", type=int, default=4, help="scenes of section 2 (alternately rigid / non-rigid)")
    parser.add_argument("--nsfp-max-iterations", type=int, default=None,
                        help="cap NSFP iterations in both modes (default: the presets' 5000)")
    parser.add_argument("--skip", nargs="*", default=[], help="methods to leave out of the table")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"threads": args.threads}

    weights = args.scoop_weights
    if weights is None and "scoop" not in args.skip and args.points:
        print(f"training SCOOP on synthetic pairs for {args.scoop_minutes} min ...", flush=True)
        weights, info = train_scoop_model(args.scoop_minutes, args.scoop_train_points, args.threads)
        report["scoop_training"] = info
        print(f"  {info['steps']} steps; network EPE3D on held-out synthetic pairs: untrained "
              f"{info['val_epe_untrained']:.3f} -> trained {info['val_epe_trained']:.3f}", flush=True)

    cap = {} if args.nsfp_max_iterations is None else {"max_iterations": args.nsfp_max_iterations}
    methods = [
        ("zero", {}),
        ("nn", {}),
        ("icp", {}),
        ("nsfp", {"device": "cpu", **cap}),
        ("nsfp-fast", {"device": "cpu", **cap}),
        ("scoop", {"device": "cpu", "weights": weights, "steps": args.scoop_steps}),
        ("scoop (network only)", {"device": "cpu", "weights": weights, "steps": 0}),
    ]
    rows = []
    for n in args.points:
        samples = scenes(n, args.pairs, args.seed)
        for name, options in methods:
            if name.split(" ")[0] in args.skip:
                continue
            metrics = evaluate(name.split(" ")[0], samples, options)
            rows.append((name, n, metrics))
            print(f"  {name:>22} @ {n}: EPE3D {metrics['epe3d']:.4f}, {metrics['time_s']:.2f} s/pair", flush=True)
    if rows:
        print("\n== synthetic scenes (rigid + non-rigid movers over ground, ego motion, 90 % overlap, 1 cm noise) ==")
        print(table(rows))
    report["quality"] = [{"method": m, "points": n, **v} for m, n, v in rows]

    if args.fast_points > 0:
        report["fast_vs_nsfp"] = fast_vs_nsfp(args.fast_points, args.fast_pairs, args.seed + 50, cap, args.threads)

    rng = np.random.default_rng(0)
    print("\n== lookup grid (closest-point transform) build at 0.1 m ==")
    builds = {}
    for label, lo, hi, n in (("KITTI-sized 40 x 35 x 4.4 m", [-20, -1.4, 0], [20, 3, 35], 8192),
                             ("lidar sweep 70 x 70 x 6 m", [-35, -35, -2], [35, 35, 4], 60000)):
        pts = rng.uniform(lo, hi, size=(n, 3)).astype(np.float32)
        DistanceGrid.build(pts[:100])  # warm-up
        seconds = min(DistanceGrid.build(pts).build_seconds for _ in range(3))
        grid = DistanceGrid.build(pts)
        builds[label] = seconds
        print(f"  {label}, {n} points: grid {grid.shape} ({np.prod(grid.shape) / 1e6:.1f} M voxels) built in {seconds:.3f} s")
    report["dt_build_s"] = builds
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
