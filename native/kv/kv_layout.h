// Shape of the paged KV pool, shared by the CPU backend, the CUDA kernels and the memory accounting.
// Per layer, K and V are each [num_blocks][num_kv_heads][block_size][head_dim]: one head's tokens within a
// block are contiguous, so attention streams them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pagedlm {

enum class KvDtype { kF32, kF16 };

inline size_t kv_dtype_bytes(KvDtype dtype) { return dtype == KvDtype::kF32 ? 4 : 2; }
inline const char* kv_dtype_name(KvDtype dtype) { return dtype == KvDtype::kF32 ? "f32" : "f16"; }

struct KvLayout {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;
  int32_t num_blocks = 0;
  KvDtype dtype = KvDtype::kF16;

  // Elements of one of K or V for one layer and one block.
  size_t block_elements() const { return static_cast<size_t>(num_kv_heads) * block_size * head_dim; }
  size_t layer_elements() const { return block_elements() * num_blocks; }
  // 2 (K and V) x layers x kv_heads x head_dim x bytes per element.
  size_t bytes_per_token() const { return 2 * static_cast<size_t>(num_layers) * num_kv_heads * head_dim * kv_dtype_bytes(dtype); }
  size_t bytes_per_block() const { return bytes_per_token() * block_size; }
  size_t total_bytes() const { return bytes_per_block() * num_blocks; }
  // Offset of (block, head, slot) within one layer's K or V array.
  size_t offset(int32_t block, int32_t head, int32_t slot) const {
    return ((static_cast<size_t>(block) * num_kv_heads + head) * block_size + slot) * head_dim;
  }
};

}  // namespace pagedlm
