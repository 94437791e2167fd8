"""``train_log.csv`` and TensorBoard events of a training run."""
from __future__ import annotations

import csv
from pathlib import Path

from motion4d.atomic import atomic_path


class TrainLog:
    """``train_log.csv`` (+ TensorBoard events when ``tensorboard`` is installed), rank 0 only.

    Starts from ``history`` (the rows up to a resumed step), so the log has one row per logged step.
    """

    COLUMNS = ("step", "epoch", "loss", "epe", "1px", "3px", "5px", "lr", "grad_norm", "samples_per_s", "seconds")

    def __init__(self, out_dir: Path | None, history: list[dict[str, float]], resume_step: int) -> None:
        self.path = out_dir / "train_log.csv" if out_dir is not None else None
        self.writer = None
        if self.path is None:
            return
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:  # tensorboard is optional: the CSV log is always written
            self.writer = None

    def write(self, row: dict[str, float]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.COLUMNS, extrasaction="ignore").writerow({k: row.get(k, "") for k in self.COLUMNS})
        if self.writer is not None:
            for key in ("loss", "epe", "1px", "lr", "grad_norm", "samples_per_s"):
                if key in row:
                    self.writer.add_scalar(f"train/{key}", row[key], int(row["step"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
