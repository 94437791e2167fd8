"""Moving objects from motion: camera-compensated flow evidence, clustered and linked over time.

::

    objects = motion.objects.detect_objects("street.mp4", model="dis")
    objects.in_frame(10)              # (ids [k], boxes [k, 4]) of frame 10
    objects.save_mot("out/objects.txt")

Per frame ``t`` (streamed: memory holds two flow pairs and the label maps):

1. forward and backward flow of the pairs ``(t-1, t)`` and ``(t, t+1)`` (any flow model; DIS by
   default, ``"reynolds"`` for Reynolds flow);
2. the residual motion anchored at ``t`` once the camera motion (a RANSAC homography) is removed,
   and its forward-backward consistency (:mod:`motion.objects.evidence`);
3. moving pixels: residual speed above ``max(min_motion, noise_factor x noise)`` px/frame, where
   ``noise`` is the residual noise of the background, and a change that the camera motion does not
   explain: both neighbour frames, aligned to ``t`` by the camera motion alone, differ from frame ``t``
   by more than ``max(min_change, change_factor x noise)`` grey levels (this trims the flow that
   smooth flow fields spread from a mover onto the background next to it);
4. regions by position and motion (:mod:`motion.objects.clustering`);
5. ids linked over frames, with merges and splits (:mod:`motion.objects.association`).

A frame where more than ``max_moving_fraction`` of the image moves, or where the camera model
explains under ``min_inlier_ratio`` of the background, is a shot cut or an unexplained camera motion:
it gets no objects and the objects so far end.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from motion4d.checks import check_choice, check_float, check_int

from .association import ObjectLinker
from .camera import CAMERA_MODELS
from .clustering import clean_mask, cluster_moving
from .evidence import Residual, moving_evidence, photometric_evidence, residual_motion
from .result import Objects, boxes_from_masks


@dataclass(frozen=True)
class ObjectOptions:
    """Parameters of :func:`detect_objects` (see the module notes)."""

    camera: str = "homography"
    min_motion: float = 1.0
    noise_factor: float = 4.0
    min_change: float = 6.0
    change_factor: float = 4.0
    change_window: int = 11
    change_density: float = 0.05
    fb_alpha: float = 0.01
    fb_beta: float = 0.5
    step: int = 4
    tolerance: float = 1.0
    relative_tolerance: float = 0.5
    separation: float = 10.0
    min_area: int = 150
    max_moving_fraction: float = 0.5
    min_inlier_ratio: float = 0.3
    min_frames: int = 4
    max_missing: int = 4
    merge_gap: float = 8.0

    def __post_init__(self) -> None:
        check_choice(self.camera, "camera", CAMERA_MODELS)
        check_float(self.min_motion, "min_motion", minimum=0.0)
        check_int(self.step, "step", minimum=1)
        check_int(self.min_area, "min_area", minimum=1)
        check_int(self.min_frames, "min_frames", minimum=1)
        check_int(self.max_missing, "max_missing", minimum=0)


def moving_regions(ahead: Residual | None, behind: Residual | None, options: ObjectOptions
                   ) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(regions int32 [H, W], velocity [2, H, W], usable)`` of one frame from its residuals (see
    :func:`moving_evidence`)."""
    magnitude, velocity, noise = moving_evidence(ahead, behind)
    ratios = [r.inlier_ratio for r in (ahead, behind) if r is not None]
    threshold = max(options.min_motion, options.noise_factor * noise)
    moving = magnitude > threshold
    photo = photometric_evidence(ahead, behind)
    if photo is not None and options.min_change > 0:
        background = photo[~moving] if (~moving).any() else photo.ravel()
        level = max(options.min_change, options.change_factor * 1.4826 * float(np.median(background)))
        # changed pixels are sparse inside a textured mover: keep the flow's moving pixels near them
        density = cv2.blur((photo > level).astype(np.float32), (options.change_window, options.change_window))
        moving &= density > options.change_density
    mask = clean_mask(moving)
    usable = mask.mean() <= options.max_moving_fraction and min(ratios) >= options.min_inlier_ratio
    if not usable:
        return np.zeros(mask.shape, np.int32), velocity, False
    regions = cluster_moving(mask, velocity, options.step, options.tolerance, options.relative_tolerance,
                             options.min_area, options.separation)
    return regions, velocity, True


