#include "kv/block_pool.h"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace pagedlm {

namespace {
void invariant(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "BlockPool invariant violated: %s\n", what);
    std::abort();
  }
}
}  // namespace

BlockPool::BlockPool(int32_t num_blocks, int32_t block_size)
    : block_size_(block_size),
      ref_counts_(num_blocks, 0),
      prev_(num_blocks, kNoBlock),
      next_(num_blocks, kNoBlock),
      entries_(num_blocks),
      tokens_(static_cast<size_t>(num_blocks) * block_size, 0) {
  for (BlockId id = 0; id < num_blocks; ++id) push_back(id);
}

void BlockPool::push_back(BlockId id) {
  prev_[id] = tail_;
  next_[id] = kNoBlock;
  if (tail_ != kNoBlock) {
    next_[tail_] = id;
  } else {
    head_ = id;
  }
  tail_ = id;
  ++num_free_;
}

void BlockPool::push_front(BlockId id) {
  next_[id] = head_;
  prev_[id] = kNoBlock;
  if (head_ != kNoBlock) {
    prev_[head_] = id;
  } else {
    tail_ = id;
  }
  head_ = id;
  ++num_free_;
}

void BlockPool::unlink(BlockId id) {
  if (prev_[id] != kNoBlock) {
    next_[prev_[id]] = next_[id];
  } else {
    head_ = next_[id];
  }
  if (next_[id] != kNoBlock) {
    prev_[next_[id]] = prev_[id];
  } else {
    tail_ = prev_[id];
  }
  prev_[id] = next_[id] = kNoBlock;
  --num_free_;
}

void BlockPool::forget(BlockId id) {
  if (observer_ != nullptr) observer_->on_forgotten(id);
  index_.erase(entries_[id].hash);
  auto [child, end] = children_.equal_range(entries_[id].parent);
  while (child->second != id) ++child;  // registered, so listed under its parent
  children_.erase(child);
  entries_[id] = Entry{};
}

BlockId BlockPool::allocate() {
  if (head_ == kNoBlock) return kNoBlock;
  const BlockId id = head_;
  unlink(id);
  if (entries_[id].registered) {
    if (eviction_listener_ != nullptr) eviction_listener_->on_evict(id, entries_[id].hash, entries_[id].parent, tokens_of(id));
    forget(id);
    --num_cached_free_;
    ++evictions_;
  }
  ref_counts_[id] = 1;
  return id;
}

void BlockPool::retain(BlockId id) {
  assert(id >= 0 && id < num_blocks());
  if (ref_counts_[id]++ == 0) {
    unlink(id);
    if (entries_[id].registered) --num_cached_free_;
  }
}

void BlockPool::release(BlockId id) {
  assert(id >= 0 && id < num_blocks() && ref_counts_[id] > 0);  // a double free is a bug in the caller
  if (--ref_counts_[id] != 0) return;
  if (entries_[id].registered) {
    push_back(id);
    ++num_cached_free_;
  } else {
    push_front(id);
  }
}

BlockId BlockPool::find_cached(const BlockHash& hash, const BlockHash& parent, const int32_t* tokens) const {
  const auto it = index_.find(hash);
  if (it == index_.end()) return kNoBlock;
  const BlockId id = it->second;
  const Entry& e = entries_[id];
  if (e.parent != parent || !std::equal(tokens, tokens + block_size_, tokens_of(id))) return kNoBlock;  // a collision
  return id;
}

void BlockPool::register_block(BlockId id, const BlockHash& hash, const BlockHash& parent, const int32_t* tokens) {
  assert(ref_counts_[id] > 0);
  if (entries_[id].registered || index_.count(hash) != 0) return;
  entries_[id] = Entry{true, hash, parent};
  std::copy(tokens, tokens + block_size_, tokens_.begin() + static_cast<std::ptrdiff_t>(id) * block_size_);
  index_.emplace(hash, id);
  children_.emplace(parent, id);
  if (observer_ != nullptr) observer_->on_registered(id);
}

BlockId BlockPool::find_partial(const BlockHash& parent, const int32_t* tokens, int32_t limit, int32_t* matched) const {
  BlockId best = kNoBlock;
  *matched = 0;
  auto [child, end] = children_.equal_range(parent);
  for (; child != end; ++child) {
    const int32_t* cached = tokens_of(child->second);
    const int32_t common = static_cast<int32_t>(std::mismatch(tokens, tokens + limit, cached).first - tokens);
    if (common > *matched) {
      best = child->second;
      *matched = common;
    }
  }
  return best;
}

std::vector<BlockId> BlockPool::registered_blocks() const {
  std::vector<BlockId> ids;
  for (BlockId id = 0; id < num_blocks(); ++id) {
    if (entries_[id].registered) ids.push_back(id);
  }
  return ids;
}

int32_t BlockPool::clear_cache() {
  int32_t cleared = 0;
  for (BlockId id = 0; id < num_blocks(); ++id) {
    if (ref_counts_[id] != 0 || !entries_[id].registered) continue;
    forget(id);
    unlink(id);
    push_front(id);
    ++cleared;
  }
  num_cached_free_ -= cleared;
  return cleared;
}

void BlockPool::check_invariants() const {
  int32_t queued = 0;
  BlockId previous = kNoBlock;
  for (BlockId id = head_; id != kNoBlock; id = next_[id]) {
    invariant(ref_counts_[id] == 0, "a queued block has references");
    invariant(prev_[id] == previous, "free queue back link broken");
    previous = id;
    invariant(++queued <= num_blocks(), "free queue has a cycle");
  }
  invariant(previous == tail_, "free queue tail is wrong");
  invariant(queued == num_free_, "free count disagrees with the queue");
  int32_t unreferenced = 0, cached_free = 0, registered = 0;
  for (BlockId id = 0; id < num_blocks(); ++id) {
    invariant(ref_counts_[id] >= 0, "negative reference count");
    unreferenced += ref_counts_[id] == 0;
    if (!entries_[id].registered) continue;
    ++registered;
    cached_free += ref_counts_[id] == 0;
    const auto it = index_.find(entries_[id].hash);
    invariant(it != index_.end() && it->second == id, "a registered block is missing from the hash index");
    invariant(hash_block(entries_[id].parent, tokens_of(id), block_size_) == entries_[id].hash, "a cached hash does not match its tokens");
    const auto [first, end] = children_.equal_range(entries_[id].parent);
    invariant(std::count_if(first, end, [&](const auto& child) { return child.second == id; }) == 1, "a registered block is not listed once under its parent");
  }
  invariant(unreferenced == num_free_, "a block with no references is missing from the free queue");
  invariant(cached_free == num_cached_free_, "cached block count is wrong");
  invariant(registered == static_cast<int32_t>(index_.size()), "the hash index holds blocks that are not registered");
  invariant(registered == static_cast<int32_t>(children_.size()), "the parent index holds blocks that are not registered");
}

}  // namespace pagedlm
