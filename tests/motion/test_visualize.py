"""Flow colour coding against the Middlebury definition, and the drawing helpers."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from motion.visualize import (
    color_wheel_legend,
    flow_arrows,
    flow_max_radius,
    flow_to_color,
    make_color_wheel,
    overlay_tracks,
    save_png,
    side_by_side,
    track_colors,
    write_flow_video,
)
from motion4d.errors import InvalidArgumentError, ShapeError

RED, YELLOW, GREEN, CYAN, BLUE, MAGENTA = (255, 0, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 0, 255), (255, 0, 255)


def _vec(u: float, v: float) -> np.ndarray:
    return np.array([[[u]], [[v]]], np.float64)


def _reference_color(u: float, v: float) -> tuple[int, int, int]:
    """Baker et al.'s computeColor for one normalised vector, as an explicit scalar procedure."""
    segments = [(15, (255, 0, 0), (255, 255, 0)), (6, (255, 255, 0), (0, 255, 0)), (4, (0, 255, 0), (0, 255, 255)),
                (11, (0, 255, 255), (0, 0, 255)), (13, (0, 0, 255), (255, 0, 255)), (6, (255, 0, 255), (255, 0, 0))]
    wheel = []
    for n, start, end in segments:
        for i in range(n):
            # each channel ramps from start to end in n steps, truncated like the C code
            wheel.append(tuple(s + (1 if e > s else -1) * math.floor(255 * i / n) if e != s else s
                               for s, e in zip(start, end)))
    rad = math.hypot(u, v)
    a = math.atan2(-v, -u) / math.pi
    fk = (a + 1) / 2 * (len(wheel) - 1)
    k0 = int(math.floor(fk))
    k1 = (k0 + 1) % len(wheel)
    f = fk - k0
    out = []
    for ch in range(3):
        col = ((1 - f) * wheel[k0][ch] + f * wheel[k1][ch]) / 255
        col = 1 - rad * (1 - col) if rad <= 1 else col * 0.75
        out.append(int(math.floor(255 * col)))
    return tuple(out)


def test_wheel_has_the_55_middlebury_colours() -> None:
    wheel = make_color_wheel()
    assert wheel.shape == (55, 3) and wheel.dtype == np.uint8
    for index, colour in ((0, RED), (15, YELLOW), (21, GREEN), (25, CYAN), (36, BLUE), (49, MAGENTA)):
        assert tuple(wheel[index]) == colour, index
    assert tuple(wheel[14]) == (255, math.floor(255 * 14 / 15), 0)


def test_directions_map_to_the_wheel_hues() -> None:
    wheel = make_color_wheel().astype(np.float64)
    right = flow_to_color(_vec(1, 0), max_radius=1)[0, 0]
    assert tuple(right) == RED
    left = flow_to_color(_vec(-1, 0), max_radius=1)[0, 0]
    np.testing.assert_array_equal(left, wheel[27])  # a = 0 -> wheel index 27 of 0..54: cyan-blue
    assert left[2] == 255 and left[0] == 0
    down = flow_to_color(_vec(0, 1), max_radius=1)[0, 0]
    np.testing.assert_array_equal(down, np.floor((wheel[13] + wheel[14]) / 2))  # orange-yellow
    up = flow_to_color(_vec(0, -1), max_radius=1)[0, 0]
    np.testing.assert_array_equal(up, np.floor((wheel[40] + wheel[41]) / 2))  # blue-violet
    assert up[2] == 255 and up[1] == 0
    assert tuple(flow_to_color(_vec(0, 0), max_radius=1)[0, 0]) == (255, 255, 255)


def test_saturation_and_max_radius() -> None:
    half = flow_to_color(_vec(0.5, 0), max_radius=1)[0, 0]
    assert tuple(half) == (255, 127, 127)  # 1 - 0.5 * (1 - col)
    beyond = flow_to_color(_vec(2, 0), max_radius=1)[0, 0]
    assert tuple(beyond) == (191, 0, 0)  # longer than max_radius: darkened to 75 %
    # fixed radius: the same vector looks the same whatever else is in the image
    a = np.zeros((2, 1, 2))
    a[:, 0, 0] = (3, 0)
    b = a.copy()
    b[:, 0, 1] = (30, 0)
    assert tuple(flow_to_color(a, max_radius=6)[0, 0]) == tuple(flow_to_color(b, max_radius=6)[0, 0])
    # default radius: the longest vector of each image is fully saturated
    assert tuple(flow_to_color(a)[0, 0]) == RED
    assert tuple(flow_to_color(b)[0, 0]) != RED
    with pytest.raises(InvalidArgumentError, match="max_radius"):
        flow_to_color(a, max_radius=0)


