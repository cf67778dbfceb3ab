#include "speculative/cached_ngram_index.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>

#include "speculative/ngram_hash.h"

namespace pagedlm::speculative {

namespace {
void invariant(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "CachedNgramIndex invariant violated: %s\n", what);
    std::abort();
  }
}
}  // namespace

CachedNgramIndex::CachedNgramIndex(const BlockPool& pool, int32_t key_tokens, int32_t max_match)
    : pool_(pool),
      block_size_(pool.block_size()),
      key_tokens_(key_tokens),
      max_match_(max_match),
      newer_(static_cast<size_t>(pool.num_blocks()) * pool.block_size(), kNoSlot),
      older_(newer_.size(), kNoSlot),
      indexed_(static_cast<size_t>(pool.num_blocks()), 0),
      root_(static_cast<size_t>(pool.num_blocks())) {
  assert(key_tokens >= 1 && key_tokens <= block_size_ && max_match >= key_tokens);
}

uint64_t CachedNgramIndex::key_at(BlockId id, int32_t end) const {
  return ngram_hash(pool_.tokens_of(id) + end - key_tokens_ + 1, key_tokens_);
}

BlockId CachedNgramIndex::indexed_block(const BlockHash& hash) const {
  const BlockId id = pool_.registered_block(hash);
  return id != kNoBlock && indexed_[id] ? id : kNoBlock;
}

BlockId CachedNgramIndex::parent_block(BlockId id) const {
  const BlockId parent = indexed_block(pool_.parent_of(id));
  return parent != kNoBlock && root_[parent] == root_[id] ? parent : kNoBlock;
}

BlockId CachedNgramIndex::child_block(BlockId id) const {
  BlockId found = kNoBlock;
  pool_.for_each_child(pool_.hash_of(id), [&](BlockId child) {
    if (found == kNoBlock && indexed_[child] && root_[child] == root_[id]) found = child;
  });
  return found;
}

void CachedNgramIndex::link(int32_t slot, uint64_t key) {
  const auto [newest, inserted] = newest_.try_emplace(key, slot);
  if (!inserted) {
    older_[slot] = newest->second;
    newer_[newest->second] = slot;
    newest->second = slot;
  }
}

void CachedNgramIndex::unlink(int32_t slot, uint64_t key) {
  const int32_t newer = newer_[slot], older = older_[slot];
  if (older != kNoSlot) newer_[older] = newer;
  if (newer != kNoSlot) {
    older_[newer] = older;
  } else if (older != kNoSlot) {
    newest_.find(key)->second = older;
  } else {
    newest_.erase(key);
  }
  newer_[slot] = older_[slot] = kNoSlot;
}

void CachedNgramIndex::on_registered(BlockId id) {
  if (indexed_[id]) return;
  const BlockId parent = indexed_block(pool_.parent_of(id));
  root_[id] = parent != kNoBlock ? root_[parent] : pool_.parent_of(id);
  const int32_t first_slot = id * block_size_;
  for (int32_t end = key_tokens_ - 1; end < block_size_; ++end) link(first_slot + end, key_at(id, end));
  indexed_[id] = 1;
  ++indexed_blocks_;
  pass_root_to_children(id);
}

void CachedNgramIndex::pass_root_to_children(BlockId id) {
  // Children registered before their parent (a cache file's import order) hold a stand-in root.
  std::vector<BlockId> pending;
  pool_.for_each_child(pool_.hash_of(id), [&](BlockId child) { pending.push_back(child); });
  while (!pending.empty()) {
    const BlockId child = pending.back();
    pending.pop_back();
    const BlockId parent = indexed_block(pool_.parent_of(child));
    if (!indexed_[child] || parent == kNoBlock || root_[child] == root_[parent]) continue;
    root_[child] = root_[parent];
    pool_.for_each_child(pool_.hash_of(child), [&](BlockId grandchild) { pending.push_back(grandchild); });
  }
}

void CachedNgramIndex::on_forgotten(BlockId id) {
  if (!indexed_[id]) return;
  const int32_t first_slot = id * block_size_;
  for (int32_t end = key_tokens_ - 1; end < block_size_; ++end) unlink(first_slot + end, key_at(id, end));
  indexed_[id] = 0;
  --indexed_blocks_;
}

void CachedNgramIndex::index_registered_blocks() {
  // Parents first where the ids allow; pass_root_to_children mends the rest.
  for (BlockId id : pool_.registered_blocks()) on_registered(id);
}

