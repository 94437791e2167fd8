"""Optical flow over whole videos: streaming, batching, windowing, resumable outputs.

::

    result = motion.estimate_flow("clip.mp4", model="dis")                 # flows in memory
    result.forward                                                          # float32 [T-1, 2, H, W]
    motion.estimate_flow("clip.mp4", model="reynolds", out_dir="out", formats=("flo", "mp4"))

Every model is run through its :meth:`~motion.models.base.FlowModel.stream`: by default windows of
``batch + 1`` consecutive frames that overlap by one frame, ``[1, batch + 1, 3, H, W]`` per call
(``batch`` flows per call, each frame decoded and uploaded once); models that carry state across
windows or need their own windows (SplatFlow's motion feature, StreamFlow's groups, VideoFlow's
sliding windows) override it. Backward flow, when requested and not produced by the model, is
computed by running the model on the time-reversed window.

Outputs (``out_dir``): per pair, named by the source index of its first frame,
``forward/000012.flo`` (``"flo"``), ``forward/000012.png`` (``"png"``, KITTI 16-bit),
``forward/000012.npz`` (``"npz"``), ``forward_color/000012.png`` (``"color"``), the same under
``backward*/`` with ``backward=True``, plus ``forward_color.mp4`` (``"mp4"``). Every file is written
atomically. A re-run skips pairs whose files all exist (without calling the model for windows that are
complete), so an interrupted run resumes where it stopped; ``flow_config.json`` records the resolved
configuration and a re-run with a different configuration is refused unless ``overwrite=True``.
The MP4 is re-encoded on every run (finished pairs are read back from their per-pair files), so it
resumes only together with ``"flo"``, ``"png"`` or ``"npz"``.

:func:`iter_flow` is the generator underneath: one :class:`FlowPair` at a time, for pipelines that
consume flow as it is produced (e.g. :func:`motion.track_points` on first-frame queries).
"""
from __future__ import annotations

import contextlib
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from motion4d.checks import check_choice, check_int
from motion4d.device import resolve_device
from motion4d.errors import InputFileError, InvalidArgumentError, ShapeError
from motion4d.imaging import frames_to_tensor
from motion4d.outputs import OutputFolder, source_identity

from .frames import Frame, open_video, same_size_frames
from .models.base import FlowModel

FORMATS = ("flo", "png", "npz", "color", "mp4")
_EXTENSIONS = {"flo": ".flo", "png": ".png", "npz": ".npz"}
CONFIG_NAME = "flow_config.json"
# configuration keys that change the flow values: a resume with other values would mix results
_RESULT_KEYS = ("source_identity", "model", "model_options", "start", "stop", "stride", "max_frames", "resize",
                "source_size")


@dataclass
class FlowResult:
    """What :func:`estimate_flow` returns.

    Attributes:
        forward: ``float32 [P, 2, H, W]`` flows ``t -> t+1`` for the ``P`` consecutive pairs (CPU), or
            None when they were only written to disk.
        backward: ``float32 [P, 2, H, W]`` flows ``t+1 -> t`` (anchored at ``t+1``), or None.
        frame_indices: ``int64 [P+1]`` source index of every frame used.
        times: ``float64 [P+1]`` their timestamps in seconds.
        image_size: ``(H, W)``.
        out_dir: the output folder, or None.
        computed: pairs computed by the model in this run; ``skipped``: pairs found finished on disk.
        config: the resolved configuration (also written to ``out_dir/flow_config.json``).
    """

    forward: torch.Tensor | None
    backward: torch.Tensor | None
    frame_indices: np.ndarray
    times: np.ndarray
    image_size: tuple[int, int]
    out_dir: Path | None = None
    computed: int = 0
    skipped: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def num_pairs(self) -> int:
        return max(0, len(self.frame_indices) - 1)


# --------------------------------------------------------------------------------------------
# frames


# --------------------------------------------------------------------------------------------
# outputs


