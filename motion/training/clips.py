"""Training clips: the one sample schema, its converter, temporal reversal, and the clip datasets.

A *clip* is a dict of tensors

* ``frames``: float ``[T, 3, H, W]`` in [0, 1];
* ``flow_forward``: ``[T-1, 2, H, W]`` (t -> t+1); ``flow_backward``: ``[T-1, 2, H, W]`` (t+1 -> t),
  optional (then only forward flows are supervised);
* ``valid_forward`` / ``valid_backward``: float ``[T-1, H, W]`` masks, 1 where the ground truth holds
  (non-finite flow is invalid). A frame whose mask is neither all valid nor all invalid is *sparse*
  (KITTI, HD1K) and is augmented as RAFT's sparse augmentor does.

:func:`clip_from_item` is the one way in: it takes a data-set reader's
:class:`~motion.data.FlowSample` or an item dict with the keys above (frames may also be
``uint8 [T, H, W, 3]``, masks any numeric / bool type, arrays numpy or torch).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from motion4d.errors import InvalidArgumentError, ShapeError
from motion4d.imaging import frames_to_tensor

from ..data.base import FlowSample, reverse_pairs
from .augment import ClipAugmentor, uniform
from .config import AugmentConfig, TrainConfig


def _sample_arrays(sample: FlowSample) -> dict[str, np.ndarray]:
    """A reader's sample as channels-first item arrays; pairs without ground truth and a missing
    backward direction get all-invalid masks, so every item of a mixture has the same keys."""
    has = sample.has_flow[:, None, None]
    item = {"frames": sample.frames.transpose(0, 3, 1, 2), "flow_forward": sample.flow.transpose(0, 3, 1, 2),
            "valid_forward": (sample.valid & has).astype(np.float32)}
    if sample.flow_backward is not None:
        has_bw = sample.has_flow_backward[:, None, None]
        item["flow_backward"] = sample.flow_backward.transpose(0, 3, 1, 2)
        item["valid_backward"] = (sample.valid_backward & has_bw).astype(np.float32)
    else:
        item["flow_backward"] = np.zeros_like(item["flow_forward"])
        item["valid_backward"] = np.zeros_like(item["valid_forward"])
    return item


def clip_from_item(item: FlowSample | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A :class:`~motion.data.FlowSample` or an item dict as a clip (see the module docstring):
    float tensors, flows zeroed and masked out where they are not finite."""
    if isinstance(item, FlowSample):
        item = _sample_arrays(item)
    if not isinstance(item, Mapping) or "frames" not in item or "flow_forward" not in item:
        keys = sorted(item) if isinstance(item, Mapping) else type(item).__name__
        raise InvalidArgumentError(f"training items need 'frames' and 'flow_forward' (or be a FlowSample), got {keys}")
    frames = torch.as_tensor(np.asarray(item["frames"]) if not isinstance(item["frames"], torch.Tensor) else item["frames"])
    channels_last = frames.dim() == 4 and frames.shape[-1] == 3 and frames.shape[1] != 3
    if not channels_last and (frames.dim() != 4 or frames.shape[1] != 3):
        raise ShapeError(f"frames must be [T, 3, H, W] or [T, H, W, 3], got {list(frames.shape)}")
    frames = frames_to_tensor(frames if channels_last else frames.movedim(1, -1))  # float [T, 3, H, W] in [0, 1]
    t, _, h, w = frames.shape
    clip = {"frames": frames}
    for direction in ("forward", "backward"):
        flow = item.get(f"flow_{direction}")
        if flow is None:
            continue
        flow = torch.as_tensor(flow).float()
        if tuple(flow.shape) != (t - 1, 2, h, w):
            raise ShapeError(f"flow_{direction} must have shape [{t - 1}, 2, {h}, {w}], got {list(flow.shape)}")
        valid = item.get(f"valid_{direction}")
        valid = torch.ones(t - 1, h, w) if valid is None else torch.as_tensor(valid).float()
        if tuple(valid.shape) != (t - 1, h, w):
            raise ShapeError(f"valid_{direction} must have shape [{t - 1}, {h}, {w}], got {list(valid.shape)}")
        valid = (valid >= 0.5).float() * torch.isfinite(flow).all(dim=1)
        clip[f"flow_{direction}"] = torch.nan_to_num(flow, nan=0.0, posinf=0.0, neginf=0.0)
        clip[f"valid_{direction}"] = valid
    return clip


