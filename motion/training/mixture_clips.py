"""Training clips drawn from a weighted data-set mixture with the papers' per-data-set augmentation."""
from __future__ import annotations

from .clips import ClipDataset
from .config import AugmentConfig
from .recipes import AUGMENT_RANGES
from .run_config import RunConfig


class TrainClips(ClipDataset):
    """Mixture samples as :mod:`motion.training` clips, every random draw seeded by ``(seed, epoch, index)``.

    Each component gets the papers' zoom range and flips (:data:`AUGMENT_RANGES`, overridable):
    dense ground truth RAFT's dense augmentation, sparse ground truth (KITTI, HD1K) RAFT's sparse one
    (valid pixels scattered to the new grid, never interpolated). ``augment=False``: random crops.
    """

    def __init__(self, mixture, config: RunConfig) -> None:
        super().__init__(mixture, config.recipe())
        self.mixture = mixture
        self.ranges = {**AUGMENT_RANGES, **{k: tuple(v) for k, v in config.augment_ranges.items()}}
        self.eraser_prob = config.resolved_eraser_prob()

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.mixture.set_epoch(epoch)

    def summary(self) -> str:
        return self.mixture.summary()

    def augment_config(self, index: int, sparse: bool) -> AugmentConfig:
        part, _ = self.mixture.locate(int(index))
        min_scale, max_scale, flips = self.ranges.get(self.mixture.names[part], (-0.2, 0.6, True))
        crop = tuple(self.config.crop)
        if sparse:
            return AugmentConfig.sparse(crop, min_scale, max_scale, flips=flips, eraser_prob=self.eraser_prob)
        return AugmentConfig(crop=crop, min_scale=min_scale, max_scale=max_scale,
                             h_flip_prob=0.5 if flips else 0.0, v_flip_prob=0.1 if flips else 0.0,
                             eraser_prob=self.eraser_prob)


def build_dataset(config: RunConfig, clip_length: int) -> TrainClips:
    """The :class:`TrainClips` of ``config.mixture`` with clips of ``clip_length`` frames."""
    from motion.data.mixing import build_mixture

    mixture = build_mixture(config.mixture, config.roots, clip_length=clip_length, seed=config.seed,
                            reader_options=config.reader_options)
    return TrainClips(mixture, config)
