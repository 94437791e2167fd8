// CUDA kernels of the correlation and splatting ops. Only CUDA headers: the torch binding is in ops.cpp.
//
// Layouts as in cuda_launchers.h. Scatter-type writes (grad_fmap2 of the on-the-fly correlation and
// the splatting forward) use atomicAdd, so those two results may differ in the last bits between runs.
#include <cuda_runtime.h>

#include <cstdint>

#include "common.h"
#include "cuda_launchers.h"

namespace motion4d {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;

inline unsigned int blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned int>(b < 65535 * 32 ? b : 65535 * 32);
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// ---------------------------------------------------------------- all-pairs window lookup

// One thread per output element (b, window entry, pixel): coalesced writes along the pixel axis.
template <typename T>
__global__ void lookup_forward_kernel(const T* __restrict__ vol, const T* __restrict__ coords, T* __restrict__ out,
                                      int64_t B, int64_t hw, int64_t H, int64_t W, int r, T scale) {
  const int k = 2 * r + 1, K = k * k;
  const int64_t total = B * K * hw;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(blockDim.x) * gridDim.x) {
    const int64_t p = idx % hw;
    const int kk = static_cast<int>((idx / hw) % K);
    const int64_t b = idx / (hw * K);
    const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
    T value = T(0);
    if (f.valid) {
      const T* v = vol + (b * hw + p) * H * W;
      const int x = f.x0 - r + kk / k, y = f.y0 - r + kk % k;
      const T v00 = inside(x, y, W, H) ? v[int64_t(y) * W + x] : T(0);
      const T v10 = inside(x + 1, y, W, H) ? v[int64_t(y) * W + x + 1] : T(0);
      const T v01 = inside(x, y + 1, W, H) ? v[int64_t(y + 1) * W + x] : T(0);
      const T v11 = inside(x + 1, y + 1, W, H) ? v[int64_t(y + 1) * W + x + 1] : T(0);
      value = (T(1) - f.fx) * (T(1) - f.fy) * v00 + f.fx * (T(1) - f.fy) * v10 + (T(1) - f.fx) * f.fy * v01 +
              f.fx * f.fy * v11;
    }
    out[idx] = value;
  }
}

// One thread per first-frame pixel: its volume slice is private, so no atomics are needed.
template <typename T>
__global__ void lookup_backward_kernel(const T* __restrict__ gout, const T* __restrict__ vol,
                                       const T* __restrict__ coords, T* __restrict__ gvol, T* __restrict__ gcoords,
                                       int64_t B, int64_t hw, int64_t H, int64_t W, int r, T scale) {
  const int k = 2 * r + 1, K = k * k;
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < B * hw;
       n += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = n / hw, p = n % hw;
    const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
    T gx = T(0), gy = T(0);
    if (f.valid) {
      const T* v = vol + n * H * W;
      T* gv = gvol + n * H * W;
      for (int kk = 0; kk < K; ++kk) {
        const T g = gout[(b * K + kk) * hw + p];
        const int x = f.x0 - r + kk / k, y = f.y0 - r + kk % k;
        const bool i00 = inside(x, y, W, H), i10 = inside(x + 1, y, W, H);
        const bool i01 = inside(x, y + 1, W, H), i11 = inside(x + 1, y + 1, W, H);
        const T v00 = i00 ? v[int64_t(y) * W + x] : T(0);
        const T v10 = i10 ? v[int64_t(y) * W + x + 1] : T(0);
        const T v01 = i01 ? v[int64_t(y + 1) * W + x] : T(0);
        const T v11 = i11 ? v[int64_t(y + 1) * W + x + 1] : T(0);
        gx += g * ((T(1) - f.fy) * (v10 - v00) + f.fy * (v11 - v01));
        gy += g * ((T(1) - f.fx) * (v01 - v00) + f.fx * (v11 - v10));
        if (g == T(0)) continue;
        if (i00) gv[int64_t(y) * W + x] += (T(1) - f.fx) * (T(1) - f.fy) * g;
        if (i10) gv[int64_t(y) * W + x + 1] += f.fx * (T(1) - f.fy) * g;
        if (i01) gv[int64_t(y + 1) * W + x] += (T(1) - f.fx) * f.fy * g;
        if (i11) gv[int64_t(y + 1) * W + x + 1] += f.fx * f.fy * g;
      }
    }
    gcoords[2 * b * hw + p] = gx * scale;
    gcoords[(2 * b + 1) * hw + p] = gy * scale;
  }
}

// ---------------------------------------------------------------- on-the-fly correlation