int32_t CachedNgramIndex::match_length(const int32_t* tokens, size_t count, BlockId id, int32_t end) const {
  const int32_t* tail = tokens + count - key_tokens_;
  if (!std::equal(tail, tail + key_tokens_, pool_.tokens_of(id) + end - key_tokens_ + 1)) return 0;  // a collision
  int32_t length = key_tokens_;
  BlockId block = id;
  int32_t offset = end - key_tokens_;  // the cached token before the match
  while (length < max_match_ && static_cast<size_t>(length) < count) {
    if (offset < 0) {
      block = parent_block(block);
      if (block == kNoBlock) break;
      offset = block_size_ - 1;
    }
    if (pool_.tokens_of(block)[offset] != tokens[count - 1 - length]) break;
    ++length;
    --offset;
  }
  return length;
}

int32_t CachedNgramIndex::lookup(const int32_t* tokens, size_t count, const BlockHash& root, int32_t max_tokens,
                                 std::vector<int32_t>& out) const {
  out.clear();
  if (count < static_cast<size_t>(key_tokens_) || max_tokens <= 0) return 0;
  const auto newest = newest_.find(ngram_hash(tokens + count - key_tokens_, key_tokens_));
  if (newest == newest_.end()) return 0;
  int32_t best_length = 0, best_slot = kNoSlot;
  int32_t slot = newest->second;
  for (int32_t seen = 0; slot != kNoSlot && seen < kMaxCandidates && best_length < max_match_;
       ++seen, slot = older_[slot]) {
    const BlockId id = slot / block_size_;
    const int32_t end = slot % block_size_;
    if (root_[id] != root) continue;
    const int32_t length = match_length(tokens, count, id, end);
    if (length <= best_length) continue;
    if (end == block_size_ - 1 && child_block(id) == kNoBlock) continue;  // nothing cached follows it
    best_length = length;
    best_slot = slot;
  }
  if (best_slot == kNoSlot) return 0;
  BlockId block = best_slot / block_size_;
  int32_t offset = best_slot % block_size_ + 1;
  while (static_cast<int32_t>(out.size()) < max_tokens) {
    if (offset == block_size_) {
      block = child_block(block);
      if (block == kNoBlock) break;
      offset = 0;
    }
    out.push_back(pool_.tokens_of(block)[offset++]);
  }
  return best_length;
}

void CachedNgramIndex::check_invariants() const {
  int32_t indexed = 0;
  for (BlockId id = 0; id < pool_.num_blocks(); ++id) {
    invariant(static_cast<bool>(indexed_[id]) == pool_.is_registered(id), "indexed blocks differ from registered ones");
    indexed += indexed_[id];
    const int32_t first_slot = id * block_size_;
    for (int32_t end = 0; end < block_size_; ++end) {
      const int32_t slot = first_slot + end;
      if (!indexed_[id] || end < key_tokens_ - 1) {
        invariant(newer_[slot] == kNoSlot && older_[slot] == kNoSlot, "an unindexed slot is linked");
        continue;
      }
      const uint64_t key = key_at(id, end);
      if (newer_[slot] == kNoSlot) {
        const auto newest = newest_.find(key);
        invariant(newest != newest_.end() && newest->second == slot, "a chain's newest slot is not its head");
      } else {
        invariant(older_[newer_[slot]] == slot, "a chain's links disagree");
        invariant(key_at(newer_[slot] / block_size_, newer_[slot] % block_size_) == key, "a chain mixes grams");
      }
    }
    if (!indexed_[id]) continue;
    const BlockId parent = indexed_block(pool_.parent_of(id));
    invariant(parent == kNoBlock || root_[id] == root_[parent], "a block's root differs from its registered parent's");
  }
  invariant(indexed == indexed_blocks_, "the indexed block count is wrong");
  size_t chained = 0;
  for (const auto& [key, newest] : newest_) {
    for (int32_t slot = newest; slot != kNoSlot; slot = older_[slot]) {
      invariant(indexed_[slot / block_size_], "a chain holds an unindexed slot");
      invariant(++chained <= newer_.size(), "a chain has a cycle");
    }
  }
  const size_t keyed_per_block = static_cast<size_t>(block_size_ - key_tokens_ + 1);
  invariant(chained == static_cast<size_t>(indexed_blocks_) * keyed_per_block, "a linked slot is in no chain");
}

}  // namespace pagedlm::speculative
