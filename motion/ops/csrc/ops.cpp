// CPU kernels of the correlation and splatting ops, and the torch.library bindings of every op
// (CPU here; CUDA through the launchers in ops_cuda.cu when built with -DWITH_CUDA).
//
// Ops (namespace motion4d), all inputs contiguous and of one floating dtype:
//   corr_lookup(volume [N, H, W], coords [B, 2, h, w], radius, scale) -> [B, K, h, w]
//   corr_local(fmap1 [B, h, w, D], fmap2 [B, H, W, D], coords, radius, scale) -> [B, K, h, w]
//   splat(input [B, C, H, W], flow [B, 2, H, W]) -> [B, C, H, W]
// with K = (2r+1)^2 in RAFT's channel order and the *_backward ops returning input gradients.
// Parallelism: at::parallel_for (OpenMP) over pixels; scatters are organised so that every output
// element has one writer, which keeps the CPU results deterministic.
// Per-operator ATen headers instead of <ATen/ATen.h>: the JIT build compiles noticeably faster.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "launch_plan.h"

#ifdef WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda_launchers.h"
#endif

namespace motion4d {
namespace {

// Largest supported window radius (stack buffers of the CPU kernels; RAFT-family models use 3 or 4).
constexpr int kMaxRadius = 16;

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T acc = T(0);
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

template <typename T>
inline void axpy(T alpha, const T* x, T* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// ---------------------------------------------------------------- all-pairs window lookup

// Windows are computed for a tile of consecutive pixels, then written channel by channel: the
// output is [B, K, h, w], and per-pixel writes would touch K pages for every pixel.
constexpr int64_t kTile = 32;

template <typename T, typename WindowFn>
void for_each_window_tile(T* out, int64_t B, int64_t hw, int K, int64_t grain, const WindowFn& window) {
  const int64_t tiles_per_image = (hw + kTile - 1) / kTile;
  at::parallel_for(0, B * tiles_per_image, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> tile(kTile * K);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles_per_image, p0 = (task % tiles_per_image) * kTile;
      const int64_t len = std::min(kTile, hw - p0);
      for (int64_t t = 0; t < len; ++t) window(b, p0 + t, tile.data() + t * K);
      for (int kk = 0; kk < K; ++kk) {
        T* o = out + (b * K + kk) * hw + p0;
        for (int64_t t = 0; t < len; ++t) o[t] = tile[t * K + kk];
      }
    }
  });
}

template <typename T>
void lookup_forward_cpu(const T* vol, const T* coords, T* out, int64_t B, int64_t h, int64_t w, int64_t H,
                        int64_t W, int r, T scale) {
  const int64_t hw = h * w;
  const int k = 2 * r + 1, K = k * k, P = k + 1;
  for_each_window_tile<T>(out, B, hw, K, 1, [&](int64_t b, int64_t p, T* o) {
    T patch[(2 * kMaxRadius + 2) * (2 * kMaxRadius + 2)];
    const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
    if (!f.valid) {
      std::fill(o, o + K, T(0));
      return;
    }
    const T* v = vol + (b * hw + p) * H * W;
    for (int a = 0; a < P; ++a) {
      const int x = f.x0 - r + a;
      for (int c = 0; c < P; ++c) {
        const int y = f.y0 - r + c;
        patch[a * P + c] = inside(x, y, W, H) ? v[y * W + x] : T(0);
      }
    }
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < k; ++j) o[i * k + j] = patch_bilinear(patch, P, i, j, f.fx, f.fy);
  });
}