// One warp per first-frame pixel: lanes split the D channels (coalesced channels-last reads), a
// warp reduction gives each of the (2r+2)^2 patch correlations, then lanes write the window.
template <typename T>
__global__ void local_forward_kernel(const T* __restrict__ f1, const T* __restrict__ f2,
                                     const T* __restrict__ coords, T* __restrict__ out, int64_t B, int64_t hw,
                                     int64_t H, int64_t W, int64_t D, int r, T scale, T inv_norm) {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  const int k = 2 * r + 1, K = k * k, P = k + 1, PP = P * P;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  T* patch = reinterpret_cast<T*>(shared_raw) + warp * PP;
  for (int64_t n = blockIdx.x * int64_t(kWarpsPerBlock) + warp; n < B * hw;
       n += int64_t(gridDim.x) * kWarpsPerBlock) {
    const int64_t b = n / hw, p = n % hw;
    const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
    if (!f.valid) {
      for (int kk = lane; kk < K; kk += 32) out[(b * K + kk) * hw + p] = T(0);
      continue;
    }
    const T* f1n = f1 + n * D;
    const T* f2b = f2 + b * H * W * D;
    for (int ab = 0; ab < PP; ++ab) {
      const int x = f.x0 - r + ab / P, y = f.y0 - r + ab % P;
      T acc = T(0);
      if (inside(x, y, W, H)) {
        const T* row = f2b + (int64_t(y) * W + x) * D;
        for (int64_t d = lane; d < D; d += 32) acc += f1n[d] * row[d];
        acc = warp_sum(acc) * inv_norm;
      }
      if (lane == 0) patch[ab] = acc;
    }
    __syncwarp();
    for (int kk = lane; kk < K; kk += 32)
      out[(b * K + kk) * hw + p] = patch_bilinear(patch, P, kk / k, kk % k, f.fx, f.fy);
    __syncwarp();
  }
}

template <typename T>
__global__ void local_backward_kernel(const T* __restrict__ gout, const T* __restrict__ f1,
                                      const T* __restrict__ f2, const T* __restrict__ coords, T* __restrict__ gf1,
                                      T* __restrict__ gf2, T* __restrict__ gcoords, int64_t B, int64_t hw,
                                      int64_t H, int64_t W, int64_t D, int r, T scale, T inv_norm,
                                      bool coords_grad) {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  const int k = 2 * r + 1, K = k * k, P = k + 1, PP = P * P;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  T* g = reinterpret_cast<T*>(shared_raw) + warp * (K + 2 * PP);  // window gradient
  T* gpatch = g + K;                                                // gradient of patch correlations
  T* patch = gpatch + PP;                                           // patch correlations
  for (int64_t n = blockIdx.x * int64_t(kWarpsPerBlock) + warp; n < B * hw;
       n += int64_t(gridDim.x) * kWarpsPerBlock) {
    const int64_t b = n / hw, p = n % hw;
    const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
    T* gf1n = gf1 + n * D;
    if (!f.valid) {
      for (int64_t d = lane; d < D; d += 32) gf1n[d] = T(0);
      if (lane == 0) {
        gcoords[2 * b * hw + p] = T(0);
        gcoords[(2 * b + 1) * hw + p] = T(0);
      }
      continue;
    }
    for (int kk = lane; kk < K; kk += 32) g[kk] = gout[(b * K + kk) * hw + p];
    __syncwarp();
    for (int ab = lane; ab < PP; ab += 32) {
      const int a = ab / P, c = ab % P;
      const bool in = inside(f.x0 - r + a, f.y0 - r + c, W, H);
      gpatch[ab] = in ? patch_adjoint(g, k, a, c, f.fx, f.fy) * inv_norm : T(0);
    }
    __syncwarp();
    const T* f1n = f1 + n * D;
    const T* f2b = f2 + b * H * W * D;
    T* gf2b = gf2 + b * H * W * D;
    for (int64_t d = lane; d < D; d += 32) {
      T acc = T(0);
      for (int ab = 0; ab < PP; ++ab) {
        const T gc = gpatch[ab];
        if (gc == T(0)) continue;
        const int x = f.x0 - r + ab / P, y = f.y0 - r + ab % P;
        const int64_t pos = (int64_t(y) * W + x) * D + d;
        acc += gc * f2b[pos];
        atomicAdd(gf2b + pos, gc * f1n[d]);
      }
      gf1n[d] = acc;
    }
    T gx = T(0), gy = T(0);
    if (coords_grad) {
      for (int ab = 0; ab < PP; ++ab) {
        const int x = f.x0 - r + ab / P, y = f.y0 - r + ab % P;
        T acc = T(0);
        if (inside(x, y, W, H)) {
          const T* row = f2b + (int64_t(y) * W + x) * D;
          for (int64_t d = lane; d < D; d += 32) acc += f1n[d] * row[d];
          acc = warp_sum(acc) * inv_norm;
        }
        if (lane == 0) patch[ab] = acc;
      }
      __syncwarp();
      for (int kk = lane; kk < K; kk += 32) {
        gx += g[kk] * patch_dx(patch, P, kk / k, kk % k, f.fy);
        gy += g[kk] * patch_dy(patch, P, kk / k, kk % k, f.fx);
      }
      gx = warp_sum(gx);
      gy = warp_sum(gy);
    }
    if (lane == 0) {
      gcoords[2 * b * hw + p] = gx * scale;
      gcoords[(2 * b + 1) * hw + p] = gy * scale;
    }
    __syncwarp();
  }
}

