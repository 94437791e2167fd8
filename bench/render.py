"""CPU Gaussian rasteriser speed: forward and forward + backward of 10k Gaussians at 128x128.

For each thread count (default 1 and 2) it prints, best of ``--repeats`` wall-clock runs:
our projection next to gsplat's pure-PyTorch ``_torch_impl`` projection of the same Gaussians, then
the whole CPU render (projection + compositing) forward without autograd, forward with autograd and
forward + backward, for the compositor ``render()`` uses (analytic backward, ellipse rows, chunks)
and for the previous one (``_raster_torch.composite_autograd``: whole boxes, autograd), run
interleaved so that the old / new ratio is measured under the same load. The load average is
printed with the numbers: on a shared machine only the ratios are meaningful. When the cores are
oversubscribed, OpenMP's spinning barriers make multi-thread runs erratic (seconds per render); run
those with ``OMP_WAIT_POLICY=PASSIVE``.

    python bench/render.py [--gaussians 10000] [--size 128] [--repeats 5] [--threads 1,2] [--no-reference]
"""
from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from splats import _raster_torch as rt
from splats.cameras import Cameras, look_at, to_gsplat_intrinsics
from splats.rendering import rasterize


def best_of(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall-clock time of each function, the functions interleaved run by run."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@contextmanager
def compositor(fn: Callable) -> Iterator[None]:
    """Make ``render`` composite with ``fn`` for the duration of the block."""
    saved = rt.composite
    rt.composite = fn
    try:
        yield
    finally:
        rt.composite = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--pixel-sigma", type=float, default=1.5, help="typical Gaussian std in pixels")
    parser.add_argument("--no-reference", action="store_true", help="skip the previous (autograd) compositor")
    args = parser.parse_args()
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
    ks = to_gsplat_intrinsics(cams.K)

    # how much work the compositor does: box pixels -> ellipse-row candidates -> composited pairs
    with torch.no_grad():
        opac = torch.sigmoid(params["logits"])
        proj = rt.project(params["means"], params["quats"], params["log_scales"].exp(), cams.world_to_cam, ks,
                          size, size, opacities=opac)
        lay = rt._layout(proj, size, size, 1 << 62)
        table = rt._gaussian_table(proj, opac, params["colors"][None], lay.gids)
        chunk = (lay.x0, lay.y0, lay.bw, lay.bh, lay.cam_off)
        candidates = int(rt._row_intervals(list(table.t().contiguous()), chunk, size)[-1].sum())
        composited = len(rt._chunk_pairs(table, None, None, chunk, size, size * size).pix)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{n} Gaussians (std ~{args.pixel_sigma} px), {size}x{size}; load average {load}")
    print(f"pairs: {lay.total / 1e6:.2f}M box pixels, {candidates / 1e6:.2f}M ellipse-row candidates, "
          f"{composited / 1e6:.2f}M composited (one chunk; render() uses chunks of {rt.CHUNK_PAIRS} box pixels)")

    def projection_ours():
        with torch.no_grad():
            rt.project(params["means"], params["quats"], params["log_scales"].exp(), cams.world_to_cam, ks, size,
                       size)

    projections = {"ours": projection_ours}
    try:
        from gsplat.cuda import _torch_impl as ti

        def projection_gsplat():
            with torch.no_grad():
                cov, _ = ti._quat_scale_to_covar_preci(params["quats"], params["log_scales"].exp(),
                                                       compute_preci=False)
                ti._fully_fused_projection(params["means"], cov, cams.world_to_cam, ks, size, size)

        projections["gsplat"] = projection_gsplat
    except ImportError:
        pass

    def forward():
        return rasterize(params["means"], params["quats"], params["log_scales"].exp(), torch.sigmoid(params["logits"]),
                         params["colors"], cams.world_to_cam, cams.K, size, size, backend="torch")

    def forward_no_grad():
        with torch.no_grad():
            forward()

    def forward_backward():
        img, _, _ = forward()
        img.sum().backward()
        for p in params.values():
            p.grad = None

    def with_compositor(fn: Callable, body: Callable) -> Callable[[], None]:
        def run() -> None:
            with compositor(fn):
                body()
        return run

    variants = {"new": rt.composite} if args.no_reference else {"new": rt.composite, "old": rt.composite_autograd}
    threads_before = torch.get_num_threads()
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        proj_t = best_of(projections, args.repeats)
        line = f"{threads} thread{'s' if threads > 1 else ''}: projection ours {proj_t['ours'] * 1e3:.1f} ms"
        if "gsplat" in proj_t:
            line += f", gsplat _torch_impl {proj_t['gsplat'] * 1e3:.1f} ms"
        else:
            line += " (gsplat not installed)"
        print(line)
        for label, body in (("forward, no grad", forward_no_grad), ("forward, autograd", forward),
                            ("forward+backward", forward_backward)):
            t = best_of({name: with_compositor(fn, body) for name, fn in variants.items()}, args.repeats)
            line = f"  {label:<18} new {t['new'] * 1e3:6.0f} ms"
            if "old" in t:
                line += f" | old {t['old'] * 1e3:6.0f} ms | old/new {t['old'] / t['new']:.1f}x"
            if label == "forward+backward":
                ref = proj_t.get("gsplat", proj_t["ours"])
                line += f" | new / gsplat projection {t['new'] / ref:.0f}x"
            print(line)
    torch.set_num_threads(threads_before)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
