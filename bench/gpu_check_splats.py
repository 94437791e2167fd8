"""GPU check of the splats renderer: our PyTorch rasteriser on CUDA, and gsplat's CUDA rasteriser against it.

    python bench/gpu_check_splats.py [--timeout 240] [--install] [--quick] [--gf-iterations 1500]
    python bench/gpu_check_splats.py --dry-run    # on the CPU: every part up to its first CUDA call

Self-contained: it puts the repository on ``sys.path``, checks its dependencies (torch with CUDA;
numpy and kornia for ``splats``; gsplat for the gsplat parts; tqdm for the Gaussian-Flow fit) and,
with ``--install`` only, pip-installs the missing ones among gsplat, kornia and tqdm; otherwise the
parts that need them are skipped with a line saying why. The parts run in a worker process (its own
process group) that is killed when ``--timeout`` seconds have passed since the start, install
included: gsplat's first call JIT-compiles about 30 CUDA/C++ files (minutes on a cold machine; the
build is cached under ``TORCH_EXTENSIONS_DIR``, and a build cut short by the time box keeps its
finished objects for the next run). One summary table ends the output.

Parts:
  torch-cuda     our rasteriser on CUDA vs on the CPU (images, expected depth, alpha, gradients);
                 its speed: 100k Gaussians at 512x512 on CUDA, 10k at 128x128 on the CPU
  gsplat-load    the first gsplat call (JIT build, or load of the cached build)
  gsplat-parity  gsplat vs our rasteriser on CUDA: images and gradients (cosine > 0.99), random and
                 synthetic scenes, shared and per-camera (batched) Gaussians
  gsplat-speed   gsplat forward and forward+backward at the same sizes, and the ratio to ours
  gaussian-flow  a short Gaussian-Flow fit on the GPU (gsplat + our densifier on gsplat's meta):
                 held-out PSNR must beat the mean training frame's by 3 dB (skipped with --quick)

Exit status: 0 when every part that ran passed (dry run: every rehearsal), 1 when a part failed or
ran out of time, 2 when no part could run (no CUDA device, or torch / numpy / kornia missing).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_TIMEOUT_S = 240.0  # leaves room for bench/gpu_check.sh's other steps in an 8-minute GPU check
RESULT_TAG = "@@gpu_check_splats result "
START_TAG = "@@gpu_check_splats start "
INSTALLABLE = ("gsplat", "kornia", "tqdm")


@dataclass(frozen=True)
class Part:
    name: str
    needs: tuple[str, ...]  # importable modules
    run: Callable[["Context"], tuple[bool, str]]
    after: str | None = None  # a part that must have passed (or been rehearsed) first


class Rehearsed(Exception):
    """Raised in a dry run where the part would make its first CUDA call."""


@dataclass
class Context:
    dry: bool
    gf_iterations: int
    results: dict[str, str] = field(default_factory=dict)  # part -> status
    notes: list[str] = field(default_factory=list)
    speeds: dict[str, float] = field(default_factory=dict)

    def before_cuda(self, what: str) -> None:
        """The next statement is the part's first CUDA call: in a dry run, stop here."""
        if self.dry:
            done = "; ".join(self.notes)
            raise Rehearsed(f"{done}; stopped before {what}" if done else f"stopped before {what}")


# ---------------------------------------------------------------------------------------- scenes


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int = 5, budget_s: float = 2.0) -> float:
    """Best wall time of ``repeats`` calls after a warm-up; a call slower than ``budget_s`` is timed once."""
    start = time.perf_counter()
    fn()
    _sync()
    first = time.perf_counter() - start
    if first > budget_s:
        return first
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - start)
    return best


def random_scene(n: int, size: int, seed: int = 0):
    """``n`` random Gaussians in front of two cameras of ``size x size`` pixels (on the CPU)."""
    import torch

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
    return params, cams


def synthetic_scene():
    """The synthetic scene's Gaussians at t = 0.3 and one 64x64 camera (on the CPU)."""
    import torch

    from splats.cameras import Cameras, look_at
    from splats.synthetic import make_scene

    g = make_scene().gaussians_at(0.3)
    params = {"means": g.means, "quats": g.quats, "log_scales": g.log_scales, "logits": g.logit_opacities,
              "colors": g.colors}
    cams = Cameras.from_fov(look_at(torch.tensor([[0.0, -0.3, -3.0]]), torch.zeros(3)), 64, 64, 60.0)
    return params, cams


def to_device(params: dict, cams, device: str):
    return {k: v.to(device) for k, v in params.items()}, cams.to(device)


