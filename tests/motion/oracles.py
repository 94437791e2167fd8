"""Test-only flow models that know the ground truth of the miniature data sets.

An oracle looks each frame pair up (by the frames' bytes) in a table built from what the
``tests.motion.fake_datasets`` writers returned, so the evaluator must route every prediction to the
right pair; ``offset`` adds a known error pattern for hand-computed metrics.
"""
from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np
import torch

from motion.models.base import FlowModel, FlowOutput
from motion.registry import register


def frame_key(frame: np.ndarray) -> str:
    """Key of a ``uint8 [H, W, 3]`` frame."""
    return hashlib.sha1(np.ascontiguousarray(frame, np.uint8).tobytes()).hexdigest()


def error_pattern(height: int, width: int) -> np.ndarray:
    """The known prediction error ``float32 [H, W, 2]``: (4, 0) px on a checkerboard, 0 elsewhere."""
    ys, xs = np.mgrid[0:height, 0:width]
    err = np.zeros((height, width, 2), np.float32)
    err[..., 0] = 4.0 * ((xs + ys) % 2)
    return err


class OracleFlow(FlowModel):
    """Returns the ground truth of every pair it knows (zeros otherwise), plus ``error_pattern`` if asked."""

    frames_per_window: ClassVar[int] = 2
    calls: ClassVar[list[int]] = []  # clip lengths of every call (shared, for tests to inspect)

    def __init__(self, table: dict[tuple[str, str], np.ndarray], with_error: bool = False) -> None:
        super().__init__()
        self.table = table
        self.with_error = with_error

    def forward(self, frames: torch.Tensor) -> FlowOutput:
        b, t, h, w = self.validate_frames(frames)
        type(self).calls.append(t)
        images = (frames * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
        out = np.zeros((b, t - 1, 2, h, w), np.float32)
        for i in range(b):
            for k in range(t - 1):
                flow = self.table.get((frame_key(images[i, k]), frame_key(images[i, k + 1])))
                if flow is None:
                    continue
                if self.with_error:
                    flow = flow + error_pattern(h, w)
                out[i, k] = flow.transpose(2, 0, 1)
        return FlowOutput(torch.from_numpy(out).to(frames.device))


class OracleFlow3(OracleFlow):
    """The same with 3-frame windows (exercises the multi-frame protocols)."""

    frames_per_window: ClassVar[int] = 3


def build_table(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[tuple[str, str], np.ndarray]:
    return {(frame_key(a), frame_key(b)): flow for a, b, flow in pairs}


@register("oracle-test", "test-only: ground truth from a table of frame pairs")
def build_oracle(weights: Any = None, table: Any = None, with_error: bool = False) -> OracleFlow:
    return OracleFlow(table or {}, with_error)


@register("oracle3-test", "test-only: ground truth from a table, 3-frame windows")
def build_oracle3(weights: Any = None, table: Any = None, with_error: bool = False) -> OracleFlow3:
    return OracleFlow3(table or {}, with_error)


def sintel_pairs(gt: dict, pass_name: str) -> list:
    out = []
    for scene, flows in gt["flow"].items():
        frames = gt["frames"]["training"][pass_name][scene]
        out += [(frames[i], frames[i + 1], flows[i]) for i in range(len(flows))]
    return out


def kitti_pairs(gt: dict) -> list:
    frames = gt["frames"]["training"]
    return [(frames[s][10], frames[s][11], gt["flow"][s]) for s in gt["flow"]]


def things_pairs(gt: dict, pass_name: str) -> list:
    out = []
    for name, frames in gt["frames"][pass_name].items():
        fut, past = gt["future"][name], gt["past"][name]
        for i in range(len(frames) - 1):
            out.append((frames[i], frames[i + 1], fut[i]))
            out.append((frames[i + 1], frames[i], past[i + 1]))
    return out
