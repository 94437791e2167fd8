"""CPU Gaussian rasteriser speed: forward + backward of 10k Gaussians at 128x128.

Prints our projection time next to gsplat's pure-PyTorch ``_torch_impl`` projection on the same
Gaussians (their ratio), and the full render forward / backward times, best of ``--repeats``.

    python bench/render.py [--gaussians 10000] [--size 128] [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import torch

from splats import _raster_torch as rt
from splats.cameras import Cameras, look_at
from splats.render import _shifted_intrinsics, rasterize


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pixel-sigma", type=float, default=1.5, help="typical Gaussian std in pixels")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n, size = args.gaussians, args.size
    cams = Cameras.from_fov(look_at(torch.tensor([0.0, 0.0, -3.0]), torch.zeros(3)), size, size, 60.0)
    focal = float(cams.K[0, 0, 0])
    means = torch.rand(n, 3, generator=gen) * torch.tensor([2.6, 2.6, 1.0]) - torch.tensor([1.3, 1.3, 0.0])
    log_scales = torch.full((n, 3), torch.log(torch.tensor(args.pixel_sigma * 3.0 / focal)).item())
    log_scales += 0.3 * torch.randn(n, 3, generator=gen)
    params = {
        "means": means, "quats": torch.randn(n, 4, generator=gen), "log_scales": log_scales,
        "logits": torch.randn(n, generator=gen) + 1.0, "colors": torch.rand(n, 3, generator=gen),
    }
    params = {k: v.requires_grad_() for k, v in params.items()}
    ks = _shifted_intrinsics(cams.K)

    def ours_projection():
        with torch.no_grad():
            rt.project(params["means"], params["quats"], params["log_scales"].exp(), cams.world_to_cam, ks, size, size)

    line = [f"{n} Gaussians, {size}x{size}, {args.threads} threads"]
    t_gs_proj: float | None = None
    t_ours_proj = best_of(ours_projection, args.repeats)
    try:
        from gsplat.cuda import _torch_impl as ti

        def gsplat_projection():
            with torch.no_grad():
                cov, _ = ti._quat_scale_to_covar_preci(params["quats"], params["log_scales"].exp(),
                                                       compute_preci=False)
                ti._fully_fused_projection(params["means"], cov, cams.world_to_cam, ks, size, size)

        t_gs_proj = best_of(gsplat_projection, args.repeats)
        line.append(f"projection: ours {t_ours_proj * 1e3:.1f} ms, gsplat _torch_impl {t_gs_proj * 1e3:.1f} ms "
                    f"(ratio ours/gsplat {t_ours_proj / t_gs_proj:.2f})")
    except ImportError:
        line.append(f"projection: ours {t_ours_proj * 1e3:.1f} ms (gsplat not installed)")

    def forward():
        return rasterize(params["means"], params["quats"], params["log_scales"].exp(), torch.sigmoid(params["logits"]),
                         params["colors"], cams.world_to_cam, cams.K, size, size, backend="torch")

    def forward_backward():
        img, _, _ = forward()
        img.sum().backward()
        for p in params.values():
            p.grad = None

    with torch.no_grad():
        t_fwd_nograd = best_of(forward, args.repeats)
    t_fwd = best_of(forward, args.repeats)
    t_total = best_of(forward_backward, args.repeats)
    proj = rt.project(params["means"].detach(), params["quats"].detach(), params["log_scales"].detach().exp(),
                      cams.world_to_cam, ks, size, size, opacities=torch.sigmoid(params["logits"].detach()))
    r = proj.radii.float()
    pairs = int(((2 * r[..., 0] + 1) * (2 * r[..., 1] + 1) * (r[..., 0] > 0)).sum())
    line.append(f"render: forward {t_fwd_nograd * 1e3:.0f} ms (no grad) / {t_fwd * 1e3:.0f} ms (grad), "
                f"forward+backward {t_total * 1e3:.0f} ms; ~{pairs / 1e6:.2f}M box pairs; "
                f"forward+backward / gsplat projection = {t_total / (t_gs_proj or t_ours_proj):.0f}x")
    print("\n".join(line))


if __name__ == "__main__":
    main()
