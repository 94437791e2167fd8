"""Optical flow over whole videos: a streaming pipeline, resumable outputs, occlusion and confidence.

::

    result = motion.estimate_flow("clip.mp4", model="dis")                 # flows in memory
    result.forward                                                          # float32 [T-1, 2, H, W]
    result = motion.estimate_flow("long.mp4", model="dis", out_dir="out", formats=("flo", "occ", "conf"))
    result.forward[10]                                                      # read back from out/forward/
    for pair in motion.iter_flow("long.mp4", model="dis"):                  # one pair at a time
        ...

The pipeline (:mod:`motion.pipeline`) overlaps its stages, so a video runs at the speed of its
slowest stage and memory holds a few frames and flows however long the video is:

* decode: a thread reads and converts frames ahead of the model;
* flow: the classical OpenCV methods (``dis*``, ``farneback``) run on the decoder's uint8 frames
  (grey by :func:`~motion.models.opencv_flow.grey_image`, no float tensors, no torch), one frame
  pair per task, spread over ``workers`` threads (default: one per available core); networks and
  every other :class:`~motion.models.base.FlowModel` run through their
  :meth:`~motion.models.base.FlowModel.stream` (windows of ``batch + 1`` frames that overlap by one
  frame; models with their own windows override it) on frames made into tensors by the decode thread;
* write: a thread writes each pair's files, in order.

Backward flow, when requested and not produced by the model, comes from the model on the
time-reversed frames. Occlusion and confidence (``occlusion=True``, or the formats ``"occ"`` /
``"conf"``) come from the forward-backward check of every pixel
(:func:`motion.flow_geometry.forward_backward_occlusion`; the backward flow is computed for it).

Outputs (``out_dir``): per pair, named by the source index of its first frame,
``forward/000012.flo`` (``"flo"``), ``forward/000012.png`` (``"png"``, KITTI 16-bit),
``forward/000012.npz`` (``"npz"``), ``forward_color/000012.png`` (``"color"``),
``forward_occlusion/000012.png`` (``"occ"``: 255 where the pixel of frame 12 is occluded in frame 13,
0 elsewhere), ``forward_confidence/000012.npy`` (``"conf"``: float32 ``[H, W]`` in [0, 1]), the same
under ``backward*/`` with ``backward=True``, plus ``forward_color.mp4`` (``"mp4"``). Every file is
written atomically. A re-run skips pairs whose files all exist (without computing them), so an
interrupted run resumes where it stopped, with the same files as an uninterrupted run;
``flow_config.json`` records the resolved configuration and a re-run with a different configuration
is refused unless ``overwrite=True``. The MP4 is re-encoded on every run (finished pairs are read
back from their per-pair files), so it resumes only together with ``"flo"``, ``"png"`` or ``"npz"``.

Results: without ``out_dir`` they are held in memory (``result.forward`` a tensor), up to the
in-memory limit of :mod:`motion4d.limits` (1 GiB per array by default, ``MOTION4D_MAX_ARRAY_BYTES``):
a longer video is refused before any work, with the two ways that stream instead. With ``out_dir``
they stay on disk and ``result.forward`` (``.backward``, ``.occlusion``, ``.confidence``) is a
:class:`~motion.flow_store.StoredStack` that reads a pair when it is indexed (``.flo`` memory-mapped).
:func:`iter_flow` is the generator underneath: one :class:`FlowPair` at a time.
"""
from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from motion4d.checks import check_choice, check_int
from motion4d.errors import InputFileError, InputTooLargeError, InvalidArgumentError, ShapeError
from motion4d.lazy_torch import is_tensor
from motion4d.limits import MAX_ARRAY_BYTES_ENV, human_bytes, max_array_bytes
from motion4d.outputs import OutputFolder, source_identity

from .flow_store import StoredStack, in_memory_bytes
from .frames import Frame, open_video, same_size_frames
from .models.opencv_flow import OpenCVEngine, grey_image, opencv_engine, opencv_threads
from .pipeline import BackgroundWriter, StageClock, closing_iterator, ordered_map, prefetch, resolve_workers

if TYPE_CHECKING:
    import torch

    from .models.base import FlowModel

FORMATS = ("flo", "png", "npz", "color", "mp4", "occ", "conf")
FLOW_FORMATS = ("flo", "png", "npz")
_EXTENSIONS = {"flo": ".flo", "png": ".png", "npz": ".npz"}
CONFIG_NAME = "flow_config.json"
# configuration keys that change the flow values: a resume with other values would mix results
_RESULT_KEYS = ("source_identity", "model", "model_options", "start", "stop", "stride", "max_frames", "resize",
                "source_size")
_CPU_DEVICES = (None, "auto", "cpu")