template <typename T>
void lookup_backward_cpu(const T* gout, const T* vol, const T* coords, T* gvol, T* gcoords, int64_t B,
                         int64_t h, int64_t w, int64_t H, int64_t W, int r, T scale) {
  const int64_t hw = h * w;
  const int k = 2 * r + 1, K = k * k, P = k + 1;
  at::parallel_for(0, B * hw, 16, [&](int64_t begin, int64_t end) {
    std::vector<T> patch(P * P), g(K);
    for (int64_t n = begin; n < end; ++n) {
      const int64_t b = n / hw, p = n % hw;
      T* gcx = gcoords + 2 * b * hw + p;
      T* gcy = gcoords + (2 * b + 1) * hw + p;
      const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
      if (!f.valid) {
        *gcx = T(0);
        *gcy = T(0);
        continue;
      }
      const T* v = vol + n * H * W;
      T* gv = gvol + n * H * W;
      for (int a = 0; a < P; ++a) {
        const int x = f.x0 - r + a;
        for (int c = 0; c < P; ++c) {
          const int y = f.y0 - r + c;
          patch[a * P + c] = inside(x, y, W, H) ? v[y * W + x] : T(0);
        }
      }
      T gx = T(0), gy = T(0);
      for (int kk = 0; kk < K; ++kk) {
        g[kk] = gout[(b * K + kk) * hw + p];
        const int i = kk / k, j = kk % k;
        gx += g[kk] * patch_dx(patch.data(), P, i, j, f.fy);
        gy += g[kk] * patch_dy(patch.data(), P, i, j, f.fx);
      }
      *gcx = gx * scale;
      *gcy = gy * scale;
      for (int a = 0; a < P; ++a) {
        const int x = f.x0 - r + a;
        for (int c = 0; c < P; ++c) {
          const int y = f.y0 - r + c;
          if (inside(x, y, W, H)) gv[y * W + x] += patch_adjoint(g.data(), k, a, c, f.fx, f.fy);
        }
      }
    }
  });
}

// ---------------------------------------------------------------- on-the-fly correlation

// Correlations of fmap1[n] with the (2r+2)^2 integer positions of the patch (zero outside).
template <typename T>
inline void patch_correlation(const T* f1n, const T* f2b, const Footprint<T>& f, int r, int P, int64_t H,
                              int64_t W, int64_t D, T inv_norm, T* patch) {
  for (int a = 0; a < P; ++a) {
    const int x = f.x0 - r + a;
    for (int c = 0; c < P; ++c) {
      const int y = f.y0 - r + c;
      patch[a * P + c] = inside(x, y, W, H) ? dot(f1n, f2b + (int64_t(y) * W + x) * D, D) * inv_norm : T(0);
    }
  }
}

template <typename T>
void local_forward_cpu(const T* f1, const T* f2, const T* coords, T* out, int64_t B, int64_t h, int64_t w,
                       int64_t H, int64_t W, int64_t D, int r, T scale) {
  const int64_t hw = h * w;
  const int k = 2 * r + 1, K = k * k, P = k + 1;
  const T inv_norm = T(1) / std::sqrt(T(D));
  for_each_window_tile<T>(out, B, hw, K, 1, [&](int64_t b, int64_t p, T* o) {
    T patch[(2 * kMaxRadius + 2) * (2 * kMaxRadius + 2)];
    const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
    if (!f.valid) {
      std::fill(o, o + K, T(0));
      return;
    }
    patch_correlation(f1 + (b * hw + p) * D, f2 + b * H * W * D, f, r, P, H, W, D, inv_norm, patch);
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < k; ++j) o[i * k + j] = patch_bilinear(patch, P, i, j, f.fx, f.fy);
  });
}