class _Outputs:
    """Paths, resume bookkeeping and writers of one output folder."""

    def __init__(self, out_dir: Path, formats: Sequence[str], backward: bool, color_max_radius: float | None, fps: float):
        self.out_dir = out_dir
        self.formats = tuple(formats)
        self.directions = ("forward", "backward") if backward else ("forward",)
        self.color_max_radius = color_max_radius
        self.fps = fps
        self._writers: dict[str, Any] = {}

    def pair_files(self, index: int) -> list[Path]:
        files = []
        for direction in self.directions:
            for fmt in self.formats:
                if fmt in _EXTENSIONS:
                    files.append(self.out_dir / direction / f"{index:06d}{_EXTENSIONS[fmt]}")
                elif fmt == "color":
                    files.append(self.out_dir / f"{direction}_color" / f"{index:06d}.png")
        return files

    def video_files(self) -> list[Path]:
        return [self.out_dir / f"{d}_color.mp4" for d in self.directions] if "mp4" in self.formats else []

    def is_done(self, index: int) -> bool:
        files = self.pair_files(index)
        return bool(files) and all(f.exists() for f in files)

    def read_back(self, index: int, direction: str) -> torch.Tensor:
        """A finished pair's flow ``[2, H, W]`` from the most precise file written."""
        from .flow_io import read_flow

        for fmt in ("npz", "flo", "png"):
            if fmt in self.formats:
                flow, _ = read_flow(self.out_dir / direction / f"{index:06d}{_EXTENSIONS[fmt]}")
                return torch.from_numpy(flow).permute(2, 0, 1)
        raise InvalidArgumentError("finished pairs can be read back only when 'flo', 'png' or 'npz' is among the formats")

    def colour(self, flow: torch.Tensor) -> np.ndarray:
        from .visualize import flow_to_color

        if self.color_max_radius is None:  # fixed from the first pair on, so the video does not flicker
            self.color_max_radius = max(float(flow.norm(dim=0).max()), 1.0)
        return flow_to_color(flow, max_radius=self.color_max_radius)

    def write_pair(self, index: int, direction: str, flow: torch.Tensor, computed: bool) -> None:
        from .flow_io import write_flow
        from .image_io import write_image

        if computed:
            for fmt in self.formats:
                if fmt in _EXTENSIONS:
                    write_flow(self.out_dir / direction / f"{index:06d}{_EXTENSIONS[fmt]}", flow)
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
# the pipeline


def _to_tensor(frames: list[Frame], device: torch.device) -> torch.Tensor:
    """``T`` frames -> ``float32 [T, 3, H, W]`` in [0, 1] on ``device``."""
    return frames_to_tensor(np.stack([f.image for f in frames]), device=device)


@dataclass
class FlowPair:
    """One consecutive frame pair and its flows, as yielded by :func:`iter_flow`.

    Attributes:
        source, target: the two :class:`~motion.frames.Frame` objects (``.index``, ``.time``, ``.image``).
        forward: ``[2, H, W]`` flow source -> target on the model's device, or None when ``skip`` said
            the pair is already done and the model was not run for it.
        backward: ``[2, H, W]`` flow target -> source (anchored at target), or None.
    """

    source: Frame
    target: Frame
    forward: torch.Tensor | None
    backward: torch.Tensor | None


def _flow_pairs(
    model: FlowModel,
    frames: Iterator[Frame],
    device: torch.device,
    batch: int,
    backward: bool,
    skip: Callable[[int], bool] | None,
) -> Iterator[FlowPair]:
    """Consecutive pairs in order, from the model's :meth:`~motion.models.base.FlowModel.stream`."""
    # the model reads ahead; frames wait here until the flows that use them arrive
    pending: deque[Frame] = deque()
    next_pair = 0  # stream position of pending[0]

    def remembered(it: Iterator[Frame]) -> Iterator[torch.Tensor]:
        for f in it:
            pending.append(f)
            yield _to_tensor([f], device)[0]

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
            pending.popleft()
            next_pair += 1

    outputs = model.stream(remembered(frames), backward=backward, batch=batch, skip=None if skip is None else done)
    while True:
        with torch.inference_mode():
            out = next(outputs, None)
        if out is None:
            break
        if backward and out.backward is None:
            raise InvalidArgumentError(f"{type(model).__name__}.stream does not give backward flow; use backward=False")
        yield from skipped_until(next_pair if out.first_pair is None else out.first_pair)
        for k in range(out.num_pairs):
            yield FlowPair(pending[0], pending[1], out.forward[0, k], out.backward[0, k] if backward else None)
            pending.popleft()
            next_pair += 1
    yield from skipped_until(next_pair + len(pending) - 1)


