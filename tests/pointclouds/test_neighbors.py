"""knn and chamfer distance against brute-force numpy / float64 dense references."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from motion4d.errors import InvalidArgumentError, NonFiniteError, ShapeError
from pointclouds.neighbors import chamfer_distance, knn, resolve_backend

BACKENDS = ["scipy", "open3d", "torch"]


def brute_knn(q: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = ((q[:, None, :].astype(np.float64) - r[None, :, :].astype(np.float64)) ** 2).sum(-1)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


def cloud(rng: np.random.Generator, n: int, scale: float = 10.0) -> torch.Tensor:
    return torch.from_numpy((rng.normal(size=(n, 3)) * scale).astype(np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 5])
def test_knn_matches_brute_force(rng, backend, k):
    if backend == "open3d":
        pytest.importorskip("open3d")
    q, r = cloud(rng, 300), cloud(rng, 211)
    res = knn(q, r, k, backend=backend, max_pairs_per_chunk=5000)  # forces ~25 torch chunks
    ref_d, ref_i = brute_knn(q.numpy(), r.numpy(), k)
    assert res.idx.dtype == torch.long and res.idx.shape == (300, k)
    np.testing.assert_allclose(res.sqdist.numpy(), ref_d, rtol=1e-5, atol=1e-5)
    assert (res.idx.numpy() == ref_i).mean() > 0.999  # ties may order differently
    np.testing.assert_allclose(res.dist.numpy(), np.sqrt(ref_d), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_batched_with_lengths(rng, backend):
    if backend == "open3d":
        pytest.importorskip("open3d")
    q, r = torch.stack([cloud(rng, 120), cloud(rng, 120)]), torch.stack([cloud(rng, 90), cloud(rng, 90)])
    ql, rl = torch.tensor([120, 70]), torch.tensor([50, 90])
    res = knn(q, r, 3, query_lengths=ql, ref_lengths=rl, backend=backend)
    for b in range(2):
        nq, nr = int(ql[b]), int(rl[b])
        ref_d, ref_i = brute_knn(q[b, :nq].numpy(), r[b, :nr].numpy(), 3)
        np.testing.assert_allclose(res.sqdist[b, :nq].numpy(), ref_d, rtol=1e-5, atol=1e-5)
        assert np.array_equal(res.idx[b, :nq].numpy(), ref_i)
        assert torch.all(res.idx[b, nq:] == -1) and torch.all(res.sqdist[b, nq:] == 0)


def test_knn_distances_are_exact_at_lidar_scale(rng):
    """35 m-scale coordinates with millimetre gaps: cdist's matmul mode would be off by ~mm."""
    base = torch.from_numpy(rng.uniform(30, 35, size=(2000, 3)).astype(np.float32))
    near = base + torch.from_numpy(rng.normal(0, 0.003, size=(2000, 3)).astype(np.float32))
    res = knn(near, base, 1, backend="torch")
    exact = ((near.double() - base.double()) ** 2).sum(-1)
    assert torch.all(res.idx[:, 0] == torch.arange(2000))
    np.testing.assert_allclose(res.sqdist[:, 0].double().sqrt(), exact.sqrt(), atol=1e-5)


def test_knn_gradients_flow_to_query_and_ref(rng):
    q = cloud(rng, 40).double().requires_grad_(True)
    r = cloud(rng, 30).double().requires_grad_(True)
    knn(q, r, 2).sqdist.sum().backward()
    dense = ((q[:, None] - r[None]) ** 2).sum(-1).topk(2, largest=False).values.sum()
    gq, gr = torch.autograd.grad(dense, (q, r))
    torch.testing.assert_close(q.grad, gq)
    torch.testing.assert_close(r.grad, gr)


def test_auto_backend_resolution():
    assert resolve_backend("auto", torch.device("cpu")) in ("open3d", "scipy")
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    with pytest.raises(InvalidArgumentError, match="backend"):
        resolve_backend("faiss", torch.device("cpu"))


def test_knn_bad_inputs(rng):
    q = cloud(rng, 10)
    with pytest.raises(ShapeError, match="ref holds no points"):
        knn(q, torch.zeros(0, 3))
    with pytest.raises(ShapeError, match="query holds no points"):
        knn(torch.zeros(0, 3), q)
    bad = q.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="query holds 1"):
        knn(bad, q)
    with pytest.raises(ShapeError):
        knn(q[:, :2], q)
    with pytest.raises(ShapeError):
        knn(q, q[None])
    with pytest.raises(ShapeError):
        knn(q, q.double())
    with pytest.raises(InvalidArgumentError, match="exceeds"):
        knn(q, q[:3], k=4)
    with pytest.raises(InvalidArgumentError):
        knn(q, q, k=0)
    with pytest.raises(InvalidArgumentError):
        knn(q, q, query_lengths=torch.tensor([10]))
    with pytest.raises(InvalidArgumentError):
        knn(q[None], q[None], ref_lengths=torch.tensor([11]))


# ------------------------------------------------------------------------------------ chamfer
def numpy_chamfer(a: np.ndarray, b: np.ndarray, truncate: float | None, squared: bool) -> float:
    d = np.sqrt(((a[:, None].astype(np.float64) - b[None].astype(np.float64)) ** 2).sum(-1))
    d = d**2 if squared else d
    ab, ba = d.min(1), d.min(0)
    if truncate is not None:
        ab, ba = np.where(ab < truncate, ab, 0.0), np.where(ba < truncate, ba, 0.0)
    return ab.mean() + ba.mean()


