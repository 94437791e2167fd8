"""Common machinery of the flow data-set readers: sample container, clip windows, index.

A data set is a list of *sequences* (a Sintel scene, a KITTI scene with its multi-view frames, a
FlyingThings3D sequence seen by one camera, one FlyingChairs pair, an HD1K sequence). Each sequence
is an ordered list of frames; pair ``i`` of a sequence is ``frames[i] -> frames[i + 1]`` and may
have ground truth. A *sample* is a clip of ``clip_length`` (T) frames around one *anchor* pair (a
pair with ground truth, or every pair of a split without ground truth); the anchor pair is flow
``target`` of the clip. Clips that reach past the ends of a sequence are handled by ``boundary``:

- ``"replicate"``: repeat the first / last frame (VideoFlow's evaluation repeats the first frame);
  pairs of a repeated frame with itself have no ground truth (``has_flow`` False).
- ``"shift"``: slide the window back inside the sequence, so the anchor moves away from position
  ``target`` (StreamFlow aligns its last window to the sequence end); still replicates when the
  sequence is shorter than T.
- ``"drop"``: skip anchors whose window does not fit.

Readers return :class:`FlowSample` objects holding numpy arrays, channels last like
:func:`motion.read_flow`; :meth:`FlowSample.to_tensors` and :func:`collate_flow_samples` convert to
the channels-first torch layout of the models (``frames [B, T, 3, H, W]`` float in [0, 1],
``flow [B, T-1, 2, H, W]``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import cv2
import numpy as np
import torch

from motion4d.checks import check_choice, check_int
from motion4d.errors import InputFileError, InvalidArgumentError, MissingFileError, ShapeError
from motion4d.imaging import frames_to_tensor

from ..flow_io import read_flow
from ..image_io import read_image

BOUNDARY_MODES = ("replicate", "shift", "drop")


class SampleIndexError(InvalidArgumentError, IndexError):
    """A sample index outside ``[-len(dataset), len(dataset))``."""


# --------------------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------------------


@dataclass
class FlowSample:
    """One clip of a flow data set (numpy, channels last).

    Attributes:
        frames: uint8 ``[T, H, W, 3]`` RGB.
        flow: float32 ``[T-1, H, W, 2]``; ``flow[t]`` is the forward flow ``frames[t] -> frames[t+1]``
            in pixels (u right, v down), 0 where there is no valid ground truth.
        valid: bool ``[T-1, H, W]``; all False for pairs without ground truth.
        has_flow: bool ``[T-1]``; the data set has ground truth for pair t.
        target: index in ``[0, T-1)`` of the pair this sample is anchored on (the pair to evaluate),
            or None for whole-sequence reads.
        dataset: data-set name, e.g. ``"sintel"``.
        sequence: sequence name inside the data set, e.g. ``"alley_1"``, ``"000042"``,
            ``"TRAIN/A/0000/left"``.
        frame_ids: the data set's frame numbers of the T frames (repeated at replicated boundaries).
        image_paths: the T image files.
        occlusion: bool ``[T-1, H, W]`` or None; True where a pixel of ``frames[t]`` is occluded or
            leaves the view in ``frames[t+1]`` (Sintel ``occlusions/``; KITTI: valid in
            ``flow_occ`` but not in ``flow_noc``). False for pairs without ground truth.
        flow_backward: float32 ``[T-1, H, W, 2]`` or None; ``frames[t+1] -> frames[t]``, anchored at
            ``frames[t+1]`` (FlyingThings3D ``into_past``).
        valid_backward: bool ``[T-1, H, W]`` or None.
        has_flow_backward: bool ``[T-1]`` or None.
        extras: further per-pair arrays ``[T-1, H, W]`` of one data set (Sintel: ``"invalid"``, its
            invalid-pixel maps, not folded into ``valid``).
    """

    frames: np.ndarray
    flow: np.ndarray
    valid: np.ndarray
    has_flow: np.ndarray
    target: int | None
    dataset: str
    sequence: str
    frame_ids: tuple[int, ...]
    image_paths: tuple[str, ...]
    occlusion: np.ndarray | None = None
    flow_backward: np.ndarray | None = None
    valid_backward: np.ndarray | None = None
    has_flow_backward: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def reversed(self) -> FlowSample:
        """The same clip played backwards: forward and backward ground truth swap roles.

        Needs backward ground truth (FlyingThings3D). The target pair becomes pair ``T-2-target``,
        i.e. the backward flow of the original target. Occlusion and extras are dropped (they
        describe the forward direction only).
        """
        if self.flow_backward is None or self.valid_backward is None or self.has_flow_backward is None:
            raise InvalidArgumentError(
                f"{self.dataset} sample {self.sequence}: cannot reverse a clip without backward ground truth"
            )
        last = self.num_frames - 2
        (flow, valid, has_flow), (flow_bw, valid_bw, has_bw) = reverse_pairs(
            (self.flow, self.valid, self.has_flow), (self.flow_backward, self.valid_backward, self.has_flow_backward)
        )
        return FlowSample(
            frames=self.frames[::-1].copy(),
            flow=flow,
            valid=valid,
            has_flow=has_flow,
            target=None if self.target is None else last - self.target,
            dataset=self.dataset,
            sequence=self.sequence,
            frame_ids=self.frame_ids[::-1],
            image_paths=self.image_paths[::-1],
            flow_backward=flow_bw,
            valid_backward=valid_bw,
            has_flow_backward=has_bw,
        )

    def to_tensors(self) -> dict[str, Any]:
        """Convert to torch, channels first.

        Returns:
            ``frames`` float32 ``[T, 3, H, W]`` in [0, 1], ``flow`` float32 ``[T-1, 2, H, W]``,
            ``valid`` bool ``[T-1, H, W]``, ``has_flow`` bool ``[T-1]``, ``target`` int64 scalar
            (-1 for None), the optional ``occlusion``, ``flow_backward``, ``valid_backward``,
            ``has_flow_backward`` and extras (as tensors) when present, and the metadata ``dataset``,
            ``sequence`` (str) and ``frame_ids`` int64 ``[T]``.
        """
        out: dict[str, Any] = {
            "frames": frames_to_tensor(self.frames),
            "flow": torch.from_numpy(np.ascontiguousarray(self.flow)).permute(0, 3, 1, 2).contiguous(),
            "valid": torch.from_numpy(np.ascontiguousarray(self.valid)),
            "has_flow": torch.from_numpy(np.ascontiguousarray(self.has_flow)),
            "target": torch.tensor(-1 if self.target is None else self.target, dtype=torch.int64),
            "frame_ids": torch.tensor(self.frame_ids, dtype=torch.int64),
            "dataset": self.dataset,
            "sequence": self.sequence,
        }
        if self.occlusion is not None:
            out["occlusion"] = torch.from_numpy(np.ascontiguousarray(self.occlusion))
        if self.flow_backward is not None:
            out["flow_backward"] = torch.from_numpy(np.ascontiguousarray(self.flow_backward)).permute(0, 3, 1, 2).contiguous()
        for name in ("valid_backward", "has_flow_backward"):
            value = getattr(self, name)
            if value is not None:
                out[name] = torch.from_numpy(np.ascontiguousarray(value))
        for name, value in self.extras.items():
            out[name] = torch.from_numpy(np.ascontiguousarray(value))
        return out


def reverse_pairs(forward: Sequence[Any], backward: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Per-pair ground truth of a clip played backwards: ``(new forward, new backward)``.

    Pair t of the reversed clip runs from original frame T-1-t to T-2-t, so its forward ground truth
    is the original backward pair T-2-t and its backward ground truth the original forward pair T-2-t.
    ``forward`` / ``backward`` hold matching per-pair arrays of each direction with the pairs on axis
    0 (e.g. flow ``[T-1, ...]``, valid ``[T-1, H, W]``, has_flow ``[T-1]``), numpy (copied) or torch.
    """
    def flip(array: Any) -> Any:
        return array.flip(0) if isinstance(array, torch.Tensor) else array[::-1].copy()

    return [flip(a) for a in backward], [flip(a) for a in forward]


