"""NSFP per-iteration cost: this version against the one before issue #21, side by side.

Usage::

    python bench/nsfp_speed.py [--points 8192] [--iterations 30] [--repeats 3] [--threads 1]
                               [--full-scenes 2] [--base 8bea2ea]

1. Per-iteration time: both versions fit the same pair for ``--iterations`` steps (early stopping
   off), alternately, ``--repeats`` times; the medians and their ratio.
2. Same results: both fit ``--full-scenes`` pairs with NSFP's defaults (early stopping on); the
   iterations taken and EPE3D of each, and the EPE3D ratio (target: same iterations, within 1 %).

The earlier version is read from git (``--base``) and imported under another name.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pointclouds.methods import nsfp as current  # noqa: E402
from pointclouds.metrics import scene_flow_metrics  # noqa: E402
from pointclouds.synthetic import make_scene_flow_pair  # noqa: E402


def load_base(commit: str) -> types.ModuleType:
    """``pointclouds/methods/nsfp.py`` at ``commit`` as module ``pointclouds.methods._nsfp_base`` (its
    method registrations skipped: the names are taken by the current module)."""
    source = subprocess.run(["git", "show", f"{commit}:pointclouds/methods/nsfp.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    from pointclouds.methods import registry

    spec = importlib.util.spec_from_loader("pointclouds.methods._nsfp_base", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "pointclouds.methods"
    sys.modules[spec.name] = module
    original = registry.register_method
    registry.register_method = lambda *a, **k: (lambda fn: fn)
    try:
        exec(compile(source, f"{commit}:nsfp.py", "exec"), module.__dict__)
    finally:
        registry.register_method = original
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=8192)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full-scenes", type=int, default=2)
    parser.add_argument("--base", default="8bea2ea")
    parser.add_argument("--hidden-dtype", default="float32", help="the current version's hidden_dtype (float32: default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_base(args.base)
    versions = {"before": base, "now": current}
    s = make_scene_flow_pair(args.points, seed=7, overlap=0.9, noise=0.01, extent=15.0)
    times: dict[str, list[float]] = {k: [] for k in versions}
    for name, mod in versions.items():  # warm-up
        mod.fit_nsfp(s.source, s.target, mod.make_config("nsfp", max_iterations=2), device="cpu")
    extra = {"now": {"hidden_dtype": args.hidden_dtype}, "before": {}}
    for _ in range(args.repeats):
        for name, mod in versions.items():
            cfg = mod.make_config("nsfp", max_iterations=args.iterations, patience=10 * args.iterations, **extra[name])
            start = time.perf_counter()
            mod.fit_nsfp(s.source, s.target, cfg, device="cpu")
            times[name].append((time.perf_counter() - start) / args.iterations)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"load average {os.getloadavg()[0]:.2f}; now: hidden_dtype={args.hidden_dtype}")
    print(f"NSFP per iteration at {args.points} points, {args.threads} thread(s), {args.repeats} alternating runs "
          f"of {args.iterations} steps: before {med['before'] * 1e3:.1f} ms, now {med['now'] * 1e3:.1f} ms, "
          f"{med['before'] / med['now']:.2f}x faster")
    print("| scene | before: iterations | now: iterations | before EPE3D | now EPE3D | ratio | before s | now s |")
    print("|---|---|---|---|---|---|---|---|")
    for i in range(args.full_scenes):
        pair = make_scene_flow_pair(args.points, seed=20 + i, nonrigid=bool(i % 2), overlap=0.9, noise=0.01, extent=15.0)
        row = {}
        for name, mod in versions.items():
            start = time.perf_counter()
            r = mod.fit_nsfp(pair.source, pair.target, mod.make_config("nsfp", **extra[name]), device="cpu")
            row[name] = (r.iterations, scene_flow_metrics(r.flow, pair.flow, pair.mask)["epe3d"], time.perf_counter() - start)
        b, n = row["before"], row["now"]
        print(f"| {pair.name} | {b[0]} | {n[0]} | {b[1]:.4f} | {n[1]:.4f} | {n[1] / b[1]:.4f} | {b[2]:.1f} | {n[2]:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
