// RMSNorm, one thread block per row. CPU twin: pagedlm::rms_norm (native/backend/cpu/ops.cpp).
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 256;

// ---- device helpers ----
__device__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ float block_sum(float v) {
  __shared__ float partial[kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0.0f;
  if (warp == 0) v = warp_sum(v);
  __shared__ float total;
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  return total;
}

// ---- kernel ----
__global__ void rms_norm_kernel(RmsNormParams p) {
  const float* x = p.x + static_cast<size_t>(blockIdx.x) * p.dim;
  float* out = p.out + static_cast<size_t>(blockIdx.x) * p.dim;
  float sum = 0.0f;
  for (int i = threadIdx.x; i < p.dim; i += kThreads) sum += x[i] * x[i];
  const float scale = rsqrtf(block_sum(sum) / p.dim + p.eps);
  for (int i = threadIdx.x; i < p.dim; i += kThreads) out[i] = x[i] * scale * p.weight[i];
}

}  // namespace

// ---- launcher ----
cudaError_t launch_rms_norm(const RmsNormParams& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.dim <= 0) return cudaErrorInvalidValue;
  rms_norm_kernel<<<params.rows, kThreads, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
