// CUDA kernels of the correlation and splatting ops. Only CUDA headers: the torch binding is in ops.cpp.
//
// Layouts as in cuda_launchers.h. Scatter-type writes (grad_fmap2 of the on-the-fly correlation and
// the splatting forward) use atomicAdd, so those two results may differ in the last bits between runs.
// Shared memory never depends on the device: launch_plan.h sizes every block to fit the 48 KB that
// every CUDA GPU grants without opting in (the on-the-fly forward shrinks its pixel tile with the
// radius, the backward's accumulation box is fixed), so every radius up to kMaxRadius launches.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "common.h"
#include "cuda_launchers.h"
#include "launch_plan.h"

// Kernel launches go through M4D_LAUNCH so that csrc/emulation can run this file on a CPU (the
// emulated tests in tests/motion/test_ops_cuda_emulated.py); with nvcc it is the <<<...>>> syntax.
#ifndef M4D_LAUNCH
#define M4D_LAUNCH(kernel, grid, block, shared, stream) kernel<<<grid, block, shared, stream>>>
#endif

namespace motion4d {
namespace {

#ifndef M4D_CUDA_EMULATION
// The block's dynamic shared memory (sized at launch).
__device__ __forceinline__ unsigned char* dynamic_shared() {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  return shared_raw;
}
#endif

constexpr int kThreads = kCudaThreads;
constexpr int kWarpsPerBlock = kCudaWarpsPerBlock;
constexpr unsigned int kFullMask = 0xffffffffu;

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

// patch_adjoint (common.h) reading the window gradient with a stride: g[kk * stride] is entry kk.
template <typename T>
__device__ __forceinline__ T strided_adjoint(const T* g, int64_t stride, int k, int a, int b, T fx, T fy) {
  T s = T(0);
  if (a < k && b < k) s += (T(1) - fx) * (T(1) - fy) * g[(a * k + b) * stride];
  if (a >= 1 && b < k) s += fx * (T(1) - fy) * g[((a - 1) * k + b) * stride];
  if (a < k && b >= 1) s += (T(1) - fx) * fy * g[(a * k + b - 1) * stride];
  if (a >= 1 && b >= 1) s += fx * fy * g[((a - 1) * k + b - 1) * stride];
  return s;
}

// One warp per first-frame pixel (its volume slice is private): lanes split the window entries for
// the coordinate gradient (warp reduction), then the patch entries, each of which gets its whole
// gradient in a single store (the adjoint of the bilinear window): no atomics, no read-modify-write,
// and 32 threads per pixel where one thread looped over all K entries before.
template <typename T>
__global__ void lookup_backward_kernel(const T* __restrict__ gout, const T* __restrict__ vol,
                                       const T* __restrict__ coords, T* __restrict__ gvol, T* __restrict__ gcoords,
                                       int64_t B, int64_t hw, int64_t H, int64_t W, int r, T scale) {
  const int k = 2 * r + 1, K = k * k, P = k + 1, PP = P * P;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t n = blockIdx.x * int64_t(kWarpsPerBlock) + warp; n < B * hw;
       n += int64_t(gridDim.x) * kWarpsPerBlock) {
    const int64_t b = n / hw, p = n % hw;
    const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
    T gx = T(0), gy = T(0);
    if (f.valid) {
      const T* v = vol + n * H * W;
      T* gv = gvol + n * H * W;
      const T* g = gout + b * K * hw + p;
      for (int kk = lane; kk < K; kk += 32) {
        const T gk = g[kk * hw];
        const int x = f.x0 - r + kk / k, y = f.y0 - r + kk % k;
        const T v00 = inside(x, y, W, H) ? v[int64_t(y) * W + x] : T(0);
        const T v10 = inside(x + 1, y, W, H) ? v[int64_t(y) * W + x + 1] : T(0);
        const T v01 = inside(x, y + 1, W, H) ? v[int64_t(y + 1) * W + x] : T(0);
        const T v11 = inside(x + 1, y + 1, W, H) ? v[int64_t(y + 1) * W + x + 1] : T(0);
        gx += gk * ((T(1) - f.fy) * (v10 - v00) + f.fy * (v11 - v01));
        gy += gk * ((T(1) - f.fx) * (v01 - v00) + f.fx * (v11 - v10));
      }
      for (int ab = lane; ab < PP; ab += 32) {
        const int a = ab / P, c = ab % P;
        const int x = f.x0 - r + a, y = f.y0 - r + c;
        if (inside(x, y, W, H)) gv[int64_t(y) * W + x] = strided_adjoint(g, hw, k, a, c, f.fx, f.fy);
      }
    }
    gx = warp_sum(gx);  // the footprint is the warp's: every lane takes the same branch
    gy = warp_sum(gy);
    if (lane == 0) {
      gcoords[2 * b * hw + p] = gx * scale;
      gcoords[(2 * b + 1) * hw + p] = gy * scale;
    }
  }
}

// ---------------------------------------------------------------- on-the-fly correlation

// A block takes `tile` (up to 8) consecutive first-frame pixels (launch_plan.h): its warps compute
// the (2r+2)^2 patch correlations of every pixel (lanes split the D channels: coalesced
// channels-last reads, then a warp reduction) into shared memory, then the threads write the window
// with consecutive threads on consecutive pixels, so each window entry fills whole 32-byte sectors
// instead of one lane per entry storing with a stride of h*w elements.
template <typename T>
__global__ void local_forward_kernel(const T* __restrict__ f1, const T* __restrict__ f2,
                                     const T* __restrict__ coords, T* __restrict__ out, int64_t B, int64_t hw,
                                     int64_t H, int64_t W, int64_t D, int r, T scale, T inv_norm, int tile) {
  unsigned char* shared_raw = dynamic_shared();
  const int k = 2 * r + 1, K = k * k, P = k + 1, PP = P * P;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  T* patch = reinterpret_cast<T*>(shared_raw);  // [tile][PP]
  T* fxs = patch + tile * PP;
  T* fys = fxs + tile;
  int* x0s = reinterpret_cast<int*>(fys + tile);
  int* y0s = x0s + tile;
  int* valids = y0s + tile;
  const int64_t tiles = (hw + tile - 1) / tile;
  for (int64_t t = blockIdx.x; t < B * tiles; t += gridDim.x) {
    const int64_t b = t / tiles, p0 = (t % tiles) * tile;
    const int len = static_cast<int>(hw - p0 < tile ? hw - p0 : tile);
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
      const int64_t p = p0 + i;
      const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
      fxs[i] = f.fx;
      fys[i] = f.fy;
      x0s[i] = f.x0;
      y0s[i] = f.y0;
      valids[i] = f.valid ? 1 : 0;
    }
    __syncthreads();
    const T* f2b = f2 + b * H * W * D;
    for (int e = warp; e < len * PP; e += kWarpsPerBlock) {  // e = i * PP + ab: one patch entry per warp
      const int i = e / PP, ab = e % PP;
      const int x = x0s[i] - r + ab / P, y = y0s[i] - r + ab % P;
      T acc = T(0);
      if (valids[i] && inside(x, y, W, H)) {  // uniform across the warp
        const T* f1n = f1 + (b * hw + p0 + i) * D;
        const T* row = f2b + (int64_t(y) * W + x) * D;
        for (int64_t d = lane; d < D; d += 32) acc += f1n[d] * row[d];
        acc = warp_sum(acc) * inv_norm;
      }
      if (lane == 0) patch[e] = acc;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < len * K; idx += blockDim.x) {
      const int kk = idx / len, i = idx % len;
      out[(b * K + kk) * hw + p0 + i] =
          valids[i] ? patch_bilinear(patch + i * PP, P, kk / k, kk % k, fxs[i], fys[i]) : T(0);
    }
    __syncthreads();
  }
}