// Backward in two passes. Pass 1 (parallel over first-frame pixels) turns the window gradient into
// the gradient of each patch correlation, which gives grad_fmap1 and grad_coords directly. Pass 2
// scatters into grad_fmap2 in parallel over (batch, channel slice): each task owns a slice of the
// channels, so no two threads write the same element and the result does not depend on scheduling.
template <typename T>
void local_backward_cpu(const T* gout, const T* f1, const T* f2, const T* coords, T* gf1, T* gf2, T* gcoords,
                        int64_t B, int64_t h, int64_t w, int64_t H, int64_t W, int64_t D, int r, T scale,
                        bool coords_grad) {
  const int64_t hw = h * w, N = B * hw;
  const int k = 2 * r + 1, K = k * k, P = k + 1, PP = P * P;
  const T inv_norm = T(1) / std::sqrt(T(D));
  std::vector<T> gpatch(N * PP, T(0));
  std::vector<int> base(2 * N, 0);
  std::vector<char> valid(N, 0);

  at::parallel_for(0, N, 4, [&](int64_t begin, int64_t end) {
    std::vector<T> patch(PP), g(K);
    for (int64_t n = begin; n < end; ++n) {
      const int64_t b = n / hw, p = n % hw;
      T* gf1n = gf1 + n * D;
      std::fill(gf1n, gf1n + D, T(0));
      gcoords[2 * b * hw + p] = T(0);
      gcoords[(2 * b + 1) * hw + p] = T(0);
      const auto f = footprint<T>(coords[2 * b * hw + p] * scale, coords[(2 * b + 1) * hw + p] * scale, r, W, H);
      if (!f.valid) continue;
      valid[n] = 1;
      base[2 * n] = f.x0;
      base[2 * n + 1] = f.y0;
      const T* f2b = f2 + b * H * W * D;
      for (int kk = 0; kk < K; ++kk) g[kk] = gout[(b * K + kk) * hw + p];
      T* gp = gpatch.data() + n * PP;
      for (int a = 0; a < P; ++a) {
        const int x = f.x0 - r + a;
        for (int c = 0; c < P; ++c) {
          const int y = f.y0 - r + c;
          if (!inside(x, y, W, H)) continue;
          const T gc = patch_adjoint(g.data(), k, a, c, f.fx, f.fy) * inv_norm;
          gp[a * P + c] = gc;
          axpy(gc, f2b + (int64_t(y) * W + x) * D, gf1n, D);
        }
      }
      if (coords_grad) {
        patch_correlation(f1 + n * D, f2b, f, r, P, H, W, D, inv_norm, patch.data());
        T gx = T(0), gy = T(0);
        for (int kk = 0; kk < K; ++kk) {
          gx += g[kk] * patch_dx(patch.data(), P, kk / k, kk % k, f.fy);
          gy += g[kk] * patch_dy(patch.data(), P, kk / k, kk % k, f.fx);
        }
        gcoords[2 * b * hw + p] = gx * scale;
        gcoords[(2 * b + 1) * hw + p] = gy * scale;
      }
    }
  });

  const int64_t tasks_wanted = 4 * static_cast<int64_t>(at::get_num_threads());
  const int64_t slices = std::max<int64_t>(1, std::min<int64_t>((tasks_wanted + B - 1) / B, (D + 7) / 8));
  const int64_t width = (D + slices - 1) / slices;
  at::parallel_for(0, B * slices, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / slices, d0 = (task % slices) * width;
      const int64_t len = std::min(width, D - d0);
      if (len <= 0) continue;
      T* gf2b = gf2 + b * H * W * D + d0;
      for (int64_t n = b * hw; n < (b + 1) * hw; ++n) {
        if (!valid[n]) continue;
        const T* gp = gpatch.data() + n * PP;
        const T* f1n = f1 + n * D + d0;
        for (int a = 0; a < P; ++a) {
          const int x = base[2 * n] - r + a;
          for (int c = 0; c < P; ++c) {
            const int y = base[2 * n + 1] - r + c;
            const T gc = gp[a * P + c];
            if (gc != T(0) && inside(x, y, W, H)) axpy(gc, f1n, gf2b + (int64_t(y) * W + x) * D, len);
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------- summation splatting

// The four bilinear targets of source pixel p (plane index, -1 when outside or non-finite) with
// their weights and the weights' derivatives w.r.t. the target x and y.
template <typename T>
struct SplatTargets {
  int64_t index[4];
  T weight[4];
  T dx[4];
  T dy[4];
};

template <typename T>
inline SplatTargets<T> splat_targets(const T* flow_b, int64_t p, int64_t H, int64_t W) {
  SplatTargets<T> t;
  const int64_t HW = H * W;
  const T tx = T(p % W) + flow_b[p];
  const T ty = T(p / W) + flow_b[HW + p];
  const auto f = footprint<T>(tx, ty, 0, W, H);
  for (int c = 0; c < 4; ++c) {
    t.index[c] = -1;
    t.weight[c] = t.dx[c] = t.dy[c] = T(0);
  }
  if (!f.valid) return t;
  const int xs[4] = {f.x0, f.x0 + 1, f.x0, f.x0 + 1};
  const int ys[4] = {f.y0, f.y0, f.y0 + 1, f.y0 + 1};
  const T wx[4] = {T(1) - f.fx, f.fx, T(1) - f.fx, f.fx};
  const T wy[4] = {T(1) - f.fy, T(1) - f.fy, f.fy, f.fy};
  const T sx[4] = {T(-1), T(1), T(-1), T(1)};
  const T sy[4] = {T(-1), T(-1), T(1), T(1)};
  for (int c = 0; c < 4; ++c) {
    if (!inside(xs[c], ys[c], W, H)) continue;
    t.index[c] = int64_t(ys[c]) * W + xs[c];
    t.weight[c] = wx[c] * wy[c];
    t.dx[c] = sx[c] * wy[c];
    t.dy[c] = sy[c] * wx[c];
  }
  return t;
}

// Forward: targets once per pixel, then each (batch, channel) plane is scattered by one thread.
template <typename T>
void splat_forward_cpu(const T* input, const T* flow, T* out, int64_t B, int64_t C, int64_t H, int64_t W) {
  const int64_t HW = H * W;
  std::vector<SplatTargets<T>> targets(B * HW);
  at::parallel_for(0, B * HW, 256, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) targets[n] = splat_targets(flow + (n / HW) * 2 * HW, n % HW, H, W);
  });
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t b = plane / C;
      const T* src = input + plane * HW;
      T* dst = out + plane * HW;
      std::fill(dst, dst + HW, T(0));
      const SplatTargets<T>* tb = targets.data() + b * HW;
      for (int64_t p = 0; p < HW; ++p) {
        const T v = src[p];
        for (int c = 0; c < 4; ++c)
          if (tb[p].index[c] >= 0) dst[tb[p].index[c]] += tb[p].weight[c] * v;
      }
    }
  });
}