def detect_objects(
    source: Any,
    model: Any = "dis",
    *,
    options: ObjectOptions = ObjectOptions(),
    device: str = "auto",
    batch: int = 8,
    model_options: dict[str, Any] | None = None,
    progress: bool = False,
    **selection: Any,
) -> Objects:
    """Moving objects of a video with stable ids, per-frame boxes and masks.

    Args:
        source: video file, image folder, or ``uint8 [T, H, W, 3]`` frames (see :func:`motion.open_video`).
        model: flow model name (``"dis"``, ``"reynolds"``, ...) or :class:`~motion.models.base.FlowModel`.
        options: :class:`ObjectOptions`.
        device, batch, model_options, progress: as in :func:`motion.estimate_flow`.
        selection: start, stop, stride, max_frames, resize.

    Returns:
        :class:`~motion.objects.result.Objects` with ``masks [T, H, W]`` (object id per pixel).
    """
    from ..estimate import iter_flow

    linker = ObjectLinker(merge_gap=options.merge_gap, max_missing=options.max_missing)
    labels: list[np.ndarray] = []
    indices: list[int] = []
    cuts = 0
    behind: Residual | None = None  # backward residual anchored at the current frame
    previous_forward: np.ndarray | None = None

    def finish_frame(ahead: Residual | None) -> None:
        nonlocal cuts
        regions, velocity, usable = moving_regions(ahead, behind, options)
        if previous_forward is not None:
            linker.advance(previous_forward)
        if not usable:
            linker.reset()
            cuts += 1
        labels.append(linker.update(regions, velocity).astype(np.uint32))

    for pair in iter_flow(source, model, device=device, batch=batch, backward=True, model_options=model_options,
                          progress=progress, **selection):
        forward = pair.forward.float().cpu().numpy()
        backward = pair.backward.float().cpu().numpy()
        if not indices:
            indices.append(pair.source.index)
        images = (pair.source.image, pair.target.image)
        ahead = residual_motion(forward, backward, options.camera, options.fb_alpha, options.fb_beta, images=images)
        finish_frame(ahead)
        behind = residual_motion(backward, forward, options.camera, options.fb_alpha, options.fb_beta,
                                 images=images[::-1])
        previous_forward = forward
        indices.append(pair.target.index)
    finish_frame(None)
    masks = _keep_long_lived(np.stack(labels), options.min_frames)
    frames, ids, boxes = boxes_from_masks(masks)
    return Objects(frame=frames, ids=ids, boxes=boxes, num_frames=len(labels), image_size=masks.shape[1:],
                   masks=masks, frame_indices=np.asarray(indices, np.int64),
                   metadata={"method": "objects from motion", "model": model if isinstance(model, str)
                             else type(model).__name__, "options": asdict(options), "unusable_frames": cuts})


def _keep_long_lived(labels: np.ndarray, min_frames: int) -> np.ndarray:
    """``uint16 [T, H, W]``: ids present in at least ``min_frames`` frames, renumbered 1.. by first appearance."""
    present = [np.unique(frame[frame > 0]) for frame in labels]
    counts: dict[int, int] = {}
    order: list[int] = []
    for ids in present:
        for i in ids.tolist():
            if i not in counts:
                order.append(i)
            counts[i] = counts.get(i, 0) + 1
    kept = [i for i in order if counts[i] >= min_frames]
    lookup = np.zeros(int(labels.max(initial=0)) + 1, np.uint16)
    lookup[kept] = np.arange(1, len(kept) + 1)
    return lookup[labels]
