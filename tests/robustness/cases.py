"""The bad-input battery: real files damaged in every way users meet, each with what must happen.

Each :class:`Case` turns the real sample files (:class:`Sources`) into one bad input and runs the
public function a user would call on it. It passes when that ends in a :class:`Motion4DError`
(subclass as given) whose message names the file or argument, and nothing else happened: no
partial or foreign output files, no code run from a file (pickle payloads would create a marker),
memory bounded (the ``bomb`` cases run in a child process whose peak memory is measured).
"""
from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from motion4d.errors import (
    CheckpointError,
    DamagedFileError,
    InputFileError,
    InputTooLargeError,
    InvalidArgumentError,
    MissingFileError,
    Motion4DError,
    NonFiniteError,
    ShapeError,
)

from . import damage

VIDEO_FRAMES = 40  # frames of the transcoded AVI / MKV copies (keeps the battery fast)


@dataclass
class Case:
    category: str
    name: str
    run: Callable[["Sources", Path], Any]
    expect: type[Exception] = Motion4DError
    names: str | None = "file"  # what the message must mention: "file" (the bad file's name) or a word
    bomb: bool = False  # declares a huge allocation: run in the memory-measured child process


class Sources:
    """Real sample files (from installed wheels) and clean files the package writes from them."""

    def __init__(self, root: Path):
        from motion import sample_data
        from motion.flow_io import write_flow
        from pointclouds import PointCloud, depth_to_points, write_cloud

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.mp4 = Path(shutil.copy(sample_data.sample_video("carphone"), root / "carphone.mp4"))
        self.avi = damage.transcode(self.mp4, root / "carphone.avi", frames=VIDEO_FRAMES)
        self.mkv = damage.transcode(self.mp4, root / "carphone.mkv", frames=VIDEO_FRAMES)
        self.bikes = Path(shutil.copy(sample_data.sample_video("bikes"), root / "bikes.mp4"))
        from skimage import data as skdata

        skimage_dir = Path(skdata.__file__).parent
        self.png = Path(shutil.copy(skimage_dir / "astronaut.png", root / "astronaut.png"))
        self.jpg = Path(shutil.copy(skimage_dir / "rocket.jpg", root / "rocket.jpg"))
        pair = sample_data.middlebury_frames("RubberWhale")
        import motion

        flow = motion.estimate_flow(pair, model="dis", device="cpu", progress=False).forward[0]
        self.flow = flow.permute(1, 2, 0).numpy()
        self.flows = {ext: write_flow(root / f"flow{ext}", flow) for ext in (".flo", ".png", ".pfm", ".flo5", ".npy", ".npz")}
        image, depth, K = sample_data.motorcycle_depth()
        cloud = depth_to_points(depth, K)
        points = cloud.points[np.isfinite(cloud.points).all(1)][::25]
        colors = image.reshape(-1, 3)[(depth.reshape(-1) > 0)][::25][: len(points)]
        self.cloud = PointCloud(points, colors=colors)
        self.clouds = {ext: write_cloud(root / f"cloud{ext}", self.cloud if ext in (".ply", ".npz", ".pcd")
                                        else PointCloud(self.cloud.points)) for ext in (".ply", ".pcd", ".npz", ".npy", ".bin")}
        self.ply_ascii = _ascii_ply(root / "cloud_ascii.ply", points)
        self.gaussian_ply = _gaussian_ply(root / "gaussians.ply", points[:500], colors[:500])
        self.tum, self.colmap, self.transforms = _camera_files(root)
        from motion.track_io import export_tracks

        tracks = motion.track_points(self.avi, "dis", grid=24, stop=8, progress=False)
        groups = (np.arange(tracks.num_tracks) % 3) + 1  # three objects, so the MOT file has boxes to damage
        self.tracks = {p.suffix: p for p in export_tracks(
            tracks, root / "tracks", ["csv", "parquet", "cotracker", "tapvid", "mot", "json"], video=self.avi,
            groups=groups)}
        self.track_image_size = tracks.image_size


def _ascii_ply(path: Path, points: np.ndarray) -> Path:
    from motion4d.ply import write_ply_vertices

    return write_ply_vertices(path, {a: points[:, i].astype(np.float32) for i, a in enumerate("xyz")}, text=True)


def _gaussian_ply(path: Path, points: np.ndarray, colors: np.ndarray) -> Path:
    from splats.gaussians import Gaussians, write_ply

    n = len(points)
    gaussians = Gaussians(
        means=torch.from_numpy(points), quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        log_scales=torch.full((n, 3), -3.0), logit_opacities=torch.zeros(n),
        colors=torch.from_numpy(colors.astype(np.float32) / 255.0))
    return write_ply(path, gaussians)


