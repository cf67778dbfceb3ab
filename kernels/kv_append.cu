// Appends new tokens' K and V rows to the paged pool through a slot mapping, each side in its own type: the
// per-row types (f32, f16, bf16, and int8/fp8 with one scale per row) and int4 V (an f16 scale per group of
// each row) one warp per (token, KV head) row; int4 K, whose channel scales belong to the whole block piece,
// one warp per run of a piece's new tokens (int4_key_run). CPU twin: kv_store, bit for bit.
// launch_rope_kv_append runs the same stores on rows it rotates itself (rope_common.cuh), so a decode step
// needs no separate RoPE launch.
#include "device_common.cuh"
#include "pagedlm_kernels.h"
#include "rope_common.cuh"

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

// int4 V: each group of kInt4ValueGroup values (one warp's pass) gets the f16 scale of its largest magnitude;
// lane pairs meet in a byte, which the even lane writes.
__device__ __forceinline__ void store_int4_value_row(const float* src, uint8_t* dst_row, uint16_t* scales, int head_dim, int lane) {
  for (int g = 0; g < int4_groups(head_dim); ++g) {
    const int i = g * kInt4ValueGroup + lane;
    const float x = i < head_dim ? src[i] : 0.0f;
    const uint16_t scale = int4_scale_for_device(warp_max(fabsf(x)));
    if (lane == 0) scales[g] = scale;
    const uint32_t code = int4_code_device(x, int4_inverse(half_to_float(scale)));
    const uint32_t high = __shfl_down_sync(kFullMask, code, 1);
    if (lane % 2 == 0 && i < head_dim) dst_row[i / 2] = static_cast<uint8_t>(code | (high << 4));
  }
}

// int4 K, row `slot` of a piece: a channel whose range the new value widens gets a larger scale, and the
// piece's earlier rows of that channel are requantized under it (decoded under the old, encoded under the
// new), as int4_store_key_row does. Each lane owns whole bytes (channels 2b and 2b + 1) of every row and their
// two scales, so the lanes never share a byte and need no synchronization.
__device__ __forceinline__ void store_int4_key_row(const float* src, uint8_t* piece, uint16_t* scales, int slot, int head_dim, int lane) {
  const int row_bytes = head_dim / 2;
  for (int b = lane; b < row_bytes; b += kWarpSize) {
    uint32_t codes = 0;
    for (int half = 0; half < 2; ++half) {
      const int c = 2 * b + half, shift = 4 * half;
      const float old_scale = slot == 0 ? 0.0f : half_to_float(scales[c]);
      const float magnitude = fabsf(src[c]);
      if (slot == 0 || magnitude > old_scale * kInt4LevelsDevice) {
        scales[c] = int4_scale_for_device(magnitude);
        const float new_scale = half_to_float(scales[c]);
        if (new_scale != old_scale) {
          const float inverse = int4_inverse(new_scale);
          for (int r = 0; r < slot; ++r) {
            uint8_t& earlier = piece[static_cast<size_t>(r) * row_bytes + b];
            const uint32_t code = int4_code_device(int4_value_device((earlier >> shift) & 0xFu, old_scale), inverse);
            earlier = static_cast<uint8_t>((earlier & ~(0xFu << shift)) | (code << shift));
          }
        }
      }
      codes |= int4_code_device(src[c], int4_inverse(half_to_float(scales[c]))) << shift;
    }
    piece[static_cast<size_t>(slot) * row_bytes + b] = static_cast<uint8_t>(codes);
  }
}

__device__ __forceinline__ int block_of(const int32_t* slots, int token, int block_size) { return slots[token] < 0 ? -1 : slots[token] / block_size; }

// int4 K rows of one piece must be written in slot order by one writer: a row's codes depend on the channel
// scales that the rows before it left, and a later row may rewrite the earlier ones. The batch's tokens that
// land in one block are consecutive (a block belongs to one sequence, whose new tokens are consecutive and in
// position order), so the warp of the first such token writes the run for its head, in token order; the
// other tokens' warps leave K alone. Skipped tokens (negative slots) inside a run are stepped over.
template <typename KeyRow>
__device__ void int4_key_run(const PagedKv& kv, const int32_t* slots, int n_tokens, int token, int head, int lane, KeyRow key_row) {
  const int block = block_of(slots, token, kv.block_size);
  int before = token - 1;
  while (before >= 0 && slots[before] < 0) --before;
  if (before >= 0 && block_of(slots, before, kv.block_size) == block) return;  // not the run's first token
  const size_t piece = static_cast<size_t>(block) * kv.num_kv_heads + head;
  uint8_t* rows = static_cast<uint8_t*>(kv.k) + piece * kv.block_size * (kv.head_dim / 2);
  uint16_t* scales = static_cast<uint16_t*>(kv.k_scales) + piece * kv.head_dim;
  for (int t = token; t < n_tokens; ++t) {
    if (slots[t] < 0) continue;
    if (block_of(slots, t, kv.block_size) != block) break;
    store_int4_key_row(key_row(t), rows, scales, slots[t] % kv.block_size, kv.head_dim, lane);
    __syncwarp();  // the next row's requantization reads what this row's lanes wrote (each lane its own bytes)
  }
}

