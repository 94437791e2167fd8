"""Splats tests render tiny scenes (<= 64x64): per-op overhead dominates, and a second intra-op
thread only adds OpenMP barrier waits (badly so on a shared, oversubscribed CPU). Run them on one
thread and restore the setting afterwards."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
