#include "kv/kv_cache_manager.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace pagedlm {

PrefixMatch KvCacheManager::match_prefix(const std::vector<int32_t>& tokens, uint64_t salt) const {
  PrefixMatch match;
  const int32_t max_blocks = tokens.empty() ? 0 : static_cast<int32_t>((tokens.size() - 1) / block_size_);
  match.root = root_hash(salt);
  match.tokens = &tokens;
  BlockHash parent = match.root;
  for (int32_t b = 0; b < max_blocks; ++b) {
    const int32_t* block_tokens = tokens.data() + static_cast<size_t>(b) * block_size_;
    const BlockHash hash = hash_block(parent, block_tokens, block_size_);
    const BlockId id = pool_.find_cached(hash, parent, block_tokens);
    if (id == kNoBlock) {
      if (offload_ == nullptr || offload_->find(hash, parent, block_tokens) == OffloadTier::kNone) break;
      ++match.offloaded;
    } else {
      match.idle_blocks += pool_.ref_count(id) == 0;
    }
    match.blocks.push_back(id);
    match.hashes.push_back(hash);
    parent = hash;
  }
  const int32_t full_tokens = static_cast<int32_t>(match.blocks.size()) * block_size_;
  const int32_t partial_limit = std::min(block_size_ - 1, static_cast<int32_t>(tokens.size()) - 1 - full_tokens);
  if (partial_limit > 0 && partial_matches_) {
    match.partial_source = pool_.find_partial(parent, tokens.data() + full_tokens, partial_limit, &match.partial_tokens);
    if (match.partial_source != kNoBlock) match.idle_blocks += pool_.ref_count(match.partial_source) == 0;
  }
  match.num_tokens = full_tokens + match.partial_tokens;
  return match;
}

BlockCopy KvCacheManager::take_prefix(PrefixMatch& match, int32_t prompt_tokens, std::vector<BlockId>& block_table) {
  // Everything resident is held before a block is allocated for a restore, so that no restore evicts it.
  for (BlockId id : match.blocks) {
    if (id != kNoBlock) pool_.retain(id);
  }
  if (match.partial_source != kNoBlock) pool_.retain(match.partial_source);
  if (match.offloaded > 0) restore_offloaded(match);
  block_table.insert(block_table.end(), match.blocks.begin(), match.blocks.end());
  BlockCopy copy;
  if (match.partial_source != kNoBlock) {
    copy = {match.partial_source, pool_.allocate()};
    if (copy.to == kNoBlock) {  // no room left for the copy: the match ends with its full blocks
      pool_.release(copy.from);
      copy = {};
      match.num_tokens -= match.partial_tokens;
      match.partial_source = kNoBlock;
      match.partial_tokens = 0;
    } else {
      block_table.push_back(copy.to);
    }
  }
  ++counters_.queries;
  counters_.hits += match.num_tokens > 0;
  counters_.query_tokens += static_cast<uint64_t>(prompt_tokens);
  counters_.hit_tokens += static_cast<uint64_t>(match.num_tokens);
  return copy;
}

void KvCacheManager::restore_offloaded(PrefixMatch& match) {
  // Last block first, so the first to be restored is the most recently used: an eviction the restores below
  // cause (the memory tier full of this very chain) takes the block needed last, not the one needed next.
  for (size_t b = match.blocks.size(); b-- > 0;) {
    if (match.blocks[b] == kNoBlock) offload_->touch(match.hashes[b]);
  }
  size_t kept = match.blocks.size();
  for (size_t b = 0; b < match.blocks.size(); ++b) {
    if (match.blocks[b] != kNoBlock) continue;
    const BlockHash& parent = b == 0 ? match.root : match.hashes[b - 1];
    const int32_t* tokens = match.tokens->data() + b * static_cast<size_t>(block_size_);
    const BlockId fresh = pool_.allocate();
    if (fresh == kNoBlock || !offload_->restore(match.hashes[b], parent, tokens, fresh)) {
      if (fresh != kNoBlock) pool_.release(fresh);
      kept = b;
      break;
    }
    pool_.register_block(fresh, match.hashes[b], parent, tokens);
    match.blocks[b] = fresh;
  }
  if (kept == match.blocks.size()) return;
  // The chain breaks at `kept`: what follows it is no prefix of the prompt's computed part.
  for (size_t b = match.blocks.size(); b-- > kept + 1;) {
    if (match.blocks[b] != kNoBlock) pool_.release(match.blocks[b]);
  }
  if (match.partial_source != kNoBlock) pool_.release(match.partial_source);
  match.partial_source = kNoBlock;
  match.partial_tokens = 0;
  match.blocks.resize(kept);
  match.hashes.resize(kept);
  match.offloaded = 0;
  match.num_tokens = static_cast<int32_t>(kept) * block_size_;
}

