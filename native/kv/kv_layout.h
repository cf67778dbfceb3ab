// Shape of the paged KV pool, shared by the CPU backend, the CUDA kernels and the memory accounting.
// Per layer, K is [num_blocks][num_kv_heads][block_size] rows of head_dim elements of `k_dtype`, V the same in
// `v_dtype`: one head's tokens within a block (a block piece) are contiguous, so attention streams them.
// Scaled types add, per layer, [num_blocks][num_kv_heads] pieces of scales (kv_piece_scale_bytes each): int8
// and fp8 a float per (token, head) row, int4 K an f16 per channel of the piece, int4 V an f16 per group of
// kInt4ValueGroup values of each row.
// With v_in_k (multi-head latent attention) there is no V array: a V row is the first v_dim elements of its K
// row (and shares its scale; v_dtype equals k_dtype), so a token costs one K row per layer and KV head.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kv/kv_dtype.h"

namespace pagedlm {

struct KvLayout {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;
  int32_t num_blocks = 0;
  KvDtype k_dtype = KvDtype::kF16;
  KvDtype v_dtype = KvDtype::kF16;
  int32_t v_dim = 0;     // width of a V row; 0: head_dim
  bool v_in_k = false;   // V rows are the leading v_dim elements of the K rows; no V array is stored

  int32_t v_width() const { return v_dim > 0 ? v_dim : head_dim; }
  // The arrays each layer stores: K and V, or K alone.
  int32_t arrays_per_layer() const { return v_in_k ? 1 : 2; }

  KvTypes types() const { return {k_dtype, v_dtype}; }
  // Whether each row's bytes depend on that row alone. int4 K's channel scales also cover the rows written
  // after it in its block, so a block's first rows, copied without the rest, are not what a cold run writes.
  bool rows_independent() const { return k_dtype != KvDtype::kInt4; }
  KvDtype dtype_of(KvRole role) const { return role == KvRole::kKey ? k_dtype : v_dtype; }
  // Elements of one of K or V for one layer and one block.
  size_t block_elements() const { return static_cast<size_t>(num_kv_heads) * block_size * head_dim; }
  size_t layer_elements() const { return block_elements() * num_blocks; }
  // Rows (token, head) of one of K or V for one layer.
  size_t layer_rows() const { return static_cast<size_t>(num_blocks) * num_kv_heads * block_size; }
  // Block pieces (block, head) of one of K or V over all layers, and the index of one.
  size_t pieces() const { return static_cast<size_t>(num_layers) * num_blocks * num_kv_heads; }
  size_t piece_index(int32_t layer, int32_t block, int32_t head) const {
    return (static_cast<size_t>(layer) * num_blocks + block) * num_kv_heads + head;
  }
  // Bytes of one row, of one piece's rows and of one piece's scales, of K or V (0 for V inside K).
  size_t row_bytes(KvRole role) const { return kv_row_bytes(dtype_of(role), head_dim); }
  size_t piece_bytes(KvRole role) const { return stores(role) ? row_bytes(role) * block_size : 0; }
  size_t piece_scale_bytes(KvRole role) const { return stores(role) ? kv_piece_scale_bytes(dtype_of(role), role, head_dim, block_size) : 0; }
  bool stores(KvRole role) const { return role == KvRole::kKey || !v_in_k; }
  // layers x kv_heads x (K piece + its scales + V piece + its scales): exact, int4 K's per-channel scales
  // belonging to the block rather than to any one token.
  size_t bytes_per_block() const {
    return static_cast<size_t>(num_layers) * num_kv_heads *
           (piece_bytes(KvRole::kKey) + piece_scale_bytes(KvRole::kKey) + piece_bytes(KvRole::kValue) + piece_scale_bytes(KvRole::kValue));
  }
  // bytes_per_block / block_size, rounded up.
  size_t bytes_per_token() const { return (bytes_per_block() + block_size - 1) / block_size; }
  size_t total_bytes() const { return bytes_per_block() * num_blocks; }
  // Element offset of (block, head, slot) within one layer's K or V array; divided by head_dim, its row.
  size_t offset(int32_t block, int32_t head, int32_t slot) const {
    return ((static_cast<size_t>(block) * num_kv_heads + head) * block_size + slot) * head_dim;
  }

  static size_t kv_bytes_per_token(int64_t layers, int64_t kv_heads, int64_t head_dim, KvTypes types, int32_t block_size, bool v_in_k = false) {
    KvLayout layout{static_cast<int32_t>(layers), static_cast<int32_t>(kv_heads), static_cast<int32_t>(head_dim), block_size, 0, types.k, types.v};
    layout.v_in_k = v_in_k;
    return layout.bytes_per_token();
  }
};

}  // namespace pagedlm
