"""GFlow building blocks against explicit references: epipolar masks, rigid flow, occlusion, pixel
sampling, unprojection, losses, pose metrics, prior loading and its errors, Scene4D files and tracks."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from motion4d.errors import CheckpointError, InvalidArgumentError, Motion4DError, NonFiniteError, ShapeError
from splats import epipolar
from splats.cameras import look_at, read_tum
from splats.gaussians import Gaussians
from splats.gflow import matrix_to_quat, pose_matrix
from splats.gflow_init import edge_probability, sample_pixels, unproject
from splats.gflow_inputs import load_depth, load_flow, load_frames, load_intrinsics, load_priors
from splats.gflow_losses import depth_loss, flow_loss, isotropy_loss, photometric_loss
from splats.pose_metrics import absolute_trajectory_error, relative_pose_error, umeyama
from splats.scene4d import Scene4D

K = torch.tensor([[40.0, 0, 23.5], [0, 40.0, 15.5], [0, 0, 1]])
H, W = 32, 48


def _rigid_pair(depth: torch.Tensor):
    pose0 = look_at(torch.tensor([0.0, 0.0, -3.0]), torch.zeros(3))
    pose1 = look_at(torch.tensor([0.25, -0.1, -2.8]), torch.tensor([0.05, 0.0, 0.0]))
    return pose0, pose1, epipolar.rigid_flow(depth, K, pose0, pose1)


def _wavy_depth() -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    return 3.0 + 0.4 * torch.sin(xs / 5) + 0.3 * torch.cos(ys / 4)


def test_rigid_flow_matches_explicit_projection():
    depth = _wavy_depth()
    pose0, pose1, flow = _rigid_pair(depth)
    kinv = np.linalg.inv(K.double().numpy())
    for (y, x) in [(0, 0), (5, 40), (31, 47), (17, 3)]:
        cam = kinv @ np.array([x, y, 1.0]) * float(depth[y, x])
        world = np.linalg.inv(pose0.double().numpy()) @ np.append(cam, 1.0)
        c1 = (pose1.double().numpy() @ world)[:3]
        uv = (K.double().numpy() @ c1)[:2] / c1[2]
        np.testing.assert_allclose(flow[:, y, x].double().numpy(), uv - [x, y], atol=1e-3)


def test_sampson_error_matches_formula_and_masks_independent_motion():
    depth = _wavy_depth()
    _, _, flow = _rigid_pair(depth)
    flow = flow.clone()
    flow[:, 10:18, 20:30] += torch.tensor([0.0, 3.0])[:, None, None]  # an object sliding down
    truth = torch.zeros(H, W, dtype=torch.bool)
    truth[10:18, 20:30] = True
    fundamental = epipolar.fundamental_from_flow(flow)
    assert fundamental is not None
    err = epipolar.sampson_error(flow, fundamental)
    fm = fundamental.numpy()
    for (y, x) in [(2, 2), (12, 25), (30, 44)]:
        p1 = np.array([x, y, 1.0])
        p2 = np.array([x + float(flow[0, y, x]), y + float(flow[1, y, x]), 1.0])
        fx1, ftx2 = fm @ p1, fm.T @ p2
        expected = abs(p2 @ fm @ p1) / math.sqrt(fx1[0] ** 2 + fx1[1] ** 2 + ftx2[0] ** 2 + ftx2[1] ** 2)
        assert float(err[y, x]) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    mask = epipolar.epipolar_moving_mask(flow, threshold=0.5)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.8
    assert float(err[~truth].median()) < 0.05


def test_static_camera_falls_back_to_flow_magnitude():
    flow = torch.zeros(2, H, W)
    flow[0, 5:10, 5:12] = 2.0
    mask = epipolar.epipolar_moving_mask(flow, opening_radius=0)
    assert mask[5:10, 5:12].all() and mask.sum() == 35


def test_forward_backward_occlusion_of_a_shift():
    fwd = torch.zeros(2, H, W)
    fwd[0] = 3.0
    bwd = -fwd.clone()
    occ = epipolar.forward_backward_occlusion(fwd, bwd)
    assert occ[:, -3:].all() and not occ[:, :-3].any()  # only pixels leaving the image
    bwd[:, 4:8, 4:8] = 0.0  # target pixels whose backward flow disagrees
    occ = epipolar.forward_backward_occlusion(fwd, bwd)
    assert occ[4:8, 1:5].all()


def test_edge_probability_and_sampling_follow_the_image():
    image = torch.zeros(3, H, W)
    image[:, :, W // 2:] = 1.0
    prob = edge_probability(image)
    assert float(prob.sum()) == pytest.approx(1.0, abs=1e-5)
    assert prob[:, W // 2 - 1: W // 2 + 1].mean() > 20 * prob[:, :5].mean()
    gen = torch.Generator().manual_seed(0)
    xy, p = sample_pixels(prob, 20000, gen)
    near_edge = ((xy[:, 0] - (W / 2 - 0.5)).abs() < 1.5).float().mean()
    expected = float(prob[:, W // 2 - 2: W // 2 + 1].sum())
    assert float(near_edge) == pytest.approx(expected, abs=0.03)
    assert (xy[:, 0] >= 0).all() and (xy[:, 0] <= W - 1).all()


def test_unproject_then_project_round_trip():
    pose = look_at(torch.tensor([0.3, -0.2, -2.0]), torch.zeros(3))
    xy = torch.tensor([[0.0, 0.0], [10.5, 20.25], [47.0, 31.0]])
    z = torch.tensor([1.0, 2.5, 4.0])
    world = unproject(xy, z, K, pose)
    cam = world @ pose[:3, :3].T + pose[:3, 3]
    np.testing.assert_allclose(cam[:, 2], z, atol=1e-5)
    uv = (cam @ K.T)[:, :2] / cam[:, 2:]
    np.testing.assert_allclose(uv, xy, atol=1e-4)


def test_pose_quaternion_round_trip():
    pose = look_at(torch.tensor([0.3, -0.2, -2.0]), torch.tensor([0.1, 0.0, 0.5]))
    q = matrix_to_quat(pose[:3, :3])
    np.testing.assert_allclose(pose_matrix(q, pose[:3, 3]), pose, atol=1e-6)


def test_losses_against_explicit_values():
    rendered = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert float(photometric_loss(rendered, rendered)) == pytest.approx(0.0, abs=1e-5)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:, :8] = True
    other = rendered.clone()
    other[:, :, 8:] += 0.5  # differences outside the mask do not count for the L2 part
    assert float(photometric_loss(other, rendered, mask, lambda_ssim=0.0)) == pytest.approx(0.0, abs=1e-7)
    d = torch.rand(16, 16) + 1
    assert float(depth_loss(d, 2 * d + 0.5, torch.tensor(2.0), torch.tensor(0.5))) == pytest.approx(0.0, abs=1e-6)
    assert float(depth_loss(d, d + 0.1, torch.tensor(1.0), torch.tensor(0.0))) == pytest.approx(0.1, abs=1e-5)
    flow = torch.zeros(2, 16, 16)
    flow[0] = 2.0
    uv0 = torch.tensor([[3.0, 4.0], [7.5, 9.0]])
    assert float(flow_loss(uv0, uv0 + torch.tensor([2.0, 0.0]), flow)) == pytest.approx(0.0, abs=1e-6)
    assert float(flow_loss(uv0, uv0 + torch.tensor([2.0, 1.0]), flow)) == pytest.approx(1.0, abs=1e-5)
    assert float(isotropy_loss(torch.zeros(5, 3))) == 0.0
    logs = torch.log(torch.tensor([[1.0, 2.0, 3.0]]))
    assert float(isotropy_loss(logs)) == pytest.approx(1.0, abs=1e-6)


def test_umeyama_recovers_a_similarity_and_ate_is_zero_after_it():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(20, 3))
    angle = 0.7
    rot = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    sim = umeyama(pts, 2.5 * pts @ rot.T + [1.0, -2.0, 0.5])
    assert sim.scale == pytest.approx(2.5)
    np.testing.assert_allclose(sim.rotation, rot, atol=1e-9)
    eyes = torch.stack([torch.linspace(-1, 1, 6), torch.zeros(6), torch.full((6,), -3.0)], -1)
    ref = look_at(eyes, torch.zeros(3)).double()
    c2w = torch.linalg.inv(ref)
    c2w[:, :3, 3] *= 0.3  # same trajectory at another scale
    metrics = absolute_trajectory_error(torch.linalg.inv(c2w), ref)
    assert metrics["ate_rmse"] < 1e-6 and metrics["scale"] == pytest.approx(1 / 0.3)
    assert relative_pose_error(torch.linalg.inv(c2w), ref)["rpe_trans"] < 1e-6


# ------------------------------------------------------------------ priors and their errors
def _frames(t=3):
    return (np.random.default_rng(0).random((t, H, W, 3)) * 255).astype(np.uint8)


def test_depth_folder_npy_and_png_and_size_handling(tmp_path):
    frames = _frames()
    depth = np.random.default_rng(1).random((3, H, W)).astype(np.float32) + 1
    for i, d in enumerate(depth):
        np.save(tmp_path / f"{i:03d}.npy", d)
    np.testing.assert_allclose(load_depth(tmp_path, frames), depth)
    png = tmp_path / "png"
    png.mkdir()
    for i, d in enumerate(depth):  # half-size 16-bit PNGs in millimetres
        cv2.imwrite(str(png / f"{i}.png"), (d[::2, ::2] * 1000).astype(np.uint16))
    loaded = load_depth(png, frames)
    assert loaded.shape == (3, H, W)
    np.testing.assert_allclose(loaded[:, ::2, ::2], np.floor(depth[:, ::2, ::2] * 1000), atol=1)
    called = load_depth(lambda f: np.full(f.shape[:2], 2.0), frames)
    assert (called == 2.0).all()


@pytest.mark.parametrize("case", ["count", "nan", "one_frame", "negative", "aspect", "folder_count", "flow_count",
                                  "intrinsics", "missing"])
def test_bad_inputs_raise_motion4d_errors(case, tmp_path):
    frames = _frames()
    depth = np.ones((3, H, W), np.float32)
    flow = (np.zeros((2, 2, H, W), np.float32), None)
    expected = {"count": ShapeError, "nan": NonFiniteError, "one_frame": InvalidArgumentError,
                "negative": InvalidArgumentError, "aspect": ShapeError, "folder_count": ShapeError,
                "flow_count": ShapeError, "intrinsics": ShapeError, "missing": Motion4DError}[case]
    kwargs = dict(frames=frames, depth=depth, flow=flow, intrinsics=None)
    if case == "count":
        kwargs["depth"] = depth[:2]
    elif case == "nan":
        depth[1, 3, 4] = np.nan
    elif case == "one_frame":
        kwargs["frames"], kwargs["depth"] = frames[:1], depth[:1]
    elif case == "negative":
        depth[0, 0, 0] = -1
    elif case == "aspect":
        kwargs["depth"] = np.ones((3, H, H), np.float32)
    elif case == "folder_count":
        for i in range(2):
            np.save(tmp_path / f"{i}.npy", depth[i])
        kwargs["depth"] = tmp_path
    elif case == "flow_count":
        kwargs["flow"] = (np.zeros((3, 2, H, W), np.float32), None)
    elif case == "intrinsics":
        kwargs["intrinsics"] = [1.0, 2.0]
    elif case == "missing":
        kwargs["depth"] = tmp_path / "nope"
    with pytest.raises(expected):
        load_priors(kwargs["frames"], kwargs["depth"], kwargs["flow"], kwargs["intrinsics"])


def test_flow_layouts_and_intrinsics():
    frames = _frames()
    fwd = np.random.default_rng(2).random((2, H, W, 2)).astype(np.float32)  # channels last
    forward, backward = load_flow((fwd, None), frames)
    assert backward is None and forward.shape == (2, 2, H, W)
    np.testing.assert_allclose(forward[1, 0], fwd[1, ..., 0])
    k = load_intrinsics((40.0, 41.0, 20.0, 15.0), H, W, 90.0)
    assert k[1, 1] == 41.0 and k[0, 2] == 20.0
    k = load_intrinsics(None, H, W, 90.0)
    assert float(k[0, 0]) == pytest.approx(W / 2) and float(k[0, 2]) == pytest.approx((W - 1) / 2)
    assert load_frames(frames.astype(np.float32) / 255).dtype == np.uint8


# ------------------------------------------------------------------ Scene4D
def _tiny_scene() -> Scene4D:
    """Two frames: a static plane of Gaussians and one Gaussian moving right between the frames."""
    ys, xs = torch.meshgrid(torch.linspace(-1.2, 1.2, 25), torch.linspace(-1.6, 1.6, 33), indexing="ij")
    plane = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.full((xs.numel(),), 2.0)], -1)
    n = len(plane) + 1

    def state(obj_x: float) -> dict[str, torch.Tensor]:
        means = torch.cat([plane, torch.tensor([[obj_x, 0.0, 1.5]])])
        g = Gaussians.from_points(means, torch.rand(n, 3, generator=torch.Generator().manual_seed(0)), scale=0.06,
                                  opacity=0.95)
        return {k: v for k, v in g.tensors().items()}

    poses = torch.stack([look_at(torch.tensor([0.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 2.0])),
                         look_at(torch.tensor([0.1, 0.0, -1.0]), torch.tensor([0.1, 0.0, 2.0]))])
    moving = torch.zeros(n, dtype=torch.bool)
    moving[-1] = True
    return Scene4D([state(0.0), state(0.2)], poses, K, W, H, moving, torch.zeros(n, dtype=torch.long),
                   info={"note": "tiny"})


def test_scene_tracks_follow_gaussian_centres_and_masks_show_the_mover():
    scene = _tiny_scene()
    uv_obj0, _ = scene.cameras(0).project(scene.positions(0)[-1:])
    query = np.array([[0, float(uv_obj0[0, 0, 0]), float(uv_obj0[0, 0, 1])], [0, 5.0, 5.0]], np.float32)
    tracks = scene.tracks(query)
    uv1, _ = scene.cameras(1).project(scene.positions(1)[-1:])
    np.testing.assert_allclose(tracks.xy[1, 0], uv1[0, 0].numpy(), atol=1e-3)
    # the static query moves with the camera only: explicit reprojection of its Gaussian
    gid = tracks.metadata["gaussian_ids"][1]
    uv_a, _ = scene.cameras(0).project(scene.positions(0)[gid:gid + 1])
    uv_b, _ = scene.cameras(1).project(scene.positions(1)[gid:gid + 1])
    np.testing.assert_allclose(tracks.xy[1, 1], (uv_b - uv_a)[0, 0].numpy() + [5.0, 5.0], atol=1e-3)
    assert tracks.visible.all()
    mask = scene.moving_mask(1)
    x, y = uv1[0, 0].round().long().tolist()
    assert mask[y, x] and mask.sum() < 0.1 * H * W
    t3 = scene.tracks_3d(query)
    np.testing.assert_allclose(t3.xyz[1, 0], scene.positions(1)[-1].numpy(), atol=1e-6)
    assert t3.xyz_camera[0, 0, 2] == pytest.approx(2.5, abs=1e-4)


def test_scene_save_load_export(tmp_path):
    scene = _tiny_scene()
    scene.save(tmp_path / "scene.pt")
    back = Scene4D.load(tmp_path / "scene.pt")
    assert torch.equal(back.poses, scene.poses) and torch.equal(back.moving, scene.moving)
    assert torch.allclose(back.render(1), scene.render(1))
    assert back.info == {"note": "tiny"}
    out = scene.export(tmp_path / "export", grid=8, video=False)
    for name in ("poses_tum.txt", "colmap/images.txt", "tracks.csv", "tracks.pkl", "tracks_3d.npz",
                 "masks/00001.png", "gaussians/frame_00001.ply", "scene.json"):
        assert (out / name).exists(), name
    _, w2c = read_tum(out / "poses_tum.txt")
    np.testing.assert_allclose(w2c.numpy(), scene.poses.double().numpy(), atol=1e-6)
    g = Gaussians.load_ply(out / "gaussians" / "frame_00001.ply")
    np.testing.assert_allclose(g.means.numpy(), scene.states[1]["means"].numpy(), atol=1e-6)
    (tmp_path / "bad.pt").write_bytes(b"not a scene")
    with pytest.raises(CheckpointError):
        Scene4D.load(tmp_path / "bad.pt")
    with pytest.raises(InvalidArgumentError):
        scene.render(5)


def test_visibility_is_a_one_sided_depth_test():
    """A half-transparent Gaussian in front of an opaque plane: the rendered (blended) depth lies
    between the layers. The front centre has nothing in front of it, so it is visible; the plane's
    centre right behind it is occluded; the plane's centres elsewhere are visible. (A two-sided test
    hid the front layer, which cost GFlow's tracks their occlusion accuracy.)"""
    ys, xs = torch.meshgrid(torch.linspace(-1.2, 1.2, 25), torch.linspace(-1.6, 1.6, 33), indexing="ij")
    plane = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.full((xs.numel(),), 2.0)], -1)
    means = torch.cat([plane, torch.tensor([[0.0, 0.0, 0.5]])])  # camera depths 3 and 1.5
    n = len(means)
    g = Gaussians.from_points(means, torch.full((n, 3), 0.5), scale=0.06, opacity=0.95)
    state = g.tensors()
    state["logit_opacities"][-1] = float(torch.logit(torch.tensor(0.5)))
    pose = look_at(torch.tensor([0.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 2.0]))[None]
    scene = Scene4D([state], pose, K, W, H, torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.long))
    _, z, visible = scene.visibility(0)
    uv, _ = scene.cameras(0).project(means[-1:])
    x, y = uv[0, 0].round().long().tolist()
    surface, _ = scene._surface(0)
    assert 1.5 * 1.1 < surface[y, x] < 3.0 / 1.1  # the blend: more than the tolerance from both layers
    behind = int(torch.nonzero((plane[:, :2].abs() < 1e-3).all(1)).squeeze())
    elsewhere = torch.nonzero((plane[:, :2].abs() >= 0.6).any(1) & (plane[:, :2].abs() <= 1.0).all(1)).squeeze(1)
    assert visible[-1]
    assert not visible[behind]
    assert visible[elsewhere].all()