@dataclass
class FlowResult:
    """What :func:`estimate_flow` returns.

    Attributes:
        forward: ``float32 [P, 2, H, W]`` flows ``t -> t+1`` for the ``P`` consecutive pairs: a CPU tensor
            when held in memory, a :class:`~motion.flow_store.StoredStack` reading the files of
            ``out_dir`` (indexing gives tensors), or None when no flow file was written.
        backward: ``float32 [P, 2, H, W]`` flows ``t+1 -> t`` (anchored at ``t+1``), or None.
        occlusion: ``bool [P, H, W]`` pixels of frame ``t`` occluded in (or leaving) frame ``t+1``, or None.
        confidence: ``float32 [P, H, W]`` in [0, 1], the forward-backward confidence of each forward flow, or None.
        backward_occlusion, backward_confidence: the same for the backward flows (anchored at ``t+1``), or None.
        frame_indices: ``int64 [P+1]`` source index of every frame used.
        times: ``float64 [P+1]`` their timestamps in seconds.
        image_size: ``(H, W)``.
        out_dir: the output folder, or None.
        computed: pairs computed by the model in this run; ``skipped``: pairs found finished on disk.
        config: the resolved configuration (also written to ``out_dir/flow_config.json``).
        stages: per pipeline stage (``"decode"``, ``"flow"``, ``"write"``): ``items``, busy ``seconds`` and
            ``per_second`` (see :class:`motion.pipeline.StageClock`).
    """

    forward: Any
    backward: Any
    frame_indices: np.ndarray
    times: np.ndarray
    image_size: tuple[int, int]
    out_dir: Path | None = None
    computed: int = 0
    skipped: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    occlusion: Any = None
    confidence: Any = None
    backward_occlusion: Any = None
    backward_confidence: Any = None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def num_pairs(self) -> int:
        return max(0, len(self.frame_indices) - 1)


@dataclass
class FlowPair:
    """One consecutive frame pair and its flows, as yielded by :func:`iter_flow`.

    Attributes:
        source, target: the two :class:`~motion.frames.Frame` objects (``.index``, ``.time``, ``.image``).
        forward: ``[2, H, W]`` flow source -> target (on the model's device), or None when ``skip`` said
            the pair is already done and the model was not run for it.
        backward: ``[2, H, W]`` flow target -> source (anchored at target), or None.
        occlusion: ``bool [H, W]`` source pixels occluded in the target, or None (see ``occlusion=True``).
        confidence: ``float32 [H, W]`` forward-backward confidence of ``forward``, or None.
        backward_occlusion, backward_confidence: the same for ``backward`` (on the target frame), or None.
    """

    source: Frame
    target: Frame
    forward: Any
    backward: Any
    occlusion: Any = None
    confidence: Any = None
    backward_occlusion: Any = None
    backward_confidence: Any = None


_PAIR_FIELDS = ("forward", "backward", "occlusion", "confidence", "backward_occlusion", "backward_confidence")


# --------------------------------------------------------------------------------------------
# array layouts: the OpenCV path gives numpy [H, W, 2] flows, models give tensors [2, H, W]


def _flow_hw2(flow: Any) -> np.ndarray:
    """A flow as ``float32 [H, W, 2]`` numpy (from a numpy ``[H, W, 2]`` or a tensor ``[2, H, W]``)."""
    if is_tensor(flow):
        return flow.detach().float().cpu().permute(1, 2, 0).numpy()
    return flow


def _flow_chw(flow: Any) -> np.ndarray:
    """A flow as ``float32 [2, H, W]`` numpy."""
    if is_tensor(flow):
        return flow.detach().float().cpu().numpy()
    return flow.transpose(2, 0, 1)


def _map_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if is_tensor(x) else x


def _as_torch(name: str, x: Any) -> Any:
    """A pair field in the public layout: flows ``[2, H, W]`` tensors, maps ``[H, W]`` tensors."""
    if x is None or is_tensor(x):
        return x
    import torch

    return torch.from_numpy(x.transpose(2, 0, 1) if name in ("forward", "backward") else x)


# --------------------------------------------------------------------------------------------
# outputs


