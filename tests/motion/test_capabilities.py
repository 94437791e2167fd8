"""FlowModel capabilities: the default ``stream`` (pairwise windows), its ``skip`` and short-tail
handling, the windows it plans, the typed FlowOutput and the stream signature of the stateful models."""
from __future__ import annotations

import pickle

import pytest
import torch

import motion
from motion.models.base import FlowModel, FlowOutput
from motion.models.splatflow import SplatFlow, SplatFlowConfig
from motion.models.streamflow import StreamFlow, StreamFlowConfig
from motion.windowing import plan_windows
from motion4d.errors import InvalidArgumentError, ShapeError


def _frames(n: int, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    """``[n, 3, H, W]``: a smooth texture drifting 1 px per frame, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 8, w + n + 8, generator=g), 5, 1, 2)[0]
    return torch.stack([base[:, 4 : 4 + h, 4 + k : 4 + k + w] for k in range(n)]).clamp(0, 1)


class IdRecorder(FlowModel):
    """Flow of pair (a, b) = (id a, id b) everywhere, id = the frame's constant value * 100; records calls."""

    def __init__(self, min_frames: int = 2) -> None:
        super().__init__()
        self.min_frames = min_frames
        self.calls: list[list[int]] = []

    def forward(self, frames: torch.Tensor) -> FlowOutput:
        b, t, h, w = self.validate_frames(frames)
        ids = (frames[:, :, 0, 0, 0] * 100).round()
        self.calls.append(ids[0].int().tolist())
        flow = torch.stack([ids[:, :-1], ids[:, 1:]], dim=2)[..., None, None].expand(b, t - 1, 2, h, w)
        return FlowOutput(flow.clone(), extras={"calls": len(self.calls)})


def _id_frames(n: int) -> list[torch.Tensor]:
    return [torch.full((3, 4, 5), k / 100) for k in range(n)]


def _stream_pairs(chunks: list[FlowOutput]) -> list[tuple[int, int]]:
    return [(int(f[0, 0, 0]), int(f[1, 0, 0])) for c in chunks for f in c.forward[0]]


@pytest.mark.parametrize("name", ["dis", "tiny-flow"])
@pytest.mark.parametrize("batch", [1, 3, 16])
def test_default_stream_equals_pair_by_pair_calls(name, batch):
    torch.manual_seed(0)
    model = motion.create(name, device="cpu")
    frames = _frames(7)
    with torch.no_grad():
        pairwise = torch.stack([model(frames[k : k + 2][None]).forward[0, 0] for k in range(6)])
        reversed_pairs = torch.stack([model(frames[k : k + 2].flip(0)[None]).forward[0, 0] for k in range(6)])
    chunks = list(model.stream(iter(frames), backward=True, batch=batch))
    assert [c.first_pair for c in chunks] == list(range(0, 6, batch))
    assert all(c.num_pairs == min(batch, 6 - c.first_pair) for c in chunks)
    torch.testing.assert_close(torch.cat([c.forward for c in chunks], dim=1)[0], pairwise, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([c.backward for c in chunks], dim=1)[0], reversed_pairs, atol=1e-5, rtol=1e-5)
    assert all(c.backward is None for c in model.stream(iter(frames), batch=batch))


def test_default_stream_skips_windows_declared_done():
    model = IdRecorder()
    done = {0, 1, 2, 3, 5}
    chunks = list(model.stream(iter(_id_frames(9)), batch=2, skip=lambda k: k in done))
    # windows (0,1,2) and (2,3,4) are done: not run, empty chunks that move first_pair on
    assert model.calls == [[4, 5, 6], [6, 7, 8]]
    assert [(c.first_pair, c.num_pairs) for c in chunks] == [(2, 0), (4, 0), (4, 2), (6, 2)]
    assert _stream_pairs(chunks) == [(4, 5), (5, 6), (6, 7), (7, 8)]  # pair 5 is done but its window is not


def test_default_stream_extends_short_tails_to_min_frames():
    model = IdRecorder(min_frames=3)
    chunks = list(model.stream(iter(_id_frames(6)), batch=1))  # windows of max(batch + 1, min_frames) = 3
    assert model.calls == [[0, 1, 2], [2, 3, 4], [3, 4, 5]]  # the tail (4, 5) borrows frame 3
    assert _stream_pairs(chunks) == [(k, k + 1) for k in range(5)]
    assert [c.first_pair for c in chunks] == [0, 2, 4]
    assert [c.extras for c in chunks] == [{"calls": 1}, {"calls": 2}, {}]  # extras of a partly kept window dropped
    with pytest.raises(ShapeError, match="at least 3"):
        list(IdRecorder(min_frames=3).stream(iter(_id_frames(2))))
    with pytest.raises(InvalidArgumentError):
        list(model.stream(iter(_id_frames(3)), batch=0))


@pytest.mark.parametrize("n", range(0, 12))
@pytest.mark.parametrize("size, min_frames", [(2, 2), (4, 2), (4, 3), (5, 5)])
def test_plan_windows_cover_every_pair_once(n, size, min_frames):
    if 2 <= n < min_frames:
        with pytest.raises(ShapeError):
            list(plan_windows(range(n), size, min_frames))
        return
    windows = list(plan_windows(iter(range(n)), size, min_frames))
    pairs = [p for w in windows for p in w.pairs]
    assert pairs == [(k, k + 1) for k in range(n - 1)]
    for w in windows:
        assert min_frames <= len(w.frames) <= size
        assert w.frames == list(range(w.start, w.start + len(w.frames)))
        assert w.first_pair == w.pairs[0][0] and w.num_pairs == len(w.pairs)


def test_flow_output_typed_fields():
    forward = torch.zeros(1, 2, 2, 4, 4)
    typed = FlowOutput(forward, forward_low=forward[..., :1, :1], first_pair=4, extras={"v_o": 3})
    assert typed.num_pairs == 2 and typed.first_pair == 4 and typed.forward_iterations is None
    assert pickle.loads(pickle.dumps(typed)).extras == {"v_o": 3}


def test_stateful_streams_share_the_signature_and_refuse_backward():
    frames = [torch.rand(3, 64, 64) for _ in range(3)]
    for model in (SplatFlow(SplatFlowConfig(iters=1)), StreamFlow(StreamFlowConfig(iters=1, group_size=3))):
        with pytest.raises(InvalidArgumentError, match="backward=False"):
            next(model.eval().stream(iter(frames), backward=True, batch=4, skip=lambda k: False))