// Backward is a gather (no conflicts): parallel over blocks of source pixels, looping channels.
template <typename T>
void splat_backward_cpu(const T* gout, const T* input, const T* flow, T* gin, T* gflow, int64_t B, int64_t C,
                        int64_t H, int64_t W) {
  const int64_t HW = H * W;
  const int64_t block = 512;
  const int64_t blocks = (HW + block - 1) / block;
  at::parallel_for(0, B * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<SplatTargets<T>> t(block);
    std::vector<T> gx(block), gy(block);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, p0 = (task % blocks) * block;
      const int64_t len = std::min(block, HW - p0);
      const T* flow_b = flow + b * 2 * HW;
      for (int64_t q = 0; q < len; ++q) {
        t[q] = splat_targets(flow_b, p0 + q, H, W);
        gx[q] = gy[q] = T(0);
      }
      for (int64_t c = 0; c < C; ++c) {
        const T* go = gout + (b * C + c) * HW;
        const T* in = input + (b * C + c) * HW + p0;
        T* gi = gin + (b * C + c) * HW + p0;
        for (int64_t q = 0; q < len; ++q) {
          T s = T(0), sx = T(0), sy = T(0);
          for (int m = 0; m < 4; ++m) {
            if (t[q].index[m] < 0) continue;
            const T g = go[t[q].index[m]];
            s += t[q].weight[m] * g;
            sx += t[q].dx[m] * g;
            sy += t[q].dy[m] * g;
          }
          gi[q] = s;
          gx[q] += in[q] * sx;
          gy[q] += in[q] * sy;
        }
      }
      for (int64_t q = 0; q < len; ++q) {
        gflow[b * 2 * HW + p0 + q] = gx[q];
        gflow[(b * 2 + 1) * HW + p0 + q] = gy[q];
      }
    }
  });
}

// ---------------------------------------------------------------- argument checks

void check_inputs(const char* op, std::initializer_list<at::Tensor> tensors) {
  const at::Tensor& first = *tensors.begin();
  for (const auto& t : tensors) {
    TORCH_CHECK(t.is_contiguous(), op, ": expected contiguous tensors");
    TORCH_CHECK(t.scalar_type() == first.scalar_type(), op, ": all tensors must share one dtype, got ",
                t.scalar_type(), " and ", first.scalar_type());
    TORCH_CHECK(t.device() == first.device(), op, ": all tensors must be on one device");
  }
  TORCH_CHECK(first.scalar_type() == at::kFloat || first.scalar_type() == at::kDouble, op,
              ": supports float32 and float64, got ", first.scalar_type());
}

