"""Benchmark submission trees (behind ``motion4d submit``).

* MPI-Sintel test: ``OUT/{clean,final}/<scene>/frame_NNNN.flo``, one Middlebury ``.flo`` per pair
  ``frame_NNNN -> frame_NNNN+1`` of each of the 12 test scenes (552 per pass), which is what the
  official ``bundler`` tool packs.
* KITTI 2015 test: ``OUT/flow/000000_10.png`` ... ``000199_10.png``, 16-bit PNGs (u, v at 1/64 px,
  valid = 1 everywhere), zipped as is for the server.

Flows come from the model's official protocol (:mod:`motion.protocols`); finished files are kept
on a rerun (every file is written atomically), and the tree is checked at the end: every expected
file present, readable in its format, of the frame size, finite (:func:`verify_submission`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from motion.models.base import FlowModel
from motion.protocols import ClipProtocol, parse_protocol
from motion4d.checks import check_choice
from motion4d.errors import InputFileError
from motion4d.imaging import frames_to_tensor

KITTI_MAX_FLOW = 512.0 - 1.0 / 64  # the 16-bit PNG encoding's range


@dataclass
class SubmissionReport:
    out_dir: Path
    files: int
    computed: int
    skipped: int
    clipped_pixels: int


def sintel_flow_path(out_dir: Path, pass_name: str, scene: str, frame_id: int) -> Path:
    """``OUT/<pass>/<scene>/frame_NNNN.flo`` for the pair ``frame_NNNN -> frame_NNNN+1``."""
    return out_dir / pass_name / scene / f"frame_{frame_id:04d}.flo"


def kitti_flow_path(out_dir: Path, scene: str) -> Path:
    """``OUT/flow/<scene>_10.png``."""
    return out_dir / "flow" / f"{scene}_10.png"


def _open_test_set(dataset: str, root: str | os.PathLike, pass_name: str | None, protocol, multiview_root: str | None):
    from motion.data import Kitti2015, MpiSintel

    clip = ({"clip_length": protocol.clip_length, "target": protocol.target, "boundary": protocol.boundary}
            if isinstance(protocol, ClipProtocol) else {"clip_length": 2, "target": 0})
    if dataset == "sintel":
        return MpiSintel(root, "test", pass_name, **clip)
    return Kitti2015(root, "testing", multiview_root=multiview_root, **clip)


def check_test_set(dataset: str, root: str | os.PathLike, passes: Sequence[str] = ("clean", "final"),
                   multiview_root: str | None = None) -> None:
    """Raise (MissingFileError with the expected layout, ...) unless ``root`` holds the test set of ``dataset``.

    Cheap (the readers index file names only): call it before building a model whose weights may
    have to be downloaded.
    """
    from motion.protocols import PAIRS

    check_choice(dataset, "dataset", ("sintel", "kitti"))
    for pass_name in (passes if dataset == "sintel" else [None]):
        _open_test_set(dataset, root, pass_name, PAIRS, multiview_root)


def _write(path: Path, flow: torch.Tensor, dataset: str) -> int:
    """Write ``flow [2, H, W]``; returns the number of KITTI pixels clipped to the PNG range."""
    from motion.flow_io import write_flow

    flow = flow.detach().float().cpu()
    clipped = 0
    if dataset == "kitti":
        clipped = int((flow.abs() > KITTI_MAX_FLOW).any(0).sum())
        flow = flow.clamp(-KITTI_MAX_FLOW, KITTI_MAX_FLOW)
    write_flow(path, flow)
    return clipped


def write_submission(
    model: FlowModel,
    model_name: str,
    dataset: str,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    passes: Sequence[str] = ("clean", "final"),
    protocol: str = "auto",
    device: torch.device | str = "cpu",
    multiview_root: str | None = None,
    progress: bool = True,
) -> SubmissionReport:
    """Predict every test pair of ``dataset`` and write the official tree under ``out_dir``."""
    from tqdm.auto import tqdm

    from motion4d.device import resolve_device

    check_choice(dataset, "dataset", ("sintel", "kitti"))
    device = resolve_device(device)
    out = Path(out_dir)
    computed = skipped = clipped = files = 0
    for pass_name in (passes if dataset == "sintel" else [None]):
        chosen = parse_protocol(protocol, model_name, model, dataset)
        ds = _open_test_set(dataset, root, pass_name, chosen, multiview_root)

        def target_path(scene: str, frame_id: int) -> Path:
            return sintel_flow_path(out, pass_name, scene, frame_id) if dataset == "sintel" else kitti_flow_path(out, scene)

        desc = f"submit {dataset}{'' if pass_name is None else '-' + pass_name} ({model_name})"
        with torch.no_grad():
            if isinstance(chosen, ClipProtocol):
                bar = tqdm(range(len(ds)), desc=desc, unit="pair", disable=not progress)
                for index in bar:
                    sample = ds[index]
                    path = target_path(sample.sequence, sample.frame_ids[sample.target])
                    files += 1
                    if path.is_file():
                        skipped += 1
                        continue
                    flow = chosen.predict(model, frames_to_tensor(sample.frames, device=device)[None])[0]
                    clipped += _write(path, flow, dataset)
                    computed += 1
            else:
                bar = tqdm(ds.sequences, desc=desc, unit="sequence", disable=not progress)
                for scene in bar:
                    ids = ds.sequence_record(scene).frame_ids
                    paths = [target_path(scene, i) for i in ids[:-1]]
                    files += len(paths)
                    if all(p.is_file() for p in paths):
                        skipped += len(paths)
                        continue
                    flows = chosen.predict_sequence(model, ds.read_sequence(scene).frames, device)
                    for path, flow in zip(paths, flows):
                        clipped += _write(path, flow, dataset)
                    computed += len(paths)
    verify_submission(out, dataset, root, passes=passes, multiview_root=multiview_root)
    return SubmissionReport(out, files, computed, skipped, clipped)


def expected_files(dataset: str, root: str | os.PathLike, out_dir: str | os.PathLike,
                   passes: Sequence[str] = ("clean", "final"), multiview_root: str | None = None) -> dict[Path, tuple[int, int]]:
    """Every file the submission must hold -> the ``(H, W)`` of its frames."""
    from motion.data import Kitti2015, MpiSintel
    from motion.image_io import read_image

    out = Path(out_dir)
    expected: dict[Path, tuple[int, int]] = {}
    if dataset == "sintel":
        for pass_name in passes:
            ds = MpiSintel(root, "test", pass_name)
            for scene in ds.sequences:
                record = ds.sequence_record(scene)
                size = read_image(record.images[0]).shape[:2]
                for frame_id in record.frame_ids[:-1]:
                    expected[sintel_flow_path(out, pass_name, scene, frame_id)] = size
    else:
        ds = Kitti2015(root, "testing", multiview_root=multiview_root)
        for scene in ds.sequences:
            record = ds.sequence_record(scene)
            source = record.images[record.frame_ids.index(10)]
            expected[kitti_flow_path(out, scene)] = read_image(source).shape[:2]
    return expected


def verify_submission(out_dir: str | os.PathLike, dataset: str, root: str | os.PathLike,
                      passes: Sequence[str] = ("clean", "final"), multiview_root: str | None = None) -> int:
    """Check the tree against the official layout; returns the number of files, raises InputFileError."""
    from motion.flow_io import read_flow

    out = Path(out_dir)
    expected = expected_files(dataset, root, out, passes, multiview_root)
    missing = [p for p in expected if not p.is_file()]
    if missing:
        raise InputFileError(f"submission {out}: {len(missing)} of {len(expected)} files missing, e.g. {missing[0]}")
    pattern = "*/*/*.flo" if dataset == "sintel" else "flow/*.png"
    unexpected = sorted(set(out.glob(pattern)) - set(expected))
    if unexpected:
        raise InputFileError(f"submission {out}: {len(unexpected)} unexpected files, e.g. {unexpected[0]}")
    for path, size in expected.items():
        flow, valid = read_flow(path)
        if flow.shape[:2] != tuple(size):
            raise InputFileError(f"{path}: flow is {flow.shape[0]}x{flow.shape[1]}, the frames are {size[0]}x{size[1]}")
        if not valid.all() or not np.isfinite(flow).all():
            raise InputFileError(f"{path}: {int((~valid).sum())} pixels without a valid flow value")
    return len(expected)


__all__ = ["SubmissionReport", "check_test_set", "expected_files", "kitti_flow_path", "sintel_flow_path", "verify_submission",
           "write_submission"]