def _camera_files(root: Path) -> tuple[Path, Path, Path]:
    from splats.cameras import Cameras, look_at, write_colmap_text, write_transforms_json, write_tum

    eyes = torch.tensor([[0.0, 0.0, -3.0], [0.5, 0.0, -3.0], [1.0, 0.2, -3.0]])
    w2c = torch.stack([look_at(e, torch.zeros(3)) for e in eyes])
    cameras = Cameras.from_fov(w2c, 64, 48)
    tum = write_tum(root / "poses.txt", np.arange(3.0), w2c)
    colmap = write_colmap_text(root / "colmap", cameras, ["a.png", "b.png", "c.png"])
    transforms = write_transforms_json(root / "transforms.json", cameras, ["a.png", "b.png", "c.png"])
    return Path(tum), Path(colmap), Path(transforms)


# ------------------------------------------------------------------------------------------ helpers
def read_all(path: Path, **options: Any) -> np.ndarray:
    from motion import read_frames

    return read_frames(path, **options)


def flow_file(src: Sources, tmp: Path, ext: str, make: Callable[[Path, Path], Path]) -> Any:
    from motion import read_flow

    return read_flow(make(src.flows[ext], tmp / f"bad{ext}"))


def cloud_file(src: Sources, tmp: Path, base: Path, make: Callable[[Path, Path], Path], name: str = "bad") -> Any:
    from pointclouds import read_cloud

    return read_cloud(make(base, tmp / f"{name}{base.suffix}"))


def text_edit(old: str, new: str) -> Callable[[Path, Path], Path]:
    return lambda s, t: damage.replace_text(s, t, old, new)


def lines_edit(edit: Callable[[list[str]], list[str]]) -> Callable[[Path, Path], Path]:
    def make(source: Path, target: Path) -> Path:
        return damage.write(target, "\n".join(edit(source.read_text().split("\n"))))
    return make


def truncated(fraction: float) -> Callable[[Path, Path], Path]:
    return lambda s, t: damage.truncate(s, t, fraction)


def corrupted(at: float, length: int) -> Callable[[Path, Path], Path]:
    return lambda s, t: damage.corrupt(s, t, at, length)


