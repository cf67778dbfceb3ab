#include "kv/block_pool.h"

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

BlockPool::BlockPool(int32_t num_blocks) : ref_counts_(num_blocks, 0), prev_(num_blocks, kNoBlock), next_(num_blocks, kNoBlock) {
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

BlockId BlockPool::allocate() {
  if (head_ == kNoBlock) return kNoBlock;
  const BlockId id = head_;
  unlink(id);
  ref_counts_[id] = 1;
  return id;
}

void BlockPool::retain(BlockId id) {
  assert(id >= 0 && id < num_blocks());
  if (ref_counts_[id]++ == 0) unlink(id);
}

void BlockPool::release(BlockId id) {
  assert(id >= 0 && id < num_blocks() && ref_counts_[id] > 0);  // a double free is a bug in the caller
  if (--ref_counts_[id] == 0) push_back(id);
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
  int32_t unreferenced = 0;
  for (int32_t count : ref_counts_) {
    invariant(count >= 0, "negative reference count");
    unreferenced += count == 0;
  }
  invariant(unreferenced == num_free_, "a block with no references is missing from the free queue");
}

}  // namespace pagedlm
