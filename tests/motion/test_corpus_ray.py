"""The Ray engine on a real local Ray cluster (started here on 127.0.0.1 with token authentication): outputs
byte-identical to the local runner, every video exactly once, outcomes recorded, one model per actor,
CPU actors on the CPU whatever the driver sees, a killed driver resumed by a rerun, impossible resource
requests refused at once. Drivers run as separate processes, as users run them."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray  # noqa: F401  (ray[data] is a test dependency: the dev extra installs it)

from motion import corpus as rc
from motion.sample_data import sample_video
from tests.motion.test_corpus import OPTIONS, make_corpus, records

ROOT = Path(__file__).resolve().parents[2]
NOT_COMPARED = {"log.txt", rc.DONE_NAME, rc.DAMAGED_NAME, ".motion4d.lock"}  # per-process facts: pid, times


@dataclass(frozen=True)
class Cluster:
    address: str
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """``ray start --head`` on 127.0.0.1 with 2 CPUs, no GPU; workers import this checkout."""
    temp = Path(tempfile.mkdtemp(prefix="m4dray-", dir="/tmp"))  # short: Ray's socket paths live under it
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # an idle test cluster has nothing to drain
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "OMP_NUM_THREADS": "1"}
    log_path = temp / "head.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
             "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
             "--disable-usage-stats", "--object-store-memory", str(100 * 2**20), "--temp-dir", str(temp / "ray")],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield Cluster(f"127.0.0.1:{port}", env)
    finally:
        # SIGTERM: `ray start --block` stops the cluster's processes (its session's group) within seconds, then
        # idles for about a minute before exiting itself; once it is alone it has nothing left to stop
        head.terminate()
        deadline = time.monotonic() + 60
        while _group(head.pid) - {head.pid} and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group(head.pid):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _group(pgid: int) -> set[int]:
    """Live processes of process group ``pgid`` (from /proc; zombies excluded)."""
    members = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.add(int(stat.parent.name))
    return members


def driver(cluster: Cluster, source: str, *args: str, cwd: Path, sees_cuda: bool = False, popen: bool = False):
    """``motion4d corpus SOURCE --engine ray ... ARGS`` in a fresh interpreter; ``sees_cuda``: the driver
    believes it has a GPU."""
    patch = "import torch; torch.cuda.is_available = lambda: True; torch.cuda.device_count = lambda: 1; " if sees_cuda else ""
    argv = [sys.executable, "-c", f"import sys; {patch}from motion4d.cli import main; raise SystemExit(main(sys.argv[1:]))",
            "corpus", source, "--engine", "ray", "--ray-address", cluster.address, "--no-progress", *args]
    if popen:
        return subprocess.Popen(argv, cwd=cwd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    return subprocess.run(argv, cwd=cwd, env=cluster.env, capture_output=True, text=True, timeout=300)


def _outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in NOT_COMPARED and p.parts[len(out.parts)] not in ("manifest", "logs")
            and p.name != rc.LIST_NAME}


def test_ray_pool_matches_the_local_runner(cluster, tmp_path):
    root = tmp_path / "corpus"
    expected = make_corpus(root)
    local = rc.run_corpus(root, "flow", tmp_path / "local", OPTIONS, shard_index=0, num_shards=1, progress=False)
    assert local.done == 3
    # relative paths (resolved on the driver for the workers) and a driver that sees CUDA (CPU actors must not use it)
    result = driver(cluster, "corpus", "--out", "ray_out", "--ray-actors", "2", "--task-options", *OPTIONS,
                    cwd=tmp_path, sees_cuda=True)
    assert result.returncode == 0, result.stderr[-4000:]  # failures are reported, not fatal
    out = tmp_path / "ray_out"
    got = {str(Path(r["video"]).relative_to(root.resolve())): r["status"] for r in records(out)}
    assert got == expected and len(records(out)) == len(expected)  # exactly once, each outcome as locally
    assert {(r["engine"], r["device"]) for r in records(out)} == {("ray", "cpu")}
    ray_files, local_files = _outputs(out), _outputs(tmp_path / "local")
    assert len(local_files) > 15 and ray_files.keys() == local_files.keys()
    assert [k for k in ray_files if ray_files[k] != local_files[k]] == []  # byte-identical
    assert rc.read_frozen(out / rc.LIST_NAME).videos == rc.read_frozen(tmp_path / "local" / rc.LIST_NAME).videos
    # one model per actor, each actor on the CPU with GPUs hidden and one thread per CPU, logs under --out
    lines = [line for log in (out / "logs").glob("ray-actor-*.log") for line in log.read_text().splitlines()]
    ready = [line for line in lines if "actor ready" in line]
    assert 1 <= len(ready) <= 2
    for line in ready:
        assert "device cpu, CUDA_VISIBLE_DEVICES=''" in line and "threads torch=1 opencv=1" in line
        assert "models built 1" in line
    videos = [line for line in lines if " in " in line and "actor ready" not in line]
    assert len(videos) == len(expected) and all("(batch of 1, models built 1)" in line for line in videos)


def test_killed_driver_rerun_resumes_exactly_once(cluster, tmp_path):
    root, out = tmp_path / "corpus", tmp_path / "out"
    root.mkdir()
    for i in range(8):
        shutil.copy(sample_video("carphone"), root / f"clip{i}.mp4")
    args = ("corpus", "--out", "out", "--ray-actors", "1", "--task-options", "--model", "dis", "--max-frames", "60")
    first = driver(cluster, *args, cwd=tmp_path, popen=True)
    try:
        deadline = time.monotonic() + 240
        while len(records(out)) < 2 if (out / "manifest").is_dir() else True:
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no video finished"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    before = records(out)
    assert 2 <= len(before) < 8  # streamed into the manifest as they finished, not at the end
    # Ray ends the dead driver's actors; wait for them so no two actors write one video
    actors = [int(p.stem.rsplit("-", 1)[1]) for p in (out / "logs").glob("ray-actor-*.log")]
    deadline = time.monotonic() + 120
    while any(_alive(pid) for pid in actors):
        assert time.monotonic() < deadline, "the killed driver's actors live on"
        time.sleep(0.2)
    rerun = driver(cluster, *args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    done = Counter(r["video"] for r in records(out) if r["status"] == "done")
    assert sorted(done) == sorted(str(p.resolve()) for p in root.iterdir()) and set(done.values()) == {1}
    for record in before:  # finished before the kill: not done again
        marker = json.loads((out / record["id"] / rc.DONE_NAME).read_text())
        assert (marker["pid"], marker["started"]) == (record["pid"], record["started"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


CHECKS = """
import json, sys, time
import ray
from motion.corpus import Video, run_corpus
from motion.corpus.ray_engine import build_dataset
corpus, out, address = sys.argv[1:4]
options = sys.argv[4:]
ray.init(address=address, log_to_driver=False)
results = {}
for name, asked in {"gpu": {"num_gpus": 1}, "cpus": {"num_cpus": 4}, "actors": {"actors": 5}}.items():
    started = time.perf_counter()
    try:
        run_corpus(corpus, "flow", f"{out}/{name}", options, shard_index=0, num_shards=1, engine="ray",
                   ray_options={"address": address, **asked}, progress=False)
        error = "none"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    results[name] = [error, time.perf_counter() - started]
results["blocks"] = build_dataset(ray, [Video(f"/v/{i}.mp4", str(i)) for i in range(1000)]).num_blocks()
print(json.dumps(results))
"""


def test_impossible_requests_fail_at_once_and_every_video_is_a_block(cluster, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copy(sample_video("carphone"), root / "clip.mp4")
    result = subprocess.run([sys.executable, "-c", CHECKS, str(root), str(tmp_path / "out"), cluster.address, *OPTIONS],
                            cwd=tmp_path, env=cluster.env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results["gpu"][0].startswith("BackendUnavailableError: the Ray cluster cannot hold one actor of 1 CPU + 1 GPU")
    assert "2 CPU + 0 GPU" in results["gpu"][0]  # what the nodes offer
    assert results["cpus"][0].startswith("BackendUnavailableError: the Ray cluster cannot hold one actor of 4 CPU")
    assert results["actors"][0].startswith("BackendUnavailableError: --ray-actors 5: the Ray cluster holds 2 actors")
    assert max(results[k][1] for k in ("gpu", "cpus", "actors")) < 30  # refused, not queued forever
    assert results["blocks"] == 1000  # one block per video: the pool's parallelism is not capped by blocks
