"""CPU speed of every registered method, side by side in one run: the numbers in the model cards.

Every method runs with its default settings (random weights for networks: speed does not depend on
them; SCOOP with ``weights="untrained"`` for the same reason) on one input size per task:

* optical flow: a synthetic clip of ``--frames`` frames at ``--size`` (default 6 at 256x448) through
  each model's ``stream`` (its own windowing; frames already tensors); seconds per flow;
* scene flow: one synthetic pair of ``--points`` points (default 2,048) through
  ``pointclouds.estimate_scene_flow``; seconds per pair;
* Gaussians: Gaussian-Flow on 2 views x 4 times at 64x64 for ``--gaussian-flow-iterations``
  iterations (seconds per iteration; the full default fit is that times ``iterations``), GFlow on 3
  monocular frames at 64x48 with ground-truth depth and flow (seconds per frame, defaults).

Each method gets one untimed warm-up call first (flow: on the timed clip; others: a small input); a method whose run takes less
than 2 s is run up to 5 times and the fastest run is kept. The load average is printed
before and after (the machine is shared: compare ratios within one run, not across runs).

    python bench/model_cards.py                                 # everything, ~15 min on 2 cores
    python bench/model_cards.py --only dis,farneback,nn --json speeds.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


def _timed(run: Callable[[], Any], budget: float = 2.0, most: int = 5) -> float:
    """Best of up to ``most`` runs while the runs so far took less than ``budget`` seconds (slow
    methods run once: on a shared machine the minimum is the least disturbed run)."""
    times: list[float] = []
    while len(times) < most and sum(times) < budget:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def flow_rows(names: list[str], frames: int, size: tuple[int, int]) -> list[dict[str, Any]]:
    """Each model's own ``stream`` over the clip (its official windowing), frames already tensors:
    the model's work only, without ``estimate_flow``'s reading and bookkeeping."""
    import motion
    from motion4d.imaging import frames_to_tensor

    h, w = size
    clip = list(frames_to_tensor(motion.make_sequence(T=frames, height=h, width=w, seed=0).frames))
    rows = []
    for name in names:
        torch.manual_seed(0)
        model = motion.create(name, device="cpu")
        with torch.inference_mode():
            for _ in model.stream(iter(clip)):  # warm-up at the timed size (allocator, thread pools)
                pass
            seconds = _timed(lambda: [None for _ in model.stream(iter(clip))])
        rows.append({"method": name, "task": "optical flow", "seconds": seconds / (frames - 1), "per": "flow",
                     "workload": f"{frames} frames {h}x{w}, model.stream, defaults"})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def scene_flow_rows(names: list[str], points: int) -> list[dict[str, Any]]:
    from pointclouds import estimate_scene_flow
    from pointclouds.synthetic import make_scene_flow_pair

    pair = make_scene_flow_pair(points, seed=0)
    warm = make_scene_flow_pair(256, seed=1)
    rows = []
    for name in names:
        options: dict[str, Any] = {"device": "cpu"}
        if name == "scoop":
            options["weights"] = "untrained"
        estimate_scene_flow(warm.source, warm.target, method=name, **options)
        seconds = _timed(lambda: estimate_scene_flow(pair.source, pair.target, method=name, **options))
        rows.append({"method": name, "task": "scene flow", "seconds": seconds, "per": "point-cloud pair",
                     "workload": f"{points} points per cloud, defaults" + (" (untrained network)" if name == "scoop" else "")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def gaussian_flow_row(iterations: int) -> dict[str, Any]:
    from splats.gaussian_flow import GaussianFlow, GaussianFlowConfig
    from splats.synthetic import multiview_sequence

    _, data = multiview_sequence(n_views=2, n_times=4, width=64, height=64, n_objects=1, seed=0)
    GaussianFlow(GaussianFlowConfig(iterations=3, device="cpu")).fit(data.frames, data.cameras, data.times, progress=False)
    config = GaussianFlowConfig(iterations=iterations, device="cpu")
    seconds = _timed(lambda: GaussianFlow(config).fit(data.frames, data.cameras, data.times, progress=False))
    return {"method": "gaussian-flow", "task": "4D Gaussians", "seconds": seconds / iterations, "per": "iteration",
            "workload": f"2 views x 4 times 64x64, {iterations} iterations, defaults otherwise "
                        f"(a default fit is {GaussianFlowConfig().iterations} iterations)"}


def gflow_row() -> dict[str, Any]:
    from splats.gflow import GFlow, GFlowConfig
    from splats.synthetic import monocular_sequence

    _, seq = monocular_sequence(n_frames=3, width=64, height=48, seed=0, n_objects=1)
    flow = (seq.forward_flow.numpy(), seq.backward_flow.numpy())
    intrinsics = seq.cameras.K[0]
    small = GFlowConfig(init_iterations=5, init_densify_at=(2,), camera_iterations=3, gaussian_iterations=3, device="cpu")
    GFlow(small).fit(seq.frames, depth=seq.depth.numpy(), flow=flow, intrinsics=intrinsics, progress=False)
    seconds = _timed(lambda: GFlow(GFlowConfig(device="cpu")).fit(
        seq.frames, depth=seq.depth.numpy(), flow=flow, intrinsics=intrinsics, progress=False))
    return {"method": "gflow", "task": "4D Gaussians", "seconds": seconds / 3, "per": "frame",
            "workload": "3 monocular frames 64x48, ground-truth depth and flow, defaults"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", default="256x448", help="HxW of the flow clip")
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--gaussian-flow-iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=None, help="comma-separated method names")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()

    import motion
    import pointclouds.methods as scene_methods
    import splats.methods as gaussian_methods

    torch.set_num_threads(args.threads)
    wanted = None if args.only is None else set(args.only.split(","))
    pick = lambda names: [n for n in names if wanted is None or n in wanted]  # noqa: E731
    h, w = (int(v) for v in args.size.lower().split("x"))
    load_before = _load()
    started = time.strftime("%Y-%m-%d %H:%M")
    rows = flow_rows(pick([n for n in motion.list_models() if n != "tiny-flow"] + ["tiny-flow"]), args.frames, (h, w))
    rows += scene_flow_rows(pick(scene_methods.list_methods()), args.points)
    if "gaussian-flow" in pick(gaussian_methods.list_gaussian_methods()):
        rows.append(gaussian_flow_row(args.gaussian_flow_iterations))
        print(json.dumps(rows[-1]), flush=True)
    if "gflow" in pick(gaussian_methods.list_gaussian_methods()):
        rows.append(gflow_row())
        print(json.dumps(rows[-1]), flush=True)
    load_after = _load()
    header = (f"{started}, torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores; "
              f"load average (1/5/15 min) before {load_before}, after {load_after}")
    print("\n" + header + "\n")
    print("| method | task | seconds | per | workload |\n|---|---|---:|---|---|")
    for row in rows:
        print(f"| {row['method']} | {row['task']} | {row['seconds']:.4g} | {row['per']} | {row['workload']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows}, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
