"""estimate_flow: windowing for pairwise / streaming models, outputs, resume, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import motion
from motion.estimate import estimate_flow
from motion.flow_io import read_flow
from motion.image_io import write_image
from motion.models.base import FlowModel, FlowOutput
from motion.synthetic import make_sequence
from motion.video_writer import write_video
from motion4d.errors import InputFileError, InvalidArgumentError, Motion4DError


def _indexed_frames(n: int, h: int = 6, w: int = 7) -> np.ndarray:
    """Frame k is filled with the value 10 k (so a model can tell which frames it was given)."""
    return np.stack([np.full((h, w, 3), 10 * k, np.uint8) for k in range(n)])


class PairRecorder(FlowModel):
    """Flow of pair (a, b) = (id(a), id(b)) everywhere, where id is the frame's fill value / 10."""

    frames_per_window = 2
    min_frames = 2

    def __init__(self, fail_after: int | None = None):
        super().__init__()
        self.calls: list[tuple[int, int]] = []
        self.fail_after = fail_after

    def forward(self, frames: torch.Tensor) -> FlowOutput:
        b, t, h, w = self.validate_frames(frames)
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # simulates Ctrl-C in the middle of a run
        self.calls.append((b, t))
        ids = (frames[:, :, 0, 0, 0] * 255 / 10).round()  # [B, T]
        flow = torch.stack([ids[:, :-1], ids[:, 1:]], dim=2)[..., None, None].expand(b, t - 1, 2, h, w)
        return FlowOutput(forward=flow.float().clone())


class StreamRecorder(PairRecorder):
    """A stateful model: yields flows of two pairs at a time through ``stream`` (forward only)."""

    def stream(self, frames, backward=False, *, batch=8, skip=None):
        buffer = []
        for frame in frames:
            buffer.append(frame)
            if len(buffer) == 3:
                yield self(torch.stack(buffer)[None])
                buffer = buffer[-1:]
        if len(buffer) >= 2:
            yield self(torch.stack(buffer)[None])