void check_corr_shapes(const char* op, const at::Tensor& coords, int64_t radius) {
  TORCH_CHECK(coords.dim() == 4 && coords.size(1) == 2, op, ": coords must be [B, 2, h, w], got ", coords.sizes());
  TORCH_CHECK(radius >= 0 && radius <= kMaxRadius, op, ": radius must be in [0, ", kMaxRadius, "], got ", radius);
}

void check_lookup(const at::Tensor& volume, const at::Tensor& coords, int64_t radius) {
  check_corr_shapes("corr_lookup", coords, radius);
  TORCH_CHECK(volume.dim() == 3 && volume.size(0) == coords.size(0) * coords.size(2) * coords.size(3),
              "corr_lookup: volume must be [B*h*w, H, W], got ", volume.sizes());
}

void check_local(const at::Tensor& f1, const at::Tensor& f2, const at::Tensor& coords, int64_t radius) {
  check_corr_shapes("corr_local", coords, radius);
  TORCH_CHECK(f1.dim() == 4 && f2.dim() == 4 && f1.size(0) == coords.size(0) && f1.size(1) == coords.size(2) &&
                  f1.size(2) == coords.size(3) && f2.size(0) == f1.size(0) && f2.size(3) == f1.size(3),
              "corr_local: expected fmap1 [B, h, w, D], fmap2 [B, H, W, D], coords [B, 2, h, w], got ",
              f1.sizes(), ", ", f2.sizes(), ", ", coords.sizes());
}

void check_splat(const at::Tensor& input, const at::Tensor& flow) {
  TORCH_CHECK(input.dim() == 4 && flow.dim() == 4 && flow.size(1) == 2 && flow.size(0) == input.size(0) &&
                  flow.size(2) == input.size(2) && flow.size(3) == input.size(3),
              "splat: expected input [B, C, H, W] and flow [B, 2, H, W], got ", input.sizes(), ", ", flow.sizes());
}

// ---------------------------------------------------------------- CPU entry points

