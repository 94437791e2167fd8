// Shared-memory plans of the CUDA kernels (ops_cuda.cu). Plain C++: ops.cpp exposes them on every
// build (torch.ops.motion4d.cuda_launch_plan), so the CPU tests check the numbers a GPU will use.
#pragma once

#include <cstddef>

namespace motion4d {

constexpr int kCudaThreads = 256;
constexpr int kCudaWarpsPerBlock = kCudaThreads / 32;
// Largest pixel tile of the on-the-fly forward: 8 consecutive pixels fill whole 32-byte memory
// sectors per window entry (float32; float64 two), and keep one pixel per warp on average, so the
// grid is as large as before (880 blocks of 8 warps at Sintel/8) and occupancy does not drop.
constexpr int kLocalForwardMaxTile = 8;
// Shared accumulation box of the on-the-fly backward: fmap2-gradient cells x 32 channels.
constexpr std::size_t kLocalBackwardBoxBytes = 32 * 1024;

// Bytes of shared memory of the on-the-fly forward for `tile` pixels: their (2r+2)^2 patch
// correlations and footprints (fx, fy as T; x0, y0, valid as int).
inline std::size_t local_forward_shared_bytes(int radius, std::size_t itemsize, int tile) {
  const std::size_t patch = static_cast<std::size_t>(2 * radius + 2) * static_cast<std::size_t>(2 * radius + 2);
  return static_cast<std::size_t>(tile) * ((patch + 2) * itemsize + 3 * sizeof(int));
}

// Pixels per block of the on-the-fly forward: the largest power of two <= kLocalForwardMaxTile whose
// shared memory fits `budget` bytes; 0 when not even one pixel fits (the caller reports the radius).
inline int local_forward_tile(int radius, std::size_t itemsize, std::size_t budget) {
  for (int tile = kLocalForwardMaxTile; tile >= 1; tile /= 2)
    if (local_forward_shared_bytes(radius, itemsize, tile) <= budget) return tile;
  return 0;
}

// Bytes of shared memory of the on-the-fly backward besides its box: the tile's footprints and the box geometry.
inline std::size_t local_backward_overhead_bytes(std::size_t itemsize) {
  return kCudaWarpsPerBlock * (2 * itemsize + 3 * sizeof(int)) + 5 * sizeof(int);
}

// Cells (fmap2 positions x 32 channels) of the backward's accumulation box within `budget` bytes:
// kLocalBackwardBoxBytes where it fits (every GPU's 48 KB), less on a smaller budget, 0 for none
// (then every tile adds to global memory directly). Independent of the radius.
inline int local_backward_box_cells(std::size_t itemsize, std::size_t budget) {
  const std::size_t overhead = local_backward_overhead_bytes(itemsize);
  const std::size_t room = budget > overhead ? budget - overhead : 0;
  const std::size_t box = room < kLocalBackwardBoxBytes ? room : kLocalBackwardBoxBytes;
  return static_cast<int>(box / (32 * itemsize));
}

inline std::size_t local_backward_shared_bytes(std::size_t itemsize, int cells) {
  return static_cast<std::size_t>(cells) * 32 * itemsize + local_backward_overhead_bytes(itemsize);
}

}  // namespace motion4d