// A block takes 8 consecutive first-frame pixels, one per warp, and walks the channels in slices of
// 32 (one per lane). For each patch entry the lanes hold the patch gradient gc (the adjoint of the
// bilinear window, times 1/sqrt(D)) and the coordinate-gradient coefficients in registers and
// broadcast them with shuffles; one read of each fmap2 row serves grad_fmap1 (gc * f2), grad_fmap2
// (gc * f1) and the coordinate gradient (linear in the patch correlations, so summed per lane and
// reduced once). grad_fmap2 is first accumulated in a shared-memory box of `cells` positions covering
// the 8 patches (neighbouring pixels' patches overlap) and flushed with one atomicAdd per touched
// element; a tile whose patches are too spread out for the box adds to global memory directly.
template <typename T>
__global__ void local_backward_kernel(const T* __restrict__ gout, const T* __restrict__ f1,
                                      const T* __restrict__ f2, const T* __restrict__ coords, T* __restrict__ gf1,
                                      T* __restrict__ gf2, T* __restrict__ gcoords, int64_t B, int64_t hw,
                                      int64_t H, int64_t W, int64_t D, int r, T scale, T inv_norm,
                                      bool coords_grad, int cells) {
  unsigned char* shared_raw = dynamic_shared();
  T* box = reinterpret_cast<T*>(shared_raw);  // [cells][32]
  T* fxs = box + cells * 32;
  T* fys = fxs + kWarpsPerBlock;
  int* x0s = reinterpret_cast<int*>(fys + kWarpsPerBlock);
  int* y0s = x0s + kWarpsPerBlock;
  int* valids = y0s + kWarpsPerBlock;
  int* geometry = valids + kWarpsPerBlock;  // box x, y, width, height, in use
  const int k = 2 * r + 1, K = k * k, P = k + 1, PP = P * P;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t tiles = (hw + kWarpsPerBlock - 1) / kWarpsPerBlock;
  for (int64_t t = blockIdx.x; t < B * tiles; t += gridDim.x) {
    const int64_t b = t / tiles, p = (t % tiles) * kWarpsPerBlock + warp;
    const bool pixel = p < hw;
    const int64_t n = b * hw + p;
    if (lane == 0) {
      Footprint<T> f{0, 0, T(0), T(0), false};
      if (pixel) f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
      fxs[warp] = f.fx;
      fys[warp] = f.fy;
      x0s[warp] = f.x0;
      y0s[warp] = f.y0;
      valids[warp] = f.valid ? 1 : 0;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int xmin = INT_MAX, xmax = INT_MIN, ymin = INT_MAX, ymax = INT_MIN, count = 0;
      for (int i = 0; i < kWarpsPerBlock; ++i) {
        if (!valids[i]) continue;
        ++count;
        xmin = min(xmin, x0s[i] - r);
        xmax = max(xmax, x0s[i] - r + P - 1);
        ymin = min(ymin, y0s[i] - r);
        ymax = max(ymax, y0s[i] - r + P - 1);
      }
      int width = 0, height = 0;
      if (count > 0) {  // only positions inside the map receive gradient (footprints keep these in int range)
        xmin = max(xmin, 0);
        ymin = max(ymin, 0);
        width = min(xmax, static_cast<int>(W) - 1) - xmin + 1;
        height = min(ymax, static_cast<int>(H) - 1) - ymin + 1;
      }
      geometry[0] = xmin;
      geometry[1] = ymin;
      geometry[2] = width;
      geometry[3] = height;
      geometry[4] = (width > 0 && height > 0 && int64_t(width) * height <= cells) ? 1 : 0;
    }
    __syncthreads();
    const int bx = geometry[0], by = geometry[1], bw = geometry[2], bh = geometry[3];
    const bool use_box = geometry[4] != 0;  // the same for the whole block
    const bool valid = pixel && valids[warp];
    const T fx = fxs[warp], fy = fys[warp];
    const int x0 = x0s[warp], y0 = y0s[warp];
    const T* f1n = f1 + n * D;
    T* gf1n = gf1 + n * D;
    const T* f2b = f2 + b * H * W * D;
    T* gf2b = gf2 + b * H * W * D;
    const T* g = gout + b * K * hw + p;
    T gx = T(0), gy = T(0);
    for (int64_t d0 = 0; d0 < D; d0 += 32) {
      if (use_box) {
        for (int idx = threadIdx.x; idx < bw * bh * 32; idx += blockDim.x) box[idx] = T(0);
        __syncthreads();
      }
      const int64_t d = d0 + lane;
      const bool on = d < D;
      if (valid) {  // uniform across the warp
        const T f1d = on ? f1n[d] : T(0);
        T acc = T(0);
        for (int ab0 = 0; ab0 < PP; ab0 += 32) {
          T gc_lane = T(0), cx_lane = T(0), cy_lane = T(0);
          if (ab0 + lane < PP) {
            const int a = (ab0 + lane) / P, c = (ab0 + lane) % P;
            if (inside(x0 - r + a, y0 - r + c, W, H)) {
              const T g00 = (a < k && c < k) ? g[(a * k + c) * hw] : T(0);
              const T g10 = (a >= 1 && c < k) ? g[((a - 1) * k + c) * hw] : T(0);
              const T g01 = (a < k && c >= 1) ? g[(a * k + c - 1) * hw] : T(0);
              const T g11 = (a >= 1 && c >= 1) ? g[((a - 1) * k + c - 1) * hw] : T(0);
              T s = (T(1) - fx) * (T(1) - fy) * g00;  // patch_adjoint's order
              s += fx * (T(1) - fy) * g10;
              s += (T(1) - fx) * fy * g01;
              s += fx * fy * g11;
              gc_lane = s * inv_norm;
              // d window / dx and / dy, summed against g: the coefficients of this patch correlation
              cx_lane = (T(1) - fy) * (g10 - g00) + fy * (g11 - g01);
              cy_lane = (T(1) - fx) * (g01 - g00) + fx * (g11 - g10);
            }
          }
          const int count = PP - ab0 < 32 ? PP - ab0 : 32;
          for (int e = 0; e < count; ++e) {
            const T gc = __shfl_sync(kFullMask, gc_lane, e);
            const T cx = __shfl_sync(kFullMask, cx_lane, e);
            const T cy = __shfl_sync(kFullMask, cy_lane, e);
            const int a = (ab0 + e) / P, c = (ab0 + e) % P;
            const int x = x0 - r + a, y = y0 - r + c;
            if (!inside(x, y, W, H)) continue;  // uniform across the warp
            const int64_t pos = (int64_t(y) * W + x) * D + d;
            const T v = on ? f2b[pos] : T(0);
            acc += gc * v;
            if (coords_grad) {
              const T fv = f1d * v;
              gx += cx * fv;
              gy += cy * fv;
            }
            if (on && gc != T(0)) {
              if (use_box)
                atomicAdd(box + ((y - by) * bw + (x - bx)) * 32 + lane, gc * f1d);
              else
                atomicAdd(gf2b + pos, gc * f1d);
            }
          }
        }
        if (on) gf1n[d] = acc;
      } else if (pixel && on) {
        gf1n[d] = T(0);
      }
      if (use_box) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < bw * bh * 32; idx += blockDim.x) {
          const int cell = idx >> 5;
          const int64_t dd = d0 + (idx & 31);
          const T value = box[idx];
          if (dd < D && value != T(0))
            atomicAdd(gf2b + ((int64_t(by) + cell / bw) * W + bx + cell % bw) * D + dd, value);
        }
        __syncthreads();
      }
    }
    gx = warp_sum(gx);
    gy = warp_sum(gy);
    if (pixel && lane == 0) {
      const bool write = valid && coords_grad;
      gcoords[2 * b * hw + p] = write ? gx * inv_norm * scale : T(0);
      gcoords[(2 * b + 1) * hw + p] = write ? gy * inv_norm * scale : T(0);
    }
    __syncthreads();  // the footprints and the box geometry are rewritten for the next tile
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
  M4D_LAUNCH(lookup_forward_kernel<T>, blocks_for(total, kThreads), kThreads, 0, stream)(
      volume, coords, out, B, h * w, H, W, radius, scale);
  return cudaGetLastError();
}