int32_t KvCacheManager::allocate_slots(std::vector<BlockId>& block_table, int64_t num_tokens) {
  const int32_t needed = blocks_for_tokens(num_tokens) - static_cast<int32_t>(block_table.size());
  if (needed <= 0) return 0;
  if (needed > pool_.num_free()) return -1;
  for (int32_t i = 0; i < needed; ++i) block_table.push_back(pool_.allocate());
  return needed;
}

void KvCacheManager::cache_full_blocks(const std::vector<int32_t>& tokens, int32_t num_computed, uint64_t salt,
                                       const std::vector<BlockId>& block_table, std::vector<BlockHash>& hashes) {
  const size_t full_blocks = static_cast<size_t>(num_computed / block_size_);
  while (hashes.size() < full_blocks) {
    const size_t b = hashes.size();
    const BlockHash parent = b == 0 ? root_hash(salt) : hashes[b - 1];
    const int32_t* block_tokens = tokens.data() + b * block_size_;
    const BlockHash hash = hash_block(parent, block_tokens, block_size_);
    pool_.register_block(block_table[b], hash, parent, block_tokens);
    hashes.push_back(hash);
  }
}

bool KvCacheManager::adopt_imported(BlockId id, const BlockHash& hash, const BlockHash& parent, const int32_t* tokens) {
  const bool fresh = pool_.find_cached(hash, parent, tokens) == kNoBlock;
  if (fresh) pool_.register_block(id, hash, parent, tokens);
  pool_.release(id);
  return fresh;
}

void KvCacheManager::free(std::vector<BlockId>& block_table) {
  // Last block first: a chain's tail is then evicted before its head, which more requests share.
  for (auto it = block_table.rbegin(); it != block_table.rend(); ++it) {
    if (*it != kNoBlock) pool_.release(*it);
  }
  block_table.clear();
}

int32_t KvCacheManager::release_below(std::vector<BlockId>& block_table, int64_t first_needed) {
  const size_t passed = static_cast<size_t>(std::max<int64_t>(0, first_needed) / block_size_);
  int32_t released = 0;
  // Newest first, as free() does: a chain's tail is evicted before its head.
  for (size_t b = std::min(passed, block_table.size()); b-- > 0;) {
    if (block_table[b] == kNoBlock) break;  // released, with everything before it, by an earlier call
    pool_.release(block_table[b]);
    block_table[b] = kNoBlock;
    ++released;
  }
  return released;
}

int32_t KvCacheManager::truncate(std::vector<BlockId>& block_table, int64_t num_tokens) {
  const size_t keep = static_cast<size_t>(blocks_for_tokens(std::max<int64_t>(0, num_tokens)));
  int32_t released = 0;
  while (block_table.size() > keep) {
    if (block_table.back() != kNoBlock) pool_.release(block_table.back());
    block_table.pop_back();
    ++released;
  }
  return released;
}

void KvCacheManager::check_invariants(const std::vector<const std::vector<BlockId>*>& tables) const {
  pool_.check_invariants();
  std::vector<int32_t> holders(pool_.num_blocks(), 0);
  for (const auto* table : tables) {
    for (BlockId id : *table) {
      if (id != kNoBlock) ++holders[id];
    }
  }
  for (BlockId id = 0; id < pool_.num_blocks(); ++id) {
    if (holders[id] != pool_.ref_count(id)) {
      std::fprintf(stderr, "KvCacheManager invariant violated: block %d has ref count %d but %d tables hold it\n", id,
                   pool_.ref_count(id), holders[id]);
      std::abort();
    }
  }
}

}  // namespace pagedlm
