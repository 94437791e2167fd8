"""The configuration of a training run: the loop's :class:`TrainConfig` plus model, data and output."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from motion4d.errors import InvalidArgumentError

from .config import TrainConfig
from .recipes import eraser_prob_for, stage_settings

#: loop settings of a mixture run without a stage where they differ from :class:`TrainConfig`'s
#: (a short fine-tuning run; a stage preset sets its own)
MIXTURE_DEFAULTS: dict[str, Any] = {"steps": 1000, "lr": 1.25e-4, "gamma": 0.85}


@dataclass(kw_only=True)
class RunConfig(TrainConfig):
    """Everything a run depends on (written to ``train_config.json``): the library's
    :class:`~motion.training.TrainConfig` (recipe and loop settings) plus the model, the data and
    the output around it."""

    model: str
    out_dir: str
    mixture: str
    roots: dict[str, str] = field(default_factory=dict)
    stage: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    init_weights: str | None = None
    augment_ranges: dict[str, tuple[float, float, bool]] = field(default_factory=dict)  # overrides AUGMENT_RANGES
    eraser_prob: float | None = None  # None: the model's recipe (recipes.ERASER_PROB, else 0)
    clip_length: int | None = None  # default: the model's frames_per_window
    reader_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    resume: str | None = None  # None, "auto" (out_dir/checkpoints/last.pt if present) or a path

    def validate(self) -> None:
        super().validate()
        if self.eraser_prob is not None and not 0 <= self.eraser_prob <= 1:
            raise InvalidArgumentError(f"eraser_prob must be in [0, 1], got {self.eraser_prob}")

    def resolved_eraser_prob(self) -> float:
        """``eraser_prob``, or the model's recipe value when None."""
        return float(self.eraser_prob) if self.eraser_prob is not None else eraser_prob_for(self.model)

    def recipe(self) -> TrainConfig:
        """The :class:`~motion.training.TrainConfig` part alone: what the loop runs and compares on resume."""
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})


def stage_config(model: str, stage: str, **overrides: Any) -> RunConfig:
    """The recipe of ``stage`` for ``model`` (:func:`motion.training.recipes.stage_settings`), with
    ``overrides`` (None values ignored)."""
    settings = stage_settings(model, stage)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig(model=model, stage=stage, **settings)
