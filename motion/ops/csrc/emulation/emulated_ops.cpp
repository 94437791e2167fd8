// The CUDA kernels of ops_cuda.cu, compiled unchanged for the CPU emulation of cuda_runtime.h (this
// folder) and bound as torch.ops.motion4d_emu.* on CPU tensors, with the signatures of the motion4d
// ops and the allocation rules of their CUDA entry points in ops.cpp. For tests only
// (tests/motion/test_ops_cuda_emulated.py): it checks the kernels' indexing, tiling, shared-memory
// plans, warp reductions and barriers on a machine without a GPU.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include "cuda_runtime.h"
// Compiled here as C++: the emulation header above provides what nvcc would.
#include "../ops_cuda.cu"

namespace {

using namespace motion4d;

void check(cudaError_t status, const char* op) {
  TORCH_CHECK(status == cudaSuccess, op, ": emulated CUDA launch failed: ", cudaGetErrorString(status));
}

at::Tensor corr_lookup(const at::Tensor& volume_in, const at::Tensor& coords_in, int64_t radius, double scale) {
  const auto volume = volume_in.contiguous(), coords = coords_in.contiguous();
  const int64_t B = coords.size(0), h = coords.size(2), w = coords.size(3), K = (2 * radius + 1) * (2 * radius + 1);
  auto out = at::empty({B, K, h, w}, volume.options()).fill_(std::nan(""));  // NaN: unwritten entries show
  AT_DISPATCH_FLOATING_TYPES(volume.scalar_type(), "corr_lookup_emu", [&] {
    check(corr_lookup_forward_cuda<scalar_t>(volume.data_ptr<scalar_t>(), coords.data_ptr<scalar_t>(),
                                             out.data_ptr<scalar_t>(), B, h, w, volume.size(1), volume.size(2),
                                             static_cast<int>(radius), static_cast<scalar_t>(scale), nullptr),
          "corr_lookup");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> corr_lookup_backward(const at::Tensor& grad_in, const at::Tensor& volume_in,
                                                        const at::Tensor& coords_in, int64_t radius, double scale) {
  const auto grad = grad_in.contiguous(), volume = volume_in.contiguous(), coords = coords_in.contiguous();
  const int64_t B = coords.size(0), h = coords.size(2), w = coords.size(3);
  auto grad_volume = at::zeros_like(volume);
  auto grad_coords = at::empty_like(coords).fill_(std::nan(""));
  AT_DISPATCH_FLOATING_TYPES(volume.scalar_type(), "corr_lookup_backward_emu", [&] {
    check(corr_lookup_backward_cuda<scalar_t>(grad.data_ptr<scalar_t>(), volume.data_ptr<scalar_t>(),
                                              coords.data_ptr<scalar_t>(), grad_volume.data_ptr<scalar_t>(),
                                              grad_coords.data_ptr<scalar_t>(), B, h, w, volume.size(1),
                                              volume.size(2), static_cast<int>(radius),
                                              static_cast<scalar_t>(scale), nullptr),
          "corr_lookup_backward");
  });
  return {grad_volume, grad_coords};
}

at::Tensor corr_local(const at::Tensor& f1_in, const at::Tensor& f2_in, const at::Tensor& coords_in, int64_t radius,
                      double scale) {
  const auto f1 = f1_in.contiguous(), f2 = f2_in.contiguous(), coords = coords_in.contiguous();
  const int64_t B = f1.size(0), h = f1.size(1), w = f1.size(2), D = f1.size(3);
  auto out = at::empty({B, (2 * radius + 1) * (2 * radius + 1), h, w}, f1.options()).fill_(std::nan(""));
  AT_DISPATCH_FLOATING_TYPES(f1.scalar_type(), "corr_local_emu", [&] {
    TORCH_CHECK(corr_local_forward_tile<scalar_t>(static_cast<int>(radius)) > 0, "corr_local: radius ", radius,
                " does not fit the shared memory per block");
    check(corr_local_forward_cuda<scalar_t>(f1.data_ptr<scalar_t>(), f2.data_ptr<scalar_t>(),
                                            coords.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, h, w,
                                            f2.size(1), f2.size(2), D, static_cast<int>(radius),
                                            static_cast<scalar_t>(scale), nullptr),
          "corr_local");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> corr_local_backward(const at::Tensor& grad_in, const at::Tensor& f1_in,
                                                                   const at::Tensor& f2_in,
                                                                   const at::Tensor& coords_in, int64_t radius,
                                                                   double scale, bool coords_grad) {
  const auto grad = grad_in.contiguous(), f1 = f1_in.contiguous(), f2 = f2_in.contiguous();
  const auto coords = coords_in.contiguous();
  const int64_t B = f1.size(0), h = f1.size(1), w = f1.size(2), D = f1.size(3);
  // As ops.cpp: grad_fmap2 zero-filled (atomics add to it), the others written by the kernel.
  auto grad_f1 = at::empty_like(f1).fill_(std::nan(""));
  auto grad_f2 = at::zeros_like(f2);
  auto grad_coords = at::empty_like(coords).fill_(std::nan(""));
  AT_DISPATCH_FLOATING_TYPES(f1.scalar_type(), "corr_local_backward_emu", [&] {
    check(corr_local_backward_cuda<scalar_t>(grad.data_ptr<scalar_t>(), f1.data_ptr<scalar_t>(),
                                             f2.data_ptr<scalar_t>(), coords.data_ptr<scalar_t>(),
                                             grad_f1.data_ptr<scalar_t>(), grad_f2.data_ptr<scalar_t>(),
                                             grad_coords.data_ptr<scalar_t>(), B, h, w, f2.size(1), f2.size(2), D,
                                             static_cast<int>(radius), static_cast<scalar_t>(scale), coords_grad,
                                             nullptr),
          "corr_local_backward");
  });
  return {grad_f1, grad_f2, grad_coords};
}

at::Tensor splat(const at::Tensor& input_in, const at::Tensor& flow_in) {
  const auto input = input_in.contiguous(), flow = flow_in.contiguous();
  auto out = at::zeros_like(input);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "splat_emu", [&] {
    check(splat_forward_cuda<scalar_t>(input.data_ptr<scalar_t>(), flow.data_ptr<scalar_t>(),
                                       out.data_ptr<scalar_t>(), input.size(0), input.size(1), input.size(2),
                                       input.size(3), nullptr),
          "splat");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> splat_backward(const at::Tensor& grad_in, const at::Tensor& input_in,
                                                  const at::Tensor& flow_in) {
  const auto grad = grad_in.contiguous(), input = input_in.contiguous(), flow = flow_in.contiguous();
  auto grad_input = at::empty_like(input).fill_(std::nan(""));
  auto grad_flow = at::empty_like(flow).fill_(std::nan(""));
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "splat_backward_emu", [&] {
    check(splat_backward_cuda<scalar_t>(grad.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(),
                                        flow.data_ptr<scalar_t>(), grad_input.data_ptr<scalar_t>(),
                                        grad_flow.data_ptr<scalar_t>(), input.size(0), input.size(1),
                                        input.size(2), input.size(3), nullptr),
          "splat_backward");
  });
  return {grad_input, grad_flow};
}

void set_shared_budget(int64_t bytes) { m4d_emu::shared_budget() = static_cast<int>(bytes); }

}  // namespace

TORCH_LIBRARY(motion4d_emu, m) {
  m.def("corr_lookup(Tensor volume, Tensor coords, int radius, float scale) -> Tensor", &corr_lookup);
  m.def("corr_lookup_backward(Tensor grad_out, Tensor volume, Tensor coords, int radius, float scale)"
        " -> (Tensor, Tensor)", &corr_lookup_backward);
  m.def("corr_local(Tensor fmap1, Tensor fmap2, Tensor coords, int radius, float scale) -> Tensor", &corr_local);
  m.def("corr_local_backward(Tensor grad_out, Tensor fmap1, Tensor fmap2, Tensor coords, int radius,"
        " float scale, bool coords_grad) -> (Tensor, Tensor, Tensor)", &corr_local_backward);
  m.def("splat(Tensor input, Tensor flow) -> Tensor", &splat);
  m.def("splat_backward(Tensor grad_out, Tensor input, Tensor flow) -> (Tensor, Tensor)", &splat_backward);
  m.def("set_shared_budget(int bytes) -> ()", &set_shared_budget);
}
