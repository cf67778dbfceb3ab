// SwiGLU of the feed-forward block: gate = silu(gate) * up, element-wise. CPU twin: swiglu.
#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535u;

// ---- kernel ----
__global__ void __launch_bounds__(kThreads) swiglu_kernel(SwigluParams p) {
  const size_t stride = static_cast<size_t>(gridDim.x) * kThreads;
  for (size_t i = static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; i < p.n; i += stride) {
    const float g = p.gate[i];
    p.gate[i] = g / (1.0f + expf(-g)) * p.up[i];
  }
}

}  // namespace

// ---- launcher ----
cudaError_t launch_swiglu(const SwigluParams& params, cudaStream_t stream) {
  if (params.n == 0) return cudaErrorInvalidValue;
  const size_t blocks = (params.n + kThreads - 1) / kThreads;
  const unsigned grid = blocks < kMaxBlocks ? static_cast<unsigned>(blocks) : kMaxBlocks;
  PAGEDLM_LAUNCH(swiglu_kernel, grid, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