def _resolve_model(model: str | FlowModel, device: torch.device, model_options: dict[str, Any]) -> tuple[FlowModel, str]:
    from .registry import create

    if isinstance(model, str):
        return create(model, device=device, **model_options), model
    if isinstance(model, FlowModel):
        if model_options:
            raise InvalidArgumentError("model_options apply only when model is given by name")
        return model.to(device).eval(), getattr(model, "registry_name", None) or type(model).__name__
    raise InvalidArgumentError(f"model must be a registered name or a FlowModel, got {type(model).__name__}")


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


def iter_flow(
    source: Any,
    model: str | FlowModel = "dis",
    *,
    device: str | torch.device | None = "auto",
    batch: int = 8,
    backward: bool = False,
    model_options: dict[str, Any] | None = None,
    skip: Callable[[int], bool] | None = None,
    progress: bool = False,
    **selection: Any,
) -> Iterator[FlowPair]:
    """Yield a :class:`FlowPair` for every consecutive frame pair, in order, holding only one window in memory.

    Arguments as in :func:`estimate_flow`; ``selection`` = start, stop, stride, max_frames, resize, on_damage.
    ``skip(source_index) -> bool`` lets a caller declare pairs as done: windows whose pairs are all
    done are not run (their pairs come with ``forward=None``).
    """
    from tqdm.auto import tqdm

    check_int(batch, "batch", minimum=1)
    device = resolve_device(device)
    flow_model, model_name = _resolve_model(model, device, dict(model_options or {}))
    video, name = _open_checked(source, **selection)
    total = video.num_frames
    count = 0
    with video, tqdm(total=None if total is None else total - 1, unit="pair", desc=f"flow ({model_name})",
                     disable=not progress) as bar:
        for pair in _flow_pairs(flow_model, same_size_frames(video, name), device, batch, backward, skip):
            count += 1
            bar.update(1)
            yield pair
    if count == 0:
        raise _too_short(video, name)