def body_line(index: int, value: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        start = lines.index("end_header") + 1
        lines[start + index] = value
        return lines
    return edit


# ------------------------------------------------------------------------------------------ cases
CASES: list[Case] = []


def case(category: str, name: str, expect: type[Exception] = Motion4DError, names: str | None = "file",
         bomb: bool = False) -> Callable[[Callable], Callable]:
    def register(run: Callable) -> Callable:
        CASES.append(Case(category, name, run, expect, names, bomb))
        return run
    return register


def add(category: str, name: str, run: Callable, expect: type[Exception] = Motion4DError, names: str | None = "file",
        bomb: bool = False) -> None:
    CASES.append(Case(category, name, run, expect, names, bomb))


# videos: each container damaged every way -------------------------------------------------------
for _container in ("mp4", "avi", "mkv"):
    for _fraction in (0.3, 0.6, 0.9):
        add("video", f"{_container} truncated at {_fraction:.0%}",
            lambda s, t, c=_container, f=_fraction: read_all(damage.truncate(getattr(s, c), t / f"cut.{c}", f)),
            InputFileError)
    add("video", f"{_container} 2000 random bytes mid-file",
        lambda s, t, c=_container: read_all(damage.corrupt(getattr(s, c), t / f"noise.{c}", 0.5, 2000)), DamagedFileError)
    add("video", f"{_container} 4000 zero bytes at 40%",
        lambda s, t, c=_container: read_all(damage.zero_fill(getattr(s, c), t / f"zeros.{c}", 0.4, 4000)), InputFileError)
    add("video", f"{_container} header only (first 2 KB)",
        lambda s, t, c=_container: read_all(damage.write(t / f"head.{c}", getattr(s, c).read_bytes()[:2048])),
        InputFileError)
add("video", "bikes.mp4 truncated at 95% (a long real clip)",
    lambda s, t: read_all(damage.truncate(s.bikes, t / "bikes.mp4", 0.95), stride=5), InputFileError)
add("video", "empty file", lambda s, t: read_all(damage.write(t / "empty.mp4", b"")), InputFileError)
add("video", "text file named .mp4", lambda s, t: read_all(damage.write(t / "notes.mp4", "not a video\n" * 50)),
    InputFileError)
add("video", "missing file", lambda s, t: read_all(t / "absent.mp4"), MissingFileError)
add("video", "folder without images", lambda s, t: read_all((t / "frames").mkdir() or t / "frames"), InputFileError,
    names="frames")


@case("video", "a PNG renamed .mp4 gives one frame: flow refuses it", InputFileError)
def _png_as_video(s: Sources, t: Path) -> Any:
    import motion

    return motion.estimate_flow(damage.write(t / "photo.mp4", s.png.read_bytes()), model="dis", device="cpu",
                                progress=False)


add("video", "start past the end", lambda s, t: read_all(s.avi, start=10_000), InvalidArgumentError, names="start")
add("video", "stop before start", lambda s, t: read_all(s.avi, start=5, stop=3), InvalidArgumentError, names="stop")
add("video", "negative stride", lambda s, t: read_all(s.avi, stride=-1), InvalidArgumentError, names="stride")
add("video", "resize of zero", lambda s, t: read_all(s.avi, resize=0), InvalidArgumentError, names="resize")
add("video", "unknown damage policy", lambda s, t: read_all(s.avi, on_damage="ignore"), InvalidArgumentError,
    names="on_damage")


@case("video", "estimate_flow on a truncated video stops with the damage named", DamagedFileError)
def _flow_on_truncated(s: Sources, t: Path) -> Any:
    import motion

    cut = damage.truncate(s.mkv, t / "cut.mkv", 0.5)
    return motion.estimate_flow(cut, model="dis", device="cpu", out_dir=t / "out", progress=False)


@case("video", "frames of different sizes in a folder", InputFileError, names="size")
def _mixed_sizes(s: Sources, t: Path) -> Any:
    from motion.image_io import write_image

    folder = t / "frames"
    write_image(folder / "0001.png", np.zeros((32, 48, 3), np.uint8))
    write_image(folder / "0002.png", np.zeros((40, 48, 3), np.uint8))
    return read_all(folder)


@case("video", "a truncated image among good frames", InputFileError, names="0002")
def _bad_frame_in_folder(s: Sources, t: Path) -> Any:
    folder = t / "frames"
    folder.mkdir()
    shutil.copy(s.png, folder / "0001.png")
    damage.truncate(s.png, folder / "0002.png", 0.5)
    return read_all(folder)


# images ----------------------------------------------------------------------------------------
def read_img(path: Path) -> Any:
    from motion import read_image

    return read_image(path)


add("image", "PNG truncated at 50%", lambda s, t: read_img(damage.truncate(s.png, t / "a.png", 0.5)), InputFileError)
add("image", "PNG truncated at 99%", lambda s, t: read_img(damage.truncate(s.png, t / "a.png", 0.99)), InputFileError)
add("image", "PNG with a damaged data chunk", lambda s, t: read_img(damage.zero_fill(s.png, t / "a.png", 0.5, 500)),
    InputFileError)
add("image", "JPEG truncated at 50%", lambda s, t: read_img(damage.truncate(s.jpg, t / "a.jpg", 0.5)), InputFileError)
add("image", "JPEG truncated at 97%", lambda s, t: read_img(damage.truncate(s.jpg, t / "a.jpg", 0.97)), InputFileError)
add("image", "empty PNG", lambda s, t: read_img(damage.write(t / "a.png", b"")), InputFileError)
add("image", "text named .png", lambda s, t: read_img(damage.write(t / "a.png", "hello")), InputFileError)
add("image", "folder named .png", lambda s, t: read_img((t / "x.png").mkdir() or t / "x.png"), InputFileError)
add("image", "16-bit PNG declaring 14000 x 14000", lambda s, t: read_img(damage.png_bomb(t / "big.png", 14000, 14000)),
    InputTooLargeError, bomb=True)


@case("image", "JPEG whose header declares 65000 x 65000", InputTooLargeError, bomb=True)
def _jpeg_bomb(s: Sources, t: Path) -> Any:
    data = bytearray(s.jpg.read_bytes())
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            data[at + 5 : at + 9] = (65000).to_bytes(2, "big") + (65000).to_bytes(2, "big")
            break
    return read_img(damage.write(t / "big.jpg", bytes(data)))


# flow files ------------------------------------------------------------------------------------
add("flow", ".flo truncated", lambda s, t: flow_file(s, t, ".flo", truncated(0.5)), InputFileError)
add("flow", ".flo with a bad magic", lambda s, t: flow_file(s, t, ".flo", lambda a, b: damage.write(
    b, b"XXXX" + a.read_bytes()[4:])), InputFileError)
add("flow", ".flo declaring 30000 x 30000", lambda s, t: read_flow_bytes(
    t / "big.flo", b"PIEH" + struct.pack("<ii", 30000, 30000) + bytes(1400)), InputFileError, bomb=True)
add("flow", ".flo with negative size", lambda s, t: read_flow_bytes(
    t / "neg.flo", b"PIEH" + struct.pack("<ii", -5, 10) + bytes(64)), InputFileError)
add("flow", ".flo longer than its header", lambda s, t: flow_file(s, t, ".flo", lambda a, b: damage.write(
    b, a.read_bytes() + bytes(100))), InputFileError)
add("flow", ".flo empty", lambda s, t: read_flow_bytes(t / "e.flo", b""), InputFileError)
add("flow", "KITTI .png truncated", lambda s, t: flow_file(s, t, ".png", truncated(0.5)), InputFileError)
add("flow", "KITTI .png that is an 8-bit photo", lambda s, t: read_flow_bytes(t / "photo.png", s.png.read_bytes()),
    InputFileError)
add("flow", "KITTI .png declaring 14000 x 14000", lambda s, t: _read_flow(damage.png_bomb(t / "big.png", 14000, 14000)),
    InputTooLargeError, bomb=True)
add("flow", ".pfm truncated", lambda s, t: flow_file(s, t, ".pfm", truncated(0.5)), InputFileError)
add("flow", ".pfm with a bad header", lambda s, t: read_flow_bytes(t / "b.pfm", b"P6\n10 10\n-1.0\n" + bytes(1200)),
    InputFileError)
add("flow", ".pfm with scale 0", lambda s, t: flow_file(s, t, ".pfm", text_edit("-1.0", "0.0")), InputFileError)
add("flow", ".pfm declaring 60000 x 60000", lambda s, t: read_flow_bytes(
    t / "big.pfm", b"PF\n60000 60000\n-1.0\n" + bytes(1200)), InputFileError, bomb=True)
add("flow", "1-channel .pfm (a disparity)", lambda s, t: read_flow_bytes(
    t / "d.pfm", b"Pf\n4 4\n-1.0\n" + bytes(64)), InputFileError)
add("flow", ".flo5 that is not HDF5", lambda s, t: read_flow_bytes(t / "x.flo5", b"not hdf5" * 20), InputFileError)


def _h5(path: Path, name: str, shape: tuple[int, ...], chunks: bool = False) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset(name, shape=shape, dtype="f4", chunks=(64, 64, 2) if chunks else None,
                         compression="gzip" if chunks else None)
    return path


add("flow", ".flo5 without a 'flow' dataset", lambda s, t: _read_flow(_h5(t / "a.flo5", "disparity", (4, 4, 2))),
    InputFileError)
add("flow", ".flo5 declaring 60000 x 60000 compressed", lambda s, t: _read_flow(
    _h5(t / "big.flo5", "flow", (60000, 60000, 2), chunks=True)), InputTooLargeError, bomb=True)
add("flow", ".flo5 of the wrong shape", lambda s, t: _read_flow(_h5(t / "w.flo5", "flow", (4, 4, 3))), InputFileError)
add("flow", ".npy declaring 60000 x 60000 x 2", lambda s, t: _read_flow(damage.npy_header(t / "big.npy", (60000, 60000, 2))),
    InputFileError, bomb=True)
add("flow", ".npy holding a pickled object", lambda s, t: _read_flow(_pickled_npy(t)), InputFileError)
add("flow", ".npy of the wrong shape", lambda s, t: _read_flow(_saved_npy(t / "w.npy", np.zeros((4, 4, 3), np.float32))),
    InputFileError)
add("flow", ".npy truncated", lambda s, t: flow_file(s, t, ".npy", truncated(0.6)), InputFileError)
add("flow", ".npz member declaring 60000 x 60000 x 2", lambda s, t: _read_flow(_npz_bomb(t / "big.npz", "flow")),
    InputTooLargeError, bomb=True)
add("flow", ".npz without 'flow'", lambda s, t: _read_flow(_saved_npz(t / "n.npz", other=np.zeros((4, 4, 2)))),
    InputFileError)
add("flow", ".npz that is not a zip", lambda s, t: read_flow_bytes(t / "n.npz", b"PK not a zip" * 10), InputFileError)
add("flow", ".npz whose 'valid' does not match", lambda s, t: _read_flow(_saved_npz(
    t / "v.npz", flow=np.zeros((4, 4, 2), np.float32), valid=np.ones((3, 3), bool))), InputFileError)
add("flow", ".npz truncated", lambda s, t: flow_file(s, t, ".npz", truncated(0.5)), InputFileError)
add("flow", "unknown extension", lambda s, t: read_flow_bytes(t / "flow.xyz", b"PIEH"), InvalidArgumentError)


def _read_flow(path: Path) -> Any:
    from motion import read_flow

    return read_flow(path)


def read_flow_bytes(path: Path, data: bytes) -> Any:
    return _read_flow(damage.write(path, data))


def _saved_npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _saved_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _pickled_npy(tmp: Path) -> Path:
    path = tmp / "object.npy"
    np.save(path, np.array([damage.Payload(tmp / "EXECUTED")], dtype=object), allow_pickle=True)
    return path


def _npz_bomb(path: Path, key: str) -> Path:
    import zipfile

    header = damage.npy_header(path.with_suffix(".npy"), (60000, 60000, 2)).read_bytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{key}.npy", header)
    return path


# point clouds ----------------------------------------------------------------------------------
def _cloud(s: Sources, t: Path, ext: str, make: Callable[[Path, Path], Path]) -> Any:
    return cloud_file(s, t, s.clouds[ext], make)


add("cloud", "ASCII PLY truncated", lambda s, t: cloud_file(s, t, s.ply_ascii, truncated(0.6)), InputFileError)
add("cloud", "ASCII PLY declaring more vertices than its body", lambda s, t: cloud_file(
    s, t, s.ply_ascii, lambda a, b: damage.replace_text(a, b, "element vertex ", "element vertex 9")), InputFileError)
add("cloud", "ASCII PLY holding inf", lambda s, t: cloud_file(s, t, s.ply_ascii, lines_edit(body_line(5, "inf 0 1"))),
    NonFiniteError)
add("cloud", "ASCII PLY holding nan", lambda s, t: cloud_file(s, t, s.ply_ascii, lines_edit(body_line(3, "1 nan 1"))),
    NonFiniteError)
add("cloud", "ASCII PLY with text among numbers", lambda s, t: cloud_file(
    s, t, s.ply_ascii, lines_edit(body_line(7, "1 two 3"))), InputFileError)
add("cloud", "PLY header declaring 4e8 vertices", lambda s, t: cloud_file(s, t, s.ply_ascii, lambda a, b: damage.write(
    b, "ply\nformat binary_little_endian 1.0\nelement vertex 400000000\nproperty float x\nproperty float y\n"
       "property float z\nend_header\n" + "abc" * 10)), InputFileError, bomb=True)
add("cloud", "PLY without end_header", lambda s, t: cloud_file(s, t, s.ply_ascii, lambda a, b: damage.write(
    b, "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n")), InputFileError)
add("cloud", "PLY without a vertex element", lambda s, t: cloud_file(s, t, s.ply_ascii, lambda a, b: damage.write(
    b, "ply\nformat ascii 1.0\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n")), InputFileError)
add("cloud", "PLY vertices without z", lambda s, t: cloud_file(s, t, s.ply_ascii, lambda a, b: damage.write(
    b, "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nend_header\n1 2\n3 4\n")),
    InputFileError)
add("cloud", "PLY with no points", lambda s, t: cloud_file(s, t, s.ply_ascii, lambda a, b: damage.write(
    b, "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n")),
    InputFileError)
add("cloud", "PLY with an unknown format", lambda s, t: cloud_file(s, t, s.ply_ascii, text_edit("ascii", "utf8")),
    InputFileError)
add("cloud", "binary PLY truncated", lambda s, t: _cloud(s, t, ".ply", truncated(0.6)), InputFileError)
add("cloud", "binary PLY declaring more vertices than its body", lambda s, t: _cloud(
    s, t, ".ply", lambda a, b: damage.replace_text(a, b, "element vertex ", "element vertex 9")), InputFileError)
add("cloud", "binary PLY with a malformed header line", lambda s, t: _cloud(
    s, t, ".ply", text_edit("property float x", "property flaot x")), InputFileError)


@case("cloud", "binary PLY holding inf", NonFiniteError)
def _binary_inf(s: Sources, t: Path) -> Any:
    from pointclouds import read_cloud

    data = bytearray(s.clouds[".ply"].read_bytes())
    start = data.index(b"end_header\n") + len(b"end_header\n")
    data[start + 4 : start + 8] = struct.pack("<f", float("inf"))
    return read_cloud(damage.write(t / "inf.ply", bytes(data)))


add("cloud", "PCD truncated", lambda s, t: _cloud(s, t, ".pcd", truncated(0.5)), InputFileError)
add("cloud", "PCD declaring more points than its body", lambda s, t: _cloud(s, t, ".pcd", _pcd_more_points),
    InputFileError)
add("cloud", "PCD with a garbage header", lambda s, t: _cloud(s, t, ".pcd", lambda a, b: damage.write(b, "# nothing\n")),
    InputFileError)
add("cloud", ".npy declaring 4e9 points", lambda s, t: cloud_file(s, t, s.clouds[".npy"], lambda a, b: damage.npy_header(
    b, (4_000_000_000, 3))), InputFileError, bomb=True)
add("cloud", ".npy holding a pickled object", lambda s, t: _read_cloud(_pickled_npy(t)), InputFileError)
add("cloud", ".npy of shape [N, 2]", lambda s, t: _read_cloud(_saved_npy(t / "w.npy", np.zeros((5, 2), np.float32))),
    ShapeError)
add("cloud", ".npy holding NaN", lambda s, t: _read_cloud(_saved_npy(t / "n.npy", np.full((5, 3), np.nan, np.float32))),
    NonFiniteError)
add("cloud", ".npz without 'points'", lambda s, t: _read_cloud(_saved_npz(t / "n.npz", xyz=np.zeros((5, 3)))),
    InputFileError)
add("cloud", ".npz member declaring 60000 x 60000 x 2", lambda s, t: _read_cloud(_npz_bomb(t / "big.npz", "points")),
    InputTooLargeError, bomb=True)
add("cloud", ".npz with colours out of range", lambda s, t: _read_cloud(_saved_npz(
    t / "c.npz", points=np.zeros((5, 3), np.float32), colors=np.full((5, 3), 7.0, np.float32))), InvalidArgumentError,
    names="colors")
add("cloud", "KITTI .bin of 17 bytes", lambda s, t: _read_cloud(damage.write(t / "scan.bin", bytes(17))), InputFileError)
add("cloud", "KITTI .bin holding NaN", lambda s, t: _read_cloud(damage.write(
    t / "scan.bin", np.full((4, 4), np.nan, "<f4").tobytes())), NonFiniteError)
add("cloud", "unknown extension", lambda s, t: _read_cloud(damage.write(t / "cloud.xyz", "1 2 3\n")),
    InvalidArgumentError)
add("cloud", "empty .ply", lambda s, t: _read_cloud(damage.write(t / "e.ply", b"")), InputFileError)
add("cloud", "missing file", lambda s, t: _read_cloud(t / "absent.ply"), MissingFileError)


def _read_cloud(path: Path) -> Any:
    from pointclouds import read_cloud

    return read_cloud(path)


def _pcd_more_points(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    head, _, _ = data.partition(b"DATA")
    lines = head.decode().split("\n")
    n = next(int(line.split()[1]) for line in lines if line.startswith("POINTS"))
    patched = data.replace(f"POINTS {n}".encode(), f"POINTS {n * 3}".encode(), 1)
    patched = patched.replace(f"WIDTH {n}".encode(), f"WIDTH {n * 3}".encode(), 1)
    return damage.write(target, patched)


# Gaussian PLY, cameras -------------------------------------------------------------------------
def _read_gaussians(path: Path) -> Any:
    from splats.gaussians import read_ply

    return read_ply(path)


add("splats", "Gaussian PLY truncated", lambda s, t: _read_gaussians(damage.truncate(s.gaussian_ply, t / "g.ply", 0.5)),
    InputFileError)
add("splats", "Gaussian PLY without rotations", lambda s, t: _read_gaussians(damage.replace_text(
    s.gaussian_ply, t / "g.ply", "property float rot_3", "property float rot_x")), InputFileError)
add("splats", "Gaussian PLY declaring more vertices", lambda s, t: _read_gaussians(damage.replace_text(
    s.gaussian_ply, t / "g.ply", "element vertex 500", "element vertex 5000")), InputFileError)
add("splats", "Gaussian PLY that is a photo", lambda s, t: _read_gaussians(damage.write(t / "g.ply", s.png.read_bytes())),
    InputFileError)


def _read_tum(path: Path) -> Any:
    from splats.cameras import read_tum

    return read_tum(path)


add("cameras", "TUM with a word", lambda s, t: _read_tum(lines_edit(lambda ls: ls[:1] + ["0 a b c 0 0 0 1"] + ls[1:])(
    s.tum, t / "p.txt")), InputFileError, names="p.txt:2")
add("cameras", "TUM with 7 values", lambda s, t: _read_tum(damage.write(t / "p.txt", "0 1 2 3 0 0 0\n")), InputFileError,
    names="p.txt:1")
add("cameras", "TUM with a zero quaternion", lambda s, t: _read_tum(damage.write(t / "p.txt", "0 1 2 3 0 0 0 0\n")),
    InputFileError, names="p.txt:1")
add("cameras", "TUM holding nan", lambda s, t: _read_tum(damage.write(t / "p.txt", "0 nan 2 3 0 0 0 1\n")),
    InputFileError)
add("cameras", "TUM that is binary", lambda s, t: _read_tum(damage.write(t / "p.txt", s.png.read_bytes())),
    InputFileError)


def _read_colmap(folder: Path) -> Any:
    from splats.cameras import read_colmap_text

    return read_colmap_text(folder)


def _colmap_copy(s: Sources, t: Path, file: str, edit: Callable[[str], str]) -> Path:
    folder = Path(shutil.copytree(s.colmap, t / "colmap"))
    (folder / file).write_text(edit((folder / file).read_text()))
    return folder


add("cameras", "COLMAP camera line cut short", lambda s, t: _read_colmap(_colmap_copy(
    s, t, "cameras.txt", lambda x: x.replace(" PINHOLE 64 48", " PINHOLE 64", 1))), InputFileError, names="cameras.txt")
add("cameras", "COLMAP negative focal length", lambda s, t: _read_colmap(_colmap_copy(
    s, t, "cameras.txt", lambda x: x.replace(" PINHOLE 64 48 ", " PINHOLE 64 48 -", 1))), InputFileError,
    names="cameras.txt")
add("cameras", "COLMAP zero quaternion", lambda s, t: _read_colmap(_colmap_copy(
    s, t, "images.txt", lambda x: _zero_quaternion(x))), InputFileError, names="images.txt")
add("cameras", "COLMAP image of an unknown camera", lambda s, t: _read_colmap(_colmap_copy(
    s, t, "images.txt", lambda x: _unknown_camera(x))), InputFileError, names="images.txt")
add("cameras", "COLMAP without images.txt", lambda s, t: _read_colmap(_without(s, t, "images.txt")), MissingFileError,
    names="images.txt")
add("cameras", "COLMAP cameras.txt that is binary", lambda s, t: _read_colmap(_binary(s, t, "cameras.txt")),
    InputFileError, names="cameras.txt")


def _zero_quaternion(text: str) -> str:
    lines = text.split("\n")
    i = next(k for k, line in enumerate(lines) if line and not line.startswith("#"))
    words = lines[i].split()
    lines[i] = " ".join(words[:1] + ["0", "0", "0", "0"] + words[5:])
    return "\n".join(lines)


def _unknown_camera(text: str) -> str:
    lines = text.split("\n")
    i = next(k for k, line in enumerate(lines) if line and not line.startswith("#"))
    words = lines[i].split()
    words[8] = "99"
    lines[i] = " ".join(words)
    return "\n".join(lines)


def _without(s: Sources, t: Path, file: str) -> Path:
    folder = Path(shutil.copytree(s.colmap, t / "colmap"))
    (folder / file).unlink()
    return folder


def _binary(s: Sources, t: Path, file: str) -> Path:
    folder = Path(shutil.copytree(s.colmap, t / "colmap"))
    (folder / file).write_bytes(s.png.read_bytes())
    return folder


def _read_transforms(path: Path) -> Any:
    from splats.cameras import read_transforms_json

    return read_transforms_json(path)


def _transforms_edit(s: Sources, t: Path, edit: Callable[[dict], Any]) -> Path:
    meta = json.loads(s.transforms.read_text())
    return damage.write(t / "transforms.json", json.dumps(edit(meta)))


def _set_frame(meta: dict, key: str, value: Any) -> dict:
    meta["frames"][0][key] = value
    return meta


add("cameras", "transforms.json that is not JSON", lambda s, t: _read_transforms(damage.truncate(
    s.transforms, t / "transforms.json", 0.5)), InputFileError)
add("cameras", "transforms.json frames not a list", lambda s, t: _read_transforms(_transforms_edit(
    s, t, lambda m: {**m, "frames": "a.png"})), InputFileError)
add("cameras", "transforms.json 3x3 matrix", lambda s, t: _read_transforms(_transforms_edit(
    s, t, lambda m: _set_frame(m, "transform_matrix", [[1, 0, 0], [0, 1, 0], [0, 0, 1]]))), InputFileError)
add("cameras", "transforms.json scaled (non-rigid) matrix", lambda s, t: _read_transforms(_transforms_edit(
    s, t, lambda m: _set_frame(m, "transform_matrix", (2 * np.eye(4)).tolist()))), InputFileError)
add("cameras", "transforms.json zero matrix", lambda s, t: _read_transforms(_transforms_edit(
    s, t, lambda m: _set_frame(m, "transform_matrix", np.zeros((4, 4)).tolist()))), InputFileError)
add("cameras", "transforms.json camera_angle_x 0", lambda s, t: _read_transforms(_transforms_edit(
    s, t, lambda m: _blender_intrinsics(m, 0))), InputFileError)
add("cameras", "transforms.json with a text focal length", lambda s, t: _read_transforms(_transforms_edit(
    s, t, lambda m: _set_frame(m, "fl_x", "wide"))), InputFileError)


def _blender_intrinsics(meta: dict, angle: float) -> dict:
    for frame in meta["frames"]:
        for key in ("fl_x", "fl_y", "cx", "cy"):
            frame.pop(key, None)
    return {**meta, "camera_angle_x": angle}


def _cameras(K: Any, w2c: Any) -> Any:
    from splats.cameras import Cameras

    return Cameras(torch.as_tensor(K, dtype=torch.float32), torch.as_tensor(w2c, dtype=torch.float32), 64, 48)


_K = [[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]
add("cameras", "Cameras with a zero pose", lambda s, t: _cameras(_K, np.zeros((4, 4))), InvalidArgumentError,
    names="world_to_cam")
add("cameras", "Cameras with a singular rotation", lambda s, t: _cameras(_K, np.diag([1.0, 1.0, 0.0, 1.0])),
    InvalidArgumentError, names="world_to_cam")
add("cameras", "Cameras with a mirror rotation", lambda s, t: _cameras(_K, np.diag([1.0, 1.0, -1.0, 1.0])),
    InvalidArgumentError, names="world_to_cam")
add("cameras", "Cameras with zero focal length", lambda s, t: _cameras([[0.0, 0, 32], [0, 0.0, 24], [0, 0, 1]], np.eye(4)),
    InvalidArgumentError, names="focal")
add("cameras", "Cameras holding nan", lambda s, t: _cameras(_K, np.full((4, 4), np.nan)), NonFiniteError,
    names="world_to_cam")


# checkpoints: nothing a file holds may run ----------------------------------------------------
def _payload_checkpoint(t: Path, wrap: Callable[[Any], Any]) -> Path:
    path = t / "weights.pth"
    torch.save(wrap(damage.Payload(t / "EXECUTED")), path)
    return path


@case("checkpoint", "model weights holding a pickle payload", CheckpointError)
def _weights_payload(s: Sources, t: Path) -> Any:
    import motion

    return motion.create("tiny-flow", weights=_payload_checkpoint(t, lambda p: {"state_dict": p}), device="cpu")


@case("checkpoint", "a training resume file holding a pickle payload", CheckpointError)
def _resume_payload(s: Sources, t: Path) -> Any:
    from motion.training.checkpoints import load_training_checkpoint

    return load_training_checkpoint(_payload_checkpoint(t, lambda p: {"format": "motion4d-train-v1", "rng": p}))


@case("checkpoint", "a SCOOP checkpoint holding a pickle payload", CheckpointError)
def _scoop_payload(s: Sources, t: Path) -> Any:
    from pointclouds.methods.scoop import load_scoop

    return load_scoop(_payload_checkpoint(t, lambda p: {"state_dict": p}))


add("checkpoint", "truncated model weights", lambda s, t: _create_tiny(_truncated_weights(t)), CheckpointError)
add("checkpoint", "weights for another model", lambda s, t: _create_tiny(_foreign_weights(t)), CheckpointError)
add("checkpoint", "a list instead of a state_dict", lambda s, t: _create_tiny(_list_weights(t)), CheckpointError)


def _create_tiny(path: Path) -> Any:
    import motion

    return motion.create("tiny-flow", weights=path, device="cpu")


def _truncated_weights(t: Path) -> Path:
    import motion

    path = t / "w.pth"
    torch.save(motion.create("tiny-flow", device="cpu").state_dict(), path)
    return damage.truncate(path, t / "cut.pth", 0.5)


def _foreign_weights(t: Path) -> Path:
    path = t / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, path)
    return path


def _list_weights(t: Path) -> Path:
    path = t / "list.pth"
    torch.save([1, 2, 3], path)
    return path


# track files -----------------------------------------------------------------------------------
def _load_tracks(path: Path, **options: Any) -> Any:
    import motion

    return motion.load_tracks(path, **options)


for _ext in (".csv", ".parquet", ".npz", ".pkl", ".txt", ".json"):
    add("tracks", f"{_ext} tracks truncated", lambda s, t, e=_ext: _load_tracks(
        damage.truncate(s.tracks[e], t / f"bad{e}", 0.53), image_size=s.track_image_size), InputFileError)
    add("tracks", f"{_ext} tracks that are binary noise", lambda s, t, e=_ext: _load_tracks(
        damage.write(t / f"noise{e}", bytes(range(256)) * 4), image_size=s.track_image_size), InputFileError)


@case("tracks", "TAP-Vid pickle holding a payload", InputFileError)
def _tapvid_payload(s: Sources, t: Path) -> Any:
    import pickle

    entry = {"points": np.zeros((2, 3, 2), np.float32), "occluded": np.zeros((2, 3), bool),
             "video": damage.Payload(t / "EXECUTED")}
    return _load_tracks(damage.write(t / "evil.pkl", pickle.dumps({"clip": entry})))


add("tracks", "TAP-Vid pickle without 'points'", lambda s, t: _load_tracks(damage.write(
    t / "p.pkl", __import__("pickle").dumps({"clip": {"occluded": np.zeros((2, 3), bool)}})), image_size=(48, 64)),
    InputFileError)
add("tracks", "CoTracker npz without 'visibility'", lambda s, t: _load_tracks(
    _saved_npz(t / "c.npz", tracks=np.zeros((1, 3, 2, 2), np.float32))), InputFileError)
add("tracks", "CoTracker npz holding a pickled object", lambda s, t: _load_tracks(_pickled_npz(t)), InputFileError)


def _pickled_npz(tmp: Path) -> Path:
    path = tmp / "objects.npz"
    np.savez(path, tracks=np.array([damage.Payload(tmp / "EXECUTED")], dtype=object))
    return path
