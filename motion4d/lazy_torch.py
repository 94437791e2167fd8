"""Type tests for torch tensors that do not import torch.

Importing torch costs about 270 MB of resident memory and a few seconds. Code paths that never
need it (decoding a video, OpenCV flow, writing flow files) stay torch-free by testing types
through :func:`is_tensor`: an object can only be a ``torch.Tensor`` once torch has been imported,
so when it has not, nothing is a tensor and torch stays unloaded.
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import Any


def loaded_torch() -> ModuleType | None:
    """The torch module when this process has imported it, else None (never imports it)."""
    return sys.modules.get("torch")


def is_tensor(x: Any) -> bool:
    """``isinstance(x, torch.Tensor)``, without importing torch."""
    torch = loaded_torch()
    return torch is not None and isinstance(x, getattr(torch, "Tensor", ()))
