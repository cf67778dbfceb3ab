#include "kv/kv_cache_manager.h"

namespace pagedlm {

bool KvCacheManager::allocate_slots(std::vector<BlockId>& block_table, int64_t num_tokens) {
  const int32_t needed = blocks_for_tokens(num_tokens) - static_cast<int32_t>(block_table.size());
  if (needed <= 0) return true;
  if (needed > pool_.num_free()) return false;
  for (int32_t i = 0; i < needed; ++i) block_table.push_back(pool_.allocate());
  return true;
}

void KvCacheManager::free(std::vector<BlockId>& block_table) {
  // Last block first, so that a prefix's head stays cached longest once the free queue is LRU.
  for (auto it = block_table.rbegin(); it != block_table.rend(); ++it) pool_.release(*it);
  block_table.clear();
}

}  // namespace pagedlm
