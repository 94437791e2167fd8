"""RAFT's augmentation of a training clip, drawn once and applied to every frame: colour jitter,
the occlusion eraser, zoom / stretch, flips and a random crop (sparse ground truth scattered, never
interpolated). Every draw comes from an explicit ``torch.Generator``."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from motion4d.errors import InvalidArgumentError, ShapeError

from .config import AugmentConfig


def uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    """One float ``U(low, high)`` drawn from ``g``."""
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def _grayscale(img: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of ``[..., 3, H, W]`` as ``[..., 1, H, W]`` (torchvision's weights)."""
    r, g, b = img.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def adjust_hue(img: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue of RGB ``[..., 3, H, W]`` in [0, 1] by ``shift`` turns (torchvision's ``adjust_hue``)."""
    r, g, b = img.unbind(-3)
    maxc, minc = img.max(dim=-3).values, img.min(dim=-3).values
    delta = maxc - minc
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    hue = (hue + shift) % 1.0
    i = torch.floor(hue * 6.0)
    f = hue * 6.0 - i
    i = i.long() % 6
    v = maxc
    p, q, t = v * (1 - sat), v * (1 - sat * f), v * (1 - sat * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, rgb in enumerate(table):
        pick = i == k
        for c in range(3):
            out[c] = torch.where(pick, rgb[c], out[c])
    return torch.stack(out, dim=-3)


def color_jitter(img: torch.Tensor, strengths: Sequence[float], g: torch.Generator) -> torch.Tensor:
    """torchvision's ``ColorJitter`` with factors and order drawn from ``g``: brightness, contrast and
    saturation factors ``U(1 - s, 1 + s)``, hue shift ``U(-h, h)`` turns, applied in random order.
    ``img [..., 3, H, W]`` in [0, 1]; one draw for the whole tensor."""
    b, c, s, h = strengths
    factors = [max(0.0, uniform(g, 1 - b, 1 + b)), max(0.0, uniform(g, 1 - c, 1 + c)),
               max(0.0, uniform(g, 1 - s, 1 + s)), uniform(g, -h, h)]
    order = torch.randperm(4, generator=g).tolist()
    for k in order:
        if k == 0 and b > 0:
            img = (img * factors[0]).clamp(0, 1)
        elif k == 1 and c > 0:
            mean = _grayscale(img).mean(dim=(-3, -2, -1), keepdim=True)
            img = (factors[1] * img + (1 - factors[1]) * mean).clamp(0, 1)
        elif k == 2 and s > 0:
            img = (factors[2] * img + (1 - factors[2]) * _grayscale(img)).clamp(0, 1)
        elif k == 3 and h > 0:
            img = adjust_hue(img, factors[3])
    return img


def resize_flow(flow: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``flow [N, 2, H, W]`` and ``valid [N, H, W]`` to ``size``; vectors scale with the image.

    Fully valid frames are resized bilinearly. Sparse frames (partial masks) are never interpolated:
    each valid pixel is moved to the nearest pixel of the new grid, as RAFT's
    ``resize_sparse_flow_map`` does (here with the half-pixel mapping ``x' = (x + 0.5) s - 0.5`` of the
    bilinear frame resize, so the scattered vectors stay on the image content they belong to);
    pixels that receive nothing are invalid. All-invalid frames stay zero.
    """
    n, _, h, w = flow.shape
    new_h, new_w = size
    sx, sy = new_w / w, new_h / h
    scale = torch.tensor([sx, sy], dtype=flow.dtype).view(2, 1)
    out_flow = flow.new_zeros(n, 2, new_h, new_w)
    out_valid = valid.new_zeros(n, new_h, new_w)
    for t in range(n):
        mask = valid[t] >= 0.5
        if bool(mask.all()):
            out_flow[t] = F.interpolate(flow[t:t + 1], size=size, mode="bilinear", align_corners=False)[0] * scale.view(2, 1, 1)
            out_valid[t] = 1
        elif bool(mask.any()):
            ys, xs = mask.nonzero(as_tuple=True)
            nx = torch.round((xs.to(torch.float64) + 0.5) * sx - 0.5).long()
            ny = torch.round((ys.to(torch.float64) + 0.5) * sy - 0.5).long()
            keep = (nx >= 0) & (nx < new_w) & (ny >= 0) & (ny < new_h)
            ys, xs, nx, ny = ys[keep], xs[keep], nx[keep], ny[keep]
            out_flow[t][:, ny, nx] = flow[t][:, ys, xs] * scale
            out_valid[t][ny, nx] = 1
    return out_flow, out_valid


def eraser_targets(num_frames: int) -> tuple[int, ...]:
    """Frames the eraser may hit: the second of a pair, else the first and last of the clip (the
    frames the flows of the middle frame point to)."""
    return (1,) if num_frames == 2 else (0, num_frames - 1)


def erase_rectangles(frames: torch.Tensor, targets: Sequence[int], prob: float, bounds: tuple[int, int],
                     g: torch.Generator) -> torch.Tensor:
    """RAFT's eraser on ``frames [T, 3, H, W]``: each frame of ``targets``, with probability ``prob``,
    gets 1-2 rectangles of sides in ``[bounds[0], bounds[1])`` pixels (clipped at the border) filled
    with its mean colour. Returns a new tensor."""
    frames = frames.clone()
    _, _, h, w = frames.shape
    for t in targets:
        if uniform(g) >= prob:
            continue
        mean_colour = frames[t].mean(dim=(1, 2), keepdim=True)
        for _ in range(int(torch.randint(1, 3, (), generator=g))):
            x0, y0 = int(torch.randint(0, w, (), generator=g)), int(torch.randint(0, h, (), generator=g))
            dx, dy = (int(torch.randint(bounds[0], bounds[1], (), generator=g)) for _ in range(2))
            frames[t, :, y0:y0 + dy, x0:x0 + dx] = mean_colour
    return frames


class ClipAugmentor:
    """RAFT's augmentation drawn once per clip and applied to every frame (``clip`` as from
    :func:`~motion.training.clips.clip_from_item`).

    Photometric: colour jitter shared by all frames or (``asymmetric_color_prob``) per frame; then the
    optional eraser (:func:`erase_rectangles` on :func:`eraser_targets`).
    Spatial: zoom ``2^U(min_scale, max_scale)`` with optional per-axis stretch (at least crop + 8
    pixels), horizontal / vertical flips, random crop; flows are rescaled and sign-flipped with the
    frames. Dense flow is resized bilinearly, sparse flow scattered (:func:`resize_flow`).

    Every draw comes from one ``torch.Generator``: the one passed to the call, else the augmentor's own
    (``generator``, or a new one seeded with ``seed``; with neither, seeded from torch's global
    generator). The same generator state gives the same augmentation.
    """

    def __init__(self, config: AugmentConfig, seed: int | None = None, generator: torch.Generator | None = None) -> None:
        config.validate()
        if seed is not None and generator is not None:
            raise InvalidArgumentError("give ClipAugmentor a seed or a generator, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidArgumentError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if seed is None and generator is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        self.config = config
        self.generator = generator if generator is not None else torch.Generator().manual_seed(int(seed))

    def __call__(self, clip: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        g = generator if generator is not None else self.generator
        cfg = self.config
        clip = dict(clip)
        directions = [d for d in ("forward", "backward") if f"flow_{d}" in clip]
        frames = clip["frames"]
        _, _, h, w = frames.shape
        ch, cw = cfg.crop

        if any(cfg.color):
            if uniform(g) < cfg.asymmetric_color_prob:
                frames = torch.stack([color_jitter(f, cfg.color, g) for f in frames])
            else:
                frames = color_jitter(frames, cfg.color, g)
        if cfg.eraser_prob > 0:
            frames = erase_rectangles(frames, eraser_targets(len(frames)), cfg.eraser_prob, cfg.eraser_bounds, g)

        scale_x = scale_y = 2.0 ** uniform(g, cfg.min_scale, cfg.max_scale)
        if uniform(g) < cfg.stretch_prob:
            scale_x *= 2.0 ** uniform(g, -cfg.max_stretch, cfg.max_stretch)
            scale_y *= 2.0 ** uniform(g, -cfg.max_stretch, cfg.max_stretch)
        min_scale = max((ch + 8) / h, (cw + 8) / w)
        if uniform(g) < cfg.spatial_prob or min_scale > 1:
            scale_x, scale_y = max(scale_x, min_scale), max(scale_y, min_scale)
            size = (int(round(h * scale_y)), int(round(w * scale_x)))
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
            for d in directions:
                clip[f"flow_{d}"], clip[f"valid_{d}"] = resize_flow(clip[f"flow_{d}"], clip[f"valid_{d}"], size)
        for prob, axis, channel in ((cfg.h_flip_prob, -1, 0), (cfg.v_flip_prob, -2, 1)):
            if uniform(g) < prob:
                frames = frames.flip(axis)
                sign = torch.ones(1, 2, 1, 1)
                sign[0, channel] = -1
                for d in directions:
                    clip[f"flow_{d}"] = clip[f"flow_{d}"].flip(axis) * sign
                    clip[f"valid_{d}"] = clip[f"valid_{d}"].flip(axis)
        h, w = frames.shape[-2:]
        if h < ch or w < cw:
            raise ShapeError(f"clip of {h}x{w} pixels is smaller than the crop {ch}x{cw}")
        my, mx = cfg.crop_margin
        y0 = min(max(int(torch.randint(0, h - ch + my + 1, (), generator=g)), 0), h - ch)
        x0 = min(max(int(torch.randint(-mx, w - cw + mx + 1, (), generator=g)), 0), w - cw)
        out = {"frames": frames[..., y0:y0 + ch, x0:x0 + cw].contiguous()}
        for key, value in clip.items():
            if key != "frames":
                out[key] = value[..., y0:y0 + ch, x0:x0 + cw].contiguous()
        return out


