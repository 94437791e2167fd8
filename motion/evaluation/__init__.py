"""Flow evaluation on MPI-Sintel, KITTI 2015 and FlyingThings3D (behind ``motion4d evaluate``).

Scores any registered flow model on the training split of MPI-Sintel (clean and final: EPE all,
matched, unmatched, s0-10 / s10-40 / s40+), KITTI 2015 (EPE and Fl-all on ``flow_occ`` and
``flow_noc``) or the FlyingThings3D test split, with each model's official multi-frame protocol
(:mod:`motion.protocols`). Every metric is reported twice: pooled over all valid pixels of the set
(KITTI's official Fl, the Sintel leaderboard) and as the mean over images (what the papers'
scripts print for KITTI EPE); ``headline`` holds the numbers the papers report.

Outputs in ``out_dir``: ``metrics.json``, ``metrics.csv``, ``metrics.md`` (a table), the resolved
``eval_config.json``, and per subset (``sintel-clean``, ``kitti``, ...) ``results.jsonl`` with one
line of sufficient statistics per scored pair plus a few ``pictures/`` (frame, ground truth,
prediction, error). A rerun skips the pairs already in ``results.jsonl``, so an interrupted
evaluation resumes; ``max_samples`` scores only the first N pairs of each subset.

Modules: :mod:`~motion.evaluation.subsets` (what is scored), :mod:`~motion.evaluation.units` (work
units), :mod:`~motion.evaluation.results` (per-pair records), :mod:`~motion.evaluation.runner`
(:func:`evaluate`), :mod:`~motion.evaluation.reports` (JSON / CSV / markdown),
:mod:`~motion.evaluation.pictures`.
"""
from __future__ import annotations

from .reports import HEADLINES, markdown_table, write_reports
from .results import RESULTS_NAME, ResultStore, SubsetResult, score_pair
from .runner import CONFIG_NAME, evaluate, evaluate_subset
from .subsets import Subset, open_benchmark, subsets_for
from .units import Unit, pair_key, plan_units

__all__ = [
    "CONFIG_NAME",
    "HEADLINES",
    "RESULTS_NAME",
    "ResultStore",
    "Subset",
    "SubsetResult",
    "Unit",
    "evaluate",
    "evaluate_subset",
    "markdown_table",
    "open_benchmark",
    "pair_key",
    "plan_units",
    "score_pair",
    "subsets_for",
    "write_reports",
]