// ---------------------------------------------------------------- summation splatting

template <typename T>
struct Corners {
  int64_t index[4];
  T weight[4];
  T dx[4];
  T dy[4];
};

template <typename T>
__device__ __forceinline__ Corners<T> corners(const T* flow_b, int64_t p, int64_t H, int64_t W) {
  Corners<T> t;
  const int64_t HW = H * W;
  const auto f = footprint<T>(T(p % W) + flow_b[p], T(p / W) + flow_b[HW + p], 0, W, H);
#pragma unroll
  for (int c = 0; c < 4; ++c) {
    const int x = f.x0 + (c & 1), y = f.y0 + (c >> 1);
    const T wx = (c & 1) ? f.fx : T(1) - f.fx;
    const T wy = (c >> 1) ? f.fy : T(1) - f.fy;
    const bool ok = f.valid && inside(x, y, W, H);
    t.index[c] = ok ? int64_t(y) * W + x : -1;
    t.weight[c] = ok ? wx * wy : T(0);
    t.dx[c] = ok ? ((c & 1) ? wy : -wy) : T(0);
    t.dy[c] = ok ? ((c >> 1) ? wx : -wx) : T(0);
  }
  return t;
}

// One thread per source pixel, looping over channels (weights computed once, reads coalesced).
template <typename T>
__global__ void splat_forward_kernel(const T* __restrict__ input, const T* __restrict__ flow, T* __restrict__ out,
                                     int64_t B, int64_t C, int64_t H, int64_t W) {
  const int64_t HW = H * W;
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < B * HW;
       n += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = n / HW, p = n % HW;
    const auto t = corners(flow + b * 2 * HW, p, H, W);
    if (t.index[0] < 0 && t.index[1] < 0 && t.index[2] < 0 && t.index[3] < 0) continue;
    for (int64_t c = 0; c < C; ++c) {
      const T v = input[(b * C + c) * HW + p];
      T* o = out + (b * C + c) * HW;
#pragma unroll
      for (int m = 0; m < 4; ++m)
        if (t.index[m] >= 0) atomicAdd(o + t.index[m], t.weight[m] * v);
    }
  }
}

template <typename T>
__global__ void splat_backward_kernel(const T* __restrict__ gout, const T* __restrict__ input,
                                      const T* __restrict__ flow, T* __restrict__ gin, T* __restrict__ gflow,
                                      int64_t B, int64_t C, int64_t H, int64_t W) {
  const int64_t HW = H * W;
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < B * HW;
       n += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = n / HW, p = n % HW;
    const auto t = corners(flow + b * 2 * HW, p, H, W);
    T gx = T(0), gy = T(0);
    for (int64_t c = 0; c < C; ++c) {
      const T* go = gout + (b * C + c) * HW;
      T s = T(0), sx = T(0), sy = T(0);
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        if (t.index[m] < 0) continue;
        const T g = go[t.index[m]];
        s += t.weight[m] * g;
        sx += t.dx[m] * g;
        sy += t.dy[m] * g;
      }
      const T v = input[(b * C + c) * HW + p];
      gin[(b * C + c) * HW + p] = s;
      gx += v * sx;
      gy += v * sy;
    }
    gflow[b * 2 * HW + p] = gx;
    gflow[(b * 2 + 1) * HW + p] = gy;
  }
}

}  // namespace

// ---------------------------------------------------------------- launchers

template <typename T>
cudaError_t corr_lookup_forward_cuda(const T* volume, const T* coords, T* out, int64_t B, int64_t h, int64_t w,
                                     int64_t H, int64_t W, int radius, T scale, cudaStream_t stream) {
  const int64_t total = B * (2 * radius + 1) * (2 * radius + 1) * h * w;
  if (total == 0) return cudaSuccess;
  lookup_forward_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, stream>>>(volume, coords, out, B, h * w, H, W,
                                                                                 radius, scale);
  return cudaGetLastError();
}

