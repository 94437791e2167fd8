"""PointCloud container, file IO round trips, depth unprojection and padded batches."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from motion4d.errors import InputFileError, InvalidArgumentError, MissingFileError, NonFiniteError, ShapeError
from pointclouds.cloud import PointCloud, depth_to_points, pad_batch, read_cloud, unpad_batch, write_cloud


@pytest.fixture
def cloud(rng: np.random.Generator) -> PointCloud:
    n = 257
    return PointCloud(
        rng.normal(size=(n, 3)) * 10,
        colors=rng.random((n, 3)),
        intensity=rng.random(n),
        normals=rng.normal(size=(n, 3)),
    )


# ------------------------------------------------------------------------------ container
def test_container_types_and_uint8_colors(rng):
    c = PointCloud(rng.normal(size=(5, 3)), colors=np.array([[0, 128, 255]] * 5, np.uint8))
    assert c.points.dtype == np.float32 and len(c) == 5
    np.testing.assert_allclose(c.colors[0], [0, 128 / 255, 1.0], rtol=1e-6)
    t = c.to_tensor()
    assert t.dtype == torch.float32 and t.shape == (5, 3)
    PointCloud(torch.zeros(3, 3))  # torch input works


def test_non_finite_points_are_rejected_with_count():
    pts = np.zeros((6, 3), np.float32)
    pts[1, 0], pts[4, 2] = np.nan, np.inf
    with pytest.raises(NonFiniteError, match="2 non-finite"):
        PointCloud(pts)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"points": np.zeros((4, 2))},
        {"points": np.zeros(3)},
        {"points": np.zeros((4, 3)), "colors": np.zeros((3, 3))},
        {"points": np.zeros((4, 3)), "intensity": np.zeros((4, 1))},
        {"points": np.array([["a", "b", "c"]])},
    ],
)
def test_wrong_shapes_are_rejected(kwargs):
    with pytest.raises(ShapeError):
        PointCloud(**kwargs)


def test_float_colors_outside_unit_range_rejected():
    with pytest.raises(InvalidArgumentError, match=r"\[0, 1\]"):
        PointCloud(np.zeros((2, 3)), colors=np.full((2, 3), 2.0))


def test_transform_matches_explicit_formula(cloud, rng):
    yaw = 0.7
    T = np.eye(4)
    T[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    T[:3, 3] = [1.0, -2.0, 3.0]
    out = cloud.transform(T)
    for i in (0, 100, 256):
        expected = T[:3, :3] @ cloud.points[i].astype(np.float64) + T[:3, 3]
        np.testing.assert_allclose(out.points[i], expected, atol=1e-5)
        np.testing.assert_allclose(out.normals[i], T[:3, :3] @ cloud.normals[i], atol=1e-5)
    np.testing.assert_array_equal(out.intensity, cloud.intensity)
    with pytest.raises(ShapeError):
        cloud.transform(np.eye(3))


def test_crop_and_select(cloud):
    out = cloud.crop([-5, -5, -5], [5, 5, 5])
    inside = np.all(np.abs(cloud.points) <= 5, axis=1)
    np.testing.assert_array_equal(out.points, cloud.points[inside])
    np.testing.assert_array_equal(out.intensity, cloud.intensity[inside])
    with pytest.raises(InvalidArgumentError):
        cloud.crop([1, 1, 1], [0, 0, 0])
    picked = cloud.select(np.array([3, 0]))
    np.testing.assert_array_equal(picked.colors, cloud.colors[[3, 0]])
    with pytest.raises(InvalidArgumentError):
        cloud.select(np.array([len(cloud)]))
    with pytest.raises(ShapeError):
        cloud.select(np.ones(3, bool))


def test_voxel_down_sample_matches_loop_reference_and_open3d(rng):
    pts = rng.uniform(0, 3, size=(2000, 3)).astype(np.float32)
    c = PointCloud(pts, intensity=np.arange(2000, dtype=np.float32))
    size = 0.5
    out = c.voxel_down_sample(size)
    origin = pts.astype(np.float64).min(0) - size / 2
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(pts.astype(np.float64)):
        groups.setdefault(tuple(np.floor((p - origin) / size).astype(int)), []).append(i)
    assert len(out) == len(groups)
    ref = {tuple(np.round(pts[idx].astype(np.float64).mean(0), 4)): np.mean(idx) for idx in groups.values()}
    got = {tuple(np.round(p.astype(np.float64), 4)): v for p, v in zip(out.points, out.intensity)}
    assert set(ref) == set(got)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-5)
    o3d = pytest.importorskip("open3d")
    theirs = np.asarray(c.to_open3d().voxel_down_sample(size).points)
    assert len(theirs) == len(out)
    ours_sorted = np.sort(np.round(out.points, 4).view("f4,f4,f4").ravel())
    theirs_sorted = np.sort(np.round(theirs.astype(np.float32), 4).view("f4,f4,f4").ravel())
    assert o3d is not None and np.array_equal(ours_sorted, theirs_sorted)


def test_open3d_conversion_round_trip(cloud):
    pytest.importorskip("open3d")
    back = PointCloud.from_open3d(cloud.to_open3d())
    np.testing.assert_allclose(back.points, cloud.points, atol=1e-6)
    np.testing.assert_allclose(back.colors, cloud.colors, atol=1e-6)
    assert back.intensity is None  # the legacy type has no intensity
    full = PointCloud.from_open3d(cloud.to_open3d_tensor())
    np.testing.assert_allclose(full.intensity, cloud.intensity)
    with pytest.raises(InvalidArgumentError):
        PointCloud.from_open3d(object())


# ------------------------------------------------------------------------------------- IO
@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".npz"])
def test_round_trip_with_attributes(tmp_path, cloud, suffix):
    if suffix != ".npz":
        pytest.importorskip("open3d")
    path = write_cloud(tmp_path / f"c{suffix}", cloud)
    back = read_cloud(path)
    np.testing.assert_allclose(back.points, cloud.points, atol=1e-6)
    np.testing.assert_allclose(back.intensity, cloud.intensity, atol=1e-6)
    np.testing.assert_allclose(back.normals, cloud.normals, atol=1e-6)
    # open3d stores pcd colours as uint8
    np.testing.assert_allclose(back.colors, cloud.colors, atol=0.5 / 255 + 1e-6 if suffix == ".pcd" else 1e-6)
    assert not list(tmp_path.glob(".*tmp*")), "atomic write left a temporary file"


def test_round_trip_npy_and_kitti_bin(tmp_path, rng):
    pts = rng.normal(size=(50, 3)).astype(np.float32)
    back = read_cloud(write_cloud(tmp_path / "a.npy", PointCloud(pts)))
    np.testing.assert_array_equal(back.points, pts)
    inten = rng.random(50).astype(np.float32)
    path = write_cloud(tmp_path / "000000.bin", PointCloud(pts, intensity=inten))
    raw = np.fromfile(path, dtype="<f4").reshape(-1, 4)  # the KITTI layout, read independently
    np.testing.assert_array_equal(raw[:, :3], pts)
    np.testing.assert_array_equal(raw[:, 3], inten)
    back = read_cloud(path)
    np.testing.assert_array_equal(back.intensity, inten)


def test_writers_refuse_to_drop_attributes(tmp_path, cloud):
    with pytest.raises(InvalidArgumentError, match="cannot store"):
        write_cloud(tmp_path / "a.npy", cloud)
    with pytest.raises(InvalidArgumentError, match="extension"):
        write_cloud(tmp_path / "a.xyz", PointCloud(np.zeros((1, 3))))


def test_bad_files(tmp_path):
    with pytest.raises(MissingFileError):
        read_cloud(tmp_path / "missing.ply")
    (tmp_path / "empty.pcd").write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        read_cloud(tmp_path / "empty.pcd")
    (tmp_path / "bad.bin").write_bytes(b"\0" * 10)
    with pytest.raises(InputFileError, match="multiple of 16"):
        read_cloud(tmp_path / "bad.bin")
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(InputFileError, match="bad.npz"):
        read_cloud(tmp_path / "bad.npz")
    np.savez(tmp_path / "nopoints.npz", xyz=np.zeros((3, 3)))
    with pytest.raises(InputFileError, match="points"):
        read_cloud(tmp_path / "nopoints.npz")
    np.save(tmp_path / "nan.npy", np.full((4, 3), np.nan, np.float32))
    with pytest.raises(NonFiniteError, match="nan.npy"):
        read_cloud(tmp_path / "nan.npy")
    np.save(tmp_path / "zero.npy", np.zeros((0, 3), np.float32))
    with pytest.raises(InputFileError, match="no points"):
        read_cloud(tmp_path / "zero.npy")


def test_corrupt_ply_is_detected_not_returned_empty(tmp_path):
    pytest.importorskip("open3d")
    (tmp_path / "bad.ply").write_text("this is not a ply header\n1 2 3\n")
    with pytest.raises(InputFileError, match="bad.ply"):
        read_cloud(tmp_path / "bad.ply")
    (tmp_path / "empty.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    )
    with pytest.raises(InputFileError, match="empty.ply"):
        read_cloud(tmp_path / "empty.ply")


# ---------------------------------------------------------------------------- depth -> points
def test_depth_to_points_matches_pinhole_formula(rng):
    H, W = 6, 8
    depth = rng.uniform(1, 10, size=(H, W)).astype(np.float32)
    depth[0, 0], depth[2, 3], depth[5, 7] = 0.0, np.nan, -1.0
    K = np.array([[500.0, 0, 3.5], [0, 450.0, 2.5], [0, 0, 1]])
    mask = np.ones((H, W), bool)
    mask[4, 4] = False
    image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    out = depth_to_points(depth, K, mask=mask, image=image)
    expected, colors = [], []
    for v in range(H):
        for u in range(W):
            z = depth[v, u]
            if np.isfinite(z) and z > 0 and mask[v, u]:
                expected.append([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z])
                colors.append(image[v, u] / 255.0)
    assert len(out) == H * W - 4
    np.testing.assert_allclose(out.points, np.array(expected), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.colors, np.array(colors), atol=1e-6)


def test_depth_to_points_bad_inputs():
    with pytest.raises(ShapeError):
        depth_to_points(np.ones((4, 4, 1)), np.eye(3))
    with pytest.raises(ShapeError):
        depth_to_points(np.ones((4, 4)), np.eye(4))
    with pytest.raises(ShapeError):
        depth_to_points(np.ones((4, 4)), np.eye(3), mask=np.ones((3, 4), bool))
    with pytest.raises(InvalidArgumentError):
        depth_to_points(np.ones((4, 4)), np.zeros((3, 3)))


# ------------------------------------------------------------------------------ padded batches
def test_pad_batch_round_trip(rng):
    clouds = [torch.from_numpy(rng.normal(size=(n, 3)).astype(np.float32)) for n in (5, 1, 9)]
    padded, lengths = pad_batch(clouds, pad_value=-7.0)
    assert padded.shape == (3, 9, 3) and lengths.tolist() == [5, 1, 9]
    assert torch.all(padded[1, 1:] == -7.0)
    for a, b in zip(unpad_batch(padded, lengths), clouds):
        assert torch.equal(a, b)
    padded_np, _ = pad_batch([c.numpy() for c in clouds] + [PointCloud(np.zeros((2, 3)))])
    assert padded_np.dtype == torch.float32 and padded_np.shape == (4, 9, 3)


def test_pad_batch_bad_inputs():
    with pytest.raises(InvalidArgumentError):
        pad_batch([])
    with pytest.raises(ShapeError):
        pad_batch([torch.zeros(3, 3), torch.zeros(3, 2)])
    with pytest.raises(InvalidArgumentError):
        unpad_batch(torch.zeros(2, 4, 3), torch.tensor([1, 5]))