def activated(params: dict, cams, mode: str, per_camera: bool = False) -> tuple[tuple, dict[str, Any]]:
    """The positional and keyword arguments of ``rasterize`` for the parameters ``params``."""
    import torch

    means = params["means"]
    if per_camera:
        means = torch.stack([means, means + torch.tensor([0.05, 0.0, 0.0], device=means.device)])
    args = (means, params["quats"], params["log_scales"].exp(), torch.sigmoid(params["logits"]), params["colors"],
            cams.world_to_cam, cams.K, cams.width, cams.height)
    return args, dict(mode=mode, backgrounds=torch.tensor([0.1, 0.2, 0.3], device=means.device))


def render_with_grads(params: dict, cams, mode: str, backend: str, per_camera: bool = False):
    """``images``, ``alphas`` and the gradients of a weighted sum of the images, all moved to the CPU."""
    import torch

    from splats.rendering import rasterize

    p = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    args, kwargs = activated(p, cams, mode, per_camera)
    img, alpha, _ = rasterize(*args, **kwargs, backend=backend)
    loss = (img[..., :3] * torch.linspace(0.5, 1.5, 3, device=img.device)).sum() + img[..., 3:].sum() * 0.01
    loss.backward()
    return img.detach().cpu(), alpha.detach().cpu(), {k: v.grad.detach().cpu() for k, v in p.items()}


def compare(name: str, got, ref, img_tol: float = 2e-3) -> tuple[bool, str]:
    """Image, alpha, expected-depth (covered pixels) and gradient agreement of two renders; prints a
    PASS / FAIL line and returns ``(ok, short summary)``."""
    import torch

    (gi, ga, gg), (ti, ta, tg) = got, ref
    d_img, d_alpha = (gi[..., :3] - ti[..., :3]).abs(), (ga - ta).abs()
    ok = bool(d_img.max() < img_tol * 10 and d_img.mean() < img_tol and d_alpha.max() < img_tol * 10)
    stats = [f"rgb max {d_img.max():.1e} mean {d_img.mean():.1e}", f"alpha max {d_alpha.max():.1e}"]
    if gi.shape[-1] > 3:
        covered = ta[..., 0] > 0.5
        d_depth = (gi[..., 3] - ti[..., 3]).abs()[covered]
        stats.append(f"depth max {d_depth.max():.1e}")
        ok &= bool(d_depth.max() < 1e-2)
    cos, worst = min((torch.nn.functional.cosine_similarity(gg[k].flatten(), tg[k].flatten(), dim=0).item(), k)
                     for k in tg)
    stats.append(f"grad cos min {cos:.4f} ({worst})")
    ok &= cos > 0.99
    print(f"{'PASS' if ok else 'FAIL'} {name}: {', '.join(stats)}", flush=True)
    return ok, f"{name} {'ok' if ok else 'FAILED'} ({stats[0].split(' mean')[0]}, {stats[-1].split(' (')[0]})"


def gsplat_calls_bind(cases) -> str:
    """Build the gsplat calls of ``cases`` on the CPU and bind them to ``gsplat.rasterization``."""
    import inspect

    from gsplat import rasterization

    from splats.gsplat_bridge import gsplat_arguments

    signature = inspect.signature(rasterization)
    for params, cams, mode, per_camera in cases:
        args, kwargs = activated(params, cams, mode, per_camera)
        call = gsplat_arguments(*args, sh_degree=None, mode=mode, backgrounds=kwargs["backgrounds"].expand(
            len(cams), -1), near_plane=0.01, far_plane=1e10, eps2d=0.3)
        signature.bind(**call.kwargs)
    return f"{len(cases)} gsplat call(s) built, arguments bind to gsplat.rasterization"


# ----------------------------------------------------------------------------------------- parts


def part_torch_cuda(ctx: Context) -> tuple[bool, str]:
    import torch

    params, cams = random_scene(3000, 96)
    cpu = render_with_grads(params, cams, "RGB+ED", "torch")
    ctx.notes.append("3k-Gaussian scene rendered on the CPU")
    big, big_cams = random_scene(100_000, 512)
    small, small_cams = random_scene(10_000, 128)
    ctx.before_cuda("moving the scenes to the GPU")
    gpu = render_with_grads(*to_device(params, cams, "cuda"), "RGB+ED", "torch")
    ok, detail = compare("torch CUDA vs CPU, 3k @96 RGB+ED", gpu, cpu)
    fwd, fwd_bwd = speed(*to_device(big, big_cams[0], "cuda"), "torch")
    ctx.speeds["torch-cuda"] = fwd_bwd
    cpu_fwd_bwd = speed(small, small_cams[0], "torch", forward=False)[1]
    line = (f"torch 100k @512 CUDA: forward {fwd * 1e3:.1f} ms, forward+backward {fwd_bwd * 1e3:.1f} ms; "
            f"10k @128 CPU ({torch.get_num_threads()} threads): forward+backward {cpu_fwd_bwd * 1e3:.0f} ms")
    print(line, flush=True)
    return ok, f"{detail}; {line}"


