"""The flow pipeline against a bare OpenCV loop on a real video, and occlusion F1 of the forward-backward check.

1. Speed and memory. A 768x576 video of real frames (scikit-vide's ``bikes`` and ``bigbuckbunny``
   clips scaled to 768x576 and concatenated, cycled as long as needed; written to a temporary folder,
   never committed) is turned into DIS-medium ``.flo`` files by

   * the bare loop: PyAV decode -> ``rgb24`` -> ``cv2.cvtColor`` grey -> ``cv2.DISOpticalFlow.calc`` ->
     ``cv2.writeOpticalFlow``, one step after the other (OpenCV's default threads), and the same loop
     with ``cv2.setNumThreads(1)`` (OpenCV's pool runs DIS on every core, so the default loop already
     keeps both cores of a 2-core machine busy: the table's CPU column shows it);
   * ``motion.estimate_flow(video, "dis-medium", out_dir=..., formats=("flo",), workers=N)`` with
     ``N = 1`` and ``N = 2`` (what ``motion4d flow --model dis-medium --format flo --workers N`` runs).

   Each run is a fresh Python process (its peak RSS is its own ``VmHWM``, its CPU time from
   ``RUSAGE_CHILDREN``), the runs interleaved and
   repeated (median wall time). The package's files are compared byte for byte with the bare loop's.
   A run on a video ``--long`` times longer shows that peak memory does not grow with the length.
   Per stage: items per busy second (decode = frames, flow = pairs per worker, write = pairs).
2. Occlusion F1 of ``occlusion=True`` (forward-backward check, FB_ALPHA/FB_BETA as published, nothing
   tuned) for DIS and Farneback against exact occlusion masks: synthetic layered sequences
   (``motion.make_sequence``) and real images moved by known motion with pasted real patches
   (``make_sequence(textures=...)``: photographs as background and foreground layers, exact masks).

Usage: ``python bench/pipeline.py [--frames 101] [--long 10] [--repeats 2] [--no-occlusion] [--no-speed]
[--picture docs/images/occlusion.jpg]``.
Report ``uptime`` with the numbers: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE = (768, 576)

BARE = r"""
import json, sys, time
import av, cv2
video, out = sys.argv[1], sys.argv[2]
if len(sys.argv) > 3 and int(sys.argv[3]) > 0:
    cv2.setNumThreads(int(sys.argv[3]))
method = sys.argv[4] if len(sys.argv) > 4 else "dis"
dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
busy = {"decode": 0.0, "grey": 0.0, "flow": 0.0, "write": 0.0}
frames = pairs = 0
previous = None
with av.open(video) as container:
    decoded = container.decode(video=0)
    while True:
        t0 = time.perf_counter()
        frame = next(decoded, None)
        if frame is None:
            break
        rgb = frame.to_ndarray(format="rgb24")
        t1 = time.perf_counter()
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        t2 = time.perf_counter()
        busy["decode"] += t1 - t0
        busy["grey"] += t2 - t1
        if previous is not None:
            flow = (dis.calc(previous, grey, None) if method == "dis" else  # the package's Farneback defaults:
                    cv2.calcOpticalFlowFarneback(previous, grey, None, 0.5, 3, 15, 3, 5, 1.2, 0))
            t3 = time.perf_counter()
            cv2.writeOpticalFlow(f"{out}/{frames - 1:06d}.flo", flow)
            busy["flow"] += t3 - t2
            busy["write"] += time.perf_counter() - t3
            pairs += 1
        previous = grey
        frames += 1
stages = {"decode": [frames, busy["decode"] + busy["grey"]], "flow": [pairs, busy["flow"]], "write": [pairs, busy["write"]]}
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"pairs": pairs, "stages": {k: {"items": n, "seconds": s} for k, (n, s) in stages.items()},
                  "threads": cv2.getNumThreads(), "peak_kib": peak}))
"""

PACKAGE = r"""
import json, sys
import motion
video, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = sys.argv[4] if len(sys.argv) > 4 else "dis-medium"
result = motion.estimate_flow(video, model=model, out_dir=out, formats=("flo",), workers=workers, progress=False)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"pairs": result.computed, "stages": result.stages, "torch_loaded": "torch" in sys.modules,
                  "peak_kib": peak}))
"""


# ------------------------------------------------------------------------------------------------ inputs


def real_frames() -> list[np.ndarray]:
    """The real clips' frames at 768x576 (bikes upscaled, bigbuckbunny downscaled)."""
    import cv2

    import motion
    from motion.sample_data import sample_video

    frames = []
    for name in ("bikes", "bigbuckbunny"):
        with motion.open_video(sample_video(name)) as video:
            frames += [cv2.resize(f.image, SIZE, interpolation=cv2.INTER_AREA if video.width > SIZE[0]
                                  else cv2.INTER_LINEAR) for f in video]
    return frames


