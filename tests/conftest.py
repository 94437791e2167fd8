"""Shared fixtures; every test runs on the CPU unless it is marked ``cuda``."""
from __future__ import annotations

import os

# Before torch starts its OpenMP runtime: threads that spin while waiting make small ops up to 50x
# slower as soon as another process shares the cores (a 400-point NSFP fit: 0.35 s alone, 19 s at
# load 3 with spinning threads, 0.38 s passive).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def one_thread():
    """Small tensors on a shared 2-core machine: one thread is faster than two waiting for each
    other (the single-clip training test ran 4.5 s on one thread, 10.7 s on two, at load 4)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