@pytest.mark.parametrize("truncate", [None, 2.0])
@pytest.mark.parametrize("squared", [True, False])
def test_chamfer_matches_numpy(rng, truncate, squared):
    a, b = cloud(rng, 150, 1.0), cloud(rng, 120, 1.0) + 0.8
    res = chamfer_distance(a, b, truncate=truncate, squared=squared)
    assert res.loss.item() == pytest.approx(numpy_chamfer(a.numpy(), b.numpy(), truncate, squared), rel=1e-5)
    assert res.a_to_b.shape == (150,) and res.b_to_a.shape == (120,)
    if truncate is not None:
        assert 0 < (~res.kept_a).sum() < 150  # the threshold really drops some points


def test_chamfer_reductions_weights_and_batches(rng):
    a = torch.stack([cloud(rng, 60, 1.0), cloud(rng, 60, 1.0)])
    b = torch.stack([cloud(rng, 50, 1.0), cloud(rng, 50, 1.0)])
    al, bl = torch.tensor([60, 33]), torch.tensor([41, 50])
    w = torch.rand(2, 60, generator=torch.Generator().manual_seed(0))
    per = chamfer_distance(a, b, a_lengths=al, b_lengths=bl, a_weights=w, backward_weight=0.5, batch_reduction=None)
    for i in range(2):
        na, nb = int(al[i]), int(bl[i])
        d = ((a[i, :na, None].double() - b[i, None, :nb].double()) ** 2).sum(-1)
        expected = (d.min(1).values * w[i, :na]).mean() + 0.5 * d.min(0).values.mean()
        assert per.loss[i].item() == pytest.approx(expected.item(), rel=1e-5)
    total = chamfer_distance(a, b, a_lengths=al, b_lengths=bl, a_weights=w, backward_weight=0.5)
    assert total.loss.item() == pytest.approx(per.loss.mean().item(), rel=1e-6)
    summed = chamfer_distance(a, b, point_reduction="sum", batch_reduction="sum")
    d = ((a[:, :, None] - b[:, None]) ** 2).sum(-1)
    assert summed.loss.item() == pytest.approx((d.min(2).values.sum() + d.min(1).values.sum()).item(), rel=1e-5)
    with pytest.raises(ShapeError):
        chamfer_distance(a, b, a_weights=torch.ones(2, 59))
    with pytest.raises(InvalidArgumentError):
        chamfer_distance(a, b, point_reduction="max")
    with pytest.raises(InvalidArgumentError):
        chamfer_distance(a, b, truncate=0.0)


@pytest.mark.parametrize("backend", ["kdtree", "torch"])
def test_chamfer_gradient_matches_dense_float64_autograd(rng, backend):
    a0, b0 = cloud(rng, 80, 1.0).double(), cloud(rng, 70, 1.0).double()
    a, b = a0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    chamfer_distance(a, b, truncate=1.0, backend=backend).loss.backward()
    a2, b2 = a0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    d = ((a2[:, None] - b2[None]) ** 2).sum(-1)
    ab, ba = d.min(1).values, d.min(0).values
    dense = torch.where(ab < 1.0, ab, 0 * ab).mean() + torch.where(ba < 1.0, ba, 0 * ba).mean()
    ga, gb = torch.autograd.grad(dense, (a2, b2))
    torch.testing.assert_close(a.grad, ga)
    torch.testing.assert_close(b.grad, gb)


def test_chamfer_gradcheck_finite_differences(rng):
    a = cloud(rng, 12, 1.0).double().requires_grad_(True)
    b = cloud(rng, 9, 1.0).double().requires_grad_(True)
    for squared in (True, False):
        assert torch.autograd.gradcheck(
            lambda x, y: chamfer_distance(x, y, squared=squared).loss, (a, b), eps=1e-6, atol=1e-5
        )


def test_chamfer_of_identical_clouds_is_zero_with_finite_gradient(rng):
    a = cloud(rng, 30).requires_grad_(True)
    res = chamfer_distance(a, a.detach().clone(), squared=False)
    res.loss.backward()
    assert res.loss.item() == 0.0 and torch.isfinite(a.grad).all()


@pytest.mark.cuda
def test_cuda_torch_backend_matches_cpu_reference(rng):
    q, r = cloud(rng, 5000), cloud(rng, 4000)
    res = knn(q.cuda(), r.cuda(), 4)  # auto -> torch on CUDA
    ref_d, ref_i = brute_knn(q.numpy(), r.numpy(), 4)
    np.testing.assert_allclose(res.sqdist.cpu().numpy(), ref_d, rtol=1e-5, atol=1e-5)
    assert (res.idx.cpu().numpy() == ref_i).mean() > 0.999
    a = q.cuda().requires_grad_(True)
    chamfer_distance(a, r.cuda(), truncate=2.0).loss.backward()
    a_cpu = q.clone().requires_grad_(True)
    chamfer_distance(a_cpu, r, truncate=2.0, backend="scipy").loss.backward()
    torch.testing.assert_close(a.grad.cpu(), a_cpu.grad, rtol=1e-4, atol=1e-7)