def test_matches_reference_procedure_on_random_vectors(rng: np.random.Generator) -> None:
    flow = rng.normal(0, 0.7, (2, 7, 9))
    image = flow_to_color(flow, max_radius=1.0)
    for y in range(7):
        for x in range(9):
            assert tuple(image[y, x]) == _reference_color(flow[0, y, x], flow[1, y, x]), (y, x)


def test_layouts_batches_torch_and_unknown_values(rng: np.random.Generator) -> None:
    flow = rng.normal(0, 3, (2, 3, 2, 5, 6)).astype(np.float32)
    batched = flow_to_color(flow)
    assert batched.shape == (2, 3, 5, 6, 3) and batched.dtype == np.uint8
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(batched[i, j], flow_to_color(flow[i, j]))  # per-image radius
    np.testing.assert_array_equal(flow_to_color(np.moveaxis(flow[0, 0], 0, -1)), batched[0, 0])
    np.testing.assert_array_equal(flow_to_color(torch.from_numpy(flow[0, 0])), batched[0, 0])
    # a single-column field [2, H, 2] is read channels-first; channels_last forces the other reading
    assert flow_to_color(np.zeros((2, 4, 2))).shape == (4, 2, 3)
    assert flow_to_color(np.zeros((2, 4, 2)), channels_last=True).shape == (2, 4, 3)
    unknown = flow[0, 0].copy()
    unknown[0, 1, 1] = np.nan
    unknown[1, 2, 2] = 1e10
    out = flow_to_color(unknown)
    assert tuple(out[1, 1]) == (0, 0, 0) and tuple(out[2, 2]) == (0, 0, 0)
    np.testing.assert_array_equal(out[0], batched[0, 0][0])  # unknown values do not change the scale
    with pytest.raises(ShapeError, match="flow"):
        flow_to_color(np.zeros((3, 4, 5)))


def test_flow_max_radius() -> None:
    flows = np.zeros((3, 2, 4, 4), np.float32)
    flows[1, 0, 0, 0] = 3.0
    flows[2, :, 1, 1] = (6.0, 8.0)
    flows[2, 0, 2, 2] = np.nan
    assert flow_max_radius(flows) == pytest.approx(10.0)
    assert flow_max_radius(iter(list(flows))) == pytest.approx(10.0)
    assert flow_max_radius(flows[:2]) == pytest.approx(3.0)
    assert flow_max_radius(np.zeros((2, 3, 3))) == 1.0
    many = np.zeros((2, 10, 10))
    many[0] = np.arange(100).reshape(10, 10)
    assert flow_max_radius(many, percentile=50) == pytest.approx(49.5)
    with pytest.raises(InvalidArgumentError, match="percentile"):
        flow_max_radius(many, percentile=0)
    with pytest.raises(InvalidArgumentError, match="empty"):
        flow_max_radius([])


def test_legend() -> None:
    legend = color_wheel_legend(101)
    assert legend.shape == (101, 101, 3) and legend.dtype == np.uint8
    assert tuple(legend[50, 50]) == (255, 255, 255)  # zero flow in the centre
    assert tuple(legend[0, 0]) == (255, 255, 255)  # outside the wheel
    r, g, b = legend[50, 97].astype(int)  # near the right rim: saturated red
    assert r > 200 and g < 60 and b < 60
    r, g, b = legend[50, 3].astype(int)  # left rim: cyan
    assert r < 60 and g > 150 and b > 200
    captioned = color_wheel_legend(101, max_radius=7.5)
    assert captioned.shape[1] == 101 and captioned.shape[0] > 101
    np.testing.assert_array_equal(captioned[:101], legend)
    assert (captioned[101:] < 128).any()  # the caption's text


def test_flow_arrows() -> None:
    image = np.full((48, 64, 3), 100, np.uint8)
    flow = np.zeros((2, 48, 64), np.float32)
    flow[0] = 8.0
    out = flow_arrows(image, flow, step=16)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, np.full((48, 64, 3), 100, np.uint8))  # input untouched
    # arrows start at (8, 8), (24, 8), ... and point right by 8 px
    assert (out[8, 9:15] != 100).any(axis=-1).all()
    assert (out[30:36, 0:5] == 100).all()  # between arrows nothing is drawn
    # no background: the flow colour code is used; zero flow draws no arrows
    plain = flow_arrows(None, np.zeros((48, 64, 2), np.float32))
    assert (plain == 255).all()
    with pytest.raises(ShapeError, match="same H, W"):
        flow_arrows(image[:10], flow)