// One row of one side in its type; row scales at `scales` (bytes of the side's layer of scales).
__device__ __forceinline__ void store_side_row(KvDtype dtype, const float* src, void* rows, void* scales, size_t pool_row, int head_dim, int lane) {
  const size_t row_bytes = static_cast<size_t>(dtype == KvDtype::kInt4 ? head_dim / 2 : head_dim * kv_bytes(dtype));
  uint8_t* dst = static_cast<uint8_t*>(rows) + pool_row * row_bytes;
  float* row_scale = has_scales(dtype) ? static_cast<float*>(scales) + pool_row : nullptr;
  switch (dtype) {
    case KvDtype::kF32: return store_row<KvDtype::kF32>(src, dst, row_scale, head_dim, lane);
    case KvDtype::kF16: return store_row<KvDtype::kF16>(src, dst, row_scale, head_dim, lane);
    case KvDtype::kBF16: return store_row<KvDtype::kBF16>(src, dst, row_scale, head_dim, lane);
    case KvDtype::kInt8: return store_row<KvDtype::kInt8>(src, dst, row_scale, head_dim, lane);
    case KvDtype::kFp8E4M3: return store_row<KvDtype::kFp8E4M3>(src, dst, row_scale, head_dim, lane);
    case KvDtype::kInt4:
      return store_int4_value_row(src, dst, static_cast<uint16_t*>(scales) + pool_row * int4_groups(head_dim), head_dim, lane);
  }
}

// Token `token`'s K and V rows of KV head `head`, each side in its type. key_row(t) gives token t's K row of
// this head as the pool should store it: int4 K writes a block's run of tokens from the run's first warp.
template <typename KeyRow>
__device__ __forceinline__ void append_token_head(const PagedKv& kv, const int32_t* slots, int n_tokens, int token, int head, int lane,
                                                  KeyRow key_row, const float* v_row) {
  const int slot = slots[token];
  if (slot < 0) return;
  const size_t pool_row = (static_cast<size_t>(slot / kv.block_size) * kv.num_kv_heads + head) * kv.block_size + slot % kv.block_size;
  if (kv.k_dtype == KvDtype::kInt4) {
    int4_key_run(kv, slots, n_tokens, token, head, lane, key_row);
  } else {
    store_side_row(kv.k_dtype, key_row(token), kv.k, kv.k_scales, pool_row, kv.head_dim, lane);
  }
  // V inside the K rows (latent attention): the K row is the V row.
  if (kv.v != kv.k) store_side_row(kv.v_dtype, v_row, kv.v, kv.v_scales, pool_row, kv.head_dim, lane);
}

// One row of RoPE: rope.cu's pair rotation, the dims past rope_dim copied. Each lane writes the pairs it reads.
__device__ __forceinline__ void rotate_row(const float* src, float* dst, float position, const float* inverse_frequencies, int head_dim, int rope_dim,
                                           RopeLayout layout, int lane) {
  for (int pair = lane; pair < rope_dim / 2; pair += kWarpSize) rope_rotate_pair(src, dst, pair, rope_dim, layout, position * inverse_frequencies[pair]);
  for (int i = rope_dim + lane; i < head_dim; i += kWarpSize) dst[i] = src[i];
}

// ---- kernels ----
// The types are read at run time (uniform over the launch): one kernel for every K/V pair.
__global__ void __launch_bounds__(kWarps * kWarpSize) kv_append_kernel(KvAppendParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const int row = blockIdx.x * kWarps + threadIdx.x / kWarpSize;  // token * num_kv_heads + head
  const PagedKv& kv = p.kv;
  if (row >= p.n_tokens * kv.num_kv_heads) return;  // whole warps only
  const int token = row / kv.num_kv_heads, head = row % kv.num_kv_heads;
  const auto key_row = [&](int t) { return p.k + (static_cast<size_t>(t) * kv.num_kv_heads + head) * kv.head_dim; };
  append_token_head(kv, p.slots, p.n_tokens, token, head, lane, key_row, p.v + static_cast<size_t>(row) * kv.head_dim);
}

