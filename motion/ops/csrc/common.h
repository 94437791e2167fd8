// Geometry shared by the CPU (ops.cpp) and CUDA (ops_cuda.cu) kernels. Needs no torch header.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define M4D_HD __host__ __device__ __forceinline__
#else
#define M4D_HD inline
#endif

namespace motion4d {

#ifndef __CUDACC__
using std::floor;
using std::isfinite;
#endif

// Integer base corner and fractional offsets of a real position for bilinear weights.
// `valid` is false for non-finite positions and for positions so far outside the map that no
// corner of a (2*margin+2)^2 patch starting at (x0 - margin, y0 - margin) can touch it; callers
// then write zeros (the map is zero-padded, so values and gradients are zero there).
template <typename T>
struct Footprint {
  int x0;
  int y0;
  T fx;
  T fy;
  bool valid;
};

template <typename T>
M4D_HD Footprint<T> footprint(T x, T y, int margin, int64_t width, int64_t height) {
  Footprint<T> f{0, 0, T(0), T(0), false};
  if (!(isfinite(x) && isfinite(y))) return f;
  const T xf = floor(x);
  const T yf = floor(y);
  if (xf < T(-margin - 1) || xf > T(width - 1 + margin) || yf < T(-margin - 1) ||
      yf > T(height - 1 + margin)) {
    return f;
  }
  f.x0 = static_cast<int>(xf);
  f.y0 = static_cast<int>(yf);
  f.fx = x - xf;
  f.fy = y - yf;
  f.valid = true;
  return f;
}

M4D_HD bool inside(int x, int y, int64_t width, int64_t height) {
  return x >= 0 && y >= 0 && x < width && y < height;
}

// Bilinear interpolation inside a (k+1) x (k+1) patch stored x-major: patch[a * P + b] holds the
// value at (x0 - r + a, y0 - r + b). Window entry (i, j) (dx = i - r, dy = j - r) is the bilinear
// mix of patch entries (i, j), (i+1, j), (i, j+1), (i+1, j+1).
template <typename T>
M4D_HD T patch_bilinear(const T* patch, int P, int i, int j, T fx, T fy) {
  return (T(1) - fx) * (T(1) - fy) * patch[i * P + j] + fx * (T(1) - fy) * patch[(i + 1) * P + j] +
         (T(1) - fx) * fy * patch[i * P + j + 1] + fx * fy * patch[(i + 1) * P + j + 1];
}

// d/dx and d/dy (in patch pixels) of patch_bilinear at window entry (i, j).
template <typename T>
M4D_HD T patch_dx(const T* patch, int P, int i, int j, T fy) {
  return (T(1) - fy) * (patch[(i + 1) * P + j] - patch[i * P + j]) +
         fy * (patch[(i + 1) * P + j + 1] - patch[i * P + j + 1]);
}

template <typename T>
M4D_HD T patch_dy(const T* patch, int P, int i, int j, T fx) {
  return (T(1) - fx) * (patch[i * P + j + 1] - patch[i * P + j]) +
         fx * (patch[(i + 1) * P + j + 1] - patch[(i + 1) * P + j]);
}

// Adjoint of patch_bilinear: gradient of patch entry (a, b) from the window gradient `g`
// ([k * k], x-major), i.e. the sum over the (up to four) window entries that read it.
template <typename T>
M4D_HD T patch_adjoint(const T* g, int k, int a, int b, T fx, T fy) {
  T s = T(0);
  if (a < k && b < k) s += (T(1) - fx) * (T(1) - fy) * g[a * k + b];
  if (a >= 1 && b < k) s += fx * (T(1) - fy) * g[(a - 1) * k + b];
  if (a < k && b >= 1) s += (T(1) - fx) * fy * g[a * k + b - 1];
  if (a >= 1 && b >= 1) s += fx * fy * g[(a - 1) * k + b - 1];
  return s;
}

}  // namespace motion4d
