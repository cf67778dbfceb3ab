// Rotary position embedding of Q and K in place, normal (adjacent pairs) or NeoX (halves) layout.
// One thread block per token; each thread rotates pairs. CPU twin: rope_apply with rope_angles.
#include "device_common.cuh"
#include "pagedlm_kernels.h"
#include "rope_common.cuh"

namespace pagedlm::cuda {

namespace {

constexpr int kThreads = 128;

// ---- kernel ----
__global__ void __launch_bounds__(kThreads) rope_kernel(RopeParams p) {
  const int token = blockIdx.x;
  const int pairs = p.rope_dim / 2;
  // The CPU computes the angle as (position * scale) * frequency in float: the same two roundings here.
  const float position = static_cast<float>(p.positions[token]) * p.position_scale;
  const int q_pairs = p.n_heads * pairs;
  const int total = q_pairs + (p.k != nullptr ? p.n_kv_heads * pairs : 0);
  for (int i = threadIdx.x; i < total; i += kThreads) {
    const bool is_q = i < q_pairs;
    const int j = is_q ? i : i - q_pairs;
    const int head = j / pairs, pair = j % pairs;
    float* base = is_q ? p.q + (static_cast<size_t>(token) * p.n_heads + head) * p.head_dim
                       : p.k + (static_cast<size_t>(token) * p.n_kv_heads + head) * p.head_dim;
    rope_rotate_pair(base, base, pair, p.rope_dim, p.layout, position * p.inverse_frequencies[pair]);
  }
}

}  // namespace

// ---- launcher ----
cudaError_t launch_rope(const RopeParams& params, cudaStream_t stream) {
  if (params.n_tokens <= 0 || params.n_heads <= 0 || params.rope_dim <= 0 || params.rope_dim % 2 != 0 ||
      params.rope_dim > params.head_dim || (params.k != nullptr && params.n_kv_heads <= 0)) {
    return cudaErrorInvalidValue;
  }
  PAGEDLM_LAUNCH(rope_kernel, params.n_tokens, kThreads, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
