"""The papers' staged training recipes of the RAFT-family networks, per model.

Stages: FlyingThings3D (``things``), then the Sintel mixture (``sintel``), then KITTI (``kitti``).
:data:`STAGES` holds VideoFlow-BOF's numbers; what differs for another model is declared with its
registration (:class:`motion.registry.TrainingRecipe`, research notes 2.7, 3.6, 4.6). A stage's settings are the loop's (:class:`TrainConfig` fields) plus
its data: ``mixture`` (:mod:`motion.data.mixing`) and ``augment_ranges`` (per-component zoom ranges
that override :data:`AUGMENT_RANGES`).
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from motion4d.checks import check_choice

from ..registry import model_entry
from .config import TrainConfig

#: The stages of the RAFT-family recipe (VideoFlow-BOF's numbers; per-model changes in each model's recipe).
#: ``amp``: False where the official recipe trains in fp32, "auto" (on CUDA) where it uses AMP.
STAGES: dict[str, dict[str, Any]] = {
    "things": {"mixture": "things_clean+things_final", "steps": 120_000, "lr": 2.5e-4, "batch_size": 8,
               "crop": (432, 960), "gamma": 0.8, "weight_decay": 1e-4, "amp": False},
    "sintel": {"mixture": "100*sintel_clean+100*sintel_final+200*kitti+5*hd1k+things", "steps": 120_000,
               "lr": 1.25e-4, "batch_size": 8, "crop": (432, 960), "gamma": 0.85, "weight_decay": 1e-4, "amp": False},
    "kitti": {"mixture": "kitti", "steps": 80_000, "lr": 1.25e-4, "batch_size": 8, "crop": (432, 960),
              "gamma": 0.85, "weight_decay": 1e-4, "amp": False, "augment_ranges": {"kitti": (-0.2, 0.4, False)}},
}

#: mixture component -> (min, max log2 zoom, flips) of the papers' augmentation (research notes 2.7)
AUGMENT_RANGES: dict[str, tuple[float, float, bool]] = {
    "things": (-0.4, 0.8, True), "things_clean": (-0.4, 0.8, True), "things_final": (-0.4, 0.8, True),
    "sintel_clean": (-0.2, 0.6, True), "sintel_final": (-0.2, 0.6, True),
    "kitti": (-0.3, 0.5, True), "hd1k": (-0.5, 0.2, True), "chairs": (-0.1, 1.0, True),
}

_TRAIN_FIELDS = frozenset(f.name for f in fields(TrainConfig))


def stage_settings(model_name: str, stage: str) -> dict[str, Any]:
    """Every setting of ``stage`` for ``model_name``: :data:`STAGES` with the changes its registration
    declares (:attr:`~motion.registry.ModelEntry.recipe`); :class:`TrainConfig` fields, ``mixture`` and
    optionally ``augment_ranges``."""
    check_choice(stage, "stage", tuple(STAGES))
    settings = dict(STAGES[stage])
    recipe = model_entry(model_name).recipe
    if recipe is not None:
        settings.update(recipe.stages.get(stage, {}))
    return settings


def recipe_for(model_name: str, stage: str) -> TrainConfig:
    """The :class:`TrainConfig` of ``stage`` (``things``, ``sintel`` or ``kitti``) for ``model_name``;
    settings the stage does not name keep :class:`TrainConfig`'s defaults. The stage's data (mixture,
    zoom ranges) is in :func:`stage_settings`."""
    return TrainConfig(**{k: v for k, v in stage_settings(model_name, stage).items() if k in _TRAIN_FIELDS})


def eraser_prob_for(model_name: str) -> float:
    """Probability of RAFT's eraser in ``model_name``'s recipe (0 without one)."""
    recipe = model_entry(model_name).recipe
    return recipe.eraser_prob if recipe is not None else 0.0
