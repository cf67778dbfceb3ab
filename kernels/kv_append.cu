// Appends new tokens' K and V rows to the paged pool through a slot mapping, quantizing int8/fp8 rows
// with one scale per row. One warp per (token, KV head) row. CPU twin: kv_store_row, bit for bit.
#include "device_common.cuh"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda {

namespace {

constexpr int kWarps = 4;

// ---- device helpers ----
template <KvDtype kDtype>
__device__ __forceinline__ void store_row(const float* src, void* dst_row, float* scale, int head_dim, int lane) {
  float inverse = 0.0f;
  if constexpr (has_scales(kDtype)) {
    float amax = 0.0f;
    for (int i = lane; i < head_dim; i += kWarpSize) amax = fmaxf(amax, fabsf(src[i]));
    amax = warp_max(amax);
    const float s = amax / (kDtype == KvDtype::kInt8 ? 127.0f : 448.0f);
    if (lane == 0) *scale = s;
    inverse = s > 0.0f ? 1.0f / s : 0.0f;
  }
  for (int i = lane; i < head_dim; i += kWarpSize) {
    if constexpr (kDtype == KvDtype::kF32) {
      static_cast<float*>(dst_row)[i] = src[i];
    } else if constexpr (kDtype == KvDtype::kF16) {
      static_cast<uint16_t*>(dst_row)[i] = float_to_half(src[i]);
    } else if constexpr (kDtype == KvDtype::kBF16) {
      static_cast<uint16_t*>(dst_row)[i] = float_to_bfloat(src[i]);
    } else if constexpr (kDtype == KvDtype::kInt8) {
      const float q = fminf(fmaxf(src[i] * inverse, -127.0f), 127.0f);
      static_cast<int8_t*>(dst_row)[i] = static_cast<int8_t>(__float2int_rn(q));
    } else {
      static_cast<uint8_t*>(dst_row)[i] = float_to_fp8(src[i] * inverse);
    }
  }
}

// ---- kernel ----
template <KvDtype kDtype>
__global__ void __launch_bounds__(kWarps * kWarpSize) kv_append_kernel(KvAppendParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const int row = blockIdx.x * kWarps + threadIdx.x / kWarpSize;  // token * num_kv_heads + head
  const PagedKv& kv = p.kv;
  if (row >= p.n_tokens * kv.num_kv_heads) return;  // whole warps only
  const int token = row / kv.num_kv_heads, head = row % kv.num_kv_heads;
  const int slot = p.slots[token];
  if (slot < 0) return;
  const size_t pool_row = (static_cast<size_t>(slot / kv.block_size) * kv.num_kv_heads + head) * kv.block_size + slot % kv.block_size;
  const size_t element_offset = pool_row * kv.head_dim * kv_bytes(kDtype);
  const size_t src_offset = static_cast<size_t>(row) * kv.head_dim;
  float* k_scale = has_scales(kDtype) ? kv.k_scales + pool_row : nullptr;
  float* v_scale = has_scales(kDtype) ? kv.v_scales + pool_row : nullptr;
  store_row<kDtype>(p.k + src_offset, static_cast<uint8_t*>(kv.k) + element_offset, k_scale, kv.head_dim, lane);
  // V inside the K rows (latent attention): the K row is the V row.
  if (kv.v != kv.k) store_row<kDtype>(p.v + src_offset, static_cast<uint8_t*>(kv.v) + element_offset, v_scale, kv.head_dim, lane);
}

}  // namespace

// ---- launcher ----
cudaError_t launch_kv_append(const KvAppendParams& params, cudaStream_t stream) {
  const PagedKv& kv = params.kv;
  if (params.n_tokens <= 0 || kv.num_kv_heads <= 0 || kv.head_dim <= 0 || kv.block_size <= 0 ||
      (has_scales(kv.dtype) && (kv.k_scales == nullptr || kv.v_scales == nullptr))) {
    return cudaErrorInvalidValue;
  }
  const unsigned grid = static_cast<unsigned>((params.n_tokens * kv.num_kv_heads + kWarps - 1) / kWarps);
  return dispatch_kv_dtype(kv.dtype, [&]<KvDtype kDtype>() {
    auto kernel = kv_append_kernel<kDtype>;
    PAGEDLM_LAUNCH(kernel, grid, kWarps * kWarpSize, 0, stream)(params);
    return cudaGetLastError();
  });
}

}  // namespace pagedlm::cuda
