"""A training run from a :class:`RunConfig`: the model, its data mixture and :func:`motion.training.train`.

The recipe and the training loop are :mod:`motion.training`'s (:func:`motion.training.train`, the
one loop: sequence loss, AdamW + OneCycle, gradient clipping, RAFT augmentation applied identically
to every frame of a clip, temporal reversal, automatic mixed precision on CUDA, checkpoints that
resume bit-exactly, CSV / TensorBoard logs, tqdm, distributed data parallel) with its stage presets
per model (:mod:`motion.training.recipes`). A run adds the model and the data around it: weighted
data-set mixtures (:mod:`motion.data.mixing`) with the papers' per-data-set zoom ranges and RAFT's
sparse augmentation for KITTI / HD1K (:class:`~motion.training.mixture_clips.TrainClips`).

Scale-out: under ``torchrun --nproc_per_node=N -m motion4d train ...`` or ``srun`` (one process per
Slurm task; :mod:`motion.launch`) every process reads its rank, world size and local rank, joins an
NCCL (GPU) or gloo (CPU) group and trains a
DistributedDataParallel replica on ``batch_size / N`` samples of each global batch; only rank 0
writes. Every random draw of a sample (reversal, zoom, flips, colour, crop) is seeded by ``(seed,
epoch, index)``, so an N-process run sees exactly the samples a single process with the same global
batch sees, and a resumed run the samples the interrupted one would have seen, on the same or on
another number of processes.

Outputs in ``out_dir``: ``train_config.json``, ``train_log.csv`` (and TensorBoard events when
``tensorboard`` is installed), ``checkpoints/step_NNNNNNN.pt`` + ``checkpoints/last.pt`` (model,
optimizer, scheduler, AMP scaler, data position and every rank's RNG state: ``resume="auto"``
continues bit-exactly), ``model_final.pth`` (motion4d checkpoint format for ``motion.create(name,
weights=...)``; the next stage's ``init_weights``) and ``preview.png`` (a training clip, its ground
truth and the prediction).
"""
from __future__ import annotations

from motion4d.errors import InvalidArgumentError

from .loop import TrainResult
from .mixture_clips import build_dataset
from .run_config import RunConfig


def run_training(config: RunConfig, ctx=None) -> TrainResult:
    """Run (or resume) the training described by ``config`` in this process of the job ``ctx``.

    Builds the model and the mixture, then runs :func:`motion.training.train` (the one training loop).
    ``ctx`` defaults to :func:`motion.distributed.setup_distributed` from the environment (torchrun).
    Returns its :class:`motion.training.TrainResult`.
    """
    import motion
    from motion import training
    from motion.distributed import seed_everything, setup_distributed

    config.validate()
    ctx = ctx or setup_distributed(device=config.device)
    if config.batch_size % ctx.world_size:
        raise InvalidArgumentError(f"batch_size {config.batch_size} must be divisible by the {ctx.world_size} processes")
    seed_everything(config.seed)  # identical initial weights on every rank
    model = motion.create(config.model, weights=config.init_weights, device=ctx.device, **config.model_options)
    if not getattr(model, "trainable", False) or not any(p.requires_grad for p in model.parameters()):
        raise InvalidArgumentError(f"model {config.model!r} has no learnable parameters (training-free); nothing to train")
    clip_length = config.clip_length or int(getattr(model, "frames_per_window", 2))
    dataset = build_dataset(config, clip_length)
    run_info = {"model_options": config.model_options, "mixture": config.mixture, "clip_length": config.clip_length,
                "augment_ranges": {k: list(v) for k, v in config.augment_ranges.items()},
                "clip_length_resolved": clip_length, "eraser_prob": config.resolved_eraser_prob()}
    # looked up on the package at call time: the one loop, wherever it is patched
    return training.train(model, dataset, config.recipe(), config.out_dir, model_name=config.model,
                          resume=config.resume, device=ctx.device, ctx=ctx, run_info=run_info)