def _pairs(result) -> list[tuple[int, int]]:
    return [(int(f[0, 0, 0]), int(f[1, 0, 0])) for f in result.forward]


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_pairwise_windows_cover_every_pair_once(batch):
    model = PairRecorder()
    result = estimate_flow(_indexed_frames(9), model, device="cpu", batch=batch, progress=False)
    assert _pairs(result) == [(k, k + 1) for k in range(8)]
    assert result.frame_indices.tolist() == list(range(9))
    assert all(b == 1 and t <= batch + 1 for b, t in model.calls)
    assert len(model.calls) == -(-8 // batch)


def test_stream_models_and_reversed_backward():
    model = StreamRecorder()
    result = estimate_flow(_indexed_frames(6), model, device="cpu", progress=False)
    assert _pairs(result) == [(k, k + 1) for k in range(5)]
    pairwise = estimate_flow(_indexed_frames(5), PairRecorder(), device="cpu", backward=True, progress=False)
    back = [(int(f[0, 0, 0]), int(f[1, 0, 0])) for f in pairwise.backward]
    assert back == [(k + 1, k) for k in range(4)]  # backward[k] is the flow k+1 -> k
    with pytest.raises(InvalidArgumentError):
        estimate_flow(_indexed_frames(4), StreamRecorder(), device="cpu", backward=True, progress=False)


def test_matches_direct_model_calls_and_frame_selection():
    seq = make_sequence(T=7, height=40, width=56, seed=2)
    model = motion.create("dis", device="cpu")
    reference = model(seq.frames_tensor()).forward[0]
    result = estimate_flow(seq.frames, "dis", device="cpu", batch=4, progress=False)
    assert torch.equal(result.forward, reference)
    strided = estimate_flow(seq.frames, "dis", device="cpu", start=1, stride=2, progress=False)
    assert strided.frame_indices.tolist() == [1, 3, 5]
    direct = model(seq.frames_tensor()[:, 1::2]).forward[0]
    assert torch.equal(strided.forward, direct)


def test_outputs_resume_and_config(tmp_path):
    frames = _indexed_frames(8, 32, 40)
    out = tmp_path / "flow"
    interrupted = PairRecorder(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        estimate_flow(frames, interrupted, device="cpu", batch=2, out_dir=out, formats=("flo", "npz"), progress=False)
    finished = sorted(p.name for p in (out / "forward").iterdir())
    assert finished == [f"{k:06d}.{ext}" for k in range(4) for ext in ("flo", "npz")]  # 2 calls x 2 pairs, no partial files
    resumed = PairRecorder()
    result = estimate_flow(frames, resumed, device="cpu", batch=2, out_dir=out, formats=("flo", "npz"), progress=False)
    assert (result.computed, result.skipped) == (3, 4)
    assert len(resumed.calls) == 2  # only the windows that were not finished
    flow, valid = read_flow(out / "forward" / "000006.flo")
    assert valid.all() and flow[0, 0].tolist() == [6, 7]  # the resumed run wrote pair 6 -> 7
    again = PairRecorder()
    result = estimate_flow(frames, again, device="cpu", batch=2, out_dir=out, formats=("flo", "npz"), progress=False,
                           keep_in_memory=True)
    assert again.calls == [] and result.skipped == 7 and result.forward.shape == (7, 2, 32, 40)
    config = json.loads((out / "flow_config.json").read_text())
    assert config["model"] == "PairRecorder" and config["formats"] == ["flo", "npz"]
    with pytest.raises(InvalidArgumentError, match="different configuration"):
        estimate_flow(frames, again, device="cpu", out_dir=out, stride=2, progress=False)


def test_writes_every_format(tmp_path):
    seq = make_sequence(T=4, height=32, width=40, seed=4)
    out = tmp_path / "all"
    result = estimate_flow(seq.frames, "dis", device="cpu", out_dir=out, formats=("flo", "png", "npz", "color", "mp4"),
                           backward=True, progress=False, keep_in_memory=True)
    for direction, flows in (("forward", result.forward), ("backward", result.backward)):
        for k in range(3):
            for ext, tol in (("flo", 1e-6), ("npz", 1e-6), ("png", 1 / 64)):
                flow, _ = read_flow(out / direction / f"{k:06d}.{ext}")
                assert np.abs(flow - flows[k].permute(1, 2, 0).numpy()).max() <= tol
            assert (out / f"{direction}_color" / f"{k:06d}.png").exists()
        assert motion.read_frames(out / f"{direction}_color.mp4").shape == (3, 32, 40, 3)


def test_bad_input(tmp_path):
    with pytest.raises(motion.MissingFileError):
        estimate_flow(tmp_path / "missing.mp4", "dis", progress=False)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01 definitely not a video" * 50)
    with pytest.raises(InputFileError):
        estimate_flow(garbage, "dis", progress=False)
    single = tmp_path / "single.mp4"
    write_video(single, np.zeros((1, 16, 16, 3), np.uint8), fps=5)
    with pytest.raises(Motion4DError, match="at least 2"):
        estimate_flow(single, "dis", progress=False)
    with pytest.raises(Motion4DError, match="at least 2"):
        estimate_flow(np.zeros((1, 16, 16, 3), np.uint8), "dis", progress=False)
    folder = tmp_path / "frames"
    write_image(folder / "0.png", np.zeros((16, 16, 3), np.uint8))
    write_image(folder / "1.png", np.zeros((16, 20, 3), np.uint8))
    with pytest.raises(Motion4DError):
        estimate_flow(folder, "dis", progress=False)
    with pytest.raises(Motion4DError):
        estimate_flow([folder / "0.png", folder / "1.png"], "dis", progress=False)
    with pytest.raises(InvalidArgumentError):
        estimate_flow(np.zeros((3, 16, 16, 3), np.uint8), "dis", batch=0, progress=False)
    with pytest.raises(InvalidArgumentError):
        estimate_flow(np.zeros((3, 16, 16, 3), np.uint8), "dis", out_dir=tmp_path / "x", formats=("gif",), progress=False)
    with pytest.raises(InvalidArgumentError):
        estimate_flow(np.zeros((3, 16, 16, 3), np.uint8), "no-such-model", progress=False)


def test_flow_video_has_a_legend_and_the_radius_is_recorded(tmp_path):
    """Issue #17: the colour video had no key and the config said ``color_max_radius: null``."""
    frames = np.random.default_rng(1).integers(0, 256, (4, 64, 96, 3), dtype=np.uint8)
    frames[1:] = np.roll(frames[0], 3, axis=1)[None]
    out = tmp_path / "flow"
    result = estimate_flow(frames, "dis", device="cpu", out_dir=out, formats=("npz", "mp4"), progress=False)
    radius = json.loads((out / "flow_config.json").read_text())["color_max_radius"]
    assert radius is not None and radius == pytest.approx(float(result.config["color_max_radius"]))
    first = motion.read_frames(out / "forward_color.mp4", stop=1)[0]
    from motion.visualize import with_legend

    flow, _ = motion.read_flow(out / "forward" / "000000.npz")
    expected = with_legend(motion.flow_to_color(flow, max_radius=radius), radius)
    corner = (slice(0, 16), slice(0, 16))
    assert np.abs(first[corner].astype(int) - expected[corner].astype(int)).mean() < 20  # the key (video-coded)
    plain = motion.flow_to_color(flow, max_radius=radius)
    assert np.abs(first[corner].astype(int) - plain[corner].astype(int)).mean() > 30  # not the flow colours
