"""OpenCV DIS / Farneback behind FlowModel: identical to direct OpenCV calls, accurate on exact-flow scenes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import motion
from motion.models.classical import frames_to_grey_uint8
from motion.sample_data import middlebury_frames
from motion.synthetic import warp_image_sequence
from motion4d.errors import InvalidArgumentError, ShapeError


@pytest.fixture(scope="module")
def warped():
    photo = middlebury_frames("RubberWhale")[0]
    return warp_image_sequence(photo[:200, :280], T=3, seed=0, max_speed=5.0)


def test_registered_names():
    names = motion.list_models()
    for name in ("dis", "dis-ultrafast", "dis-fast", "dis-medium", "farneback", "reynolds"):
        assert name in names


@pytest.mark.parametrize("name,expected_epe", [("dis", 0.15), ("dis-fast", 0.25), ("farneback", 0.3)])
def test_accuracy_on_exact_flow(warped, name, expected_epe):
    frames = warped.frames_tensor()
    out = motion.create(name, device="cpu", backward=True)(frames)
    assert out.forward.shape == (1, 2, 2, *frames.shape[-2:]) and out.forward.dtype == torch.float32
    margin = 12
    valid = ~warped.occlusion[:, margin:-margin, margin:-margin]
    err = np.linalg.norm(out.forward[0].numpy() - warped.flow_forward, axis=1)[:, margin:-margin, margin:-margin]
    epe = err[valid].mean()
    zero = np.linalg.norm(warped.flow_forward, axis=1)[:, margin:-margin, margin:-margin][valid].mean()
    print(f"\n{name}: EPE {epe:.3f} px (zero flow {zero:.3f})")
    assert epe < expected_epe and epe < 0.1 * zero
    back = np.linalg.norm(out.backward[0].numpy() - warped.flow_backward, axis=1)[:, margin:-margin, margin:-margin]
    assert back[~warped.occlusion_backward[:, margin:-margin, margin:-margin]].mean() < expected_epe


def test_matches_direct_opencv_calls(warped):
    frames = warped.frames_tensor()
    grey = frames_to_grey_uint8(frames)[0]
    assert np.abs(grey[0].astype(int) - cv2.cvtColor(warped.frames[0], cv2.COLOR_RGB2GRAY).astype(int)).max() <= 1
    dis = motion.create("dis-fast", device="cpu")(frames).forward[0, 0].numpy()
    ref = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST).calc(grey[0], grey[1], None)
    assert np.array_equal(dis, ref.transpose(2, 0, 1))
    fb = motion.create("farneback", device="cpu")(frames).forward[0, 0].numpy()
    ref = cv2.calcOpticalFlowFarneback(grey[0], grey[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
    assert np.array_equal(fb, ref.transpose(2, 0, 1))


def test_bad_arguments():
    with pytest.raises(InvalidArgumentError):
        motion.create("dis", preset="slow")
    with pytest.raises(InvalidArgumentError):
        motion.create("dis", weights="model.pth")
    with pytest.raises(InvalidArgumentError):
        motion.create("farneback", poly_n=6)
    with pytest.raises(ShapeError):
        motion.create("dis")(torch.rand(1, 1, 3, 16, 16))
    with pytest.raises(ShapeError):
        motion.create("dis")(torch.rand(1, 2, 1, 16, 16))


def test_dis_survives_thin_frames():
    """OpenCV's DIS segfaults on thin frames (24x100 fast, 12x64 medium, 8x40 any preset; measured
    on OpenCV 5.1): the wrapper pads them, so the process lives and the flow has the frame's size.
    Run in a child process, since the failure is a crash."""
    import subprocess
    import sys

    code = (
        "import numpy as np, motion\n"
        "rng = np.random.default_rng(0)\n"
        "for preset in ('dis-ultrafast', 'dis-fast', 'dis-medium'):\n"
        "    model = motion.create(preset, device='cpu')\n"
        "    for h, w in ((8, 8), (8, 40), (12, 64), (24, 100), (30, 512), (100, 24)):\n"
        "        frames = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)\n"
        "        assert model(frames).forward.shape == (1, 1, 2, h, w)\n"
        "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr[-2000:])