def reverse_clip(clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Play the clip backwards: forward flows become the reversed backward flows and vice versa
    (:func:`motion.data.base.reverse_pairs`).

    Without backward ground truth the reversed clip has no forward supervision (masked out).
    """
    forward = (clip["flow_forward"], clip["valid_forward"])
    if "flow_backward" in clip:
        backward = (clip["flow_backward"], clip["valid_backward"])
    else:
        backward = tuple(torch.zeros_like(x) for x in forward)
    (flow_fw, valid_fw), (flow_bw, valid_bw) = reverse_pairs(forward, backward)
    return {"frames": clip["frames"].flip(0), "flow_forward": flow_fw, "valid_forward": valid_fw,
            "flow_backward": flow_bw, "valid_backward": valid_bw}


def is_sparse(clip: dict[str, torch.Tensor]) -> bool:
    """True when some frame's valid mask is partial (KITTI / HD1K ground truth), not all or nothing."""
    for direction in ("forward", "backward"):
        valid = clip.get(f"valid_{direction}")
        if valid is None:
            continue
        per_frame = (valid >= 0.5).flatten(1)
        if bool((per_frame.any(1) & ~per_frame.all(1)).any()):
            return True
    return False


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of every random draw for sample ``index`` of ``epoch``."""
    state = np.random.SeedSequence([int(seed) % 2**63, int(epoch), int(index)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


class ClipDataset(Dataset):
    """Training clips from a dataset of items (anything :func:`clip_from_item` takes): conversion,
    temporal reversal and augmentation.

    Every random draw of sample ``index`` comes from :func:`sample_generator` ``(seed, epoch, index)``
    (the loop calls :meth:`set_epoch`), so a sample is the same in any process, data-loader worker
    or resumed run. Dense clips get ``augment``, sparse ones (:func:`is_sparse`) ``sparse_augment``;
    with ``config.augment`` False only random crops are taken. Subclasses change :meth:`item` (where
    items come from) and :meth:`augment_config` (per-sample settings, e.g. per data set).
    """

    def __init__(self, base: Dataset, config: TrainConfig, augment: AugmentConfig | None = None,
                 sparse_augment: AugmentConfig | None = None) -> None:
        self.base = base
        self.config = config
        self.dense_config = augment or AugmentConfig(crop=tuple(config.crop))
        self.sparse_config = sparse_augment or AugmentConfig.sparse(tuple(config.crop))
        for cfg in (self.dense_config, self.sparse_config):
            if tuple(cfg.crop) != tuple(config.crop):
                raise InvalidArgumentError(f"augmentation crop {tuple(cfg.crop)} differs from the training crop {tuple(config.crop)}")
            cfg.validate()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def item(self, index: int) -> FlowSample | Mapping[str, Any]:
        return self.base[index]

    def augment_config(self, index: int, sparse: bool) -> AugmentConfig:
        return self.sparse_config if sparse else self.dense_config

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = sample_generator(self.config.seed, self.epoch, index)
        clip = clip_from_item(self.item(index))
        if uniform(g) < self.config.reverse_prob:
            clip = reverse_clip(clip)
        if self.config.augment:
            settings = self.augment_config(index, is_sparse(clip))
        else:
            settings = AugmentConfig.crop_only(tuple(self.config.crop))
        clip = ClipAugmentor(settings, generator=g)(clip)
        if "flow_backward" not in clip:
            clip["flow_backward"] = torch.zeros_like(clip["flow_forward"])
            clip["valid_backward"] = torch.zeros_like(clip["valid_forward"])
        return clip


class SyntheticClips(Dataset):
    """Clips from :func:`motion.synthetic.make_sequence` (seed ``seed + index``) with exact forward
    and backward flow."""

    def __init__(self, num_clips: int = 64, num_frames: int = 5, height: int = 96, width: int = 128,
                 seed: int = 0, **scene: Any) -> None:
        self.num_clips, self.num_frames, self.height, self.width = num_clips, num_frames, height, width
        self.seed, self.scene = seed, scene

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict[str, Any]:
        from ..synthetic import make_sequence

        if not 0 <= index < self.num_clips:
            raise IndexError(index)
        seq = make_sequence(T=self.num_frames, height=self.height, width=self.width, seed=self.seed + index, **self.scene)
        return {"frames": seq.frames, "flow_forward": seq.flow_forward, "flow_backward": seq.flow_backward}


