"""Former home of the training code, kept so that ``from motion.train import SyntheticClips,
TrainConfig, train`` (and the other names it held) keep working: everything lives in
:mod:`motion.training` now."""
from __future__ import annotations

from .training import *  # noqa: F403  (every public name of motion.training)
from .training import __all__  # noqa: F401  (re-exported)