def speed(params: dict, cams, backend: str, forward: bool = True) -> tuple[float, float]:
    """Best forward and forward+backward seconds of one ``rasterize`` call (forward NaN when skipped)."""
    from splats.rendering import rasterize

    def run(backward: bool) -> Callable[[], None]:
        p = {k: v.detach().clone().requires_grad_(backward) for k, v in params.items()}

        def once() -> None:
            args, _ = activated(p, cams, "RGB")
            img, _, _ = rasterize(*args, backend=backend)
            if backward:
                img.sum().backward()
        return once

    return (timed(run(False)) if forward else math.nan), timed(run(True))


def part_gsplat_load(ctx: Context) -> tuple[bool, str]:
    params, cams = random_scene(200, 32)
    ctx.notes.append(gsplat_calls_bind([(params, cams, "RGB", False)]))
    ctx.before_cuda("gsplat's first call (JIT build or cached load)")
    print("gsplat: first call; on a cold machine it JIT-compiles about 30 CUDA/C++ files (minutes)", flush=True)
    start = time.perf_counter()
    img, _, _ = render_with_grads(*to_device(params, cams, "cuda"), "RGB", "gsplat")
    seconds = time.perf_counter() - start
    ok = bool(img.isfinite().all() and img.abs().sum() > 0)
    return ok, f"first gsplat render + backward in {seconds:.1f} s (JIT build or cached load)"


def part_gsplat_parity(ctx: Context) -> tuple[bool, str]:
    params, cams = random_scene(3000, 96)
    syn, syn_cams = synthetic_scene()
    cases = [(params, cams, "RGB", False), (params, cams, "RGB+ED", False), (params, cams, "RGB", True),
             (syn, syn_cams, "RGB+ED", False)]
    names = ["random 3k @96 RGB", "random 3k @96 RGB+ED", "random 3k @96 per-camera", "synthetic @64 RGB+ED"]
    ctx.notes.append(gsplat_calls_bind(cases))
    ctx.before_cuda("moving the scenes to the GPU")
    oks, details = [], []
    for name, (p, c, mode, per_camera) in zip(names, cases, strict=True):
        p, c = to_device(p, c, "cuda")
        ok, detail = compare(name, render_with_grads(p, c, mode, "gsplat", per_camera),
                             render_with_grads(p, c, mode, "torch", per_camera))
        oks.append(ok)
        details.append(detail)
    return all(oks), "; ".join(details)


def part_gsplat_speed(ctx: Context) -> tuple[bool, str]:
    big, big_cams = random_scene(100_000, 512)
    small, small_cams = random_scene(10_000, 128)
    ctx.notes.append(gsplat_calls_bind([(big, big_cams[0], "RGB", False), (small, small_cams[0], "RGB", False)]))
    ctx.before_cuda("moving the scenes to the GPU")
    fwd, fwd_bwd = speed(*to_device(big, big_cams[0], "cuda"), "gsplat")
    small_fwd_bwd = speed(*to_device(small, small_cams[0], "cuda"), "gsplat", forward=False)[1]
    ratio = ctx.speeds.get("torch-cuda", math.nan) / fwd_bwd
    line = (f"gsplat 100k @512 CUDA: forward {fwd * 1e3:.1f} ms, forward+backward {fwd_bwd * 1e3:.1f} ms "
            f"({ratio:.1f}x faster than ours); 10k @128: forward+backward {small_fwd_bwd * 1e3:.2f} ms")
    print(line, flush=True)
    return math.isfinite(fwd_bwd), line