def collate_flow_samples(samples: Sequence[FlowSample]) -> dict[str, Any]:
    """Batch samples for a ``torch.utils.data.DataLoader`` (``collate_fn=collate_flow_samples``).

    Tensors of :meth:`FlowSample.to_tensors` are stacked to ``[B, ...]`` (``frames [B, T, 3, H, W]``,
    ``flow [B, T-1, 2, H, W]``, ...); ``dataset`` and ``sequence`` become lists of str. Optional
    entries are kept only when every sample has them. All samples must share T, H and W (crop or
    resize first: KITTI scenes differ in size).
    """
    if len(samples) == 0:
        raise InvalidArgumentError("collate_flow_samples needs at least one sample")
    converted = [s.to_tensors() for s in samples]
    shapes = {tuple(c["frames"].shape) for c in converted}
    if len(shapes) > 1:
        raise ShapeError(
            f"cannot batch samples with different frame shapes {sorted(shapes)}: crop or resize them first"
        )
    keys = set.intersection(*(set(c) for c in converted))
    batch: dict[str, Any] = {}
    for key in converted[0]:
        if key not in keys:
            continue
        values = [c[key] for c in converted]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else list(values)
    return batch


# --------------------------------------------------------------------------------------------------
# Index records (what a reader found on disk)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairFiles:
    """Ground-truth files of one pair ``frames[i] -> frames[i + 1]`` (None = not available)."""

    flow: Path | None = None
    flow_backward: Path | None = None
    occlusion: Path | None = None
    flow_noc: Path | None = None
    invalid: Path | None = None


