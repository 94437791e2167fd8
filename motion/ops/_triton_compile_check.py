"""Compile every Triton kernel for NVIDIA GPUs without a GPU (Triton's own ptxas makes the cubins).

The interpreter runs the kernels' arithmetic on CPU but accepts code the compiler rejects (tile
shapes, loop-carried types, dtypes of atomics); this check catches those. It compiles each kernel in
float32 and float64 with the block sizes the launchers pick on a GPU::

    python -m motion.ops._triton_compile_check --arch 80 90

Needs Triton, no GPU, and TRITON_INTERPRET unset (interpreted kernels cannot be compiled).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from . import _triton

RAFT_RADIUS, RAFT_DIM, SPLAT_CHANNELS = 4, 256, 128


def _variants(dtype: str) -> dict[str, tuple[str, dict[str, str], dict[str, int | bool]]]:
    """name -> (kernel, signature, constexprs), as the launchers of ``_triton`` call them on a GPU."""
    ptr, i32, f32 = f"*{dtype}", "i32", "fp32"
    cp = _triton._patch_columns(RAFT_RADIUS, interpret=False)
    block = _triton._pixel_block(cp, interpret=False)
    lookup = {"hw": i32, "H": i32, "W": i32, "r": i32, "scale": f32, "CP": "constexpr", "BLOCK_P": "constexpr"}
    local = {"hw": i32, "H": i32, "W": i32, "D": i32, "r": i32, "scale": f32, "CP": "constexpr",
             "BLOCK_P": "constexpr", "BLOCK_D": "constexpr"}
    splat = {"C": i32, "H": i32, "W": i32, "BLOCK_P": "constexpr", "BLOCK_C": "constexpr"}
    variants = {
        "lookup_forward": ("lookup_forward_kernel", {"vol_ptr": ptr, "coords_ptr": ptr, "out_ptr": ptr, **lookup},
                           {"CP": cp, "BLOCK_P": block}),
        "lookup_backward": ("lookup_backward_kernel", {"gout_ptr": ptr, "vol_ptr": ptr, "coords_ptr": ptr,
                                                       "gvol_ptr": ptr, "gcoords_ptr": ptr, **lookup},
                            {"CP": cp, "BLOCK_P": block}),
    }
    for radius in (RAFT_RADIUS, 16):
        cpr = _triton._patch_columns(radius, interpret=False)
        block_p, block_d = _triton._local_blocks(RAFT_DIM, cpr, interpret=False)
        variants[f"local_forward_r{radius}"] = (
            "local_forward_kernel", {"f1_ptr": ptr, "f2_ptr": ptr, "coords_ptr": ptr, "out_ptr": ptr, **local},
            {"CP": cpr, "BLOCK_P": block_p, "BLOCK_D": block_d})
    block_p, block_d = _triton._local_blocks(RAFT_DIM, cp, interpret=False)
    variants["local_backward"] = (
        "local_backward_kernel", {"gout_ptr": ptr, "f1_ptr": ptr, "f2_ptr": ptr, "coords_ptr": ptr, "gf1_ptr": ptr,
                                  "gf2_ptr": ptr, "gcoords_ptr": ptr, **{k: v for k, v in local.items()
                                                                         if k in ("hw", "H", "W", "D", "r", "scale")},
                                  "COORDS_GRAD": "constexpr", "CP": "constexpr", "BLOCK_P": "constexpr",
                                  "BLOCK_D": "constexpr"},
        {"COORDS_GRAD": True, "CP": cp, "BLOCK_P": block_p, "BLOCK_D": block_d})
    block_p, block_c = _triton._splat_blocks(SPLAT_CHANNELS, interpret=False)
    variants["splat_forward"] = ("splat_forward_kernel", {"in_ptr": ptr, "flow_ptr": ptr, "out_ptr": ptr, **splat},
                                 {"BLOCK_P": block_p, "BLOCK_C": block_c})
    variants["splat_backward"] = ("splat_backward_kernel", {"gout_ptr": ptr, "in_ptr": ptr, "flow_ptr": ptr,
                                                            "gin_ptr": ptr, "gflow_ptr": ptr, **splat},
                                  {"BLOCK_P": block_p, "BLOCK_C": block_c})
    return variants


def compile_all(archs: list[int], verbose: bool = False) -> dict[str, int]:
    """``{"name/dtype/sm_XX": cubin bytes}`` for every kernel variant; raises on the first compile error."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernels = _triton._import_kernels()
    if _triton.interpreting():
        raise RuntimeError("unset TRITON_INTERPRET: interpreted kernels cannot be compiled")
    sizes = {}
    for arch in archs:
        for dtype in ("fp32", "fp64"):
            for name, (kernel, signature, constexprs) in _variants(dtype).items():
                start = time.perf_counter()
                source = ASTSource(fn=getattr(kernels, kernel), signature=signature, constexprs=constexprs)
                binary = triton.compile(source, target=GPUTarget("cuda", arch, 32))
                key = f"{name}/{dtype}/sm_{arch}"
                sizes[key] = len(binary.asm["cubin"])
                if verbose:
                    meta = binary.metadata
                    print(f"compiled {key:<36} {sizes[key]:>8} bytes, {meta.shared:>6} B shared, "
                          f"{meta.num_warps} warps  {time.perf_counter() - start:5.1f} s", flush=True)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], help="compute capabilities, e.g. 80 90")
    parser.add_argument("--json", action="store_true", help="print the sizes as one JSON line at the end")
    args = parser.parse_args(argv)
    import warnings

    warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")
    sizes = compile_all(args.arch, verbose=not args.json)
    if args.json:
        print(json.dumps(sizes))
    else:
        print(f"triton compile check: {len(sizes)} kernel variants compiled for sm_{', sm_'.join(map(str, args.arch))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
