"""Training of the RAFT-family multi-frame networks (VideoFlow, SplatFlow, StreamFlow, ...).

The official VideoFlow recipe: sequence loss with gamma (0.8 pre-training, 0.85 fine-tuning), AdamW
(weight decay 1e-4, eps 1e-8), OneCycle (``total = steps + 100``, 5 % warm-up, linear anneal, no
momentum cycling), gradient-norm clipping at 1.0, RAFT augmentation applied identically to every
frame of a clip (sparse ground truth scattered, never interpolated), and temporal reversal
(p = 0.3). Each model says what it is trained on and how it is scored
(:meth:`FlowModel.training_predictions <motion.models.base.FlowModel.training_predictions>`,
:meth:`FlowModel.loss <motion.models.base.FlowModel.loss>`): VideoFlow supervises every interior
frame of an N-frame clip in both directions where ground truth exists.

Modules:

* :mod:`~motion.training.config`: :class:`TrainConfig` (recipe and loop), :class:`AugmentConfig`;
* :mod:`~motion.training.clips`: the clip schema, :func:`clip_from_item` (its one converter),
  :func:`reverse_clip`, :class:`ClipDataset`, :class:`SyntheticClips`;
* :mod:`~motion.training.augment`: :class:`ClipAugmentor` and its colour / eraser / resize steps;
* :mod:`~motion.training.loop`: :func:`train`, the one training loop (also behind ``motion4d train``);
* :mod:`~motion.training.checkpoints`, :mod:`~motion.training.log`, :mod:`~motion.training.optim`:
  resumable checkpoints, the CSV / TensorBoard log, AdamW + OneCycle;
* :mod:`~motion.training.recipes`: the papers' stage presets per model (:func:`recipe_for`);
* :mod:`~motion.training.evaluate`: :func:`evaluate_epe` on held-out clips;
* :mod:`~motion.training.run_config`, :mod:`~motion.training.mixture_clips`,
  :mod:`~motion.training.data_roots`, :mod:`~motion.training.run`: a whole run (behind ``motion4d
  train``): :class:`RunConfig` (the loop's config plus model, data mixture and output),
  :func:`stage_config`, :class:`TrainClips` (mixture clips with per-data-set augmentation),
  :func:`run_training`.

Every random draw of a training sample comes from a generator seeded by ``(seed, epoch, index)``, so
N processes see exactly the samples one process with the same global batch sees, and a resumed run
the samples the interrupted one would have seen.

Example::

    model = motion.create("videoflow-mof", device="cpu", encoder="basic")
    data = SyntheticClips(num_clips=64, num_frames=5, height=96, width=128)
    result = train(model, data, TrainConfig(steps=200, batch_size=2, crop=(64, 96), lr=4e-4),
                   out_dir="runs/toy")       # rerun: continues from runs/toy/checkpoints/last.pt
    result.history[-1]["epe"]
"""
from __future__ import annotations

from .augment import (
    ClipAugmentor,
    adjust_hue,
    color_jitter,
    erase_rectangles,
    eraser_targets,
    resize_flow,
)
from .checkpoints import CHECKPOINT_FORMAT, load_training_checkpoint
from .clips import (
    ClipDataset,
    SyntheticClips,
    clip_from_item,
    is_sparse,
    reverse_clip,
    sample_generator,
)
from .config import AugmentConfig, TrainConfig
from .data_roots import DATA_FOLDERS, find_data_roots
from .evaluate import evaluate_epe
from .log import TrainLog
from .loop import SupervisedStep, TrainResult, clip_loss, train
from .mixture_clips import TrainClips, build_dataset
from .optim import make_optimizer, sync_batchnorm
from .recipes import recipe_for, stage_settings
from .run import run_training
from .run_config import MIXTURE_DEFAULTS, RunConfig, stage_config

__all__ = [
    "CHECKPOINT_FORMAT",
    "DATA_FOLDERS",
    "MIXTURE_DEFAULTS",
    "AugmentConfig",
    "ClipAugmentor",
    "ClipDataset",
    "RunConfig",
    "SupervisedStep",
    "SyntheticClips",
    "TrainClips",
    "TrainConfig",
    "TrainLog",
    "TrainResult",
    "adjust_hue",
    "build_dataset",
    "clip_from_item",
    "clip_loss",
    "color_jitter",
    "erase_rectangles",
    "eraser_targets",
    "evaluate_epe",
    "find_data_roots",
    "is_sparse",
    "load_training_checkpoint",
    "make_optimizer",
    "recipe_for",
    "resize_flow",
    "reverse_clip",
    "run_training",
    "sample_generator",
    "stage_config",
    "stage_settings",
    "sync_batchnorm",
    "train",
]
