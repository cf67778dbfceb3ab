// The small element-wise steps between the big kernels of a forward pass: residual adds, biases, the f16 /
// bf16 copies of activations that tensor-core GEMMs read (f16 ones scaled per row to stay finite, and the
// GEMM's output rows scaled back), and the gather of the rows that need logits.
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

// ---- f16 activations scaled per row (ToHalfRowsParams) ----
constexpr float kLargestHalfValue = 65504.0f;

// One block per row: the row's largest magnitude, then its elements times the power of two that fits it.
__global__ void __launch_bounds__(kThreads) to_half_rows_kernel(ToHalfRowsParams p) {
  __shared__ float warp_largest[kThreads / kWarpSize];
  __shared__ float row_scale;
  const float* x = p.x + static_cast<size_t>(blockIdx.x) * p.cols;
  uint16_t* out = p.out + static_cast<size_t>(blockIdx.x) * p.cols;
  float largest = 0.0f;
  for (int c = threadIdx.x; c < p.cols; c += kThreads) largest = fmaxf(largest, fabsf(x[c]));
  largest = warp_max(largest);
  if (threadIdx.x % kWarpSize == 0) warp_largest[threadIdx.x / kWarpSize] = largest;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = 0.0f;
    for (int w = 0; w < kThreads / kWarpSize; ++w) m = fmaxf(m, warp_largest[w]);
    float scale = 1.0f;
    // An infinite row stays as it is: no power of two brings it in range.
    if (m < INFINITY) {
      while (m * scale > kLargestHalfValue) scale *= 0.5f;
    }
    row_scale = scale;
    p.row_scales[blockIdx.x] = 1.0f / scale;
  }
  __syncthreads();
  const float scale = row_scale;
  for (int c = threadIdx.x; c < p.cols; c += kThreads) out[c] = float_to_half(x[c] * scale);
}

__global__ void __launch_bounds__(kThreads) unscale_rows_kernel(UnscaleRowsParams p) {
  const size_t n = static_cast<size_t>(p.rows) * p.cols;
  for (size_t i = first_index(); i < n; i += grid_stride()) {
    float y = p.y[i] * p.row_scales[i / p.cols];
    if (p.bias != nullptr) y += p.bias[i % p.cols];
    if (p.accumulate_into != nullptr) {
      p.accumulate_into[i] += y;
    } else {
      p.y[i] = y;
    }
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

cudaError_t launch_to_half_rows(const ToHalfRowsParams& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.cols <= 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(to_half_rows_kernel, params.rows, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_unscale_rows(const UnscaleRowsParams& params, cudaStream_t stream) {
  if (params.rows <= 0 || params.cols <= 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(unscale_rows_kernel, grid_for(static_cast<size_t>(params.rows) * params.cols), kThreads, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_gather_rows(const GatherRowsParams& params, cudaStream_t stream) {
  if (params.n_rows <= 0 || params.cols <= 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(gather_rows_kernel, params.n_rows, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
