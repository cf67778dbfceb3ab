// Embedding gather: each token's row of the table, converted to float. One thread block per token.
// CPU twin: dequantize_row of the same row.
#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 128;

// ---- device helpers ----
__device__ __forceinline__ float table_element(const DeviceMatrix& m, size_t row, int col) {
  const size_t i = row * m.cols + col;
  switch (m.type) {
    case TensorType::kF32: return static_cast<const float*>(m.data)[i];
    case TensorType::kF16: return half_to_float(static_cast<const uint16_t*>(m.data)[i]);
    case TensorType::kBF16: return bfloat_to_float(static_cast<const uint16_t*>(m.data)[i]);
    default: return half_to_float(m.scales[i / 32]) * static_cast<float>(static_cast<const int8_t*>(m.data)[i]);  // Q8_0
  }
}

// ---- kernel ----
__global__ void __launch_bounds__(kThreads) embedding_kernel(EmbeddingParams p) {
  const int token = p.tokens[blockIdx.x];
  float* out = p.out + static_cast<size_t>(blockIdx.x) * p.table.cols;
  const bool valid = token >= 0 && token < p.table.rows;
  for (int c = threadIdx.x; c < p.table.cols; c += kThreads) out[c] = valid ? table_element(p.table, token, c) : 0.0f;
}

}  // namespace

// ---- launcher ----
cudaError_t launch_embedding(const EmbeddingParams& params, cudaStream_t stream) {
  const DeviceMatrix& t = params.table;
  const bool supported = t.type == TensorType::kF32 || t.type == TensorType::kF16 || t.type == TensorType::kBF16 ||
                         (t.type == TensorType::kQ8_0 && t.cols % 32 == 0);
  if (!supported || params.n_tokens <= 0 || t.rows <= 0 || t.cols <= 0) return cudaErrorInvalidValue;
  PAGEDLM_LAUNCH(embedding_kernel, params.n_tokens, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
