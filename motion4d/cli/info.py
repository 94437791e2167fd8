"""``motion4d info``: versions and which backends this machine can use."""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import json
import platform
import shutil
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # an optional package may fail for many reasons (missing system libs, ABI)
        return False


def collect() -> dict[str, Any]:
    """Versions of the stack and availability of each optional backend."""
    import torch

    import motion

    info: dict[str, Any] = {
        "motion4d": motion.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            name: _version(dist)
            for name, dist in [
                ("torch", "torch"), ("numpy", "numpy"), ("opencv", "opencv-python-headless"),
                ("av", "av"), ("kornia", "kornia"), ("scipy", "scipy"), ("open3d", "open3d-cpu"),
                ("gsplat", "gsplat"), ("h5py", "h5py"), ("pyarrow", "pyarrow"), ("ray", "ray"),
            ]
        },
    }
    if info["versions"]["open3d"] is None:
        info["versions"]["open3d"] = _version("open3d")
    if info["versions"]["opencv"] is None:
        info["versions"]["opencv"] = _version("opencv-python")
    backends: dict[str, Any] = {
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "nvcc": shutil.which("nvcc") is not None,
        "pyav": _importable("av"),
        "open3d": _importable("open3d"),
        "gsplat": _importable("gsplat"),
        "h5py": _importable("h5py"),
        "pyarrow": _importable("pyarrow"),
    }
    try:
        from motion.ops import _backend

        backends["compiled_ops"] = _backend.status()
        # What backend="auto" of the correlation/splatting ops runs on each device type, and why.
        selection = _backend.selection_report()
        backends["ops_cpu"] = selection["cpu"]
        backends["ops_cuda"] = selection["cuda"]
    except ImportError:
        backends["compiled_ops"] = "not built"
    info["backends"] = backends
    return info


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"motion4d {info['motion4d']}  (Python {info['python']}, {info['platform']})")
    print("versions:")
    for name, version in info["versions"].items():
        print(f"  {name:<8} {version or '-'}")
    print("backends:")
    for name, value in info["backends"].items():
        print(f"  {name:<13} {value}")
    return 0