template <typename T>
cudaError_t corr_lookup_backward_cuda(const T* grad_out, const T* volume, const T* coords, T* grad_volume,
                                      T* grad_coords, int64_t B, int64_t h, int64_t w, int64_t H, int64_t W,
                                      int radius, T scale, cudaStream_t stream) {
  const int64_t total = B * h * w;
  if (total == 0) return cudaSuccess;
  M4D_LAUNCH(lookup_backward_kernel<T>, blocks_for(total, kWarpsPerBlock), kThreads, 0, stream)(
      grad_out, volume, coords, grad_volume, grad_coords, B, h * w, H, W, radius, scale);
  return cudaGetLastError();
}

static int shared_memory_budget() {
  int device = 0, budget = 48 * 1024;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&budget, cudaDevAttrMaxSharedMemoryPerBlock, device) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky status of the failed query; assume the universal 48 KB
    budget = 48 * 1024;
  }
  return budget;
}

template <typename T>
int corr_local_forward_tile(int radius) {
  return local_forward_tile(radius, sizeof(T), static_cast<std::size_t>(shared_memory_budget()));
}

template <typename T>
cudaError_t corr_local_forward_cuda(const T* fmap1, const T* fmap2, const T* coords, T* out, int64_t B, int64_t h,
                                    int64_t w, int64_t H, int64_t W, int64_t D, int radius, T scale,
                                    cudaStream_t stream) {
  const int64_t total = B * h * w;
  if (total == 0) return cudaSuccess;
  const int tile = corr_local_forward_tile<T>(radius);
  if (tile == 0) return cudaErrorInvalidConfiguration;  // ops.cpp checks the radius first with a clear message
  const std::size_t shared = local_forward_shared_bytes(radius, sizeof(T), tile);
  const T inv_norm = T(1) / sqrt(T(D));
  const int64_t tiles = B * ((h * w + tile - 1) / tile);
  M4D_LAUNCH(local_forward_kernel<T>, blocks_for(tiles, 1), kThreads, shared, stream)(
      fmap1, fmap2, coords, out, B, h * w, H, W, D, radius, scale, inv_norm, tile);
  return cudaGetLastError();
}

