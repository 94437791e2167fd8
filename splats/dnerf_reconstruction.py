"""Gaussian-Flow on a posed multi-view video in the D-NeRF layout: fit, export, score and render.

Outputs in ``out_dir``: ``gaussian_flow_config.json``, the fit's checkpoint, ``export/`` (per-time
Gaussians), ``renders/compare.png`` (ground truth | render of the scored split) and, with
``videos``, ``renders/time_sweep.mp4`` and ``renders/<eval|train>_compare.mp4``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from motion4d.atomic import atomic_path, atomic_write_text


def compare_picture(path: Path, truth: np.ndarray, renders: np.ndarray, times: np.ndarray, scores: list[float],
                    split: str, rows: int = 6, min_height: int = 192) -> Path:
    """``path``: labelled rows of ground truth | render | error (x4) for up to ``rows`` views spread
    over the split, each enlarged (nearest neighbour) to at least ``min_height`` pixels."""
    import cv2

    from motion.visualize import save_png, side_by_side

    scale = max(1, -(-min_height // truth.shape[1]))
    enlarge = lambda image: cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)  # noqa: E731
    panels, labels = [], []
    for i in np.unique(np.linspace(0, len(truth) - 1, min(rows, len(truth))).astype(int)):
        error = np.clip(np.abs(truth[i].astype(np.int16) - renders[i].astype(np.int16)) * 4, 0, 255).astype(np.uint8)
        panels += [enlarge(truth[i]), enlarge(renders[i]), enlarge(error)]
        labels += [f"{split} view {i}, t={float(times[i]):.2f}: ground truth", f"render, PSNR {scores[i]:.1f} dB",
                   "|error| x4"]
    return save_png(path, side_by_side(panels, labels, columns=3))


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> Path:
    """Write ``uint8 [T, H, W, 3]`` as an H.264 MP4 (odd sizes padded to even)."""
    import av

    t, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def reconstruct_dnerf(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str = "train",
    eval_split: str = "test",
    downscale: int = 1,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    config: dict[str, Any] | None = None,
    iterations: int | None = None,
    seed: int = 0,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    videos: bool = True,
) -> dict[str, Any]:
    """Fit :class:`~splats.gaussian_flow.GaussianFlow` to split ``split`` of the D-NeRF folder ``data``.

    ``config`` overrides :class:`~splats.gaussian_flow.GaussianFlowConfig` fields; after the fit
    the model is exported, split ``eval_split`` (if present, else the training views) is rendered
    and scored by PSNR. Returns the summary (Gaussians, iterations, PSNR, output paths).
    """

    from motion4d.imaging import frames_to_tensor, psnr
    from splats.dnerf import read_dnerf
    from splats.gaussian_flow import GaussianFlow, GaussianFlowConfig

    out = Path(out_dir)
    train = read_dnerf(data, split, background=background, downscale=downscale)
    overrides = dict(config or {})
    overrides.setdefault("background", background)
    overrides.setdefault("seed", seed)
    overrides.setdefault("device", device)
    if iterations is not None:
        overrides["iterations"] = iterations
    model_config = GaussianFlowConfig.from_dict(overrides)
    model = GaussianFlow(model_config)
    atomic_write_text(out / "gaussian_flow_config.json", json.dumps(asdict(model_config), indent=1))
    model.fit(train.frames, train.cameras, train.times, out_dir=out, resume=resume, progress=progress)
    export_dir = model.export(out / "export", times=np.unique(train.times), cameras=train.cameras)
    summary: dict[str, Any] = {"method": "gaussian-flow", "n_gaussians": len(model.params["means"]),
                               "iterations": model.step, "export": str(export_dir)}
    renders = out / "renders"
    renders.mkdir(exist_ok=True)
    eval_json = Path(data) / f"transforms_{eval_split}.json"
    scored = read_dnerf(data, eval_split, background=background, downscale=downscale) \
        if eval_json.exists() and eval_split != split else train
    preds = np.stack([(model.render(float(t), scored.cameras[i]).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
                      for i, t in enumerate(scored.times)])
    scores = [psnr(frames_to_tensor(p), frames_to_tensor(g))
              for p, g in zip(preds, scored.frames)]
    summary[f"psnr_{'eval' if scored is not train else 'train'}"] = float(np.mean(scores))
    side = np.concatenate([scored.frames, preds], axis=2)  # ground truth | render
    split_name = "eval" if scored is not train else "train"
    summary["compare_image"] = str(compare_picture(renders / "compare.png", scored.frames, preds, scored.times,
                                                   scores, split_name))
    if videos:
        times = np.linspace(float(train.times.min()), float(train.times.max()), 40)
        cam = scored.cameras[0]
        frames = np.stack([(model.render(float(t), cam).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
                           for t in times])
        summary["video"] = str(write_mp4(renders / "time_sweep.mp4", frames))
        summary["video_side_by_side"] = str(write_mp4(renders / f"{'eval' if scored is not train else 'train'}"
                                                      f"_compare.mp4", side))
    return summary