def test_side_by_side_layout() -> None:
    a = np.full((10, 20, 3), 10, np.uint8)
    b = np.full((12, 15), 200, np.uint8)
    c = np.zeros((8, 8), bool)
    out = side_by_side([a, b], gap=4)
    assert out.shape == (12, 2 * 20 + 4, 3)
    assert (out[:10, :20] == 10).all() and (out[:12, 24:39] == 200).all() and (out[10:, :20] == 255).all()
    labelled = side_by_side([a, b, c], labels=["a", "b", "c"], columns=2, gap=2)
    top = labelled.shape[0] - 2 - 2 * 12
    label_h = top // 2
    assert labelled.shape == (2 * (12 + label_h) + 2, 2 * 20 + 2, 3)
    assert (labelled[label_h:label_h + 10, :20] == 10).all()
    assert (labelled[:label_h] < 128).any()  # text was drawn
    second_row = 12 + label_h + 2 + label_h
    assert (labelled[second_row:second_row + 8, :8] == 0).all()
    with pytest.raises(InvalidArgumentError, match="labels"):
        side_by_side([a, b], labels=["x"])
    with pytest.raises(ShapeError, match="uint8"):
        side_by_side([a.astype(np.float32)])


def test_overlay_tracks() -> None:
    frames = np.zeros((3, 40, 50, 3), np.uint8)
    xy = np.array([[[10, 10], [34, 30]], [[15, 10], [36, 30]], [[20, 10], [40, 30]]], np.float32)
    visible = np.array([[True, True], [True, True], [True, False]])
    colours = np.array([[255, 0, 0], [0, 255, 0]], np.uint8)
    out = overlay_tracks(frames, xy, visible, trail=2, radius=2, colors=colours)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert not frames.any()  # input untouched
    for t in range(3):
        assert tuple(out[t, 10, 10 + 5 * t]) == (255, 0, 0)  # filled dot at the current position
    assert out[2, 10, 12, 0] > 150 and not out[2, 10, 12, 1:].any()  # the (anti-aliased) trail from frame 0 to 2
    assert not out[0, 10, 17].any()  # no future trail in frame 0
    assert tuple(out[1, 30, 36]) == (0, 255, 0)
    assert out[2, 30, 40].max() < 40 and out[2, 30, 42, 1] > 150  # occluded: hollow circle
    hidden = overlay_tracks(frames[2], xy, visible, colors=colours, show_occluded=False)
    assert hidden.shape == (40, 50, 3) and not hidden[25:35, 38:45].any()  # no dot, no trail into it
    assert hidden[30, 35, 1] > 150  # the visible part of its trail stays
    single = overlay_tracks(frames[0], torch.from_numpy(xy), torch.from_numpy(visible), t=1, trail=0)
    assert single[10, 15].any() and not single[10, 10].any()
    assert track_colors(5).shape == (5, 3) and len({tuple(c) for c in track_colors(5)}) == 5
    with pytest.raises(ShapeError, match="visible"):
        overlay_tracks(frames, xy, visible[:2])
    with pytest.raises(InvalidArgumentError, match="t must"):
        overlay_tracks(frames[0], xy, t=3)


def test_save_png_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    image = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    path = save_png(tmp_path / "sub" / "x.png", image)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, image)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.png"]  # no temporary files left
    mask = save_png(tmp_path / "mask.png", np.eye(5, dtype=bool))
    assert cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)[2, 2] == 255
    with pytest.raises(InvalidArgumentError, match="png"):
        save_png(tmp_path / "x.jpg", image)


def test_write_flow_video(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    t, h, w = 4, 48, 64
    flows = np.zeros((t, 2, h, w), np.float32)
    for i in range(t):
        flows[i, 0] = 2.0 * (i + 1)  # rightward motion getting faster
    frames = np.full((t, h, w, 3), 80, np.uint8)
    path = write_flow_video(tmp_path / "flow.mp4", flows, fps=10, frames=frames, legend=False)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == t and decoded[0].shape == (h, 2 * w, 3)
    expected = [flow_to_color(f, max_radius=8.0) for f in flows]  # one radius for the clip: 8 px
    for got, want in zip(decoded, expected):
        assert np.abs(got[:, w:].astype(int) - want).mean() < 8
        assert np.abs(got[:, :w].astype(int) - 80).mean() < 8
    # the first flow is pale (short), the last saturated red: colours do not flicker to full red
    assert decoded[0][:, w:, 1].mean() > 150 and decoded[-1][:, w:, 1].mean() < 40
    # a generator with an explicit radius and the legend
    path2 = write_flow_video(tmp_path / "gen.mp4", (f for f in flows), fps=10, max_radius=4.0)
    with av.open(str(path2)) as container:
        assert sum(1 for _ in container.decode(video=0)) == t
    with pytest.raises(InvalidArgumentError, match="empty"):
        write_flow_video(tmp_path / "none.mp4", [], fps=10)
    assert not (tmp_path / "none.mp4").exists()
