"""Objects from motion vs two baselines: MOTA / IDF1 (py-motmetrics) on sequences with exact boxes.

    python bench/objects.py                     # the report set (8 sequences), a table on stdout
    python bench/objects.py --set tune          # the sequences the options were tuned on
    python bench/objects.py --frames 30 --json out.json

Every sequence is a real photograph (scikit-image) or Middlebury frame seen by a static or a moving
virtual camera, with real image patches moving over it on known paths (boxes exact; see
:mod:`motion.objects.sequences`). The tuning set and the report set share no background and no seed.
All three methods get the same frames and are scored the same way (MOT files read by py-motmetrics,
IoU >= 0.5): objects from motion (:func:`motion.objects.detect_objects`, DIS flow), OpenCV MOG2
background subtraction + connected components + IoU tracker, and frame differencing + the same.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motion.objects import (
    background_subtraction_objects,
    detect_objects,
    frame_difference_objects,
    make_object_sequence,
    mot_metrics,
)

# (background, camera, seed); the tune and report sets share no background and no seed
TUNE = [("coffee", "static", 0), ("coffee", "moving", 0), ("Grove3", "static", 1), ("Grove3", "moving", 1)]
REPORT = [
    ("rocket", "static", 10), ("Urban2", "static", 11), ("RubberWhale", "static", 12), ("hubble_deep_field", "static", 13),
    ("rocket", "moving", 14), ("Urban2", "moving", 15), ("RubberWhale", "moving", 16), ("hubble_deep_field", "moving", 17),
]
METHODS = {
    "objects (ours)": lambda frames: detect_objects(frames, device="cpu"),
    "MOG2 + IoU": background_subtraction_objects,
    "frame diff + IoU": frame_difference_objects,
}
COLUMNS = ("mota", "idf1", "num_switches", "num_false_positives", "num_misses")


def run(sequences: list[tuple[str, str, int]], frames: int, objects: int) -> list[dict]:
    rows = []
    for background, camera, seed in sequences:
        seq = make_object_sequence(background, camera, num_frames=frames, num_objects=objects, seed=seed)
        for method, detect in METHODS.items():
            start = time.perf_counter()
            found = detect(seq.frames)
            seconds = time.perf_counter() - start
            scores = mot_metrics(seq.truth, found)
            rows.append({"sequence": seq.name, "camera": camera, "method": method, "seconds": seconds,
                         "ids": found.num_objects, **{k: scores[k] for k in COLUMNS}})
            print(f"  {seq.name:28s} {method:18s} MOTA {scores['mota']:6.3f} IDF1 {scores['idf1']:.3f}", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| sequence | method | MOTA | IDF1 | ID sw. | FP | FN | ids | s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['sequence']} | {r['method']} | {r['mota']:.3f} | {r['idf1']:.3f} | {r['num_switches']:.0f} | "
                     f"{r['num_false_positives']:.0f} | {r['num_misses']:.0f} | {r['ids']} | {r['seconds']:.1f} |")
    lines += ["", "| camera | method | mean MOTA | mean IDF1 |", "|---|---|---:|---:|"]
    for camera in ("static", "moving"):
        for method in METHODS:
            sel = [r for r in rows if r["camera"] == camera and r["method"] == method]
            if sel:
                lines.append(f"| {camera} | {method} | {np.mean([r['mota'] for r in sel]):.3f} | "
                             f"{np.mean([r['idf1'] for r in sel]):.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("report", "tune"), default="report")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--json", default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    rows = run(REPORT if args.set == "report" else TUNE, args.frames, args.objects)
    print(f"{args.set} set: {args.frames} frames of 320x240, {args.objects} moving patches per sequence\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
