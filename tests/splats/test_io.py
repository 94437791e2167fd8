"""Gaussian parameters, PLY files, camera trajectories (TUM, COLMAP, transforms.json), D-NeRF layout."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from motion4d.errors import InputFileError, MissingFileError, NonFiniteError, ShapeError
from splats.cameras import (
    Cameras,
    look_at,
    read_colmap_text,
    read_transforms_json,
    read_tum,
    write_colmap_text,
    write_transforms_json,
    write_tum,
)
from splats.dnerf import read_dnerf, write_dnerf
from splats.gaussians import Gaussians, quat_to_rotmat, read_ply


def _gaussians(n: int = 20, sh_degree: int | None = None) -> Gaussians:
    g = torch.Generator().manual_seed(0)
    colors = torch.rand(n, 3, generator=g) if sh_degree is None else torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g)
    return Gaussians(torch.randn(n, 3, generator=g), torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g),
                     torch.randn(n, generator=g), colors)


def _cameras(n: int = 3) -> Cameras:
    eyes = torch.stack([torch.tensor([math.sin(a), -0.2, -3 * math.cos(a)]) for a in np.linspace(-0.4, 0.4, n)])
    return Cameras.from_fov(look_at(eyes, torch.zeros(3)), 40, 30, 55.0)


@pytest.mark.parametrize("sh_degree", [None, 0, 3])
def test_ply_roundtrip(tmp_path, sh_degree):
    g = _gaussians(sh_degree=sh_degree)
    g.save_ply(tmp_path / "g.ply")
    back = Gaussians.load_ply(tmp_path / "g.ply")
    if sh_degree == 0:  # a DC-only file reads back as the equivalent RGB colours
        torch.testing.assert_close(back.colors, g.rgb, atol=1e-5, rtol=1e-5)
        g = g.replace(colors=g.rgb)
    for k, v in g.tensors().items():
        torch.testing.assert_close(back.tensors()[k], v, atol=1e-5, rtol=1e-5)


def test_ply_inria_layout_and_gsplat_export_is_readable(tmp_path):
    g = _gaussians(sh_degree=3)
    g.save_ply(tmp_path / "ours.ply")
    header = (tmp_path / "ours.ply").read_bytes().split(b"end_header")[0].decode()
    props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    assert props[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert props[9:54] == [f"f_rest_{i}" for i in range(45)]
    assert props[54:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    # channel-major f_rest: f_rest_0..14 are the red coefficients of bands 1..3
    v = np.frombuffer((tmp_path / "ours.ply").read_bytes()[len(header) + len("end_header\n"):], dtype="<f4")
    v = v.reshape(20, -1)
    np.testing.assert_allclose(v[:, 9:24], g.colors[:, 1:, 0].numpy(), rtol=1e-6)
    gsplat = pytest.importorskip("gsplat")
    gsplat.export_splats(means=g.means, scales=g.log_scales, quats=g.quats, opacities=g.logit_opacities,
                         sh0=g.colors[:, :1], shN=g.colors[:, 1:], format="ply", save_to=str(tmp_path / "gs.ply"))
    back = read_ply(tmp_path / "gs.ply")  # no normals in gsplat's layout
    torch.testing.assert_close(back.means, g.means)
    torch.testing.assert_close(back.colors, g.colors, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back.log_scales, g.log_scales)


def test_bad_gaussians_and_ply_files(tmp_path):
    g = _gaussians()
    bad = g.means.clone()
    bad[0, 0] = math.nan
    with pytest.raises(NonFiniteError, match="means"):
        Gaussians(bad, g.quats, g.log_scales, g.logit_opacities, g.colors)
    with pytest.raises(ShapeError, match="quats"):
        Gaussians(g.means, g.quats[:, :3], g.log_scales, g.logit_opacities, g.colors)
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                      b"property float z\nproperty float opacity\nend_header\n")
    with pytest.raises(InputFileError, match="no Gaussians"):
        read_ply(empty)
    with pytest.raises(MissingFileError):
        read_ply(tmp_path / "missing.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply")
    with pytest.raises(InputFileError, match="not a PLY"):
        read_ply(tmp_path / "junk.ply")
    g.save_ply(tmp_path / "cut.ply")
    raw = (tmp_path / "cut.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(raw[:-10])
    with pytest.raises(InputFileError, match="truncated"):
        read_ply(tmp_path / "cut.ply")


def test_quaternion_convention_wxyz():
    # 90 degrees about z maps x to y
    q = torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)])
    torch.testing.assert_close(quat_to_rotmat(q) @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1.0, 0.0]))


def test_camera_projection_and_look_at():
    cams = _cameras()
    uv, z = cams.project(torch.zeros(1, 3))
    # the look-at target projects to the principal point
    torch.testing.assert_close(uv[:, 0], cams.K[:, :2, 2], atol=1e-4, rtol=0)
    torch.testing.assert_close(z[:, 0], cams.centers.norm(dim=-1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ShapeError, match="world_to_cam"):
        Cameras(cams.K, cams.world_to_cam[:2], 40, 30)
    with pytest.raises(NonFiniteError):
        Cameras(cams.K, cams.world_to_cam * math.inf, 40, 30)


def test_tum_roundtrip(tmp_path):
    cams = _cameras(4)
    write_tum(tmp_path / "traj.txt", [0.0, 0.1, 0.2, 0.3], cams.world_to_cam)
    stamps, w2c = read_tum(tmp_path / "traj.txt")
    np.testing.assert_allclose(stamps, [0.0, 0.1, 0.2, 0.3])
    torch.testing.assert_close(w2c.float(), cams.world_to_cam, atol=1e-6, rtol=1e-6)
    # the TUM translation is the camera centre (camera-to-world)
    first = (tmp_path / "traj.txt").read_text().splitlines()[1].split()
    np.testing.assert_allclose([float(x) for x in first[1:4]], cams.centers[0].numpy(), atol=1e-6)
    (tmp_path / "bad.txt").write_text("0 1 2 3\n")
    with pytest.raises(InputFileError, match="expected 8 values"):
        read_tum(tmp_path / "bad.txt")


def test_colmap_roundtrip_and_pixel_convention(tmp_path):
    cams = _cameras(3)
    write_colmap_text(tmp_path, cams, ["a.png", "b.png", "c.png"])
    back, names = read_colmap_text(tmp_path)
    assert names == ["a.png", "b.png", "c.png"]
    torch.testing.assert_close(back.world_to_cam, cams.world_to_cam, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(back.K, cams.K)
    # COLMAP's principal point is at +0.5 of ours
    line = (tmp_path / "cameras.txt").read_text().splitlines()[1].split()
    assert float(line[6]) == pytest.approx(float(cams.K[0, 0, 2]) + 0.5)


def test_transforms_json_opengl_axes(tmp_path):
    cams = _cameras(2)
    write_transforms_json(tmp_path / "transforms.json", cams, ["a.png", "b.png"], times=np.array([0.0, 1.0]))
    meta = json.loads((tmp_path / "transforms.json").read_text())
    c2w_gl = torch.tensor(meta["frames"][0]["transform_matrix"])
    # OpenGL: the camera looks down its -z axis, here towards the origin
    forward = -c2w_gl[:3, 2]
    toward_origin = -c2w_gl[:3, 3] / c2w_gl[:3, 3].norm()
    torch.testing.assert_close(forward, toward_origin, atol=1e-5, rtol=0)
    back = read_transforms_json(tmp_path / "transforms.json")
    torch.testing.assert_close(back.cameras.world_to_cam, cams.world_to_cam, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(back.cameras.K, cams.K)
    np.testing.assert_allclose(back.times, [0.0, 1.0])
    # Blender / D-NeRF camera_angle_x form
    meta2 = {"camera_angle_x": 2 * math.atan(20 / cams.K[0, 0, 0].item()),
             "frames": [{"file_path": "./a", "time": 0.5, "transform_matrix": c2w_gl.tolist()}]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta2))
    blender = read_transforms_json(tmp_path / "transforms_train.json", width=40, height=30)
    torch.testing.assert_close(blender.cameras.K[0], cams.K[0], atol=1e-4, rtol=1e-5)
    assert blender.image_paths[0].name == "a.png"


def test_dnerf_layout_roundtrip(tmp_path):
    cams = _cameras(3)
    frames = np.random.default_rng(0).integers(0, 255, (3, 30, 40, 3), dtype=np.uint8)
    write_dnerf(tmp_path, "train", frames, cams, [0.0, 0.5, 1.0])
    split = read_dnerf(tmp_path, "train")
    np.testing.assert_array_equal(split.frames, frames)
    np.testing.assert_allclose(split.times, [0.0, 0.5, 1.0])
    torch.testing.assert_close(split.cameras.world_to_cam, cams.world_to_cam, atol=1e-5, rtol=1e-5)
    with pytest.raises(MissingFileError, match="transforms_test.json"):
        read_dnerf(tmp_path, "test")
