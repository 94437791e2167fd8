"""Objects from motion: moving objects with stable ids, boxes and masks, from flow and point tracks.

::

    from motion.objects import detect_objects, group_tracks
    objects = detect_objects("street.mp4")            # Objects: boxes, ids, masks per frame
    objects.save_mot("out/objects.txt")               # MOTChallenge, 1-based
    labels = group_tracks(tracks)                      # [N] object id of each point track (0 = background)

Modules: :mod:`~motion.objects.camera` (camera motion), :mod:`~motion.objects.evidence` (residual
motion), :mod:`~motion.objects.clustering`, :mod:`~motion.objects.association` (ids over time),
:mod:`~motion.objects.detect` (the pipeline), :mod:`~motion.objects.grouping` (point tracks ->
objects), :mod:`~motion.objects.result` (:class:`Objects`), :mod:`~motion.objects.baselines`,
:mod:`~motion.objects.sequences` (sequences with exact boxes from real images),
:mod:`~motion.objects.evaluate` (MOTA / IDF1 with py-motmetrics).
"""
from __future__ import annotations

from .baselines import (
    IoUTracker,
    background_subtraction_objects,
    frame_difference_objects,
)
from .camera import CameraMotion, fit_camera_motion
from .detect import ObjectOptions, detect_objects
from .evaluate import box_iou, evaluate_mot_files, mot_metrics
from .grouping import group_track_arrays, group_tracks
from .result import Objects
from .sequences import ObjectSequence, make_object_sequence, real_video_path

__all__ = [
    "CameraMotion",
    "IoUTracker",
    "ObjectOptions",
    "ObjectSequence",
    "Objects",
    "background_subtraction_objects",
    "box_iou",
    "detect_objects",
    "evaluate_mot_files",
    "fit_camera_motion",
    "frame_difference_objects",
    "group_track_arrays",
    "group_tracks",
    "make_object_sequence",
    "mot_metrics",
    "real_video_path",
]
