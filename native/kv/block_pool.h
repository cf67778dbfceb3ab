// The only owner of KV block bookkeeping: reference counts and the free queue. Everyone else holds block
// ids. A block may be referenced by several sequences (shared prefixes); it returns to the free queue when
// its last reference goes. The free queue is kept in least-recently-freed order so that, once blocks carry
// cached prefixes, the oldest is reused first.
// Engine thread only.
#pragma once

#include <cstdint>
#include <vector>

namespace pagedlm {

using BlockId = int32_t;
constexpr BlockId kNoBlock = -1;

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t num_free() const { return num_free_; }

  // Takes the least recently freed block (ref count 1); kNoBlock when none is free. O(1).
  BlockId allocate();
  // Adds a reference to a block in use or in the free queue. O(1).
  void retain(BlockId id);
  // Drops a reference; at zero the block goes to the back of the free queue. O(1).
  void release(BlockId id);
  int32_t ref_count(BlockId id) const { return ref_counts_[id]; }

  // Aborts with a message when the counts and the free queue disagree. For tests.
  void check_invariants() const;

 private:
  void unlink(BlockId id);
  void push_back(BlockId id);

  std::vector<int32_t> ref_counts_;  // [num_blocks]
  std::vector<BlockId> prev_;        // [num_blocks] free-queue links; kNoBlock at the ends
  std::vector<BlockId> next_;        // [num_blocks]
  BlockId head_ = kNoBlock;          // least recently freed
  BlockId tail_ = kNoBlock;
  int32_t num_free_ = 0;
};

}  // namespace pagedlm
