// The small element-wise steps between the big kernels of a forward pass: residual adds, biases, the f16 /
// bf16 copies of activations that tensor-core GEMMs read, and the gather of the rows that need logits.
// CPU twins: the plain loops of CpuBackend (x += y, y += bias) and float_to_fp16 / float_to_bf16.
#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 65535;

unsigned grid_for(size_t n) {
  const size_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// ---- device helpers ----
__device__ __forceinline__ size_t first_index() { return static_cast<size_t>(blockIdx.x) * kThreads + threadIdx.x; }
__device__ __forceinline__ size_t grid_stride() { return static_cast<size_t>(gridDim.x) * kThreads; }

// ---- kernels ----
__global__ void __launch_bounds__(kThreads) add_kernel(AddParams p) {
  for (size_t i = first_index(); i < p.n; i += grid_stride()) p.x[i] += p.y[i];
}

__global__ void __launch_bounds__(kThreads) add_bias_kernel(AddBiasParams p) {
  const size_t n = static_cast<size_t>(p.rows) * p.cols;
  for (size_t i = first_index(); i < n; i += grid_stride()) p.y[i] += p.bias[i % p.cols];
}

__global__ void __launch_bounds__(kThreads) to_half_kernel(ToHalfParams p) {
  for (size_t i = first_index(); i < p.n; i += grid_stride()) {
    p.out[i] = p.bfloat ? float_to_bfloat(p.x[i]) : float_to_half(p.x[i]);
  }
}

__global__ void __launch_bounds__(kThreads) gather_rows_kernel(GatherRowsParams p) {
  const float* src = p.src + static_cast<size_t>(p.rows[blockIdx.x]) * p.cols;
  float* dst = p.dst + static_cast<size_t>(blockIdx.x) * p.cols;
  for (int c = threadIdx.x; c < p.cols; c += kThreads) dst[c] = src[c];
}

}  // namespace

// ---- launchers ----
cudaError_t launch_add(const AddParams& params, cudaStream_t stream) {
  if (params.n == 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(add_kernel, grid_for(params.n), kThreads, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_add_bias(const AddBiasParams& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.cols <= 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(add_bias_kernel, grid_for(static_cast<size_t>(params.rows) * params.cols), kThreads, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_to_half(const ToHalfParams& params, cudaStream_t stream) {
  if (params.n == 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(to_half_kernel, grid_for(params.n), kThreads, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_gather_rows(const GatherRowsParams& params, cudaStream_t stream) {
  if (params.n_rows <= 0 || params.cols <= 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(gather_rows_kernel, params.n_rows, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
