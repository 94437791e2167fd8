"""Correlation and splatting ops: compiled kernels vs the PyTorch reference, side by side.

    python bench/ops.py                  # CPU: reference vs C++ (this is what `make bench` runs)
    python bench/ops.py --device cuda    # GPU: reference vs CUDA kernels (bench/gpu_check.sh)

Prints, at RAFT's 1/8 feature resolution for Sintel ([1, 256, 55, 128]) and 1080p ([1, 256, 135, 240]):
best-of-N times of the all-pairs window lookup (4 levels, r = 4), the on-the-fly correlation (same output without the
volume), peak memory of the all-pairs pyramid vs on-the-fly (CPU: peak resident memory of a fresh
subprocess above its baseline; GPU: torch.cuda.max_memory_allocated), and splatting of C = 128
features in 'average' mode (SplatFlow's), forward and forward+backward.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from motion.ops import CorrelationVolume, _backend, softsplat  # noqa: E402

SIZES = {"sintel/8": (55, 128), "1080p/8": (135, 240)}
DIM, LEVELS, RADIUS, SPLAT_CHANNELS = 256, 4, 4, 128


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, repeats: int, budget_s: float = 4.0) -> tuple[float, float]:
    """Best wall time and best process CPU time, in milliseconds, of ``repeats`` calls after a warm-up.

    Best-of-N because this machine may be shared: the minimum is the least disturbed measurement,
    and the CPU time (all threads of this process) is insensitive to other processes. A call slower
    than ``budget_s`` is measured once (its warm-up run is the measurement).
    """
    def once() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        return time.perf_counter() - wall, time.process_time() - cpu

    first = once()
    if first[0] > budget_s:
        return 1e3 * first[0], 1e3 * first[1]
    runs = [once() for _ in range(repeats)]
    return 1e3 * min(r[0] for r in runs), 1e3 * min(r[1] for r in runs)


def inputs(h: int, w: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f1 = torch.randn(1, DIM, h, w, generator=g).to(device)
    f2 = torch.randn(1, DIM, h, w, generator=g).to(device)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    coords = (torch.stack([xs, ys])[None] + 4 * torch.randn(1, 2, h, w, generator=g)).to(device)
    feats = torch.randn(1, SPLAT_CHANNELS, h, w, generator=g).to(device)
    flow = (3 * torch.randn(1, 2, h, w, generator=g)).to(device)
    return f1, f2, coords, feats, flow


Timing = tuple[float, float]


def speed_rows(device: str, compiled: str, repeats: int) -> Iterator[tuple[str, str, Timing, Timing]]:
    """Yields (op, size, reference (wall, cpu) ms, compiled (wall, cpu) ms) as each pair is measured."""
    for name, (h, w) in SIZES.items():
        f1, f2, coords, feats, flow = inputs(h, w, device)
        with torch.no_grad():
            for mode, label in (("all_pairs", "all-pairs lookup"), ("on_the_fly", "on-the-fly corr")):
                times = []
                for backend in ("torch", compiled):  # one volume alive at a time: 1080p/8 all-pairs is 5.6 GB
                    corr = CorrelationVolume(f1, f2, LEVELS, RADIUS, mode, backend)
                    times.append(timed(lambda: corr(coords), device, repeats))
                    del corr
                yield (label, name, *times)
            t_ref = timed(lambda: softsplat(feats, flow, mode="average", backend="torch"), device, repeats)
            t_new = timed(lambda: softsplat(feats, flow, mode="average", backend=compiled), device, repeats)
            yield ("splat average fwd", name, t_ref, t_new)

        def splat_train(backend: str) -> None:
            x, u = feats.clone().requires_grad_(), flow.clone().requires_grad_()
            softsplat(x, u, mode="average", backend=backend).sum().backward()

        yield ("splat average fwd+bwd", name, timed(lambda: splat_train("torch"), device, repeats),
               timed(lambda: splat_train(compiled), device, repeats))

        def lookup_train(backend: str, mode: str) -> None:
            a, b = f1.clone().requires_grad_(), f2.clone().requires_grad_()
            CorrelationVolume(a, b, LEVELS, RADIUS, mode, backend)(coords).sum().backward()

        if name == "sintel/8" or device == "cuda":
            yield ("on-the-fly fwd+bwd", name, timed(lambda: lookup_train("torch", "on_the_fly"), device, 1),
                   timed(lambda: lookup_train(compiled, "on_the_fly"), device, repeats))
            yield ("all-pairs fwd+bwd", name, timed(lambda: lookup_train("torch", "all_pairs"), device, 1),
                   timed(lambda: lookup_train(compiled, "all_pairs"), device, repeats))


# ---------------------------------------------------------------- memory

def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _memory_child(mode: str, backend: str, h: int, w: int) -> None:
    """Run in a fresh process: peak resident memory of building the volume and one lookup.

    The parent sets MALLOC_MMAP_THRESHOLD_ so that every large buffer is its own mapping and is
    returned to the system when freed; resident memory then follows the live tensors, and a thread
    samples it every 0.2 ms while the volume is built and queried.
    """
    torch.set_num_threads(2)
    f1, f2, coords, _, _ = inputs(h, w, "cpu")
    del _
    if backend != "torch":
        _backend.load()
    with torch.no_grad():  # warm-up at a tiny size: one-time allocations happen before the baseline
        CorrelationVolume(f1[..., :8, :8], f2[..., :8, :8], LEVELS, RADIUS, mode, backend)(coords[..., :8, :8])
    base = _resident_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _resident_bytes())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with torch.no_grad():
        corr = CorrelationVolume(f1, f2, LEVELS, RADIUS, mode, backend)
        out = corr(coords)
    held = _resident_bytes()  # the volume and the output are still alive here
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": (max(peak[0], held) - base) / 2 ** 20, "held_mib": (held - base) / 2 ** 20,
                      "out_mib": out.numel() * 4 / 2 ** 20}))


def memory_rows_cpu(compiled: str) -> list[tuple[str, float, float, float, float]]:
    rows = []
    for name, (h, w) in SIZES.items():
        result = {}
        for mode, backend in (("all_pairs", compiled), ("on_the_fly", "torch"), ("on_the_fly", compiled)):
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
            proc = subprocess.run([sys.executable, __file__, "--memory-child", mode, backend, str(h), str(w)],
                                  capture_output=True, text=True, check=True, env=env)
            result[(mode, backend)] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]
        rows.append((name, result[("all_pairs", compiled)], result[("on_the_fly", "torch")],
                     result[("on_the_fly", compiled)], pyramid_mib(h, w)))
    return rows


def memory_rows_cuda(compiled: str) -> list[tuple[str, float, float, float, float]]:
    rows = []
    for name, (h, w) in SIZES.items():
        f1, f2, coords, _, _ = inputs(h, w, "cuda")
        result = {}
        for mode, backend in (("all_pairs", compiled), ("on_the_fly", "torch"), ("on_the_fly", compiled)):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            with torch.no_grad():
                out = CorrelationVolume(f1, f2, LEVELS, RADIUS, mode, backend)(coords)
            torch.cuda.synchronize()
            result[(mode, backend)] = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
            del out
            torch.cuda.empty_cache()
        rows.append((name, result[("all_pairs", compiled)], result[("on_the_fly", "torch")],
                     result[("on_the_fly", compiled)], pyramid_mib(h, w)))
    return rows


def pyramid_mib(h: int, w: int) -> float:
    """Bytes of the float32 all-pairs pyramid by the formula, for comparison with the measurement."""
    total, hh, ww = 0, h, w
    for _ in range(LEVELS):
        total += h * w * hh * ww
        hh, ww = hh // 2, ww // 2
    return total * 4 / 2 ** 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (best is shown)")
    parser.add_argument("--skip-memory", action="store_true", help="only the timings")
    parser.add_argument("--skip-speed", action="store_true", help="only the memory comparison")
    parser.add_argument("--memory-child", nargs=4, metavar=("MODE", "BACKEND", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        mode, backend, h, w = args.memory_child
        _memory_child(mode, backend, int(h), int(w))
        return 0

    compiled = "cpp" if args.device == "cpu" else "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible", file=sys.stderr)
        return 1
    start = time.perf_counter()
    ok = _backend.has_cuda() if args.device == "cuda" else _backend.has_cpp()
    print(f"compiled ops: {_backend.status()}  (load/build {time.perf_counter() - start:.1f} s)")
    if not ok:
        print(f"the {compiled} backend is unavailable; nothing to compare", file=sys.stderr)
        return 1
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device_name}; torch {torch.__version__}; D={DIM}, levels={LEVELS}, radius={RADIUS}, "
          f"splat C={SPLAT_CHANNELS}\n")

    if not args.skip_speed:
        if args.device == "cpu":
            print("times: best-of-N wall ms | process CPU ms (the CPU time ignores other processes' load)")
            print(f"{'op':<24}{'size':<10}{'reference':>20}{compiled:>20}{'speed-up':>10}{'cpu speed-up':>14}")
        else:
            print("times: best-of-N wall ms (synchronised)")
            print(f"{'op':<24}{'size':<10}{'reference':>12}{compiled:>12}{'speed-up':>10}")
        for op, size, ref, new in speed_rows(args.device, compiled, args.repeats):
            if args.device == "cpu":
                print(f"{op:<24}{size:<10}{ref[0]:>11.1f} |{ref[1]:>7.0f}{new[0]:>11.1f} |{new[1]:>7.0f}"
                      f"{ref[0] / new[0]:>9.1f}x{ref[1] / max(new[1], 1e-3):>13.1f}x", flush=True)
            else:
                print(f"{op:<24}{size:<10}{ref[0]:>12.2f}{new[0]:>12.2f}{ref[0] / new[0]:>9.1f}x", flush=True)

    if not args.skip_memory:
        how = ("peak resident memory above baseline, fresh process" if args.device == "cpu"
               else "torch.cuda.max_memory_allocated")
        print(f"\npeak memory of building the volume + one lookup, MiB ({how})")
        print(f"{'size':<10}{'all-pairs':>12}{'otf torch':>12}{'otf ' + compiled:>12}{'ratio':>9}"
              f"{'pyramid (formula)':>20}")
        rows = memory_rows_cpu(compiled) if args.device == "cpu" else memory_rows_cuda(compiled)
        for size, all_pairs, otf_ref, otf_new, formula in rows:
            print(f"{size:<10}{all_pairs:>12.0f}{otf_ref:>12.0f}{otf_new:>12.0f}{all_pairs / max(otf_new, 1e-3):>8.0f}x"
                  f"{formula:>20.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
