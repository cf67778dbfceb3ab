// RMSNorm, one thread block per row, written as f32 or as the next GEMM's 16-bit input. CPU twin: pagedlm::rms_norm (native/backend/cpu/ops.cpp).
#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 256;

// ---- kernel ----
__global__ void __launch_bounds__(kThreads) rms_norm_kernel(RmsNormParams p) {
  __shared__ float scratch[kThreads / kWarpSize];
  const float* x = p.x + static_cast<size_t>(blockIdx.x) * p.dim;
  float* out = p.out + static_cast<size_t>(blockIdx.x) * p.dim;  // unused with half_out
  float sum = 0.0f;
  for (int i = threadIdx.x; i < p.dim; i += kThreads) sum += x[i] * x[i];
  const float scale = rsqrtf(block_sum(sum, scratch) / p.dim + p.eps);
  if (p.half_out != nullptr) {
    uint16_t* half_out = p.half_out + static_cast<size_t>(blockIdx.x) * p.dim;
    for (int i = threadIdx.x; i < p.dim; i += kThreads) half_out[i] = to_gemm_input(x[i] * scale * p.weight[i], p.bfloat);
    return;
  }
  for (int i = threadIdx.x; i < p.dim; i += kThreads) out[i] = x[i] * scale * p.weight[i];
}

}  // namespace

// ---- launcher ----
cudaError_t launch_rms_norm(const RmsNormParams& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.dim <= 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(rms_norm_kernel, params.rows, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