def part_gaussian_flow(ctx: Context) -> tuple[bool, str]:
    import numpy as np
    import torch

    from motion4d.imaging import psnr
    from splats.densify import DensifyConfig
    from splats.gaussian_flow import GaussianFlow, GaussianFlowConfig
    from splats.synthetic import multiview_sequence

    views, steps = 4, 12
    _, data = multiview_sequence(n_views=views, n_times=steps, width=64, height=64)
    idx = torch.arange(views * steps)
    train = (idx % views != 2) & ((idx // views) % 2 == 0)
    test = torch.nonzero((idx % views == 2) & ((idx // views) % 2 == 1)).squeeze(1).tolist()
    mean_frame = data.images[train].mean(dim=0)
    baseline = float(np.mean([psnr(mean_frame, data.images[i]) for i in test]))
    it = ctx.gf_iterations
    cfg = GaussianFlowConfig(iterations=it, device="cuda", batch_size=4, n_init=3000,
                             lr_means=1.6e-3, lr_means_final=1.6e-5, lr_position_coeffs=1.6e-3,
                             densify=DensifyConfig(start=100, stop=int(0.6 * it), every=100, reset_every=10 ** 6))
    ctx.notes.append(f"{views}x{steps} views x times at 64x64 generated, {it}-step config built")
    ctx.before_cuda("the fit")
    start = time.perf_counter()
    model = GaussianFlow(cfg).fit(data.frames[train.numpy()], data.cameras[train], data.times[train], progress=False)
    fit_s = time.perf_counter() - start
    score = float(np.mean([psnr(model.render(float(data.times[i]), data.cameras[i]), data.images[i]) for i in test]))
    line = (f"gaussian-flow on CUDA: {it} steps in {fit_s:.1f} s, held-out view+time PSNR {score:.2f} dB "
            f"(mean training frame {baseline:.2f} dB), {len(model.params['means'])} Gaussians")
    print(line, flush=True)
    return score >= baseline + 3.0, line


PARTS = (
    Part("torch-cuda", ("numpy", "kornia"), part_torch_cuda),
    Part("gsplat-load", ("numpy", "kornia", "gsplat"), part_gsplat_load),
    Part("gsplat-parity", ("numpy", "kornia", "gsplat"), part_gsplat_parity, after="gsplat-load"),
    Part("gsplat-speed", ("numpy", "kornia", "gsplat"), part_gsplat_speed, after="gsplat-load"),
    Part("gaussian-flow", ("numpy", "kornia", "gsplat", "tqdm"), part_gaussian_flow, after="gsplat-load"),
)


# ---------------------------------------------------------------------------------------- worker


def emit(tag: str, payload: Any) -> None:
    print(tag + json.dumps(payload), flush=True)


def worker(args: argparse.Namespace) -> int:
    """Run the parts one by one, announcing each and reporting its result on tagged lines."""
    parts = [p for p in PARTS if not (args.quick and p.name == "gaussian-flow")]
    missing = {m for p in parts for m in p.needs if importlib.util.find_spec(m) is None}
    cuda_reason = None
    if importlib.util.find_spec("torch") is None:
        cuda_reason = "torch is missing"
    else:
        import torch

        if args.dry_run:
            print(f"dry run on the CPU: torch {torch.__version__}", flush=True)
        elif not torch.cuda.is_available():
            cuda_reason = f"no CUDA device (torch {torch.__version__}, CUDA build: {torch.version.cuda})"
        else:
            versions = f"torch {torch.__version__} (CUDA {torch.version.cuda})"
            if "gsplat" not in missing:
                versions += f", gsplat {importlib.import_module('gsplat').__version__}"
            print(f"{versions}; {torch.cuda.get_device_name()}", flush=True)
    ctx = Context(dry=args.dry_run, gf_iterations=args.gf_iterations)
    for part in parts:
        emit(START_TAG, part.name)
        lacking = [m for m in part.needs if m in missing]
        start = time.perf_counter()
        if cuda_reason:
            status, detail = "SKIP", cuda_reason
        elif lacking:
            status, detail = "SKIP", f"missing {', '.join(lacking)} (pip install {' '.join(lacking)}, or --install)"
        elif part.after and ctx.results.get(part.after) not in ("PASS", "DRY"):
            status, detail = "SKIP", f"needs {part.after}, which did not pass"
        else:
            ctx.notes = []
            try:
                ok, detail = part.run(ctx)
                status = "PASS" if ok else "FAIL"
            except Rehearsed as done:
                status, detail = "DRY", str(done)
            except Exception as exc:  # a failing part must not stop the others
                traceback.print_exc()
                status, detail = "FAIL", f"{type(exc).__name__}: {exc}"
        ctx.results[part.name] = status
        emit(RESULT_TAG, {"part": part.name, "status": status, "seconds": time.perf_counter() - start,
                          "detail": detail})
    return 0


# ------------------------------------------------------------------------------------ supervisor


def check_dependencies(install: bool, dry: bool, deadline: float) -> None:
    """Report missing dependencies; with ``install`` (and not a dry run) pip-install gsplat / kornia / tqdm."""
    needed = sorted({m for p in PARTS for m in p.needs} | {"torch"})
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    for name in missing:
        users = [p.name for p in PARTS if name in p.needs] or ["every part"]
        print(f"dependency {name}: missing, needed by {', '.join(users)}", flush=True)
    to_install = [m for m in missing if m in INSTALLABLE]
    if not to_install:
        return
    if not install or dry:
        why = "dry run: not installing" if dry else "rerun with --install to pip-install"
        print(f"{why} {' '.join(to_install)}; the parts that need them are skipped", flush=True)
        return
    cmd = [sys.executable, "-m", "pip", "install", *to_install]
    print("installing: " + " ".join(cmd), flush=True)
    try:
        done = subprocess.run(cmd, timeout=max(1.0, deadline - time.monotonic()))
        ok = done.returncode == 0
    except subprocess.TimeoutExpired:
        ok = False
    importlib.invalidate_caches()
    still = [m for m in to_install if importlib.util.find_spec(m) is None]
    print(f"install {'succeeded' if ok and not still else 'failed'}"
          + (f"; still missing: {' '.join(still)}" if still else ""), flush=True)


def supervise(args: argparse.Namespace, deadline: float) -> list[dict[str, Any]]:
    """Run the worker, pass its output through, kill its process group at the deadline."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--gf-iterations", str(args.gf_iterations)]
    cmd += ["--dry-run"] * args.dry_run + ["--quick"] * args.quick
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.dry_run:  # CPU work on a possibly shared machine: OpenMP threads that spin are up to 50x slower
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env,
                            start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    rows: dict[str, dict[str, Any]] = {}
    current, started, timed_out = None, time.monotonic(), False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        try:
            line = lines.get(timeout=min(remaining, 1.0))
        except queue.Empty:
            continue
        if line is None:
            break
        if line.startswith(START_TAG):
            current, started = json.loads(line[len(START_TAG):]), time.monotonic()
        elif line.startswith(RESULT_TAG):
            row = json.loads(line[len(RESULT_TAG):])
            rows[row["part"]] = row
            current = None
        else:
            sys.stdout.write(line)
            sys.stdout.flush()
    if timed_out:
        _kill_group(proc)
    code = proc.wait()
    names = [p.name for p in PARTS if not (args.quick and p.name == "gaussian-flow")]
    if current is None:  # the worker stopped (or the time ran out) between parts or before the first
        current = next((name for name in names if name not in rows), None)
    for name in names:
        if name in rows:
            continue
        if name == current:
            status = "TIMEOUT" if timed_out else "FAIL"
            detail = (f"--timeout {args.timeout:g} s reached (this part was running or next)" if timed_out
                      else f"the worker exited with status {code} during this part")
            rows[name] = {"part": name, "status": status, "seconds": time.monotonic() - started, "detail": detail}
        else:
            reason = "no time left" if timed_out else f"the worker exited with status {code}"
            rows[name] = {"part": name, "status": "NOT RUN", "seconds": 0.0, "detail": reason}
    return [rows[name] for name in names]


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the worker and everything it started (ninja, nvcc, ...)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def summary(rows: list[dict[str, Any]], elapsed: float, timeout: float, dry: bool) -> int:
    """Print the table; return the exit status."""
    statuses = [r["status"] for r in rows]
    if any(s in ("FAIL", "TIMEOUT") for s in statuses):
        code, verdict = 1, "FAILED"
    elif not any(s in ("PASS", "DRY") for s in statuses):
        code, verdict = 2, "NOTHING RAN"
    else:
        code, verdict = 0, "ALL REHEARSED" if dry else "ALL RUN PARTS PASS"
    title = f"gpu_check_splats{' --dry-run' if dry else ''}: {verdict} in {elapsed:.0f} s (time box {timeout:g} s)"
    print(f"\n==== {title} ====")
    print(f"{'part':<14} {'status':<8} {'seconds':>8}  detail")
    for r in rows:
        print(f"{r['part']:<14} {r['status']:<8} {r['seconds']:>8.1f}  {r['detail']}")
    sys.stdout.flush()
    return code


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help=f"time box for the whole check, install included (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--install", action="store_true", help="pip-install missing gsplat / kornia / tqdm")
    parser.add_argument("--dry-run", action="store_true", help="rehearse on the CPU up to each part's first CUDA call")
    parser.add_argument("--quick", action="store_true", help="skip the Gaussian-Flow fit")
    parser.add_argument("--gf-iterations", type=int, default=1500)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    start = time.monotonic()
    deadline = start + args.timeout
    check_dependencies(args.install, args.dry_run, deadline)
    rows = supervise(args, deadline)
    return summary(rows, time.monotonic() - start, args.timeout, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
