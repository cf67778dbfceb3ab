// Shape of the paged KV pool, shared by the CPU backend, the CUDA kernels and the memory accounting.
// Per layer, K and V are each [num_blocks][num_kv_heads][block_size][head_dim] elements of `dtype`: one
// head's tokens within a block are contiguous, so attention streams them. int8/fp8 pools add, per layer,
// K and V scales of [num_blocks][num_kv_heads][block_size] floats: one per (token, head) row.
// With v_in_k (multi-head latent attention) there is no V array: a V row is the first v_dim elements of its K
// row (and shares its scale), so a token costs one K row per layer and KV head instead of a K and a V row.
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
  KvDtype dtype = KvDtype::kF16;
  int32_t v_dim = 0;     // width of a V row; 0: head_dim
  bool v_in_k = false;   // V rows are the leading v_dim elements of the K rows; no V array is stored

  int32_t v_width() const { return v_dim > 0 ? v_dim : head_dim; }
  // The arrays each layer stores: K and V, or K alone.
  int32_t arrays_per_layer() const { return v_in_k ? 1 : 2; }

  // Elements of one of K or V for one layer and one block.
  size_t block_elements() const { return static_cast<size_t>(num_kv_heads) * block_size * head_dim; }
  size_t layer_elements() const { return block_elements() * num_blocks; }
  // Rows (token, head) of one of K or V for one layer: the number of scales.
  size_t layer_rows() const { return static_cast<size_t>(num_blocks) * num_kv_heads * block_size; }
  // arrays_per_layer (K and V, or K alone) x layers x kv_heads x (head_dim x bytes per element + scale bytes).
  size_t bytes_per_token() const { return kv_bytes_per_token(num_layers, num_kv_heads, head_dim, dtype) / 2 * arrays_per_layer(); }
  size_t bytes_per_block() const { return bytes_per_token() * block_size; }
  size_t total_bytes() const { return bytes_per_block() * num_blocks; }
  // Element offset of (block, head, slot) within one layer's K or V array; divided by head_dim, its row.
  size_t offset(int32_t block, int32_t head, int32_t slot) const {
    return ((static_cast<size_t>(block) * num_kv_heads + head) * block_size + slot) * head_dim;
  }

  static size_t kv_bytes_per_token(int64_t layers, int64_t kv_heads, int64_t head_dim, KvDtype dtype) {
    const size_t row = static_cast<size_t>(head_dim) * kv_dtype_bytes(dtype) + (kv_dtype_has_scales(dtype) ? sizeof(float) : 0);
    return 2 * static_cast<size_t>(layers) * static_cast<size_t>(kv_heads) * row;
  }
};

}  // namespace pagedlm
