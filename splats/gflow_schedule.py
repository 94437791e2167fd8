"""GFlow's iteration budgets: the paper's on a GPU, budgets scaled to the image size on a CPU.

The PyTorch rasteriser's cost per iteration grows with the number of pixels (pixel-sampled
Gaussians cover the image about the same number of times whatever their count), so on a CPU a fixed
time per frame buys ``seconds_per_frame / (cost_per_pixel x H x W)`` iterations (one thread, see
``GFlowConfig.cpu_threads``). They are split
between the stages in the paper's proportions (camera 150 : Gaussians 300; frame 0 gets the
initialisation's 500 : 450 share) and clamped between a floor that still converges on small frames
and the paper's counts. :data:`CPU_SECONDS_PER_PIXEL` (CPU seconds per pixel and iteration, one
thread) was measured by ``bench/gflow_quality.py --threads``; :data:`CPU_SECONDS_PER_FRAME` makes 8
frames at the CLI's default ``--resize`` fit in about 5 minutes of CPU time with flow, depth and export.
"""
from __future__ import annotations

from motion4d.checks import check_choice, check_positive

PAPER_SCHEDULE = {"init_iterations": 500, "camera_iterations": 150, "gaussian_iterations": 300}
MIN_SCHEDULE = {"init_iterations": 60, "camera_iterations": 15, "gaussian_iterations": 25}
CPU_SECONDS_PER_PIXEL = 6.0e-6
CPU_SECONDS_PER_FRAME = 20.0
SCHEDULES = ("auto", "paper", "cpu")


def iteration_schedule(height: int, width: int, schedule: str = "auto", device_type: str = "cpu",
                       seconds_per_frame: float = CPU_SECONDS_PER_FRAME) -> dict[str, int]:
    """``init_iterations``, ``camera_iterations``, ``gaussian_iterations`` for frames of ``height x width``.

    Args:
        schedule: ``"paper"`` (500 / 150 / 300), ``"cpu"`` (scaled to the image size) or ``"auto"``
            (``paper`` on CUDA, ``cpu`` otherwise).
        device_type: ``"cpu"`` or ``"cuda"`` (what ``auto`` decides on).
        seconds_per_frame: the CPU budget of one frame after the first.
    """
    check_choice(schedule, "schedule", SCHEDULES)
    check_positive(seconds_per_frame, "seconds_per_frame")
    if schedule == "paper" or (schedule == "auto" and device_type == "cuda"):
        return dict(PAPER_SCHEDULE)
    per_frame = seconds_per_frame / (CPU_SECONDS_PER_PIXEL * height * width)
    paper_per_frame = PAPER_SCHEDULE["camera_iterations"] + PAPER_SCHEDULE["gaussian_iterations"]
    shares = {
        "camera_iterations": per_frame * PAPER_SCHEDULE["camera_iterations"] / paper_per_frame,
        "gaussian_iterations": per_frame * PAPER_SCHEDULE["gaussian_iterations"] / paper_per_frame,
        "init_iterations": per_frame * PAPER_SCHEDULE["init_iterations"] / paper_per_frame * 2.0,
    }
    return {k: int(min(PAPER_SCHEDULE[k], max(MIN_SCHEDULE[k], round(v)))) for k, v in shares.items()}