def estimate_flow(
    source: Any,
    model: str | FlowModel = "dis",
    *,
    device: str | torch.device | None = "auto",
    batch: int = 8,
    out_dir: str | os.PathLike | None = None,
    formats: Sequence[str] = ("flo",),
    backward: bool = False,
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
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``, ...
        batch: flows per model call (models with their own windows, e.g. VideoFlow, ignore it).
        out_dir: output folder; None keeps everything in memory.
        formats: any of ``"flo"``, ``"png"`` (KITTI 16-bit), ``"npz"``, ``"color"`` (PNG images), ``"mp4"``.
        backward: also compute flows ``t+1 -> t``.
        start, stop, stride, max_frames, resize: frame selection, as in :func:`motion.open_video`.
        on_damage: ``"error"``, ``"warn"`` or ``"skip"`` for truncated or corrupt videos (:func:`motion.open_video`).
        model_options: options for the model builder when ``model`` is a name.
        color_max_radius: flow magnitude at full colour saturation in colour outputs (default: the
            largest magnitude of the first pair, then fixed so the video does not flicker).
        keep_in_memory: return the flows (default: only when ``out_dir`` is None).
        overwrite: recompute everything even when finished outputs exist.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`FlowResult`.

    Raises:
        MissingFileError / InputFileError: unreadable sources, frames of different sizes, fewer than 2 frames.
        InvalidArgumentError: unknown model or format, bad batch, a folder holding another configuration.
    """
    check_int(batch, "batch", minimum=1)
    formats = tuple(formats)
    for fmt in formats:
        check_choice(fmt, "formats", FORMATS)
    if out_dir is not None and not formats:
        raise InvalidArgumentError("formats must name at least one output format when out_dir is given")
    device = resolve_device(device)
    model_options = dict(model_options or {})
    flow_model, model_name = _resolve_model(model, device, model_options)
    selection = dict(start=start, stop=stop, stride=stride, max_frames=max_frames, resize=resize, on_damage=on_damage)
    video, _ = _open_checked(source, **selection)
    video.close()
    config = {
        "source": os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"<{type(source).__name__}>",
        "source_identity": source_identity(source) if out_dir is not None else None,
        "source_size": list(video.source_size),
        "model": model_name,
        "model_options": _jsonable(model_options),
        "device": str(device),
        "batch": batch,
        "formats": list(formats),
        "backward": backward,
        "start": start,
        "stop": stop,
        "stride": stride,
        "max_frames": max_frames,
        "resize": _jsonable(resize),
        "frames_per_window": int(flow_model.frames_per_window),
        "color_max_radius": color_max_radius,
    }
    outputs = None
    out_path = None
    folder = contextlib.nullcontext()
    if out_dir is not None:
        out_path = Path(out_dir)
        folder = OutputFolder(out_path, CONFIG_NAME, config, _RESULT_KEYS, overwrite)
        outputs = _Outputs(out_path, formats, backward, color_max_radius, video.fps / stride)
    keep = (out_dir is None) if keep_in_memory is None else keep_in_memory
    skip = None if outputs is None or overwrite else outputs.is_done

    forward_list: list[torch.Tensor] = []
    backward_list: list[torch.Tensor] = []
    indices: list[int] = []
    times: list[float] = []
    computed = skipped = 0
    error: BaseException | None = None
    with folder:
        if outputs is not None and overwrite:
            for f in outputs.video_files():
                f.unlink(missing_ok=True)
        try:
            for pair in iter_flow(source, flow_model, device=device, batch=batch, backward=backward, skip=skip,
                                  progress=progress, **selection):
                if not indices:
                    indices.append(pair.source.index)
                    times.append(pair.source.time)
                indices.append(pair.target.index)
                times.append(pair.target.time)
                index = pair.source.index
                done = skip is not None and skip(index)
                fwd, bwd = pair.forward, pair.backward
                if fwd is None and (keep or "mp4" in formats):  # skipped window: read back what is needed
                    fwd = outputs.read_back(index, "forward")  # type: ignore[union-attr]
                    bwd = outputs.read_back(index, "backward") if backward else None  # type: ignore[union-attr]
                if outputs is not None and fwd is not None:
                    outputs.write_pair(index, "forward", fwd, not done)
                    if bwd is not None:
                        outputs.write_pair(index, "backward", bwd, not done)
                if keep:
                    forward_list.append(fwd.float().cpu())
                    if bwd is not None:
                        backward_list.append(bwd.float().cpu())
                computed += not done
                skipped += done
        except BaseException as exc:
            error = exc
            raise
        finally:
            if outputs is not None:
                outputs.close(error)
        if outputs is not None and outputs.color_max_radius is not None:
            config["color_max_radius"] = outputs.color_max_radius  # the radius the colour outputs used
            folder.record(color_max_radius=outputs.color_max_radius)

    stack = lambda xs: torch.stack(xs) if xs else None  # noqa: E731
    return FlowResult(
        forward=stack(forward_list) if keep else None,
        backward=stack(backward_list) if keep and backward else None,
        frame_indices=np.asarray(indices, np.int64),
        times=np.asarray(times, np.float64),
        image_size=(video.height, video.width),
        out_dir=out_path,
        computed=computed,
        skipped=skipped,
        config=config,
    )
