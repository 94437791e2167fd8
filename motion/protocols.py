"""How each flow model is run on the benchmark data sets, so its numbers compare with its paper.

Two kinds of protocol:

* :class:`ClipProtocol`: one clip of ``clip_length`` frames per ground-truth pair, read by the data
  set reader with the evaluated pair at position ``target``; the flow comes from the model's
  ``forward`` output (``call="forward"``: ``model(clip).forward[:, output_index]``) or, for VideoFlow,
  from the raw network without its first-frame repetition (``call="interior"``:
  ``model.interior_flows(clip).forward[:, output_index]``, the flow of interior frame
  ``output_index + 1``).
* :class:`SequenceProtocol`: whole sequences streamed through :func:`motion.estimate.estimate_flow`,
  that is through the model's :meth:`~motion.models.base.FlowModel.stream` (VideoFlow-MOF's 5-frame
  windows over the first-frame-repeated sequence, SplatFlow's carried motion feature, StreamFlow's
  groups of T frames with stride T-1, pairwise windows otherwise); every consecutive pair is then
  scored.

The official protocols (research notes, section 2.4, 3.3, 4.3):

============== ===================================== ================================== ============
model          Sintel                                KITTI 2015 (multi-view frames)     Things
============== ===================================== ================================== ============
pairwise       pairs                                 ``_10, _11``                       pairs
videoflow-bof  triplet t-1, t, t+1, first repeated   ``_09 .. _11`` triplet              triplets
videoflow-mof  sequence (5-frame windows, stride 3)  ``_08 .. _12``, interior frame _10  sequence
splatflow      sequence (streamed)                   ``_09 .. _11``, last flow           triplets
streamflow     sequence (groups of T, stride T-1)    ``_08 .. _11``, last flow           sequence
other T > 2    sequence                              ``_{12-T} .. _11``, last flow        sequence
============== ===================================== ================================== ============

Each registered model declares its protocols in its :class:`~motion.registry.ModelEntry`
(``register(..., protocols={"sintel": ..., "kitti": ..., "things": ...})``); models that declare
none fall back on their ``frames_per_window`` (the first and last rows), so a new network only declares
protocols if its paper used something else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from motion4d.checks import check_choice
from motion4d.errors import InvalidArgumentError

from .models.base import FlowModel

BENCHMARKS = ("sintel", "kitti", "things")
CALLS = ("forward", "interior")


@dataclass(frozen=True)
class ClipProtocol:
    """One clip per evaluated pair (see the module docstring)."""

    clip_length: int
    target: int
    output_index: int
    call: str = "forward"
    boundary: str = "replicate"
    description: str = ""

    kind = "clip"

    def __post_init__(self) -> None:
        if self.clip_length < 2 or not 0 <= self.target <= self.clip_length - 2:
            raise InvalidArgumentError(
                f"clip protocol needs clip_length >= 2 and 0 <= target <= clip_length - 2, got "
                f"clip_length={self.clip_length}, target={self.target}"
            )
        check_choice(self.call, "call", CALLS)
        pairs = self.clip_length - 1 if self.call == "forward" else self.clip_length - 2
        if not 0 <= self.output_index < pairs:
            raise InvalidArgumentError(f"output_index {self.output_index} outside [0, {pairs}) for call={self.call!r}")

    def predict(self, model: FlowModel, frames: torch.Tensor) -> torch.Tensor:
        """Flow of the evaluated pair ``[B, 2, H, W]`` for clips ``frames [B, T, 3, H, W]`` in [0, 1]."""
        if self.call == "interior":
            interior = getattr(model, "interior_flows", None)
            if interior is None:
                raise InvalidArgumentError(
                    f"protocol {self.describe()} needs a model with interior_flows(), got {type(model).__name__}"
                )
            return interior(frames).forward[:, self.output_index]
        return model(frames).forward[:, self.output_index]

    def describe(self) -> str:
        text = f"clip of {self.clip_length} frames, evaluated pair at {self.target}, {self.call}[{self.output_index}]"
        return f"{text} ({self.description})" if self.description else text

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "clip_length": self.clip_length, "target": self.target,
                "output_index": self.output_index, "call": self.call, "boundary": self.boundary}


@dataclass(frozen=True)
class SequenceProtocol:
    """Whole sequences through :func:`motion.estimate.estimate_flow` (see the module docstring)."""

    description: str = ""

    kind = "sequence"

    def predict_sequence(self, model: FlowModel, frames: np.ndarray, device: torch.device) -> torch.Tensor:
        """Flows of every consecutive pair ``float32 [T-1, 2, H, W]`` for ``frames uint8 [T, H, W, 3]``."""
        from .estimate import estimate_flow

        result = estimate_flow(frames, model, device=device, batch=1, progress=False)
        return result.forward

    def describe(self) -> str:
        text = "whole sequences, streamed with the model's own windowing"
        return f"{text} ({self.description})" if self.description else text

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


Protocol = ClipProtocol | SequenceProtocol

PAIRS = ClipProtocol(2, 0, 0, description="frame pairs")
SEQUENCE = SequenceProtocol()


def default_protocol(model_name: str, model: FlowModel, benchmark: str) -> Protocol:
    """The protocol of ``model`` (registered as ``model_name``) on ``benchmark``: the one its
    :class:`~motion.registry.ModelEntry` declares, else one derived from ``frames_per_window``."""
    from .registry import MODELS

    check_choice(benchmark, "benchmark", BENCHMARKS)
    declared = MODELS.get(model_name).protocols.get(benchmark) if model_name in MODELS else None
    if declared is not None:
        return declared
    window = int(model.frames_per_window)
    if window <= 2:
        return PAIRS
    if benchmark == "kitti":
        return ClipProtocol(window, window - 2, window - 2, description=f"{window} frames ending at _11 (past context)")
    return SEQUENCE


def parse_protocol(text: str, model_name: str, model: FlowModel, benchmark: str) -> Protocol:
    """``auto`` | ``pairs`` | ``sequence`` | ``clip:T:TARGET[:INDEX[:CALL]]`` -> a protocol."""
    if text == "auto":
        return default_protocol(model_name, model, benchmark)
    if text == "pairs":
        return PAIRS
    if text == "sequence":
        return SEQUENCE
    if text.startswith("clip:"):
        parts = text.split(":")[1:]
        try:
            length, target = int(parts[0]), int(parts[1])
            index = int(parts[2]) if len(parts) > 2 else target
        except (IndexError, ValueError) as exc:
            raise InvalidArgumentError(f"--protocol clip needs clip:T:TARGET[:INDEX[:CALL]], got {text!r}") from exc
        call = parts[3] if len(parts) > 3 else "forward"
        return ClipProtocol(length, target, index, call=call, description="user-defined")
    raise InvalidArgumentError(f"--protocol must be auto, pairs, sequence or clip:T:TARGET[:INDEX[:CALL]], got {text!r}")
