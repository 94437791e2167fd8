"""A short synthetic video shared by the command-line tests."""
from __future__ import annotations

import pytest

from motion.synthetic import make_sequence
from motion.video_writer import write_video


@pytest.fixture(scope="session")
def small_clip(tmp_path_factory):
    """``clip.mp4``: 5 frames of 32x48 layers with known motion (lossless)."""
    seq = make_sequence(T=5, height=32, width=48, seed=3, num_tracks=4)
    path = tmp_path_factory.mktemp("small_clip") / "clip.mp4"
    write_video(path, seq.frames, fps=10, crf=0)
    return path