template <typename T>
cudaError_t corr_local_backward_cuda(const T* grad_out, const T* fmap1, const T* fmap2, const T* coords,
                                     T* grad_fmap1, T* grad_fmap2, T* grad_coords, int64_t B, int64_t h, int64_t w,
                                     int64_t H, int64_t W, int64_t D, int radius, T scale, bool coords_grad,
                                     cudaStream_t stream) {
  const int64_t total = B * h * w;
  if (total == 0) return cudaSuccess;
  const int cells = local_backward_box_cells(sizeof(T), static_cast<std::size_t>(shared_memory_budget()));
  const std::size_t shared = local_backward_shared_bytes(sizeof(T), cells);
  const T inv_norm = T(1) / sqrt(T(D));
  const int64_t tiles = B * ((h * w + kWarpsPerBlock - 1) / kWarpsPerBlock);
  M4D_LAUNCH(local_backward_kernel<T>, blocks_for(tiles, 1), kThreads, shared, stream)(
      grad_out, fmap1, fmap2, coords, grad_fmap1, grad_fmap2, grad_coords, B, h * w, H, W, D, radius, scale,
      inv_norm, coords_grad, cells);
  return cudaGetLastError();
}

template <typename T>
cudaError_t splat_forward_cuda(const T* input, const T* flow, T* out, int64_t B, int64_t C, int64_t H, int64_t W,
                               cudaStream_t stream) {
  const int64_t total = B * H * W;
  if (total == 0) return cudaSuccess;
  M4D_LAUNCH(splat_forward_kernel<T>, blocks_for(total, kThreads), kThreads, 0, stream)(
      input, flow, out, B, C, H, W);
  return cudaGetLastError();
}

template <typename T>
cudaError_t splat_backward_cuda(const T* grad_out, const T* input, const T* flow, T* grad_input, T* grad_flow,
                                int64_t B, int64_t C, int64_t H, int64_t W, cudaStream_t stream) {
  const int64_t total = B * H * W;
  if (total == 0) return cudaSuccess;
  M4D_LAUNCH(splat_backward_kernel<T>, blocks_for(total, kThreads), kThreads, 0, stream)(
      grad_out, input, flow, grad_input, grad_flow, B, C, H, W);
  return cudaGetLastError();
}

#define M4D_INSTANTIATE(T)                                                                                  \
  template cudaError_t corr_lookup_forward_cuda<T>(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t,   \
                                                   int64_t, int, T, cudaStream_t);                               \
  template cudaError_t corr_lookup_backward_cuda<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t,      \
                                                    int64_t, int64_t, int64_t, int, T, cudaStream_t);            \
  template int corr_local_forward_tile<T>(int);                                                                \
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
