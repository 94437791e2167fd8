"""Side-by-side timings of the kNN / chamfer back-ends and of voxel down-sampling.

Usage: ``python bench/neighbors.py [--sizes 8192 30000 100000] [--threads 2] [--repeats 3]``

Scene: N = M points uniform in a 70 x 70 x 4 m box (lidar-like extent); the reference is the
query shifted by 0.3 m plus 5 cm noise. Times are the minimum over ``--repeats`` runs and include
building the KD-tree. The torch brute force at sizes above ``--brute-max`` is timed on a
4,096-query subset and scaled linearly (marked ``*``): its cost is exactly linear in the
number of queries. Ratios are relative to the fastest back-end of each row.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch

from pointclouds.cloud import PointCloud
from pointclouds.neighbors import chamfer_distance, knn


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (thread pools, lazy imports)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def scene(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    q = rng.uniform([-35, -35, -2], [35, 35, 2], size=(n, 3)).astype(np.float32)
    r = q + np.float32(0.3) + rng.normal(0, 0.05, size=q.shape).astype(np.float32)
    return torch.from_numpy(q), torch.from_numpy(r[rng.permutation(n)])


def kdtree_flann_knn(q: torch.Tensor, r: torch.Tensor, k: int) -> np.ndarray:
    """open3d's legacy KDTreeFlann: one Python call per query point (not a back-end, for reference)."""
    import open3d as o3d

    tree = o3d.geometry.KDTreeFlann(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(r.double().numpy())))
    return np.array([tree.search_knn_vector_3d(p, k)[1] for p in q.double().numpy()])


def bench_knn(sizes: list[int], ks: list[int], repeats: int, brute_max: int) -> None:
    print("\n== knn (build + query), ms; flann = open3d legacy KDTreeFlann, a Python loop over queries ==")
    print(f"{'N=M':>8} {'k':>3} {'scipy':>9} {'open3d':>9} {'flann':>9} {'torch':>10}   ratios (vs fastest)")
    for n in sizes:
        q, r = scene(n)
        for k in ks:
            row = {}
            for backend in ("scipy", "open3d"):
                row[backend] = best_time(lambda: knn(q, r, k, backend=backend), repeats) * 1e3
            row["flann"] = best_time(lambda: kdtree_flann_knn(q, r, k), 1) * 1e3
            if n <= brute_max:
                row["torch"] = best_time(lambda: knn(q, r, k, backend="torch"), max(1, repeats // 2)) * 1e3
                mark = " "
            else:
                sub = q[:4096]
                row["torch"] = best_time(lambda: knn(sub, r, k, backend="torch"), 1) * 1e3 * n / 4096
                mark = "*"
            fastest = min(row.values())
            ratios = "  ".join(f"{b} {v / fastest:.1f}x" for b, v in row.items())
            print(
                f"{n:>8} {k:>3} {row['scipy']:>9.1f} {row['open3d']:>9.1f} {row['flann']:>9.1f}"
                f" {row['torch']:>9.0f}{mark}   {ratios}"
            )


def bench_chamfer(sizes: list[int], repeats: int) -> None:
    print("\n== chamfer forward + backward (kdtree indices, torch distances), ms ==")
    for n in sizes:
        q, r = scene(n)
        for backend in ("scipy", "open3d"):

            def step() -> None:
                a = q.clone().requires_grad_(True)
                chamfer_distance(a, r, truncate=2.0, backend=backend).loss.backward()

            print(f"{n:>8} {backend:>7} {best_time(step, repeats) * 1e3:9.1f}")


def bench_cdist_precision() -> None:
    print("\n== torch.cdist precision at 35 m-scale coordinates (float32) ==")
    q, r = scene(4096, seed=1)
    q, r = q + 30, r + 30
    exact = torch.cdist(q.double(), r.double())
    for mode in ("use_mm_for_euclid_dist", "donot_use_mm_for_euclid_dist"):
        err = (torch.cdist(q, r, compute_mode=mode).double() - exact).abs().max().item()
        print(f"{mode:>30}: max abs error {err * 1e3:.3f} mm")


def bench_voxel(sizes: list[int], repeats: int, voxel: float = 0.5) -> None:
    print(f"\n== voxel down-sampling ({voxel} m), ms ==")
    print(f"{'N':>8} {'numpy (ours)':>13} {'open3d legacy':>14} {'open3d tensor':>14}   out points (ours / o3d)")
    for n in sizes:
        q, _ = scene(n)
        cloud = PointCloud(q.numpy(), intensity=np.ones(n, np.float32))
        legacy = cloud.to_open3d()
        tensor = cloud.to_open3d_tensor()
        ours = best_time(lambda: cloud.voxel_down_sample(voxel), repeats) * 1e3
        o3d_l = best_time(lambda: legacy.voxel_down_sample(voxel), repeats) * 1e3
        o3d_t = best_time(lambda: tensor.voxel_down_sample(voxel), repeats) * 1e3
        n_ours = len(cloud.voxel_down_sample(voxel))
        n_o3d = len(legacy.voxel_down_sample(voxel).points)
        print(f"{n:>8} {ours:>13.1f} {o3d_l:>14.1f} {o3d_t:>14.1f}   {n_ours} / {n_o3d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 30000, 100000])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--brute-max", type=int, default=30000, help="largest N timed fully by torch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} torch threads")
    bench_knn(args.sizes, args.ks, args.repeats, args.brute_max)
    bench_chamfer(args.sizes, args.repeats)
    bench_cdist_precision()
    bench_voxel(args.sizes, args.repeats)


if __name__ == "__main__":
    main()
