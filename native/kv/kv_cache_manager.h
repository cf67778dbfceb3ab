// Gives sequences the KV blocks their tokens need, through the BlockPool (the only owner of the counts).
// Block tables are append-only vectors of block ids held by the sequences. Engine thread only.
#pragma once

#include <vector>

#include "kv/block_pool.h"

namespace pagedlm {

class KvCacheManager {
 public:
  KvCacheManager(int32_t num_blocks, int32_t block_size) : pool_(num_blocks), block_size_(block_size) {}

  int32_t block_size() const { return block_size_; }
  int32_t blocks_for_tokens(int64_t tokens) const { return static_cast<int32_t>((tokens + block_size_ - 1) / block_size_); }

  // Grows `block_table` to cover `num_tokens` tokens. All or nothing: false (table unchanged) when the
  // pool lacks the blocks.
  bool allocate_slots(std::vector<BlockId>& block_table, int64_t num_tokens);
  // Releases every block of the table and clears it.
  void free(std::vector<BlockId>& block_table);

  const BlockPool& pool() const { return pool_; }

 private:
  BlockPool pool_;
  int32_t block_size_;
};

}  // namespace pagedlm