template <typename T>
cudaError_t corr_lookup_backward_cuda(const T* grad_out, const T* volume, const T* coords, T* grad_volume,
                                      T* grad_coords, int64_t B, int64_t h, int64_t w, int64_t H, int64_t W,
                                      int radius, T scale, cudaStream_t stream) {
  const int64_t total = B * h * w;
  if (total == 0) return cudaSuccess;
  lookup_backward_kernel<T><<<blocks_for(total, 128), 128, 0, stream>>>(grad_out, volume, coords, grad_volume,
                                                                        grad_coords, B, h * w, H, W, radius, scale);
  return cudaGetLastError();
}

template <typename T>
cudaError_t corr_local_forward_cuda(const T* fmap1, const T* fmap2, const T* coords, T* out, int64_t B, int64_t h,
                                    int64_t w, int64_t H, int64_t W, int64_t D, int radius, T scale,
                                    cudaStream_t stream) {
  const int64_t total = B * h * w;
  if (total == 0) return cudaSuccess;
  const int P = 2 * radius + 2;
  const size_t shared = size_t(kWarpsPerBlock) * P * P * sizeof(T);
  const T inv_norm = T(1) / sqrt(T(D));
  if (shared > 48 * 1024) {  // large radius in float64: opt in to more than the default 48 KB
    const cudaError_t err =
        cudaFuncSetAttribute(local_forward_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared));
    if (err != cudaSuccess) return err;
  }
  local_forward_kernel<T><<<blocks_for(total, kWarpsPerBlock), kThreads, shared, stream>>>(
      fmap1, fmap2, coords, out, B, h * w, H, W, D, radius, scale, inv_norm);
  return cudaGetLastError();
}

template <typename T>
cudaError_t corr_local_backward_cuda(const T* grad_out, const T* fmap1, const T* fmap2, const T* coords,
                                     T* grad_fmap1, T* grad_fmap2, T* grad_coords, int64_t B, int64_t h, int64_t w,
                                     int64_t H, int64_t W, int64_t D, int radius, T scale, bool coords_grad,
                                     cudaStream_t stream) {
  const int64_t total = B * h * w;
  if (total == 0) return cudaSuccess;
  const int k = 2 * radius + 1, P = k + 1;
  const size_t shared = size_t(kWarpsPerBlock) * (k * k + 2 * P * P) * sizeof(T);
  const T inv_norm = T(1) / sqrt(T(D));
  if (shared > 48 * 1024) {
    const cudaError_t err =
        cudaFuncSetAttribute(local_backward_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared));
    if (err != cudaSuccess) return err;
  }
  local_backward_kernel<T><<<blocks_for(total, kWarpsPerBlock), kThreads, shared, stream>>>(
      grad_out, fmap1, fmap2, coords, grad_fmap1, grad_fmap2, grad_coords, B, h * w, H, W, D, radius, scale,
      inv_norm, coords_grad);
  return cudaGetLastError();
}

template <typename T>
cudaError_t splat_forward_cuda(const T* input, const T* flow, T* out, int64_t B, int64_t C, int64_t H, int64_t W,
                               cudaStream_t stream) {
  const int64_t total = B * H * W;
  if (total == 0) return cudaSuccess;
  splat_forward_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, stream>>>(input, flow, out, B, C, H, W);
  return cudaGetLastError();
}

template <typename T>
cudaError_t splat_backward_cuda(const T* grad_out, const T* input, const T* flow, T* grad_input, T* grad_flow,
                                int64_t B, int64_t C, int64_t H, int64_t W, cudaStream_t stream) {
  const int64_t total = B * H * W;
  if (total == 0) return cudaSuccess;
  splat_backward_kernel<T><<<blocks_for(total, kThreads), kThreads, 0, stream>>>(grad_out, input, flow, grad_input,
                                                                                 grad_flow, B, C, H, W);
  return cudaGetLastError();
}

#define M4D_INSTANTIATE(T)                                                                                  \
  template cudaError_t corr_lookup_forward_cuda<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t,   \
                                                   int64_t, int, T, cudaStream_t);                               \
  template cudaError_t corr_lookup_backward_cuda<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t,      \
                                                    int64_t, int64_t, int64_t, int, T, cudaStream_t);            \
  template cudaError_t corr_local_forward_cuda<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t,   \
                                                  int64_t, int64_t, int64_t, int, T, cudaStream_t);              \
  template cudaError_t corr_local_backward_cuda<T>(const T*, const T*, const T*, const T*, T*, T*, T*, int64_t,  \
                                                   int64_t, int64_t, int64_t, int64_t, int64_t, int, T, bool,    \
                                                   cudaStream_t);                                                \
  template cudaError_t splat_forward_cuda<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t,         \
                                             cudaStream_t);                                                      \
  template cudaError_t splat_backward_cuda<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t, int64_t,   \
                                              int64_t, cudaStream_t);

M4D_INSTANTIATE(float)
M4D_INSTANTIATE(double)

}  // namespace motion4d