at::Tensor corr_lookup_cpu(const at::Tensor& volume, const at::Tensor& coords, int64_t radius, double scale) {
  check_inputs("corr_lookup", {volume, coords});
  check_lookup(volume, coords, radius);
  const int64_t B = coords.size(0), h = coords.size(2), w = coords.size(3);
  const int64_t K = (2 * radius + 1) * (2 * radius + 1);
  auto out = at::empty({B, K, h, w}, volume.options());
  AT_DISPATCH_FLOATING_TYPES(volume.scalar_type(), "corr_lookup_cpu", [&] {
    lookup_forward_cpu<scalar_t>(volume.data_ptr<scalar_t>(), coords.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                 B, h, w, volume.size(1), volume.size(2), radius, static_cast<scalar_t>(scale));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> corr_lookup_backward_cpu(const at::Tensor& grad_out, const at::Tensor& volume,
                                                            const at::Tensor& coords, int64_t radius,
                                                            double scale) {
  check_inputs("corr_lookup_backward", {grad_out, volume, coords});
  check_lookup(volume, coords, radius);
  const int64_t B = coords.size(0), h = coords.size(2), w = coords.size(3);
  auto grad_volume = at::zeros_like(volume);
  auto grad_coords = at::empty_like(coords);
  AT_DISPATCH_FLOATING_TYPES(volume.scalar_type(), "corr_lookup_backward_cpu", [&] {
    lookup_backward_cpu<scalar_t>(grad_out.data_ptr<scalar_t>(), volume.data_ptr<scalar_t>(),
                                  coords.data_ptr<scalar_t>(), grad_volume.data_ptr<scalar_t>(),
                                  grad_coords.data_ptr<scalar_t>(), B, h, w, volume.size(1), volume.size(2), radius,
                                  static_cast<scalar_t>(scale));
  });
  return {grad_volume, grad_coords};
}

at::Tensor corr_local_cpu(const at::Tensor& f1, const at::Tensor& f2, const at::Tensor& coords, int64_t radius,
                          double scale) {
  check_inputs("corr_local", {f1, f2, coords});
  check_local(f1, f2, coords, radius);
  const int64_t B = f1.size(0), h = f1.size(1), w = f1.size(2), D = f1.size(3);
  const int64_t K = (2 * radius + 1) * (2 * radius + 1);
  auto out = at::empty({B, K, h, w}, f1.options());
  AT_DISPATCH_FLOATING_TYPES(f1.scalar_type(), "corr_local_cpu", [&] {
    local_forward_cpu<scalar_t>(f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(), coords.data_ptr<scalar_t>(),
                                out.data_ptr<scalar_t>(), B, h, w, f2.size(1), f2.size(2), D, radius,
                                static_cast<scalar_t>(scale));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> corr_local_backward_cpu(const at::Tensor& grad_out,
                                                                       const at::Tensor& f1, const at::Tensor& f2,
                                                                       const at::Tensor& coords, int64_t radius,
                                                                       double scale, bool coords_grad) {
  check_inputs("corr_local_backward", {grad_out, f1, f2, coords});
  check_local(f1, f2, coords, radius);
  const int64_t B = f1.size(0), h = f1.size(1), w = f1.size(2), D = f1.size(3);
  auto grad_f1 = at::empty_like(f1);
  auto grad_f2 = at::zeros_like(f2);
  auto grad_coords = at::empty_like(coords);
  AT_DISPATCH_FLOATING_TYPES(f1.scalar_type(), "corr_local_backward_cpu", [&] {
    local_backward_cpu<scalar_t>(grad_out.data_ptr<scalar_t>(), f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(),
                                 coords.data_ptr<scalar_t>(), grad_f1.data_ptr<scalar_t>(),
                                 grad_f2.data_ptr<scalar_t>(), grad_coords.data_ptr<scalar_t>(), B, h, w, f2.size(1),
                                 f2.size(2), D, radius, static_cast<scalar_t>(scale), coords_grad);
  });
  return {grad_f1, grad_f2, grad_coords};
}

at::Tensor splat_cpu(const at::Tensor& input, const at::Tensor& flow) {
  check_inputs("splat", {input, flow});
  check_splat(input, flow);
  auto out = at::empty_like(input);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "splat_cpu", [&] {
    splat_forward_cpu<scalar_t>(input.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                input.size(0), input.size(1), input.size(2), input.size(3));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> splat_backward_cpu_op(const at::Tensor& grad_out, const at::Tensor& input,
                                                         const at::Tensor& flow) {
  check_inputs("splat_backward", {grad_out, input, flow});
  check_splat(input, flow);
  auto grad_input = at::empty_like(input);
  auto grad_flow = at::empty_like(flow);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "splat_backward_cpu", [&] {
    splat_backward_cpu<scalar_t>(grad_out.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(),
                                 flow.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(),
                                 grad_flow.data_ptr<scalar_t>(), input.size(0), input.size(1), input.size(2),
                                 input.size(3));
  });
  return {grad_input, grad_flow};
}

// ---------------------------------------------------------------- CUDA entry points

#ifdef WITH_CUDA
void check_launch(cudaError_t status, const char* op) {
  TORCH_CHECK(status == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(status));
}

at::Tensor corr_lookup_cuda(const at::Tensor& volume, const at::Tensor& coords, int64_t radius, double scale) {
  check_inputs("corr_lookup", {volume, coords});
  check_lookup(volume, coords, radius);
  const c10::cuda::CUDAGuard guard(volume.device());
  const int64_t B = coords.size(0), h = coords.size(2), w = coords.size(3);
  const int64_t K = (2 * radius + 1) * (2 * radius + 1);
  auto out = at::empty({B, K, h, w}, volume.options());
  AT_DISPATCH_FLOATING_TYPES(volume.scalar_type(), "corr_lookup_cuda", [&] {
    const auto status = corr_lookup_forward_cuda<scalar_t>(
        volume.data_ptr<scalar_t>(), coords.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, h, w,
        volume.size(1), volume.size(2), static_cast<int>(radius), static_cast<scalar_t>(scale),
        c10::cuda::getCurrentCUDAStream());
    check_launch(status, "corr_lookup");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> corr_lookup_backward_cuda_op(const at::Tensor& grad_out,
                                                                const at::Tensor& volume, const at::Tensor& coords,
                                                                int64_t radius, double scale) {
  check_inputs("corr_lookup_backward", {grad_out, volume, coords});
  check_lookup(volume, coords, radius);
  const c10::cuda::CUDAGuard guard(volume.device());
  const int64_t B = coords.size(0), h = coords.size(2), w = coords.size(3);
  auto grad_volume = at::zeros_like(volume);
  auto grad_coords = at::empty_like(coords);
  AT_DISPATCH_FLOATING_TYPES(volume.scalar_type(), "corr_lookup_backward_cuda", [&] {
    const auto status = corr_lookup_backward_cuda<scalar_t>(
        grad_out.data_ptr<scalar_t>(), volume.data_ptr<scalar_t>(), coords.data_ptr<scalar_t>(),
        grad_volume.data_ptr<scalar_t>(), grad_coords.data_ptr<scalar_t>(), B, h, w, volume.size(1),
        volume.size(2), static_cast<int>(radius), static_cast<scalar_t>(scale), c10::cuda::getCurrentCUDAStream());
    check_launch(status, "corr_lookup_backward");
  });
  return {grad_volume, grad_coords};
}

at::Tensor corr_local_cuda(const at::Tensor& f1, const at::Tensor& f2, const at::Tensor& coords, int64_t radius,
                           double scale) {
  check_inputs("corr_local", {f1, f2, coords});
  check_local(f1, f2, coords, radius);
  const c10::cuda::CUDAGuard guard(f1.device());
  const int64_t B = f1.size(0), h = f1.size(1), w = f1.size(2), D = f1.size(3);
  const int64_t K = (2 * radius + 1) * (2 * radius + 1);
  auto out = at::empty({B, K, h, w}, f1.options());
  AT_DISPATCH_FLOATING_TYPES(f1.scalar_type(), "corr_local_cuda", [&] {
    TORCH_CHECK(corr_local_forward_tile<scalar_t>(static_cast<int>(radius)) > 0, "corr_local: radius ", radius,
                " needs ", local_forward_shared_bytes(static_cast<int>(radius), sizeof(scalar_t), 1),
                " bytes of shared memory per block, more than this GPU grants; use a smaller radius or "
                "backend='triton'");
    const auto status = corr_local_forward_cuda<scalar_t>(
        f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(), coords.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B,
        h, w, f2.size(1), f2.size(2), D, static_cast<int>(radius), static_cast<scalar_t>(scale),
        c10::cuda::getCurrentCUDAStream());
    check_launch(status, "corr_local");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> corr_local_backward_cuda_op(const at::Tensor& grad_out,
                                                                           const at::Tensor& f1,
                                                                           const at::Tensor& f2,
                                                                           const at::Tensor& coords,
                                                                           int64_t radius, double scale,
                                                                           bool coords_grad) {
  check_inputs("corr_local_backward", {grad_out, f1, f2, coords});
  check_local(f1, f2, coords, radius);
  const c10::cuda::CUDAGuard guard(f1.device());
  const int64_t B = f1.size(0), h = f1.size(1), w = f1.size(2), D = f1.size(3);
  auto grad_f1 = at::empty_like(f1);
  auto grad_f2 = at::zeros_like(f2);
  auto grad_coords = at::empty_like(coords);
  AT_DISPATCH_FLOATING_TYPES(f1.scalar_type(), "corr_local_backward_cuda", [&] {
    const auto status = corr_local_backward_cuda<scalar_t>(
        grad_out.data_ptr<scalar_t>(), f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(), coords.data_ptr<scalar_t>(),
        grad_f1.data_ptr<scalar_t>(), grad_f2.data_ptr<scalar_t>(), grad_coords.data_ptr<scalar_t>(), B, h, w,
        f2.size(1), f2.size(2), D, static_cast<int>(radius), static_cast<scalar_t>(scale), coords_grad,
        c10::cuda::getCurrentCUDAStream());
    check_launch(status, "corr_local_backward");
  });
  return {grad_f1, grad_f2, grad_coords};
}

at::Tensor splat_cuda(const at::Tensor& input, const at::Tensor& flow) {
  check_inputs("splat", {input, flow});
  check_splat(input, flow);
  const c10::cuda::CUDAGuard guard(input.device());
  auto out = at::zeros_like(input);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "splat_cuda", [&] {
    const auto status = splat_forward_cuda<scalar_t>(input.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(),
                                                     out.data_ptr<scalar_t>(), input.size(0), input.size(1),
                                                     input.size(2), input.size(3),
                                                     c10::cuda::getCurrentCUDAStream());
    check_launch(status, "splat");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> splat_backward_cuda_op(const at::Tensor& grad_out, const at::Tensor& input,
                                                          const at::Tensor& flow) {
  check_inputs("splat_backward", {grad_out, input, flow});
  check_splat(input, flow);
  const c10::cuda::CUDAGuard guard(input.device());
  auto grad_input = at::empty_like(input);
  auto grad_flow = at::empty_like(flow);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "splat_backward_cuda", [&] {
    const auto status = splat_backward_cuda<scalar_t>(
        grad_out.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(),
        grad_input.data_ptr<scalar_t>(), grad_flow.data_ptr<scalar_t>(), input.size(0), input.size(1),
        input.size(2), input.size(3), c10::cuda::getCurrentCUDAStream());
    check_launch(status, "splat_backward");
  });
  return {grad_input, grad_flow};
}
#endif

// The CUDA kernels' shared-memory plan (launch_plan.h) for a radius, element size and per-block budget:
// [forward pixel tile (0: does not fit), forward bytes, backward bytes, backward box cells].
std::vector<int64_t> cuda_launch_plan(int64_t radius, int64_t itemsize, int64_t shared_budget) {
  TORCH_CHECK(radius >= 0 && radius <= kMaxRadius, "cuda_launch_plan: radius must be in [0, ", kMaxRadius, "]");
  TORCH_CHECK(itemsize == 4 || itemsize == 8, "cuda_launch_plan: itemsize must be 4 or 8, got ", itemsize);
  const int r = static_cast<int>(radius);
  const auto size = static_cast<std::size_t>(itemsize);
  const auto budget = static_cast<std::size_t>(shared_budget);
  const int tile = local_forward_tile(r, size, budget);
  const int cells = local_backward_box_cells(size, budget);
  return {tile, static_cast<int64_t>(local_forward_shared_bytes(r, size, tile > 0 ? tile : 1)),
          static_cast<int64_t>(local_backward_shared_bytes(size, cells)), cells};
}

bool compiled_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace motion4d

TORCH_LIBRARY(motion4d, m) {
  m.def("corr_lookup(Tensor volume, Tensor coords, int radius, float scale) -> Tensor");
  m.def("corr_lookup_backward(Tensor grad_out, Tensor volume, Tensor coords, int radius, float scale)"
        " -> (Tensor, Tensor)");
  m.def("corr_local(Tensor fmap1, Tensor fmap2, Tensor coords, int radius, float scale) -> Tensor");
  m.def("corr_local_backward(Tensor grad_out, Tensor fmap1, Tensor fmap2, Tensor coords, int radius,"
        " float scale, bool coords_grad) -> (Tensor, Tensor, Tensor)");
  m.def("splat(Tensor input, Tensor flow) -> Tensor");
  m.def("splat_backward(Tensor grad_out, Tensor input, Tensor flow) -> (Tensor, Tensor)");
  m.def("compiled_with_cuda", &motion4d::compiled_with_cuda);
  m.def("cuda_launch_plan", &motion4d::cuda_launch_plan);
}

TORCH_LIBRARY_IMPL(motion4d, CPU, m) {
  m.impl("corr_lookup", &motion4d::corr_lookup_cpu);
  m.impl("corr_lookup_backward", &motion4d::corr_lookup_backward_cpu);
  m.impl("corr_local", &motion4d::corr_local_cpu);
  m.impl("corr_local_backward", &motion4d::corr_local_backward_cpu);
  m.impl("splat", &motion4d::splat_cpu);
  m.impl("splat_backward", &motion4d::splat_backward_cpu_op);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(motion4d, CUDA, m) {
  m.impl("corr_lookup", &motion4d::corr_lookup_cuda);
  m.impl("corr_lookup_backward", &motion4d::corr_lookup_backward_cuda_op);
  m.impl("corr_local", &motion4d::corr_local_cuda);
  m.impl("corr_local_backward", &motion4d::corr_local_backward_cuda_op);
  m.impl("splat", &motion4d::splat_cuda);
  m.impl("splat_backward", &motion4d::splat_backward_cuda_op);
}
#endif
