"""Evaluation pictures: frame, ground truth, prediction and error side by side."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def save_picture(path: Path, sample, t: int, pred: torch.Tensor) -> None:
    """Write the panel of pair ``t`` of ``sample`` and its prediction ``pred [2, H, W]`` to ``path``."""
    import cv2

    from motion.image_io import write_image
    from motion.visualize import flow_to_color, side_by_side

    gt = sample.flow[t]
    valid = sample.valid[t]
    radius = float(np.linalg.norm(gt[valid], axis=-1).max()) if valid.any() else None
    pred_np = pred.detach().float().cpu().permute(1, 2, 0).numpy()
    gt_shown = np.where(valid[..., None], gt, np.float32(np.nan))
    err = np.linalg.norm(pred_np - gt, axis=-1)
    err_img = cv2.applyColorMap(np.clip(err / 10.0 * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    err_img = np.where(valid[..., None], err_img, 0).astype(np.uint8)
    panel = side_by_side(
        [sample.frames[t], flow_to_color(gt_shown, radius, channels_last=True),
         flow_to_color(pred_np, radius, channels_last=True), err_img],
        labels=["frame", "ground truth", "prediction", "EPE (0-10 px)"],
        columns=2,
    )
    write_image(path, panel)