def write_input(path: Path, frames: list[np.ndarray], count: int) -> Path:
    from motion.video_writer import VideoWriter

    with VideoWriter(path, fps=25, crf=18) as writer:
        for k in range(count):
            writer.write(frames[k % len(frames)])
    return path


# ------------------------------------------------------------------------------------------------ runs


def run_measured(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter: its JSON line, wall seconds and peak RSS in MiB (the child's
    ``VmHWM``: the peak of its own image, whereas ``wait4``'s ``ru_maxrss`` also counts the parent's
    memory the child had between fork and exec)."""
    import resource

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, env=env, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode != 0:
        raise RuntimeError(f"child failed ({child.returncode}):\n{child.stderr[-3000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["rss_mib"] = result["peak_kib"] / 1024
    return result


def rates(stages: dict) -> dict[str, float]:
    return {k: (v["items"] / v["seconds"] if v["seconds"] > 0 else float("nan")) for k, v in stages.items()}


def same_files(bare: Path, package: Path) -> bool:
    names = sorted(p.name for p in bare.glob("*.flo"))
    return bool(names) and names == sorted(p.name for p in (package / "forward").glob("*.flo")) and all(
        (bare / n).read_bytes() == (package / "forward" / n).read_bytes() for n in names)


def interleaved_runs(configs: list[tuple[str, str, tuple[str, ...]]], video: Path, work: Path, repeats: int,
                     compared: int) -> tuple[dict[str, list[dict]], bool]:
    """Each ``(name, code, args)`` run on ``video`` ``repeats`` times, interleaved; returns the runs by
    name and whether configs ``1..compared`` wrote files byte-identical to config 0's (the bare loop)."""
    import shutil

    runs: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    identical = True
    for rep in range(repeats):
        folders = {}
        for k, (name, code, extra) in enumerate(configs):
            folders[name] = out = work / f"{rep}_{k}"
            out.mkdir(parents=True)
            runs[name].append(run_measured(code, str(video), str(out), *extra))
        for name, _, _ in configs[1:compared + 1]:
            identical &= same_files(folders[configs[0][0]], folders[name])
        for out in folders.values():
            shutil.rmtree(out, ignore_errors=True)
    return runs, identical


def speed(args: argparse.Namespace, work: Path) -> None:
    import shutil

    frames = real_frames()
    short = write_input(work / "short.mp4", frames, args.frames)
    long = write_input(work / "long.mp4", frames, (args.frames - 1) * args.long + 1)
    del frames
    configs = [("bare loop", BARE, ()), ("package, 1 worker", PACKAGE, ("1",)), ("package, 2 workers", PACKAGE, ("2",)),
               ("bare loop, 1 OpenCV thread", BARE, ("1",))]
    runs, identical = interleaved_runs(configs, short, work / "dis", args.repeats, compared=2)
    long_runs = {}
    for k, (name, code, extra) in enumerate(configs[:3]):
        out = work / f"long_{k}"
        out.mkdir()
        long_runs[name] = run_measured(code, str(long), str(out), *extra)
        shutil.rmtree(out, ignore_errors=True)

    bare_wall = statistics.median(r["wall"] for r in runs["bare loop"])
    bare_rss = max(r["rss_mib"] for r in runs["bare loop"])
    print(f"\n## Speed and memory: DIS medium, .flo, {SIZE[0]}x{SIZE[1]}, {args.frames - 1} pairs "
          f"(median of {args.repeats}); load {os.getloadavg()[0]:.2f} after the runs")
    print("| run | wall s | pairs/s | x bare loop | CPU ms / pair | peak RSS MiB | x bare RSS | decode fps | "
          "flow pairs/s per worker | write pairs/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    table = [(name, rs) for name, rs in runs.items()] + [(f"{name}, {args.long}x longer", [r])
                                                        for name, r in long_runs.items()]
    summary = {}
    for name, rs in table:
        wall = statistics.median(r["wall"] for r in rs)
        rss = max(r["rss_mib"] for r in rs)
        pairs = rs[0]["pairs"]
        rate = rates(rs[0]["stages"])
        pace = pairs / wall
        bare_per_pair = (bare_wall / (args.frames - 1) if "longer" not in name
                         else long_runs["bare loop"]["wall"] / long_runs["bare loop"]["pairs"])
        speedup = bare_per_pair / (wall / pairs)
        summary[name] = {"wall": wall, "rss": rss, "speedup": speedup}
        cpu = statistics.median(r["cpu"] for r in rs) / pairs * 1000
        print(f"| {name} | {wall:.1f} | {pace:.2f} | {speedup:.2f} | {cpu:.1f} | {rss:.0f} | {rss / bare_rss:.2f} | "
              f"{rate.get('decode', float('nan')):.0f} | {rate.get('flow', float('nan')):.1f} | "
              f"{rate.get('write', float('nan')):.0f} |")
    print(f"\npackage .flo files byte-identical to the bare loop's: {'yes' if identical else 'NO'}; "
          f"torch imported by the package runs: {runs['package, 2 workers'][0].get('torch_loaded')}")
    long_ratio = summary[f"package, 2 workers, {args.long}x longer"]["rss"] / summary["package, 2 workers"]["rss"]
    bare_cores = statistics.median(r["cpu"] / r["wall"] for r in runs["bare loop"])
    single = summary["package, 2 workers"]["speedup"] / summary["bare loop, 1 OpenCV thread"]["speedup"]
    print(f"the bare loop keeps {bare_cores:.2f} cores busy (OpenCV's own thread pool runs DIS on every core)")
    # speed targets on the long video, where process start-up (~0.2 s of imports) does not count
    longer = f", {args.long}x longer"
    one, two = summary["package, 1 worker" + longer]["speedup"], summary["package, 2 workers" + longer]["speedup"]
    checks = [
        (f"1 worker at least as fast as the bare loop ({one:.2f}x on the {args.long}x longer video)", one >= 1.0),
        (f"2 workers at least 1.6x the bare loop ({two:.2f}x on the {args.long}x longer video)", two >= 1.6),
        (f"2 workers at least 1.6x the bare loop with 1 OpenCV thread ({single:.2f}x, {args.frames - 1} pairs)",
         single >= 1.6),
        ("peak RSS at most 2x the bare loop's", max(summary[n]["rss"] for n in summary if n.startswith("package"))
         <= 2 * bare_rss),
        (f"peak RSS flat in the length ({args.long}x longer: {long_ratio:.2f}x)", long_ratio <= 1.1),
    ]
    for text, ok in checks:
        print(f"- {'PASS' if ok else 'FAIL'}: {text}")
    farneback(args, work, short)


def farneback(args: argparse.Namespace, work: Path, short: Path) -> None:
    """The same comparison for Farneback, which OpenCV runs on one thread: what workers add to a
    single-threaded method."""

    configs = [("bare loop, Farneback", BARE, ("0", "farneback")),
               ("package, 1 worker, Farneback", PACKAGE, ("1", "farneback")),
               ("package, 2 workers, Farneback", PACKAGE, ("2", "farneback"))]
    runs, identical = interleaved_runs(configs, short, work / "farneback", args.repeats, compared=2)
    bare = statistics.median(r["wall"] for r in runs[configs[0][0]])
    print(f"\n## Farneback (OpenCV runs it on one thread), {args.frames - 1} pairs, median of {args.repeats}")
    print("| run | wall s | x bare loop | CPU ms / pair | cores busy |")
    print("|---|---|---|---|---|")
    speedups = {}
    for name, rs in runs.items():
        wall = statistics.median(r["wall"] for r in rs)
        cpu = statistics.median(r["cpu"] for r in rs)
        speedups[name] = bare / wall
        print(f"| {name} | {wall:.1f} | {bare / wall:.2f} | {cpu / rs[0]['pairs'] * 1000:.1f} | {cpu / wall:.2f} |")
    print(f"\npackage .flo files byte-identical to the bare loop's: {'yes' if identical else 'NO'}")
    two = speedups["package, 2 workers, Farneback"]
    print(f"- {'PASS' if two >= 1.6 else 'FAIL'}: 2 workers at least 1.6x the bare Farneback loop ({two:.2f}x)")


# ------------------------------------------------------------------------------------------------ occlusion


def f1_counts(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array([(predicted & truth).sum(), (predicted & ~truth).sum(), (~predicted & truth).sum()], np.int64)


def occlusion_scores(sequences: list, models: tuple[str, ...]) -> dict[str, dict[str, float]]:
    import torch

    import motion
    from motion.flow_geometry import forward_backward_occlusion

    scores = {}
    for model in (*models, "exact flows (the check's ceiling)"):
        counts = np.zeros(3, np.int64)
        for seq in sequences:
            if model in models:
                occluded = motion.estimate_flow(seq.frames, model=model, occlusion=True, progress=False).occlusion
            else:
                occluded, _ = forward_backward_occlusion(torch.from_numpy(seq.flow_forward),
                                                         torch.from_numpy(seq.flow_backward))
            counts += f1_counts(occluded.numpy(), seq.occlusion)
        tp, fp, fn = counts
        precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        scores[model] = {"precision": precision, "recall": recall,
                         "f1": 2 * precision * recall / max(precision + recall, 1e-12)}
    occluded = float(np.mean([seq.occlusion.mean() for seq in sequences]))
    scores["all pixels occluded (chance)"] = {"precision": occluded, "recall": 1.0, "f1": 2 * occluded / (1 + occluded)}
    return scores


def occlusion(args: argparse.Namespace) -> None:
    from motion.sample_data import photograph
    from motion.synthetic import make_sequence

    size = dict(height=240, width=320)
    synthetic = [make_sequence(T=5, num_layers=3, seed=seed, max_speed=4.0, **size) for seed in range(100, 106)]
    photos = ["coffee", "chelsea", "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry"]
    real = []
    for k, seed in enumerate(range(200, 206)):
        textures = [photograph(photos[k % 6]), photograph(photos[(k + 1) % 6]), photograph(photos[(k + 3) % 6])]
        real.append(make_sequence(T=5, num_layers=2, seed=seed, max_speed=4.0, textures=textures, **size))
    models = ("dis", "farneback")
    print(f"\n## Occlusion from the forward-backward check (320x240, 6 sequences x 4 pairs each, pooled pixels)")
    print("| data | method | precision | recall | F1 |")
    print("|---|---|---|---|---|")
    for name, sequences in (("synthetic layers (make_sequence)", synthetic),
                            ("real photographs, pasted real patches", real)):
        for method, s in occlusion_scores(sequences, models).items():
            print(f"| {name} | {method} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} |")
    if args.picture:
        picture(Path(args.picture))


def picture(path: Path) -> None:
    """Occlusion and confidence of DIS next to the exact mask (real photographs with pasted patches),
    and on a real video pair (bikes)."""
    import cv2

    import motion
    from motion.sample_data import sample_video
    from motion.visualize import flow_to_color, side_by_side

    def tinted(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = frame.copy()
        out[mask] = (0.3 * out[mask] + [0, 178, 178]).astype(np.uint8)  # cyan
        return out

    def grey(confidence: np.ndarray) -> np.ndarray:
        return cv2.applyColorMap((confidence * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]

    from motion.sample_data import photograph
    from motion.synthetic import make_sequence

    panels, labels = [], []
    seq = make_sequence(T=2, height=272, width=640, num_layers=2, seed=300, max_speed=8.0,
                        textures=[photograph("coffee"), photograph("astronaut"), photograph("rocket")])
    result = motion.estimate_flow(seq.frames[:2], "dis", occlusion=True, progress=False)
    panels += [seq.frames[0], tinted(seq.frames[0], seq.occlusion[0]), tinted(seq.frames[0], result.occlusion[0].numpy()),
               grey(result.confidence[0].numpy())]
    labels += ["frame t (real images, known motion)", "exact occlusion", "DIS: occluded (check fails)",
               "DIS: confidence (dark = 0)"]
    frames = motion.read_frames(sample_video("bikes"), start=150, stop=152)
    result = motion.estimate_flow(frames, "dis", occlusion=True, progress=False)
    panels += [frames[0], flow_to_color(result.forward[0]), tinted(frames[0], result.occlusion[0].numpy()),
               grey(result.confidence[0].numpy())]
    labels += ["bikes.mp4 frame 150", "DIS flow 150 -> 151", "DIS: occluded", "DIS: confidence"]
    image = side_by_side(panels, labels, columns=4)
    image = cv2.resize(image, (image.shape[1] * 3 // 4, image.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"picture: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=101, help="frames of the short video (default 101: 100 pairs)")
    parser.add_argument("--long", type=int, default=10, help="length factor of the long video (default 10)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration on the short video")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed and memory part")
    parser.add_argument("--no-occlusion", action="store_true", help="skip the occlusion part")
    parser.add_argument("--workdir", default=None, help="folder for the temporary videos and outputs")
    parser.add_argument("--picture", default=None, help="also draw the occlusion picture here (e.g. docs/images/occlusion.jpg)")
    args = parser.parse_args()
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        if not args.no_speed:
            speed(args, Path(work))
    if not args.no_occlusion:
        occlusion(args)
    print(f"\nload after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