// Warps [0, n_tokens * num_kv_heads) append a (token, KV head) row, rotating K into the warp's staging row
// first (the pool stores rotated keys); the warps after rotate a (token, query head) row into q_out. The
// inputs are only read, so no warp waits on another.
__global__ void __launch_bounds__(kWarps * kWarpSize) rope_kv_append_kernel(RopeKvAppendParams p) {
  __shared__ float staging[kWarps][kMaxRopeKvHeadDim];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int item = blockIdx.x * kWarps + warp;
  const PagedKv& kv = p.kv;
  const int kv_items = p.n_tokens * kv.num_kv_heads;
  if (item >= kv_items + p.n_tokens * p.n_heads) return;  // whole warps only
  // The CPU computes the angle as (position * scale) * frequency in float, as rope.cu does.
  const auto position_of = [&](int t) { return static_cast<float>(p.positions[t]) * p.position_scale; };
  if (item >= kv_items) {
    const int token = (item - kv_items) / p.n_heads, head = (item - kv_items) % p.n_heads;
    const float* src = p.q + static_cast<size_t>(token) * p.q_stride + static_cast<size_t>(head) * kv.head_dim;
    float* dst = p.q_out + (static_cast<size_t>(token) * p.n_heads + head) * kv.head_dim;
    rotate_row(src, dst, position_of(token), p.inverse_frequencies, kv.head_dim, p.rope_dim, p.layout, lane);
    return;
  }
  const int token = item / kv.num_kv_heads, head = item % kv.num_kv_heads;
  float* rotated = staging[warp];
  const auto key_row = [&](int t) {
    __syncwarp();  // every lane is done reading the row staged before
    rotate_row(p.k + static_cast<size_t>(t) * p.kv_stride + static_cast<size_t>(head) * kv.head_dim, rotated, position_of(t), p.inverse_frequencies,
               kv.head_dim, p.rope_dim, p.layout, lane);
    __syncwarp();  // the store reads values other lanes rotated
    return static_cast<const float*>(rotated);
  };
  append_token_head(kv, p.slots, p.n_tokens, token, head, lane, key_row,
                    p.v + static_cast<size_t>(token) * p.kv_stride + static_cast<size_t>(head) * kv.head_dim);
}

bool valid_pool(const PagedKv& kv, int n_tokens) {
  if (n_tokens <= 0 || kv.num_kv_heads <= 0 || kv.head_dim <= 0 || kv.block_size <= 0) return false;
  // int4 rows pack two values a byte: an odd width would leave a half-written byte.
  if ((kv.k_dtype == KvDtype::kInt4 || kv.v_dtype == KvDtype::kInt4) && kv.head_dim % 2 != 0) return false;
  if (kv.v == kv.k && kv.v_dtype != kv.k_dtype) return false;
  return !kv_scales_missing(kv);
}

}  // namespace

// ---- launcher ----
cudaError_t launch_kv_append(const KvAppendParams& params, cudaStream_t stream) {
  if (!valid_pool(params.kv, params.n_tokens)) return cudaErrorInvalidValue;
  const unsigned grid = static_cast<unsigned>((params.n_tokens * params.kv.num_kv_heads + kWarps - 1) / kWarps);
  PAGEDLM_LAUNCH(kv_append_kernel, grid, kWarps * kWarpSize, 0, stream)(params);
  return cudaGetLastError();
}

cudaError_t launch_rope_kv_append(const RopeKvAppendParams& params, cudaStream_t stream) {
  const PagedKv& kv = params.kv;
  if (!valid_pool(kv, params.n_tokens) || kv.v == kv.k || kv.head_dim > kMaxRopeKvHeadDim || params.n_heads <= 0 || params.rope_dim <= 0 ||
      params.rope_dim % 2 != 0 || params.rope_dim > kv.head_dim) {
    return cudaErrorInvalidValue;
  }
  const int items = params.n_tokens * (kv.num_kv_heads + params.n_heads);
  PAGEDLM_LAUNCH(rope_kv_append_kernel, static_cast<unsigned>((items + kWarps - 1) / kWarps), kWarps * kWarpSize, 0, stream)(params);
  return cudaGetLastError();
}

}  // namespace pagedlm::cuda
