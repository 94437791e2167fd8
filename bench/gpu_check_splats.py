"""GPU check of the splats renderer: our PyTorch rasteriser vs gsplat's CUDA rasteriser.

Run on a machine with an NVIDIA GPU and gsplat installed (about 1-3 minutes, most of it gsplat's
first-call JIT/kernel load)::

    python bench/gpu_check_splats.py [--quick]

Checks, each printed as PASS/FAIL with numbers:
1. image parity (RGB, expected depth, alpha) on a random scene and on the synthetic scene, shared
   Gaussians and per-camera (batched) Gaussians;
2. gradient parity (means, quats, scales, opacities, colours) as cosine similarity and relative error;
3. speed: forward and forward+backward of 100k Gaussians at 512x512 for gsplat CUDA, our rasteriser
   on CUDA tensors, and our rasteriser on the CPU at the CPU benchmark size;
4. Gaussian-Flow: a short fit on the synthetic multi-view scene on the GPU (gsplat path + our
   densifier on gsplat's meta), reporting held-out PSNR and time.
Exit status 0 when every parity check passes.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import torch


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int = 5) -> float:
    fn()
    _sync()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - start)
    return best


def random_scene(n: int, size: int, device: str, seed: int = 0):
    from splats.cameras import Cameras, look_at

    gen = torch.Generator().manual_seed(seed)
    eyes = torch.tensor([[0.0, 0.0, -3.0], [0.8, -0.3, -2.9]])
    cams = Cameras.from_fov(look_at(eyes, torch.zeros(3)), size, size, 60.0)
    focal = float(cams.K[0, 0, 0])
    params = {
        "means": torch.rand(n, 3, generator=gen) * torch.tensor([2.6, 2.6, 1.0]) - torch.tensor([1.3, 1.3, 0.0]),
        "quats": torch.randn(n, 4, generator=gen),
        "log_scales": math.log(1.5 * 3.0 / focal) + 0.4 * torch.randn(n, 3, generator=gen),
        "logits": torch.randn(n, generator=gen) + 1.0,
        "colors": torch.rand(n, 3, generator=gen),
    }
    return {k: v.to(device) for k, v in params.items()}, cams.to(device)


def render_both(params, cams, mode, per_camera=False):
    from splats.render import rasterize

    out = {}
    for backend in ("gsplat", "torch"):
        p = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        means = p["means"]
        if per_camera:
            means = torch.stack([means, means + torch.tensor([0.05, 0.0, 0.0], device=means.device)])
        img, alpha, meta = rasterize(means, p["quats"], p["log_scales"].exp(), torch.sigmoid(p["logits"]), p["colors"],
                                     cams.world_to_cam, cams.K, cams.width, cams.height, mode=mode,
                                     backgrounds=torch.tensor([0.1, 0.2, 0.3], device=means.device), backend=backend)
        loss = (img[..., :3] * torch.linspace(0.5, 1.5, 3, device=img.device)).sum() + img[..., 3:].sum() * 0.01
        loss.backward()
        out[backend] = (img.detach(), alpha.detach(), {k: v.grad.detach() for k, v in p.items()}, meta)
    return out


def report_parity(name: str, out, img_tol: float = 2e-3) -> bool:
    (gi, ga, gg, _), (ti, ta, tg, _) = out["gsplat"], out["torch"]
    ok = True
    d_img = (gi[..., :3] - ti[..., :3]).abs()
    d_alpha = (ga - ta).abs()
    msg = [f"{name}: rgb max {d_img.max():.2e} mean {d_img.mean():.2e}, alpha max {d_alpha.max():.2e}"]
    ok &= bool(d_img.max() < img_tol * 10 and d_img.mean() < img_tol and d_alpha.max() < img_tol * 10)
    if gi.shape[-1] > 3:
        covered = ga[..., 0] > 0.5
        d_depth = (gi[..., 3] - ti[..., 3]).abs()[covered]
        msg.append(f"depth(ED, covered) max {d_depth.max():.2e}")
        ok &= bool(d_depth.max() < 1e-2)
    for k in gg:
        a, b = gg[k].flatten(), tg[k].flatten()
        cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
        rel = ((a - b).norm() / b.norm().clamp_min(1e-12)).item()
        msg.append(f"grad {k}: cos {cos:.5f} rel {rel:.2e}")
        ok &= cos > 0.99
    print(("PASS " if ok else "FAIL ") + "; ".join(msg))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the Gaussian-Flow fit")
    parser.add_argument("--gf-iterations", type=int, default=1500)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    import gsplat

    print(f"torch {torch.__version__}, gsplat {gsplat.__version__}, {torch.cuda.get_device_name()}")
    all_ok = True

    # 1 + 2: parity
    params, cams = random_scene(3000, 96, "cuda")
    for mode in ("RGB", "RGB+ED"):
        all_ok &= report_parity(f"random 3k @96 {mode}", render_both(params, cams, mode))
    all_ok &= report_parity("random 3k @96 per-camera", render_both(params, cams, "RGB", per_camera=True))
    from splats.cameras import Cameras, look_at
    from splats.synthetic import make_scene

    scene = make_scene()
    g = scene.gaussians_at(0.3)
    syn = {"means": g.means, "quats": g.quats, "log_scales": g.log_scales, "logits": g.logit_opacities,
           "colors": g.colors}
    syn = {k: v.cuda() for k, v in syn.items()}
    syn_cams = Cameras.from_fov(look_at(torch.tensor([[0.0, -0.3, -3.0]]), torch.zeros(3)), 64, 64, 60.0).to("cuda")
    all_ok &= report_parity("synthetic scene @64 RGB+ED", render_both(syn, syn_cams, "RGB+ED"))

    # 3: speed
    from splats.render import rasterize

    def bench(params, cams, backend, backward):
        p = {k: v.detach().clone().requires_grad_(backward) for k, v in params.items()}

        def run():
            img, _, _ = rasterize(p["means"], p["quats"], p["log_scales"].exp(), torch.sigmoid(p["logits"]),
                                  p["colors"], cams.world_to_cam, cams.K, cams.width, cams.height, backend=backend)
            if backward:
                img.sum().backward()
        return timed(run)

    big, big_cams = random_scene(100_000, 512, "cuda")
    big_cams = big_cams[0]
    for backend in ("gsplat", "torch"):
        f, fb = bench(big, big_cams, backend, False), bench(big, big_cams, backend, True)
        print(f"speed 100k @512 {backend:6s} on CUDA: forward {f * 1e3:.1f} ms, forward+backward {fb * 1e3:.1f} ms")
    cpu, cpu_cams = random_scene(10_000, 128, "cpu")
    cpu_cams = cpu_cams[0]
    print(f"speed 10k @128 torch on CPU ({torch.get_num_threads()} threads): forward+backward "
          f"{bench(cpu, cpu_cams, 'torch', True) * 1e3:.0f} ms")
    small, small_cams = random_scene(10_000, 128, "cuda")
    small_cams = small_cams[0]
    print(f"speed 10k @128 gsplat on CUDA: forward+backward {bench(small, small_cams, 'gsplat', True) * 1e3:.2f} ms")

    # 4: Gaussian-Flow on the GPU
    if not args.quick:
        import numpy as np

        from motion4d.imaging import psnr
        from splats.densify import DensifyConfig
        from splats.gaussian_flow import GaussianFlow, GaussianFlowConfig
        from splats.synthetic import multiview_sequence

        views, steps = 4, 12
        _, data = multiview_sequence(n_views=views, n_times=steps, width=64, height=64)
        idx = torch.arange(views * steps)
        train = (idx % views != 2) & ((idx // views) % 2 == 0)
        test = (idx % views == 2) & ((idx // views) % 2 == 1)
        it = args.gf_iterations
        cfg = GaussianFlowConfig(iterations=it, device="cuda", batch_size=4, n_init=3000,
                                 lr_means=1.6e-3, lr_means_final=1.6e-5, lr_position_coeffs=1.6e-3,
                                 densify=DensifyConfig(start=100, stop=int(0.6 * it), every=100, reset_every=10 ** 6))
        start = time.perf_counter()
        model = GaussianFlow(cfg).fit(data.frames[train.numpy()], data.cameras[train], data.times[train],
                                      progress=False)
        fit_s = time.perf_counter() - start
        scores = [psnr(model.render(float(data.times[i]), data.cameras[int(i)]), data.images[i])
                  for i in torch.nonzero(test).squeeze(1)]
        print(f"gaussian-flow on CUDA: {it} steps in {fit_s:.1f} s, held-out view+time PSNR {np.mean(scores):.2f} dB, "
              f"{len(model.params['means'])} Gaussians")
    print("ALL PARITY CHECKS PASS" if all_ok else "SOME PARITY CHECKS FAILED")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
