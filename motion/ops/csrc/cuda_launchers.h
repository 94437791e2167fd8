// Host launchers of the CUDA kernels (ops_cuda.cu). Raw pointers and sizes only: the .cu file needs
// nothing but the CUDA toolkit; ops.cpp binds these to torch tensors. All tensors are contiguous.
// Each returns the launch status (cudaGetLastError) for the caller to check.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace motion4d {

// volume [N = B*h*w, H, W], coords [B, 2, h, w] -> out [B, (2r+1)^2, h, w].
template <typename T>
cudaError_t corr_lookup_forward_cuda(const T* volume, const T* coords, T* out, int64_t B, int64_t h, int64_t w,
                                     int64_t H, int64_t W, int radius, T scale, cudaStream_t stream);

// grad_volume [N, H, W] must be zero-filled by the caller; grad_coords [B, 2, h, w] is overwritten.
template <typename T>
cudaError_t corr_lookup_backward_cuda(const T* grad_out, const T* volume, const T* coords, T* grad_volume,
                                      T* grad_coords, int64_t B, int64_t h, int64_t w, int64_t H, int64_t W,
                                      int radius, T scale, cudaStream_t stream);

// Pixels per block of corr_local_forward_cuda on the current device (launch_plan.h); 0 when the
// radius's patch of even one pixel exceeds the device's shared memory per block.
template <typename T>
int corr_local_forward_tile(int radius);

// fmap1 [B, h, w, D], fmap2 [B, H, W, D] (channels-last), coords [B, 2, h, w] -> out [B, K, h, w].
template <typename T>
cudaError_t corr_local_forward_cuda(const T* fmap1, const T* fmap2, const T* coords, T* out, int64_t B, int64_t h,
                                    int64_t w, int64_t H, int64_t W, int64_t D, int radius, T scale,
                                    cudaStream_t stream);

// grad_fmap2 must be zero-filled by the caller; grad_fmap1 and grad_coords are overwritten
// (grad_coords with zeros when coords_grad is false).
template <typename T>
cudaError_t corr_local_backward_cuda(const T* grad_out, const T* fmap1, const T* fmap2, const T* coords,
                                     T* grad_fmap1, T* grad_fmap2, T* grad_coords, int64_t B, int64_t h, int64_t w,
                                     int64_t H, int64_t W, int64_t D, int radius, T scale, bool coords_grad,
                                     cudaStream_t stream);

// input [B, C, H, W], flow [B, 2, H, W] -> out [B, C, H, W] (zero-filled by the caller).
template <typename T>
cudaError_t splat_forward_cuda(const T* input, const T* flow, T* out, int64_t B, int64_t C, int64_t H, int64_t W,
                               cudaStream_t stream);

template <typename T>
cudaError_t splat_backward_cuda(const T* grad_out, const T* input, const T* flow, T* grad_input, T* grad_flow,
                                int64_t B, int64_t C, int64_t H, int64_t W, cudaStream_t stream);

}  // namespace motion4d
