"""One device helper for every package: ``"auto"`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` / ``"mps"``."""
from __future__ import annotations

import torch

from .errors import BackendUnavailableError, InvalidArgumentError

_ACCEPTED = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def resolve_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """The ``torch.device`` to compute on, validated against what this machine has.

    ``None`` / ``"auto"`` pick CUDA when available, else the CPU.

    Raises:
        InvalidArgumentError: a string that names no device type this package runs on.
        BackendUnavailableError: CUDA (or device ``N``) or MPS asked for on a machine without it.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise InvalidArgumentError(f"{name} must be {_ACCEPTED}, got {device!r}")
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name} must be {_ACCEPTED}, got {device!r}") from exc
    # a command-line flag reads as typed ("--device cuda"), a parameter as Python ("device='cuda'")
    asked = f"{name} {device}" if name.startswith("-") else f"{name}={str(device)!r}"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(f"{asked} requested but CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise BackendUnavailableError(f"{asked} requested but this machine has {count} CUDA device(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BackendUnavailableError(f"{asked} requested but MPS is not available on this machine")
    elif dev.type != "cpu":
        raise InvalidArgumentError(f"{name} must be {_ACCEPTED}, got {device!r}")
    return dev
