// SwiGLU of the feed-forward block: silu(gate) * up, element-wise, written as f32 or as the down GEMM's 16-bit
// input. CPU twin: swiglu.
#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535u;

// ---- kernel ----
__global__ void __launch_bounds__(kThreads) swiglu_kernel(SwigluParams p) {
  const size_t n = static_cast<size_t>(p.n_tokens) * p.width;
  const size_t stride = static_cast<size_t>(gridDim.x) * kThreads;
  for (size_t i = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    const size_t in = i / p.width * p.in_stride + i % p.width;
    const float g = p.gate[in];
    const float y = g / (1.0f + expf(-g)) * p.up[in];
    if (p.half_out != nullptr) p.half_out[i] = to_gemm_input(y, p.bfloat);
    else p.out[i] = y;
  }
}

}  // namespace

// ---- launcher ----
cudaError_t launch_swiglu(const SwigluParams& params, cudaStream_t stream) {
  if (params.n_tokens <= 0 || params.width <= 0 || params.in_stride < params.width) return cudaErrorInvalidValue;
  const size_t blocks = (static_cast<size_t>(params.n_tokens) * params.width + kThreads - 1) / kThreads;
  const unsigned grid = blocks < kMaxBlocks ? static_cast<unsigned>(blocks) : kMaxBlocks;
  PAGEDLM_LAUNCH(swiglu_kernel, grid, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