@dataclass(frozen=True)
class SequenceRecord:
    """One sequence: its frames in order and the ground truth of each consecutive pair."""

    name: str
    frame_ids: tuple[int, ...]
    images: tuple[Path, ...]
    pairs: tuple[PairFiles, ...]  # len(images) - 1 entries
    anchors: tuple[int, ...]  # pairs that samples are anchored on

    def __post_init__(self) -> None:
        if len(self.images) != len(self.frame_ids) or len(self.pairs) != max(len(self.images) - 1, 0):
            raise ValueError(f"inconsistent record for sequence {self.name}")


@dataclass(frozen=True)
class _SampleRef:
    sequence: int
    anchor: int
    backward: bool = False


# --------------------------------------------------------------------------------------------------
# Data-set base class
# --------------------------------------------------------------------------------------------------


class FlowDataset(torch.utils.data.Dataset):
    """Base class of the readers: index building, clip windows and sample reading.

    Subclasses set :attr:`name` and :attr:`layout` and implement :meth:`_scan`.

    Args:
        root: data-set root folder.
        clip_length: frames per sample (T >= 2).
        target: position of the anchor pair in the clip (0 <= target <= T-2); default ``(T-1)//2``
            (T=2: 0; T=3: 1, one previous frame as in VideoFlow-BOF; T=5: 2, frames t-2..t+2 as
            VideoFlow-MOF on KITTI).
        boundary: ``"replicate"``, ``"shift"`` or ``"drop"`` (see the module docstring).
        sequences: optional names of the sequences to keep (e.g. a train/val split by scene).
    """

    name: ClassVar[str] = "flow"
    layout: ClassVar[str] = ""

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        clip_length: int = 2,
        target: int | None = None,
        boundary: str = "replicate",
        sequences: Iterable[str] | None = None,
    ) -> None:
        super().__init__()
        check_int(clip_length, "clip_length", minimum=2)
        if target is None:
            target = (clip_length - 1) // 2
        check_int(target, f"target (for clip_length {clip_length})", minimum=0, maximum=clip_length - 2)
        check_choice(boundary, "boundary", BOUNDARY_MODES)
        self.root = Path(root)
        self.clip_length = clip_length
        self.target = target
        self.boundary = boundary
        if not self.root.is_dir():
            raise MissingFileError(f"{self.name}: root folder {self.root} does not exist; expected layout:\n{self.expected_layout}")
        records = self._scan()
        if sequences is not None:
            wanted = [sequences] if isinstance(sequences, str) else [str(s) for s in sequences]
            known = {r.name for r in records}
            unknown = [s for s in wanted if s not in known]
            if unknown:
                raise InvalidArgumentError(
                    f"{self.name}: unknown sequences {unknown[:5]} under {self.root} (found {len(known)}, "
                    f"e.g. {sorted(known)[:5]})"
                )
            keep = set(wanted)
            records = [r for r in records if r.name in keep]
        if not records:
            raise MissingFileError(f"{self.name}: found no sequences under {self.root}; expected layout:\n{self.expected_layout}")
        self._records: list[SequenceRecord] = records
        self._by_name = {r.name: i for i, r in enumerate(records)}
        self._index = self._build_index()
        if not self._index:
            raise InvalidArgumentError(
                f"{self.name}: no sample fits clip_length={clip_length}, target={target}, "
                f"boundary={boundary!r} under {self.root}"
            )

    # ---- subclass interface ---------------------------------------------------------------------

    def _scan(self) -> list[SequenceRecord]:
        """Find the sequences on disk (raise MissingFileError / InputFileError on a broken layout)."""
        raise NotImplementedError

    def _directions(self) -> tuple[bool, ...]:
        """Sample directions: False = forward clips; True = reversed clips (backward ground truth)."""
        return (False,)

    # ---- index ----------------------------------------------------------------------------------

    def _build_index(self) -> list[_SampleRef]:
        index = []
        for backward in self._directions():
            for s, record in enumerate(self._records):
                for anchor in record.anchors:
                    if self.boundary == "drop" and not self._fits(record, anchor, backward):
                        continue
                    index.append(_SampleRef(s, anchor, backward))
        return index

    def _fits(self, record: SequenceRecord, anchor: int, backward: bool) -> bool:
        start, _ = self._window_start(anchor, backward)
        return start >= 0 and start + self.clip_length <= len(record.images)

    def _window_start(self, anchor: int, backward: bool) -> tuple[int, int]:
        """First sequence position of the clip and the anchor's index in original frame order."""
        if backward:
            # The reversed clip must have the anchor at ``target``: in original order it sits at
            # T-2-target.
            in_order = self.clip_length - 2 - self.target
        else:
            in_order = self.target
        return anchor - in_order, in_order

    def _positions(self, record: SequenceRecord, anchor: int, backward: bool) -> tuple[list[int], int]:
        start, in_order = self._window_start(anchor, backward)
        n, length = len(record.images), self.clip_length
        if self.boundary == "shift":
            start = max(0, min(start, n - length))
        positions = [min(max(start + j, 0), n - 1) for j in range(length)]
        return positions, anchor - start

    # ---- public API -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> FlowSample:
        check_int(index, f"{self.name}: sample index")
        n = len(self._index)
        if not -n <= index < n:
            raise SampleIndexError(f"{self.name}: sample index {index} out of range for {n} samples")
        ref = self._index[int(index)]
        record = self._records[ref.sequence]
        positions, target = self._positions(record, ref.anchor, ref.backward)
        sample = self._read(record, positions, target)
        return sample.reversed() if ref.backward else sample

    def evaluated_pair(self, index: int) -> tuple[str, Any, Any]:
        """``(sequence, source frame id, target frame id)`` of sample ``index``'s evaluated pair,
        without reading any image (a reversed sample's pair runs from the later frame to the earlier)."""
        ref = self._index[int(index)]
        record = self._records[ref.sequence]
        a, b = record.frame_ids[ref.anchor], record.frame_ids[ref.anchor + 1]
        return (record.name, b, a) if ref.backward else (record.name, a, b)

    @property
    def sequences(self) -> list[str]:
        """Names of the sequences found (after the ``sequences`` filter), in reading order."""
        return [r.name for r in self._records]

    def sequence_record(self, sequence: str) -> SequenceRecord:
        """Files of one sequence (frames and per-pair ground truth)."""
        if sequence not in self._by_name:
            raise InvalidArgumentError(f"{self.name}: unknown sequence {sequence!r} (found e.g. {self.sequences[:5]})")
        return self._records[self._by_name[sequence]]

    def num_frames(self, sequence: str) -> int:
        return len(self.sequence_record(sequence).images)

    def read_clip(self, sequence: str, positions: Sequence[int], target: int | None = None) -> FlowSample:
        """Read frames at ``positions`` (indices into the sequence's frames) with the pairs' ground truth.

        A pair has ground truth only when its two positions are consecutive.
        """
        record = self.sequence_record(sequence)
        positions = [int(p) for p in positions]
        if len(positions) < 2:
            raise InvalidArgumentError(f"{self.name}: a clip needs at least 2 positions, got {positions}")
        bad = [p for p in positions if not 0 <= p < len(record.images)]
        if bad:
            raise InvalidArgumentError(
                f"{self.name}: positions {bad} outside [0, {len(record.images)}) for sequence {sequence}"
            )
        if target is not None and not 0 <= target <= len(positions) - 2:
            raise InvalidArgumentError(f"{self.name}: target {target} outside [0, {len(positions) - 2}]")
        return self._read(record, positions, target)

    def read_sequence(self, sequence: str) -> FlowSample:
        """All frames of a sequence with every pair's ground truth (``target`` None)."""
        return self._read(self.sequence_record(sequence), list(range(self.num_frames(sequence))), None)

    def summary(self) -> str:
        """What was found: sequences, frames, pairs with ground truth, samples and settings."""
        frames = sum(len(r.images) for r in self._records)
        with_gt = sum(p.flow is not None for r in self._records for p in r.pairs)
        return (
            f"{self._title()}: {len(self._records)} sequences, {frames} frames, {with_gt} pairs with "
            f"ground truth, {len(self)} samples (clip_length={self.clip_length}, target={self.target}, "
            f"boundary={self.boundary!r}) under {self.root}"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.summary()}>"

    def _title(self) -> str:
        return self.name

    @property
    def expected_layout(self) -> str:
        """:attr:`layout` with ``{root}`` replaced by this reader's root (for error messages)."""
        return self.layout.replace("{root}", str(self.root))

    # ---- reading --------------------------------------------------------------------------------

    def _read(self, record: SequenceRecord, positions: list[int], target: int | None) -> FlowSample:
        frames = np.stack(self._read_frames(record, positions))
        height, width = frames.shape[1:3]
        pairs = len(positions) - 1
        flow = np.zeros((pairs, height, width, 2), np.float32)
        valid = np.zeros((pairs, height, width), bool)
        has_flow = np.zeros(pairs, bool)
        occlusion = np.zeros((pairs, height, width), bool) if self._has_occlusion(record) else None
        backward = self._has_backward(record)
        flow_bw = np.zeros_like(flow) if backward else None
        valid_bw = np.zeros_like(valid) if backward else None
        has_bw = np.zeros(pairs, bool) if backward else None
        extras: dict[str, np.ndarray] = {}
        for t in range(pairs):
            if positions[t + 1] != positions[t] + 1:
                continue
            files = record.pairs[positions[t]]
            if files.flow is not None:
                flow[t], valid[t] = self._read_flow_checked(files.flow, (height, width))
                has_flow[t] = True
                if files.flow_noc is not None and occlusion is not None:
                    _, valid_noc = self._read_flow_checked(files.flow_noc, (height, width))
                    occlusion[t] = valid[t] & ~valid_noc
                if files.occlusion is not None and occlusion is not None:
                    occlusion[t] = _read_mask(files.occlusion, (height, width))
                if files.invalid is not None:
                    mask = extras.setdefault("invalid", np.zeros((pairs, height, width), bool))
                    mask[t] = _read_mask(files.invalid, (height, width))
            if files.flow_backward is not None and flow_bw is not None:
                flow_bw[t], valid_bw[t] = self._read_flow_checked(files.flow_backward, (height, width))
                has_bw[t] = True
        return FlowSample(
            frames=frames,
            flow=flow,
            valid=valid,
            has_flow=has_flow,
            target=target,
            dataset=self.name,
            sequence=record.name,
            frame_ids=tuple(record.frame_ids[p] for p in positions),
            image_paths=tuple(str(record.images[p]) for p in positions),
            occlusion=occlusion,
            flow_backward=flow_bw,
            valid_backward=valid_bw,
            has_flow_backward=has_bw,
            extras=extras,
        )

    def _read_frames(self, record: SequenceRecord, positions: list[int]) -> list[np.ndarray]:
        cache: dict[int, np.ndarray] = {}
        for p in positions:
            if p not in cache:
                cache[p] = read_image(record.images[p])
        shapes = {cache[p].shape for p in positions}
        if len(shapes) > 1:
            raise InputFileError(
                f"{self.name}: frames of sequence {record.name} differ in size {sorted(shapes)}: "
                f"{[str(record.images[p]) for p in positions]}"
            )
        return [cache[p] for p in positions]

    @staticmethod
    def _read_flow_checked(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        flow, valid = read_flow(path)
        if flow.shape[:2] != size:
            raise InputFileError(f"{path}: flow is {flow.shape[0]}x{flow.shape[1]} but the frames are {size[0]}x{size[1]}")
        return flow, valid

    def _has_occlusion(self, record: SequenceRecord) -> bool:
        return any(p.occlusion is not None or p.flow_noc is not None for p in record.pairs)

    def _has_backward(self, record: SequenceRecord) -> bool:
        return any(p.flow_backward is not None for p in record.pairs)


def _read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Binary mask image -> bool ``[H, W]`` (non-zero = True)."""
    if not path.is_file():
        raise MissingFileError(f"mask {path} does not exist")
    data = np.fromfile(path, dtype=np.uint8)
    mask = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if mask is None:
        raise InputFileError(f"{path}: not a readable mask image")
    if mask.shape != size:
        raise InputFileError(f"{path}: mask is {mask.shape[0]}x{mask.shape[1]} but the frames are {size[0]}x{size[1]}")
    return mask != 0


# --------------------------------------------------------------------------------------------------
# Scanning helpers shared by the readers
# --------------------------------------------------------------------------------------------------


def require_dir(path: Path, dataset: str, layout: str) -> Path:
    """Raise MissingFileError (with the expected layout) unless ``path`` is a folder."""
    if not path.is_dir():
        raise MissingFileError(f"{dataset}: expected folder {path} does not exist; expected layout:\n{layout}")
    return path


def require_files(paths: Iterable[Path], dataset: str, what: str, layout: str) -> None:
    """Raise MissingFileError naming the first missing file (and how many) of ``paths``."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MissingFileError(
            f"{dataset}: {len(missing)} {what} file(s) missing, e.g. {missing[0]}; expected layout:\n{layout}"
        )


def consecutive(frame_ids: Sequence[int], where: str) -> None:
    """Raise InputFileError unless frame numbers increase by exactly one."""
    gaps = [(a, b) for a, b in zip(frame_ids, frame_ids[1:]) if b != a + 1]
    if gaps:
        raise InputFileError(f"{where}: frame numbers are not consecutive (gap between {gaps[0][0]} and {gaps[0][1]})")


def numbered_files(folder: Path, pattern: str) -> list[tuple[int, Path]]:
    """Files of ``folder`` whose name fully matches regex ``pattern`` (one group: the frame number),
    sorted by that number."""
    regex = re.compile(pattern)
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            match = regex.fullmatch(entry.name)
            if match and entry.is_file():
                found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)