@pytest.mark.parametrize("mask_relabel", [True, False])
def test_still_gaussians_inside_the_previous_motion_mask_become_moving(mask_relabel):
    """Camera at rest and zero flow, so the rigid-flow test relabels nothing; a still Gaussian created at
    a pixel inside frame 0's motion mask becomes moving at frame 1 exactly when ``mask_relabel`` is on."""
    from splats.gflow import GFlowConfig, _Run
    from splats.gflow_init import pixel_gaussians
    from splats.gflow_inputs import Priors

    images = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0))
    zeros = torch.zeros(1, 2, H, W)
    priors = Priors(images, torch.full((2, H, W), 3.0), 1.0, zeros, zeros.clone(), K)
    cfg = GFlowConfig(device="cpu", mask_relabel=mask_relabel).resolved(H, W, "cpu")
    run = _Run(cfg, priors, torch.device("cpu"))
    ys, xs = torch.meshgrid(torch.arange(0, H, 2).float(), torch.arange(0, W, 2).float(), indexing="ij")
    xy = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    eye = torch.eye(4)
    run.params = pixel_gaussians(images[0], priors.depth[0], K, eye, xy, torch.full((len(xy),), 1.5))
    run.moving = torch.zeros(len(xy), dtype=torch.bool)
    run.poses = [eye]
    run.prev = run._visibility(run.params, eye)
    assert run.prev["visible"].all()
    run.masks[0] = False
    run.masks[0, 8:20, 10:30] = True

    run._refine_labels(1, eye)

    in_mask = (xy[:, 1] >= 8) & (xy[:, 1] < 20) & (xy[:, 0] >= 10) & (xy[:, 0] < 30)
    expected = in_mask if mask_relabel else torch.zeros_like(in_mask)
    assert torch.equal(run.moving, expected)