class _Outputs:
    """Paths, resume bookkeeping and writers of one output folder (written from the writer thread)."""

    def __init__(self, out_dir: Path, formats: Sequence[str], backward: bool, color_max_radius: float | None, fps: float):
        self.out_dir = out_dir
        self.formats = tuple(formats)
        self.directions = ("forward", "backward") if backward else ("forward",)
        self.color_max_radius = color_max_radius
        self.fps = fps
        self._writers: dict[str, Any] = {}

    def flow_path(self, index: int, direction: str, fmt: str) -> Path:
        return self.out_dir / direction / f"{index:06d}{_EXTENSIONS[fmt]}"

    def occlusion_path(self, index: int, direction: str) -> Path:
        return self.out_dir / f"{direction}_occlusion" / f"{index:06d}.png"

    def confidence_path(self, index: int, direction: str) -> Path:
        return self.out_dir / f"{direction}_confidence" / f"{index:06d}.npy"

    def pair_files(self, index: int) -> list[Path]:
        files = []
        for direction in self.directions:
            for fmt in self.formats:
                if fmt in _EXTENSIONS:
                    files.append(self.flow_path(index, direction, fmt))
                elif fmt == "color":
                    files.append(self.out_dir / f"{direction}_color" / f"{index:06d}.png")
                elif fmt == "occ":
                    files.append(self.occlusion_path(index, direction))
                elif fmt == "conf":
                    files.append(self.confidence_path(index, direction))
        return files

    def video_files(self) -> list[Path]:
        return [self.out_dir / f"{d}_color.mp4" for d in self.directions] if "mp4" in self.formats else []

    def is_done(self, index: int) -> bool:
        files = self.pair_files(index)
        return bool(files) and all(f.exists() for f in files)

    @property
    def stored_flow_format(self) -> str | None:
        """The most precise flow file written (read back for resumes and lazy results), or None."""
        return next((fmt for fmt in ("npz", "flo", "png") if fmt in self.formats), None)

    def read_back(self, index: int, direction: str) -> np.ndarray:
        """A finished pair's flow ``float32 [H, W, 2]`` from the most precise file written."""
        from .flow_io import read_flow

        fmt = self.stored_flow_format
        if fmt is None:
            raise InvalidArgumentError("finished pairs can be read back only when 'flo', 'png' or 'npz' is among the formats")
        flow, _ = read_flow(self.flow_path(index, direction, fmt))
        return flow

    def read_back_maps(self, index: int, direction: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """A finished pair's ``(occlusion, confidence)`` (both formats were written)."""
        occlusion = StoredStack([self.occlusion_path(index, direction)], size, "mask").read(0)
        confidence = StoredStack([self.confidence_path(index, direction)], size, "map").read(0)
        return occlusion, confidence

    def can_resume(self, keep: bool, occlusion: bool) -> bool:
        """Whether finished pairs can be skipped: everything a skipped pair must give back is on disk
        (its flow for the MP4 and in-memory results, its maps for in-memory occlusion results)."""
        if ("mp4" in self.formats or keep) and self.stored_flow_format is None:
            return False
        return not (keep and occlusion and not {"occ", "conf"} <= set(self.formats))

    def colour(self, flow: np.ndarray) -> np.ndarray:
        from .visualize import flow_to_color

        if self.color_max_radius is None:  # fixed from the first pair on, so the video does not flicker
            self.color_max_radius = max(float(np.sqrt((flow.astype(np.float64) ** 2).sum(-1)).max()), 1.0)
        return flow_to_color(flow, max_radius=self.color_max_radius, channels_last=True)

    def write_pair(self, index: int, results: dict[str, Any], computed: bool) -> None:
        """Write one pair's files (``computed``) and its MP4 frames; runs on the writer thread, in order.

        ``results`` holds the pair's fields (``forward``, ``occlusion``, ...), not its frames, so the
        frames are released while the pair waits to be written."""
        from .flow_io import write_flow

        for direction in self.directions:
            flow = results[direction]
            if flow is None:
                continue
            flow = _flow_hw2(flow)
            if computed:
                for fmt in self.formats:
                    if fmt in _EXTENSIONS:
                        write_flow(self.flow_path(index, direction, fmt), flow)
                self._write_maps(results, index, direction)
            self._write_colour(index, direction, flow, computed)

    def _write_maps(self, results: dict[str, Any], index: int, direction: str) -> None:
        from motion4d.atomic import atomic_path

        from .image_io import write_image

        prefix = "" if direction == "forward" else "backward_"
        if "occ" in self.formats:
            occluded = _map_numpy(results[f"{prefix}occlusion"])
            write_image(self.occlusion_path(index, direction), occluded.astype(np.uint8) * np.uint8(255))
        if "conf" in self.formats:
            confidence = np.ascontiguousarray(_map_numpy(results[f"{prefix}confidence"]), dtype=np.float32)
            with atomic_path(self.confidence_path(index, direction)) as tmp:
                np.save(tmp, confidence, allow_pickle=False)

    def _write_colour(self, index: int, direction: str, flow: np.ndarray, computed: bool) -> None:
        from .image_io import write_image

        needs_colour = (computed and "color" in self.formats) or "mp4" in self.formats
        if not needs_colour:
            return
        image = self.colour(flow)
        if computed and "color" in self.formats:
            write_image(self.out_dir / f"{direction}_color" / f"{index:06d}.png", image)
        if "mp4" in self.formats:
            from .visualize import with_legend

            image = with_legend(image, self.color_max_radius)
            if direction not in self._writers:
                from .video_writer import VideoWriter

                self._writers[direction] = VideoWriter(self.out_dir / f"{direction}_color.mp4", fps=self.fps).__enter__()
            self._writers[direction].write(image)

    def stored(self, indices: Sequence[int], size: tuple[int, int]) -> dict[str, StoredStack | None]:
        """The lazily read results of the pairs ``indices`` (by field of :class:`FlowResult`)."""
        fmt = self.stored_flow_format
        out: dict[str, StoredStack | None] = {name: None for name in _PAIR_FIELDS}
        for direction in self.directions:
            prefix = "" if direction == "forward" else "backward_"
            if fmt is not None:
                out[direction] = StoredStack([self.flow_path(i, direction, fmt) for i in indices], size, "flow")
            if "occ" in self.formats:
                out[f"{prefix}occlusion"] = StoredStack([self.occlusion_path(i, direction) for i in indices], size, "mask")
            if "conf" in self.formats:
                out[f"{prefix}confidence"] = StoredStack([self.confidence_path(i, direction) for i in indices], size, "map")
        return out

    def close(self, error: BaseException | None) -> None:
        for writer in self._writers.values():
            if error is None:
                writer.__exit__(None, None, None)
            else:
                writer.__exit__(type(error), error, error.__traceback__)
        self._writers.clear()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


# --------------------------------------------------------------------------------------------
# results held in memory


class _InMemory:
    """Pair results gathered into ``[P, ...]`` arrays, refused up front (or on the way) above the limit."""

    def __init__(self, expected_pairs: int | None, size: tuple[int, int], fields: Sequence[str]):
        self.size = size
        self.fields = tuple(fields)
        self.count = 0
        self.limit = max_array_bytes()
        self.capacity = expected_pairs or 0
        if expected_pairs is not None:
            self._check(expected_pairs)
        self.arrays: dict[str, np.ndarray] = {name: self._empty(name, self.capacity) for name in self.fields}

    def _check(self, pairs: int) -> None:
        need = in_memory_bytes(pairs, self.size)
        if need > self.limit:
            h, w = self.size
            raise InputTooLargeError(
                f"the flows of {pairs} frame pairs of {w}x{h} take {human_bytes(need)} per direction, more than an "
                f"in-memory result may hold ({human_bytes(self.limit)}, {MAX_ARRAY_BYTES_ENV}); pass out_dir=... "
                "to write them to disk (result.forward then reads them back lazily), or iterate with "
                "motion.iter_flow(...) (one pair at a time)")

    def _empty(self, name: str, pairs: int) -> np.ndarray:
        h, w = self.size
        if name in ("forward", "backward"):
            return np.empty((pairs, 2, h, w), np.float32)
        return np.empty((pairs, h, w), bool if name.endswith("occlusion") else np.float32)

    def add(self, pair: FlowPair) -> None:
        if self.count == self.capacity:  # more pairs than the container declared: grow
            self._check(self.count + 1)
            affordable = max(self.count + 1, self.limit // max(in_memory_bytes(1, self.size), 1))
            grown = min(max(8, self.capacity * 3 // 2), affordable)  # growth never passes the limit
            for name in self.fields:
                extended = self._empty(name, grown)
                extended[: self.count] = self.arrays[name][: self.count]
                self.arrays[name] = extended
            self.capacity = grown
        for name in self.fields:
            value = getattr(pair, name)
            self.arrays[name][self.count] = _flow_chw(value) if name in ("forward", "backward") else _map_numpy(value)
        self.count += 1

    def tensors(self) -> dict[str, Any]:
        import torch

        return {name: torch.from_numpy(self.arrays[name][: self.count]) for name in self.fields}


# --------------------------------------------------------------------------------------------
# the pipeline


def _check_cpu_device(device: Any) -> None:
    """Classical methods run on the CPU: a device named explicitly is still checked against this machine."""
    if device not in _CPU_DEVICES:
        from motion4d.device import resolve_device

        resolve_device(device)


def _resolve_model(model: Any, device: Any, model_options: dict[str, Any]) -> tuple[OpenCVEngine | None, Any, str, str]:
    """``(engine, flow_model, name, device)``: an OpenCV engine for the classical methods (no torch), else a FlowModel."""
    if isinstance(model, str):
        engine = opencv_engine(model, model_options)
        if engine is not None:
            _check_cpu_device(device)
            return engine, None, model, "cpu"
        from motion4d.device import resolve_device

        from .registry import create

        resolved = resolve_device(device)
        return None, create(model, device=resolved, **model_options), model, str(resolved)
    if is_tensor(model) or not hasattr(model, "stream"):
        raise InvalidArgumentError(f"model must be a registered name or a FlowModel, got {type(model).__name__}")
    from motion4d.device import resolve_device

    from .models.base import FlowModel

    if not isinstance(model, FlowModel):
        raise InvalidArgumentError(f"model must be a registered name or a FlowModel, got {type(model).__name__}")
    if model_options:
        raise InvalidArgumentError("model_options apply only when model is given by name")
    name = getattr(model, "registry_name", None) or type(model).__name__
    engine = getattr(model, "engine", None)
    if isinstance(engine, OpenCVEngine):  # a classical model object: its engine runs on the uint8 frames
        _check_cpu_device(device)
        return engine, None, name, "cpu"
    resolved = resolve_device(device)
    return None, model.to(resolved).eval(), name, str(resolved)


def _open_checked(source: Any, **selection: Any):
    """Open the source and refuse selections with fewer than 2 frames (when the length is known)."""
    video = open_video(source, **selection)
    name = str(video.path) if video.path is not None else "the frame array"
    if video.num_frames is not None and video.num_frames < 2:
        error = InputFileError if video.path is not None else ShapeError
        raise error(f"{name} gives {video.num_frames} frame(s) in the selected range; flow needs at least 2")
    return video, name


def _too_short(video: Any, name: str) -> Exception:
    error = InputFileError if video.path is not None else ShapeError
    return error(f"{name} gives fewer than 2 frames in the selected range; flow needs at least 2")


def _workers_for(engine: OpenCVEngine | None, workers: Any, model_name: str) -> int:
    """Threads computing pairs: spread over the cores for OpenCV methods, one stream for the others."""
    resolved = resolve_workers(workers, parallel=engine is not None)
    if engine is None and resolved != 1:
        raise InvalidArgumentError(f"workers must be 1 or 'auto' for {model_name}: a network runs one stream of "
                                   "frames (pairs are spread over threads for the classical OpenCV methods)")
    return resolved


def _dense_check(forward: np.ndarray, backward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Occlusion and confidence of ``forward [H, W, 2]`` given ``backward [H, W, 2]`` (numpy in and out)."""
    import torch

    from .flow_geometry import forward_backward_occlusion

    occluded, confidence = forward_backward_occlusion(torch.from_numpy(forward).permute(2, 0, 1),
                                                      torch.from_numpy(backward).permute(2, 0, 1))
    return occluded.numpy(), confidence.numpy()


def _opencv_pairs(engine: OpenCVEngine, frames: Iterator[Frame], *, backward: bool, occlusion: bool,
                  skip: Callable[[int], bool] | None, workers: int, clock: StageClock) -> Iterator[FlowPair]:
    """Pairs of an OpenCV engine on the decoder's uint8 frames: decode and grey conversion on a thread,
    one pair per task on ``workers`` threads (each with its own engine), results in order."""
    local = threading.local()
    both = backward or occlusion

    def decoded() -> Iterator[tuple[Frame, np.ndarray]]:
        for frame in frames:
            yield frame, grey_image(frame.image)

    def consecutive() -> Iterator[tuple[tuple[Frame, np.ndarray], tuple[Frame, np.ndarray], bool]]:
        previous = None
        with closing_iterator(prefetch(decoded(), depth=workers + 2, name="decode", clock=clock)) as items:
            for item in items:
                if previous is not None:
                    # skip runs here, on the consuming thread, never concurrently
                    yield previous, item, skip is not None and skip(previous[0].index)
                previous = item

    def compute(pair: tuple[tuple[Frame, np.ndarray], tuple[Frame, np.ndarray], bool]) -> FlowPair:
        (source, grey0), (target, grey1), done = pair
        if done:
            return FlowPair(source, target, None, None)
        mine = getattr(local, "engine", None)
        if mine is None:
            mine = local.engine = engine.copy()
        with clock.timing("flow"):
            fwd = mine.flow(grey0, grey1)
            bwd = mine.flow(grey1, grey0) if both else None
            result = FlowPair(source, target, fwd, bwd if backward else None)
            if occlusion:
                result.occlusion, result.confidence = _dense_check(fwd, bwd)
                if backward:
                    result.backward_occlusion, result.backward_confidence = _dense_check(bwd, fwd)
        return result

    # one OpenCV thread per worker while the run lasts (see opencv_threads); a single worker keeps the pool
    with opencv_threads(1) if workers > 1 else contextlib.nullcontext():
        yield from ordered_map(compute, consecutive(), workers, depth=1, name="flow")


def _model_pairs(model: Any, frames: Iterator[Frame], device: str, batch: int, backward: bool, occlusion: bool,
                 skip: Callable[[int], bool] | None, clock: StageClock) -> Iterator[FlowPair]:
    """Consecutive pairs in order, from the model's :meth:`~motion.models.base.FlowModel.stream`; frames
    are decoded and made into tensors on the decode thread."""
    import time

    import torch

    from motion4d.imaging import frames_to_tensor

    from .flow_geometry import forward_backward_occlusion

    both = backward or occlusion
    # the model reads ahead; frames wait here until the flows that use them arrive
    pending: list[Frame] = []
    next_pair = 0  # stream position of pending[0]
    waited = [0.0]  # seconds the model spent waiting for decoded frames

    def tensors() -> Iterator[tuple[Frame, torch.Tensor]]:
        for f in frames:
            yield f, frames_to_tensor(f.image, device=device)

    def remembered(it: Iterator[tuple[Frame, torch.Tensor]]) -> Iterator[torch.Tensor]:
        while True:
            start = time.perf_counter()
            item = next(it, None)
            waited[0] += time.perf_counter() - start
            if item is None:
                return
            pending.append(item[0])
            yield item[1]

    def done(position: int) -> bool:
        offset = position - next_pair
        if skip is None or not 0 <= offset < len(pending) - 1:
            return False
        return skip(pending[offset].index)

    def skipped_until(position: int) -> Iterator[FlowPair]:
        """Pairs the stream passed over (declared done by ``skip``) before ``position``."""
        nonlocal next_pair
        while next_pair < position and len(pending) >= 2:
            if not done(next_pair):
                raise InvalidArgumentError(
                    f"{type(model).__name__}.stream gave no flow for pair {next_pair}, which was not declared done"
                )
            yield FlowPair(pending[0], pending[1], None, None)
            pending.pop(0)
            next_pair += 1

    decoded = prefetch(tensors(), depth=max(4, batch + 2), name="decode", clock=clock)
    outputs = model.stream(remembered(decoded), backward=both, batch=batch, skip=None if skip is None else done)
    try:
        while True:
            start, waited[0] = time.perf_counter(), 0.0
            with torch.inference_mode():
                out = next(outputs, None)
                if out is not None and both and out.backward is None:
                    raise InvalidArgumentError(
                        f"{type(model).__name__}.stream does not give backward flow; use backward=False"
                        + (" (occlusion and confidence need it)" if occlusion else ""))
                maps = None
                if out is not None and occlusion and out.num_pairs:
                    maps = forward_backward_occlusion(out.forward[0], out.backward[0])
                    if backward:
                        maps = maps + forward_backward_occlusion(out.backward[0], out.forward[0])
            if out is None:
                break
            if out.num_pairs:
                clock.add("flow", time.perf_counter() - start - waited[0], out.num_pairs)
            yield from skipped_until(next_pair if out.first_pair is None else out.first_pair)
            for k in range(out.num_pairs):
                pair = FlowPair(pending[0], pending[1], out.forward[0, k], out.backward[0, k] if backward else None)
                if maps is not None:
                    pair.occlusion, pair.confidence = maps[0][k], maps[1][k]
                    if backward:
                        pair.backward_occlusion, pair.backward_confidence = maps[2][k], maps[3][k]
                yield pair
                pending.pop(0)
                next_pair += 1
        yield from skipped_until(next_pair + len(pending) - 1)
    finally:
        outputs.close()
        decoded.close()


def _pair_stream(source: Any, model: Any, *, device: Any, batch: int, workers: Any, backward: bool, occlusion: bool,
                 skip: Callable[[int], bool] | None, progress: bool, clock: StageClock, model_options: dict[str, Any],
                 resolved: tuple[OpenCVEngine | None, Any, str, str] | None = None,
                 **selection: Any) -> Iterator[FlowPair]:
    """The pipeline's pairs, in order (flows as the stage gives them: numpy ``[H, W, 2]`` or tensors)."""
    from tqdm.auto import tqdm

    check_int(batch, "batch", minimum=1)
    engine, flow_model, model_name, device = resolved or _resolve_model(model, device, dict(model_options or {}))
    workers = _workers_for(engine, workers, model_name)
    video, name = _open_checked(source, **selection)
    total = video.num_frames
    frames = same_size_frames(video, name)
    if engine is not None:
        pairs = _opencv_pairs(engine, frames, backward=backward, occlusion=occlusion, skip=skip, workers=workers,
                              clock=clock)
    else:
        pairs = _model_pairs(flow_model, frames, device, batch, backward, occlusion, skip, clock)
    count = 0
    with video, contextlib.closing(pairs), tqdm(total=None if total is None else total - 1, unit="pair",
                                                 desc=f"flow ({model_name})", disable=not progress) as bar:
        for pair in pairs:
            count += 1
            bar.update(1)
            yield pair
    if count == 0:
        raise _too_short(video, name)


def iter_flow(
    source: Any,
    model: str | FlowModel = "dis",
    *,
    device: str | torch.device | None = "auto",
    batch: int = 8,
    workers: int | str | None = "auto",
    backward: bool = False,
    occlusion: bool = False,
    model_options: dict[str, Any] | None = None,
    skip: Callable[[int], bool] | None = None,
    progress: bool = False,
    **selection: Any,
) -> Iterator[FlowPair]:
    """Yield a :class:`FlowPair` for every consecutive frame pair, in order, with bounded memory.

    Arguments as in :func:`estimate_flow`; ``selection`` = start, stop, stride, max_frames, resize, on_damage.
    ``occlusion=True`` fills ``pair.occlusion`` / ``pair.confidence`` (and the backward ones with
    ``backward=True``). ``skip(source_index) -> bool`` lets a caller declare pairs as done: they are
    not computed (their pairs come with ``forward=None``); it is called on the consuming thread, in
    order. Flows are tensors ``[2, H, W]`` (CPU tensors
    sharing memory with OpenCV's output for the classical methods, on ``device`` for networks).
    """
    clock = StageClock()
    pairs = _pair_stream(source, model, device=device, batch=batch, workers=workers, backward=backward,
                         occlusion=occlusion, skip=skip, progress=progress, clock=clock,
                         model_options=dict(model_options or {}), **selection)
    with closing_iterator(pairs):  # a consumer that stops early stops the pipeline's threads now
        for pair in pairs:
            for name in _PAIR_FIELDS:
                setattr(pair, name, _as_torch(name, getattr(pair, name)))
            yield pair


def estimate_flow(
    source: Any,
    model: str | FlowModel = "dis",
    *,
    device: str | torch.device | None = "auto",
    batch: int = 8,
    workers: int | str | None = "auto",
    out_dir: str | os.PathLike | None = None,
    formats: Sequence[str] = ("flo",),
    backward: bool = False,
    occlusion: bool = False,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    resize: Any = None,
    on_damage: str = "error",
    model_options: dict[str, Any] | None = None,
    color_max_radius: float | None = None,
    keep_in_memory: bool | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> FlowResult:
    """Optical flow for every consecutive frame pair of a video, streamed with bounded memory.

    Args:
        source: video file, image folder, list of image paths, or ``uint8 [T, H, W, 3]`` array (see
            :func:`motion.open_video`).
        model: a registered name (:func:`motion.list_models`) or a :class:`FlowModel` (moved to ``device``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``, ... (the classical methods
            run on the CPU whatever it says; a named device is still checked).
        batch: flows per model call (models with their own windows, e.g. VideoFlow, ignore it).
        workers: threads computing frame pairs at the same time for the classical methods
            (``"auto"``: one per available core, at most ``motion.pipeline.AUTO_WORKERS_MAX``); networks
            run one stream (it must be 1 or "auto"). With more than one, OpenCV's thread count
            (``cv2.setNumThreads``, process-wide) is 1 until the run ends (for :func:`iter_flow`: until
            the iterator is exhausted or closed), then restored.
        out_dir: output folder; None keeps the results in memory (within the in-memory limit).
        formats: any of ``"flo"``, ``"png"`` (KITTI 16-bit), ``"npz"``, ``"color"`` (PNG images),
            ``"mp4"``, ``"occ"`` (occlusion masks, PNG), ``"conf"`` (confidence maps, float32 ``.npy``).
        backward: also compute flows ``t+1 -> t``.
        occlusion: also compute occlusion masks and confidence maps (implied by ``"occ"`` / ``"conf"``).
        start, stop, stride, max_frames, resize: frame selection, as in :func:`motion.open_video`.
        on_damage: ``"error"``, ``"warn"`` or ``"skip"`` for truncated or corrupt videos (:func:`motion.open_video`).
        model_options: options for the model builder when ``model`` is a name.
        color_max_radius: flow magnitude at full colour saturation in colour outputs (default: the
            largest magnitude of the first pair, then fixed so the video does not flicker).
        keep_in_memory: hold the results in memory even with ``out_dir`` (default: only without it).
        overwrite: recompute everything even when finished outputs exist.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`FlowResult`: tensors in memory, or :class:`~motion.flow_store.StoredStack` views of
        the files in ``out_dir``.

    Raises:
        MissingFileError / InputFileError: unreadable sources, frames of different sizes, fewer than 2 frames.
        InvalidArgumentError: unknown model or format, bad batch or workers, a folder holding another configuration.
        InputTooLargeError: results held in memory would pass the in-memory limit (see the module docstring).
    """
    check_int(batch, "batch", minimum=1)
    formats = tuple(formats)
    for fmt in formats:
        check_choice(fmt, "formats", FORMATS)
    if out_dir is not None and not formats:
        raise InvalidArgumentError("formats must name at least one output format when out_dir is given")
    occlusion = bool(occlusion) or "occ" in formats or "conf" in formats
    model_options = dict(model_options or {})
    selection = dict(start=start, stop=stop, stride=stride, max_frames=max_frames, resize=resize, on_damage=on_damage)
    video, _ = _open_checked(source, **selection)
    video.close()
    size = (video.height, video.width)
    keep = (out_dir is None) if keep_in_memory is None else keep_in_memory
    fields = ["forward"] + (["backward"] if backward else [])
    if occlusion:
        fields += ["occlusion", "confidence"] + (["backward_occlusion", "backward_confidence"] if backward else [])
    expected = None if video.num_frames is None else video.num_frames - 1
    memory = _InMemory(expected, size, fields) if keep else None  # refuses too large results before any work
    resolved = _resolve_model(model, device, model_options)
    engine, flow_model, model_name, device_name = resolved
    workers = _workers_for(engine, workers, model_name)
    config = {
        "source": os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>",
        "source_identity": source_identity(source) if out_dir is not None else None,
        "source_size": list(video.source_size),
        "model": model_name,
        "model_options": _jsonable(model_options),
        "device": device_name,
        "batch": batch,
        "workers": workers,
        "formats": list(formats),
        "backward": backward,
        "occlusion": occlusion,
        "start": start,
        "stop": stop,
        "stride": stride,
        "max_frames": max_frames,
        "resize": _jsonable(resize),
        "frames_per_window": 2 if engine is not None else int(flow_model.frames_per_window),
        "color_max_radius": color_max_radius,
    }
    outputs = None
    out_path = None
    folder: Any = contextlib.nullcontext()
    if out_dir is not None:
        out_path = Path(out_dir)
        folder = OutputFolder(out_path, CONFIG_NAME, config, _RESULT_KEYS, overwrite)
        outputs = _Outputs(out_path, formats, backward, color_max_radius, video.fps / stride)
    resumable = outputs is not None and not overwrite and outputs.can_resume(keep, occlusion)
    skip = outputs.is_done if resumable else None  # type: ignore[union-attr]

    indices: list[int] = []
    times: list[float] = []
    computed = skipped = 0
    clock = StageClock()
    error: BaseException | None = None
    with folder:
        if outputs is not None and overwrite:
            for f in outputs.video_files():
                f.unlink(missing_ok=True)
        writer = BackgroundWriter(depth=2, clock=clock) if outputs is not None else None
        try:
            pairs = _pair_stream(source, model, device=device, batch=batch, workers=workers, backward=backward,
                                 occlusion=occlusion, skip=skip, progress=progress, clock=clock,
                                 model_options=model_options, resolved=resolved, **selection)
            with contextlib.closing(pairs):
                for pair in pairs:
                    if not indices:
                        indices.append(pair.source.index)
                        times.append(pair.source.time)
                    indices.append(pair.target.index)
                    times.append(pair.target.time)
                    index = pair.source.index
                    done = pair.forward is None or (skip is not None and skip(index))
                    if pair.forward is None and (keep or "mp4" in formats):  # skipped: read back what is needed
                        _read_back(outputs, pair, backward, occlusion and keep, size)  # type: ignore[arg-type]
                    if writer is not None and pair.forward is not None:
                        results = {name: getattr(pair, name) for name in _PAIR_FIELDS}
                        writer.submit(outputs.write_pair, index, results, not done)  # type: ignore[union-attr]
                    if memory is not None:
                        memory.add(pair)
                    computed += not done
                    skipped += done
            if writer is not None:
                writer.close()
        except BaseException as exc:
            error = exc
            if writer is not None:  # keep the pairs computed before the error: they are resumed from
                with contextlib.suppress(BaseException):
                    writer.close()
            raise
        finally:
            if outputs is not None:
                outputs.close(error)
        if outputs is not None and outputs.color_max_radius is not None:
            config["color_max_radius"] = outputs.color_max_radius  # the radius the colour outputs used
            folder.record(color_max_radius=outputs.color_max_radius)

    if memory is not None:
        results = memory.tensors()
    elif outputs is not None:
        results = outputs.stored(indices[:-1], size)
    else:
        results = {}
    return FlowResult(
        forward=results.get("forward"),
        backward=results.get("backward") if backward else None,
        occlusion=results.get("occlusion"),
        confidence=results.get("confidence"),
        backward_occlusion=results.get("backward_occlusion"),
        backward_confidence=results.get("backward_confidence"),
        frame_indices=np.asarray(indices, np.int64),
        times=np.asarray(times, np.float64),
        image_size=size,
        out_dir=out_path,
        computed=computed,
        skipped=skipped,
        config=config,
        stages=clock.summary(),
    )


def _read_back(outputs: _Outputs, pair: FlowPair, backward: bool, maps: bool, size: tuple[int, int]) -> None:
    """Fill a finished pair from its files (its flows, and its occlusion/confidence with ``maps``)."""
    index = pair.source.index
    pair.forward = outputs.read_back(index, "forward")
    pair.backward = outputs.read_back(index, "backward") if backward else None
    if maps:
        pair.occlusion, pair.confidence = outputs.read_back_maps(index, "forward", size)
        if backward:
            pair.backward_occlusion, pair.backward_confidence = outputs.read_back_maps(index, "backward", size)
