"""Colour encodings of Reynolds flow: HSV images and the "ReynoldsFlow+" RGB stack, for frames and videos.

* :func:`flow_to_hsv`: OpenCV convention (hue = direction, value = magnitude), for ``v_o``, ``v_r`` or
  ``v_o + v_r``.
* :class:`ReynoldsEncoder`: "ReynoldsFlow+" uint8 image, channels in RGB order
  ``R = |v_o|, G = |v_r|, B = f`` (the grey source frame, unblurred, i.e. the frame the flow is
  anchored at), each magnitude mapped to [0, 255] by ``normalize`` = ``"minmax"`` (per frame; flickers
  on video), ``"fixed"`` (fixed bounds) or ``"percentile"`` (running, temporally smoothed percentile:
  the default, stable on video).
* :func:`encode_video`: a whole video encoded either way, streamed, to a video file or PNGs (decoding,
  encoding and writing overlap: :mod:`motion.pipeline`).

The flows come from :mod:`motion.models.reynolds` (``v_o``, ``v_r`` and the grey intensity).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from motion4d.checks import check_choice, check_int, check_shape
from motion4d.errors import InputFileError, InvalidArgumentError

from .reynolds import OUTPUTS, ReynoldsFlow, ReynoldsTerms, uses_opencv

NORMALIZE_MODES = ("minmax", "fixed", "percentile")


def _as_numpy_flow(flow) -> np.ndarray:
    if isinstance(flow, torch.Tensor):
        flow = flow.detach().float().cpu().numpy()
    check_shape(flow, "flow", ("...", 2, "H", "W"))
    return np.asarray(flow, dtype=np.float32)


def flow_to_hsv(flow, max_magnitude: float | None = None) -> np.ndarray:
    """OpenCV-convention colour image of a flow: hue = direction, value = magnitude.

    Args:
        flow: ``[..., 2, H, W]`` (tensor or array).
        max_magnitude: magnitude shown at full brightness; None = per-image maximum (flickers on video).

    Returns:
        uint8 ``[..., H, W, 3]`` RGB.
    """
    import cv2

    flow = _as_numpy_flow(flow)
    lead = flow.shape[:-3]
    flat = flow.reshape(-1, *flow.shape[-3:])
    out = np.empty((flat.shape[0], *flow.shape[-2:], 3), np.uint8)
    for i, (u, v) in enumerate(flat):
        magnitude, angle = cv2.cartToPolar(u, v, angleInDegrees=True)
        top = float(magnitude.max()) if max_magnitude is None else float(max_magnitude)
        hsv = np.empty((*u.shape, 3), np.uint8)
        hsv[..., 0] = (angle / 2).astype(np.uint8)  # OpenCV hue range is [0, 180)
        hsv[..., 1] = 255
        hsv[..., 2] = np.clip(magnitude * (255.0 / max(top, 1e-6)), 0, 255).astype(np.uint8)
        out[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out.reshape(*lead, *flow.shape[-2:], 3)


def reynolds_hsv(terms: ReynoldsTerms, max_magnitude: float | None = None) -> dict[str, np.ndarray]:
    """HSV images (uint8 ``[N, H, W, 3]`` RGB) of ``v_o``, ``v_r`` and ``sum`` = ``v_o + v_r``."""
    return {
        "v_o": flow_to_hsv(terms.v_o, max_magnitude),
        "v_r": flow_to_hsv(terms.v_r, max_magnitude),
        "sum": flow_to_hsv(terms.total, max_magnitude),
    }


@dataclass
class ReynoldsEncoder:
    """Stateful "ReynoldsFlow+" encoder: ``(v_o, v_r, intensity) -> uint8 [N, H, W, 3]``.

    Channels (``order="RGB"``): R = ``|v_o|``, G = ``|v_r|``, B = grey intensity of the source frame
    (``order="BGR"`` reverses them, for ``cv2.imwrite``). Magnitudes are scaled to [0, 255] by:

    * ``"minmax"``: ``(m - min) / max(max - min, floor)`` of each frame. Simple, but a static frame's
      noise is stretched to full range and brightness jumps between frames (flicker).
    * ``"fixed"``: ``m / bound``, clipped; ``bounds = (|v_o| bound, |v_r| bound)`` in pixels.
    * ``"percentile"`` (default): ``m / s`` where ``s`` is the ``percentile``-th percentile of ``m``,
      at least ``floor``, smoothed over frames by an exponential moving average
      (``s_t = momentum * s_{t-1} + (1 - momentum) * p_t``): stable on video, yet adapts to the scene.
      Frames are processed in order; call :meth:`reset` between videos.

    The intensity channel is ``255 * f`` in every mode, so appearance is comparable across frames.
    """

    normalize: str = "percentile"
    bounds: tuple[float, float] = (8.0, 2.0)
    percentile: float = 99.0
    momentum: float = 0.9
    floor: tuple[float, float] = (0.25, 0.05)
    order: str = "RGB"
    _scale: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_choice(self.normalize, "normalize", NORMALIZE_MODES)
        check_choice(self.order, "order", ("RGB", "BGR"))
        if not 0 < self.percentile <= 100:
            raise InvalidArgumentError(f"percentile must be in (0, 100], got {self.percentile}")
        if not 0 <= self.momentum < 1:
            raise InvalidArgumentError(f"momentum must be in [0, 1), got {self.momentum}")
        for name, pair in (("bounds", self.bounds), ("floor", self.floor)):
            if len(pair) != 2 or min(pair) <= 0:
                raise InvalidArgumentError(f"{name} must be two positive numbers, got {pair!r}")

    def reset(self) -> None:
        """Forget the running scale (start of a new video)."""
        self._scale = None

    def _maps(self, magnitudes: list[tuple[np.ndarray, np.ndarray]] | torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame, ``(gain [2], offset [2])`` mapping the two magnitudes to [0, 1] as ``m * gain + offset``."""
        floor = np.asarray(self.floor, np.float64)
        frames = magnitudes if isinstance(magnitudes, list) else [(m[0], m[1]) for m in magnitudes]
        maps = []
        for pair in frames:
            if self.normalize == "fixed":
                maps.append((1.0 / np.asarray(self.bounds, np.float64), np.zeros(2)))
                continue
            if self.normalize == "minmax":
                low = np.array([float(m.min()) for m in pair])
                high = np.array([float(m.max()) for m in pair])
                gain = 1.0 / np.maximum(high - low, floor)
                maps.append((gain, -low * gain))
                continue
            # a percentile of ~16k evenly spaced pixels is as good as of all, and much cheaper
            samples = [m.reshape(-1)[:: max(1, m.shape[-2] * m.shape[-1] // 16384)] for m in pair]
            if isinstance(samples[0], torch.Tensor):
                current = torch.quantile(torch.stack(samples).float(), self.percentile / 100.0, dim=-1).cpu().numpy()
            else:
                current = np.array([np.percentile(x, self.percentile) for x in samples])
            current = np.maximum(current.astype(np.float64), floor)
            self._scale = current if self._scale is None else self.momentum * self._scale + (1 - self.momentum) * current
            maps.append((1.0 / self._scale, np.zeros(2)))
        return maps

    def __call__(self, v_o: torch.Tensor, v_r: torch.Tensor, intensity: torch.Tensor) -> np.ndarray:
        """Encode ``N`` frames: ``v_o, v_r [N, 2, H, W]``, ``intensity [N, H, W]`` -> uint8 ``[N, H, W, 3]``."""
        dims = check_shape(v_o, "v_o", ("N", 2, "H", "W"))
        check_shape(v_r, "v_r", (dims["N"], 2, dims["H"], dims["W"]))
        check_shape(intensity, "intensity", (dims["N"], dims["H"], dims["W"]))
        if all(uses_opencv(x) for x in (v_o, v_r, intensity)):
            return self._encode_opencv(v_o.numpy(), v_r.numpy(), intensity.numpy())
        magnitudes = torch.stack([torch.hypot(v_o[:, 0], v_o[:, 1]), torch.hypot(v_r[:, 0], v_r[:, 1])], dim=1)
        maps = self._maps(magnitudes)
        gain = magnitudes.new_tensor(np.stack([m[0] for m in maps]))[:, :, None, None]
        offset = magnitudes.new_tensor(np.stack([m[1] for m in maps]))[:, :, None, None]
        channels = torch.cat([magnitudes * gain + offset, intensity[:, None]], dim=1).clamp(0, 1)
        if self.order == "BGR":
            channels = channels.flip(1)
        return (channels * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def _encode_opencv(self, v_o: np.ndarray, v_r: np.ndarray, intensity: np.ndarray) -> np.ndarray:
        import cv2

        magnitudes = [(cv2.magnitude(o[0], o[1]), cv2.magnitude(r[0], r[1])) for o, r in zip(v_o, v_r)]
        out = np.empty((len(magnitudes), *intensity.shape[-2:], 3), np.uint8)
        for i, ((m_o, m_r), (gain, offset)) in enumerate(zip(magnitudes, self._maps(magnitudes))):
            # convertScaleAbs = saturate(round(|a x + b|)); a x + b >= 0 here, so it is a clamp to [0, 255]
            channels = [
                cv2.convertScaleAbs(m_o, alpha=255 * gain[0], beta=255 * offset[0]),
                cv2.convertScaleAbs(m_r, alpha=255 * gain[1], beta=255 * offset[1]),
                cv2.convertScaleAbs(intensity[i], alpha=255),
            ]
            out[i] = cv2.merge(channels[::-1] if self.order == "BGR" else channels)
        return out

    def encode_terms(self, terms: ReynoldsTerms) -> np.ndarray:
        """Shortcut for ``self(terms.v_o, terms.v_r, terms.intensity)``."""
        return self(terms.v_o, terms.v_r, terms.intensity)


# --------------------------------------------------------------------------------------------
# whole videos

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def encode_video(
    source,
    out,
    *,
    encoding: str = "rgb",
    hsv_term: str = "sum",
    hsv_max_magnitude: float | None = None,
    encoder: ReynoldsEncoder | None = None,
    device="auto",
    batch: int = 8,
    reynolds_options: dict | None = None,
    progress: bool = True,
    **frame_options,
) -> dict:
    """Encode a video as ReynoldsFlow+ RGB (``encoding="rgb"``) or HSV (``"hsv"``) images, streamed.

    Args:
        source: video file, image folder or ``uint8 [T, H, W, 3]`` array.
        out: a video file (.mp4/.mov/.mkv/.webm/.avi) or a folder for PNGs named by source frame index.
        hsv_term: ``"v_o"`` | ``"v_r"`` | ``"sum"`` for ``encoding="hsv"``.
        hsv_max_magnitude: HSV full-brightness magnitude (default: largest magnitude of the first
            batch, then fixed so the video does not flicker).
        encoder: the RGB encoder (default ``ReynoldsEncoder()``: running 99th-percentile normalisation).
        device, batch: where and how many pairs per call.
        reynolds_options: options of :func:`reynolds_flow`.
        frame_options: start, stop, stride, max_frames, resize (see :func:`motion.open_video`).

    Returns:
        Summary: ``{"frames": number of images written, "out": path, "config": {...}, "stages": {...}}``
        (``stages``: items per busy second of decode / encode / write); the config is also written beside the output (``<out>.json`` for a video file, ``<out>/encode_config.json`` for a folder).
    """
    import json
    from pathlib import Path

    from tqdm.auto import tqdm

    from motion4d.atomic import atomic_write_text
    from motion4d.device import resolve_device
    from motion4d.imaging import frames_to_tensor

    from ..frames import open_video, same_size_frames
    from ..image_io import write_image
    from ..pipeline import BackgroundWriter, StageClock, closing_iterator, prefetch
    from ..video_writer import VideoWriter
    from ..windowing import plan_windows

    check_choice(encoding, "encoding", ("rgb", "hsv"))
    check_choice(hsv_term, "hsv_term", OUTPUTS)
    check_int(batch, "batch", minimum=1)
    encoder = encoder or ReynoldsEncoder()
    encoder.reset()
    options = dict(reynolds_options or {})
    model = ReynoldsFlow(output=hsv_term, **options)
    device = resolve_device(device)
    out = Path(out)
    to_video = out.suffix.lower() in VIDEO_EXTENSIONS
    video = open_video(source, **frame_options)
    name = str(video.path) if video.path is not None else "the frame array"
    config = {
        "source": str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__}>",
        "encoding": encoding,
        "channels": "R=|v_o|, G=|v_r|, B=intensity" if encoder.order == "RGB" else "R=intensity, G=|v_r|, B=|v_o|",
        "encoder": {k: getattr(encoder, k) for k in ("normalize", "bounds", "percentile", "momentum", "floor", "order")},
        "hsv_term": hsv_term,
        "hsv_max_magnitude": hsv_max_magnitude,
        "reynolds_options": options,
        "frame_options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in frame_options.items()},
        "device": str(device),
    }
    count = 0
    total = video.num_frames
    bar = tqdm(total=None if total is None else max(total - 1, 0), unit="frame", desc=f"encode ({encoding})", disable=not progress)
    writer = VideoWriter(out, fps=video.fps / frame_options.get("stride", 1)) if to_video else None
    clock = StageClock()

    def windows():  # on the decode thread: frames read and made into one tensor per window
        for window in plan_windows(same_size_frames(video, name), batch + 1, 2):
            yield window, frames_to_tensor(np.stack([f.image for f in window.frames]), device=device)[None]

    def store(index: int, image: np.ndarray) -> None:  # on the writer thread, in order
        if writer is not None:
            writer.write(image)
        else:
            write_image(out / f"{index:06d}.png", image)

    try:
        if writer is not None:
            writer.__enter__()
        with closing_iterator(prefetch(windows(), depth=2, name="decode", clock=clock)) as decoded, \
                BackgroundWriter(depth=2 * batch, name="write", clock=clock) as background:
            for window, frames in decoded:
                with clock.timing("encode", len(window.frames) - 1):
                    result = model(frames)
                    if encoding == "rgb":
                        images = encoder(result.extras["v_o"][0], result.extras["v_r"][0], result.extras["intensity"][0])
                    else:
                        if hsv_max_magnitude is None:
                            hsv_max_magnitude = max(float(result.forward.norm(dim=2).max()), 1e-3)
                        images = flow_to_hsv(result.forward[0], hsv_max_magnitude)
                for frame, image in zip(window.frames[:-1], images):
                    background.submit(store, frame.index, image)
                    count += 1
                    bar.update(1)
        if count == 0:
            raise InputFileError(f"{name} gives fewer than 2 frames; the encoding needs frame pairs")
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, exc.__traceback__)
            writer = None
        raise
    finally:
        bar.close()
        video.close()
        if writer is not None:
            writer.__exit__(None, None, None)
    config["hsv_max_magnitude"] = hsv_max_magnitude
    config_path = out.with_suffix(out.suffix + ".json") if to_video else out / "encode_config.json"
    atomic_write_text(config_path, json.dumps(config, indent=2, default=str))
    return {"frames": count, "out": out, "config": config, "stages": clock.summary()}
