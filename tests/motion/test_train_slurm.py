"""Training under Slurm: ranks from an srun step, MASTER_ADDR/MASTER_PORT derived from Slurm's variables,
the batch script of a multi-task allocation refused with a message, and two srun-launched processes
training one DDP job."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from motion.launch import PORT_BASE, PORT_SPAN, first_host, process_rank, slurm_rendezvous
from motion4d.errors import InvalidArgumentError
from tests.motion.test_corpus_shards import batch_script, srun, torchrun

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("nodelist,host", [
    ("node1", "node1"), ("gpu[07-09,12],cpu3", "gpu07"), ("n[001-004]", "n001"), ("a,b", "a"),
    ("rack[2-3]-node[01-04]", "rack2-node01"), ("gpu-a100-[5,7]", "gpu-a100-5"),
])
def test_first_host_of_a_slurm_nodelist(nodelist, host):
    assert first_host(nodelist) == host


def test_rendezvous_from_slurm_keeps_exported_values():
    env = {**srun(1, 2, step=3), "SLURM_JOB_ID": "4242"}
    assert slurm_rendezvous(env) == {"MASTER_ADDR": "node01", "MASTER_PORT": str(PORT_BASE + (16 * 4242 + 3) % PORT_SPAN)}
    assert slurm_rendezvous({**env, "MASTER_PORT": "29400"})["MASTER_PORT"] == "29400"
    with pytest.raises(InvalidArgumentError, match="SLURM_JOB_ID"):
        slurm_rendezvous({k: v for k, v in env.items() if k != "SLURM_JOB_ID"})


def test_training_ranks_from_each_launcher():
    assert process_rank({}) == (0, 1, 0)
    assert process_rank(torchrun(3, 4)) == (3, 4, 3)
    assert process_rank(srun(1, 2)) == (1, 2, 1)
    assert process_rank({**srun(1, 2), **torchrun(3, 4, local_world=2)}) == (3, 4, 1)  # torchrun --nnodes=2
    assert process_rank(batch_script(1)) == (0, 1, 0)
    with pytest.raises(InvalidArgumentError, match="srun motion4d train"):
        process_rank(batch_script(4))  # sbatch --ntasks=4 without srun: 1 of 4 processes would wait forever
    with pytest.raises(InvalidArgumentError, match="--nnodes=2"):
        process_rank({**srun(1, 2), **torchrun(1, 2)})  # two standalone torchruns would train twice


def test_multi_process_job_without_rendezvous_names_the_launchers(monkeypatch):
    from motion.distributed import setup_distributed

    for key in ("MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_ID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(InvalidArgumentError, match="torchrun, with srun"):
        setup_distributed("gloo", "cpu", rank=0, world_size=2)


def test_batch_script_of_a_multi_task_allocation_is_refused_by_the_cli(monkeypatch, capsys, tmp_path):
    from motion4d.cli import main

    for key, value in batch_script(4).items():
        monkeypatch.setenv(key, value)
    code = main(["train", "--model", "tiny-flow", "--mixture", "sintel_final", "--out", str(tmp_path / "x"),
                 "--device", "cpu", "--no-progress"])
    assert code == 2 and "srun motion4d train" in capsys.readouterr().err


def _free_slurm_port() -> int:
    """A job id whose derived MASTER_PORT is free on this machine."""
    for job in range(1000, 1250):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", PORT_BASE + (16 * job) % PORT_SPAN))
            except OSError:
                continue
            return job
    raise RuntimeError("no free port")


@pytest.mark.slow  # two fresh interpreters: about 20 s on a loaded 2-core machine
def test_srun_launched_processes_train_one_ddp_job(tmp_path):
    """What `srun --ntasks=2 motion4d train ...` runs: two processes with an srun step's variables, no torchrun."""
    from tests.motion.fake_datasets import write_sintel

    write_sintel(tmp_path / "Sintel", scenes={"alley_1": 5, "cave_2": 4}, size=(16, 20))
    job = _free_slurm_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "RANK", "WORLD_SIZE", "LOCAL_"))}
    argv = [sys.executable, "-m", "motion4d", "train", "--model", "tiny-flow", "--mixture", "sintel_final",
            "--root", f"sintel={tmp_path / 'Sintel'}", "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "2",
            "--crop", "8x8", "--device", "cpu", "--no-progress"]
    procs = []
    for procid in range(2):
        env = {**base, **srun(procid, 2), "SLURM_JOB_ID": str(job), "SLURM_STEP_NODELIST": "localhost",
               "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    config = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert config["world_size"] == 2 and config["per_rank_batch"] == 1
    assert (tmp_path / "run" / "model_final.pth").is_file()
