"""GFlow's run-time behaviour: per-iteration progress, frames handed over as they finish, Ctrl-C keeping
finished frames, resume, iteration budgets scaled to the image size, the default depth prior."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from splats.gflow import GFlow, GFlowConfig
from splats.gflow_schedule import MIN_SCHEDULE, PAPER_SCHEDULE, iteration_schedule
from splats.synthetic import monocular_sequence

FAST = dict(n_init=800, init_iterations=12, init_densify_at=(6,), camera_iterations=5, gaussian_iterations=6,
            camera_lr=1e-2)


@pytest.fixture(scope="module")
def seq():
    return monocular_sequence(n_frames=4, width=48, height=36, n_objects=1, n_tracks=16)[1]


def _fit(seq, **kwargs):
    return GFlow(GFlowConfig(**FAST)).fit(seq.frames, depth=seq.depth.numpy(), flow=(seq.forward_flow, seq.backward_flow),
                                          intrinsics=seq.cameras.K[0], **kwargs)


def test_progress_moves_every_iteration_and_frames_arrive_as_they_finish(seq, capsys):
    records, frames = [], []
    scene = _fit(seq, callback=records.append, on_frame=lambda t, s: frames.append((t, s.num_frames, len(s.poses))))
    total = FAST["init_iterations"] + 3 * (FAST["camera_iterations"] + FAST["gaussian_iterations"])
    assert len(records) == total
    stages = [(r["frame"], r["stage"]) for r in records]
    assert stages[:12] == [(0, "init")] * 12
    assert stages[12:17] == [(1, "camera")] * 5 and stages[17:23] == [(1, "gaussians")] * 6
    assert all(np.isfinite(r["psnr"]) and np.isfinite(r["loss"]) for r in records)
    assert records[11]["psnr"] > records[0]["psnr"]  # the first frame's fit improves
    assert frames == [(0, 1, 1), (1, 2, 2), (2, 3, 3), (3, 4, 4)]
    assert scene.num_frames == 4
    assert scene.occlusion_tolerance == GFlowConfig().track_occlusion_tolerance == 0.2  # the tracks' depth test
    err = capsys.readouterr().err
    assert f"{total}/{total}" in err and "psnr" in err  # the tqdm bar counts iterations, with PSNR


def test_interrupt_keeps_finished_frames_and_resume_matches_an_uninterrupted_run(seq, tmp_path):
    full = _fit(seq, progress=False)

    def stop(record):
        if record["frame"] == 2 and record["iteration"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(seq, checkpoint_dir=tmp_path, callback=stop, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame_00000.pt", "frame_00001.pt"]
    threads = torch.get_num_threads()
    resumed = _fit(seq, checkpoint_dir=tmp_path, progress=False)
    assert torch.get_num_threads() == threads  # the CPU thread setting is restored
    assert resumed.info["resumed_from_frame"] == 2
    torch.testing.assert_close(resumed.poses, full.poses, atol=1e-5, rtol=0)
    assert resumed.num_gaussians == full.num_gaussians


def test_iteration_budgets_follow_the_image_size():
    small, large = iteration_schedule(60, 80), iteration_schedule(120, 160)
    assert small == PAPER_SCHEDULE or all(small[k] >= large[k] for k in small)
    assert large["gaussian_iterations"] < small["gaussian_iterations"]  # 4x the pixels, fewer steps
    assert large["gaussian_iterations"] == pytest.approx(2 * large["camera_iterations"], abs=1)  # paper's ratio
    assert iteration_schedule(2000, 2000) == MIN_SCHEDULE
    assert iteration_schedule(10, 10) == PAPER_SCHEDULE
    assert iteration_schedule(120, 160, device_type="cuda") == PAPER_SCHEDULE
    assert iteration_schedule(120, 160, schedule="paper") == PAPER_SCHEDULE
    cfg = GFlowConfig(camera_iterations=7).resolved(120, 160, "cpu")
    assert cfg.camera_iterations == 7 and cfg.gaussian_iterations == large["gaussian_iterations"]
    n = cfg.init_iterations
    assert cfg.init_densify_at == (round(0.3 * n), round(0.6 * n))


def test_default_depth_prior_and_the_notice_for_a_turning_camera():
    pytest.importorskip("skimage")
    from splats.reprojected_scene import reprojected_video

    moving = reprojected_video(n_frames=3, long_side=64, seed=0, object_name=None)
    scene = GFlow(GFlowConfig(**FAST)).fit(moving.frames, intrinsics=moving.K, progress=False)
    assert scene.info["depth_method"] == "two-view" and scene.info["depth_notice"] is None
    turning = reprojected_video(n_frames=3, long_side=64, seed=0, object_name=None, camera_travel=0.0)
    with pytest.warns(UserWarning, match="does not translate"):
        scene = GFlow(GFlowConfig(**FAST)).fit(turning.frames, intrinsics=turning.K, progress=False)
    assert scene.info["depth_method"] == "constant"


def test_ctrl_c_while_a_frame_is_saved_waits_until_its_outputs_are_written(tmp_path):
    """SIGINT during the checkpoint / on_frame block is held until the block ends: a frame is saved
    with all its outputs or not at all (an interrupt right after the checkpoint used to leave the
    frame's PLY, poses and progress unwritten)."""
    import os
    import signal

    from splats.gflow import _deferred_interrupt

    original = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in an interactive run
    try:
        written = []
        with pytest.raises(KeyboardInterrupt):
            with _deferred_interrupt():
                os.kill(os.getpid(), signal.SIGINT)
                written.append("checkpoint")
                written.append("ply, poses, progress")
        assert written == ["checkpoint", "ply, poses, progress"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored

        calls = []  # a handler of the caller's gets the held signal after the block
        signal.signal(signal.SIGINT, lambda signum, frame: calls.append(len(written)))
        with _deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            written.append("more")
        assert calls == [3]

        # SIGINT ignored (a job started with `nohup ... &`): nothing is held or raised
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with _deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            written.append("unbothered")
        assert written[-1] == "unbothered" and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, original)
