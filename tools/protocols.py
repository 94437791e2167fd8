"""How each flow model is run on the benchmark data sets, so its numbers compare with its paper.

Two kinds of protocol:

* :class:`ClipProtocol`: one clip of ``clip_length`` frames per ground-truth pair, read by the data
  set reader with the evaluated pair at position ``target``; the flow comes from the model's
  ``forward`` output (``call="forward"``: ``model(clip).forward[:, output_index]``) or, for VideoFlow,
  from the raw network without its first-frame repetition (``call="interior"``:
  ``model.interior_flows(clip).forward[:, output_index]``, the flow of interior frame
  ``output_index + 1``).
* :class:`SequenceProtocol`: whole sequences streamed through :func:`motion.estimate.estimate_flow`,
  which uses the model's own ``stream()`` when it has one (VideoFlow-MOF's 5-frame windows over the
  first-frame-repeated sequence, SplatFlow's carried motion feature) and otherwise windows of
  ``frames_per_window`` frames with stride ``frames_per_window - 1`` (StreamFlow's groups); every
  consecutive pair is then scored.

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

Protocols are looked up by registered model name (prefix match), falling back on the model's
``frames_per_window``; a new network only needs an entry in :data:`PROTOCOLS` if its paper used
something else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from motion.models.base import FlowModel
from motion4d.checks import check_choice
from motion4d.errors import InvalidArgumentError

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
        from motion.estimate import estimate_flow

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

#: registered-name prefix -> benchmark -> protocol (the official evaluation scripts' choices).
PROTOCOLS: dict[str, dict[str, Protocol]] = {
    "videoflow-bof": {
        "sintel": ClipProtocol(3, 1, 0, call="interior", description="VideoFlow-BOF: triplets, first frame repeated"),
        "kitti": ClipProtocol(3, 1, 0, call="interior", description="VideoFlow-BOF: multi-view _09.._11"),
        "things": ClipProtocol(3, 1, 0, call="interior", description="VideoFlow-BOF: triplets"),
    },
    "videoflow-mof": {
        "sintel": SequenceProtocol("VideoFlow-MOF: 5-frame windows over the first-frame-repeated sequence"),
        "kitti": ClipProtocol(5, 2, 1, call="interior", description="VideoFlow-MOF: multi-view _08.._12, centre"),
        "things": SequenceProtocol("VideoFlow-MOF: 5-frame windows"),
    },
    "splatflow": {
        "sintel": SequenceProtocol("SplatFlow: streamed, motion feature carried"),
        "kitti": ClipProtocol(3, 1, 1, description="SplatFlow: multi-view _09.._11, last flow"),
        "things": ClipProtocol(3, 1, 1, description="SplatFlow: triplets, last flow"),
    },
    "streamflow": {
        "sintel": SequenceProtocol("StreamFlow: groups of T frames, stride T-1, end aligned"),
        "kitti": ClipProtocol(4, 2, 2, description="StreamFlow: multi-view _08.._11, last flow"),
        "things": SequenceProtocol("StreamFlow: groups of T frames"),
    },
}


def default_protocol(model_name: str, model: FlowModel, benchmark: str) -> Protocol:
    """The protocol of ``model`` (registered as ``model_name``) on ``benchmark``."""
    check_choice(benchmark, "benchmark", BENCHMARKS)
    for prefix in sorted(PROTOCOLS, key=len, reverse=True):
        if model_name.startswith(prefix):
            return PROTOCOLS[prefix][benchmark]
    window = int(getattr(model, "frames_per_window", 2))
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
