// The only owner of KV block bookkeeping: reference counts, the free queue and the prefix-cache index.
// Everyone else holds block ids.
//
// A block is in one of three states:
//   in use     ref > 0 (held by one or more block tables; shared prefixes have ref > 1)
//   cached     ref == 0 and registered under a hash: its K/V still hold a prefix; reusable by a hit
//   free       ref == 0 and not registered
// Cached and free blocks both sit in the free queue. Free ones go to its front and cached ones to its back,
// so allocation takes a free block first and otherwise evicts the least recently released cached block.
// Engine thread only.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "kv/block_hash.h"

namespace pagedlm {

using BlockId = int32_t;
constexpr BlockId kNoBlock = -1;

// Told when a block joins or leaves the prefix-cache index, so that something built over cached token ids
// (the n-gram proposer's CachedNgramIndex) follows the cache exactly. Called inside the pool's operations:
// it may read the pool but never change it.
class BlockObserver {
 public:
  virtual ~BlockObserver() = default;
  // `id` was just registered: hash_of, parent_of and tokens_of answer for it.
  virtual void on_registered(BlockId id) = 0;
  // `id` is about to be unregistered (evicted or cleared): hash_of, parent_of and tokens_of still answer.
  virtual void on_forgotten(BlockId id) = 0;
};

// Told when allocation is about to evict a cached block, while its K/V are still in the pool: the offload
// tiers copy it out (offload_store.h). Called inside allocate(): it may read the pool but never change it.
class EvictionListener {
 public:
  virtual ~EvictionListener() = default;
  virtual void on_evict(BlockId id, const BlockHash& hash, const BlockHash& parent, const int32_t* tokens) = 0;
};

class BlockPool {
 public:
  BlockPool(int32_t num_blocks, int32_t block_size);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t block_size() const { return block_size_; }
  int32_t num_free() const { return num_free_; }            // allocatable: free + cached
  int32_t num_cached() const { return num_cached_free_; }   // cached (evictable) among them
  int32_t num_in_use() const { return num_blocks() - num_free_; }
  uint64_t evictions() const { return evictions_; }

  // Takes a block from the front of the free queue (evicting it if cached) with ref count 1;
  // kNoBlock when none is left. O(1).
  BlockId allocate();
  // Adds a reference to a block in use or waiting in the free queue (a cache hit). O(1).
  void retain(BlockId id);
  // Drops a reference; at zero the block joins the free queue. O(1).
  void release(BlockId id);
  int32_t ref_count(BlockId id) const { return ref_counts_[id]; }

  // The cached block holding `tokens` after `parent`, or kNoBlock.
  BlockId find_cached(const BlockHash& hash, const BlockHash& parent, const int32_t* tokens) const;
  // The registered block after `parent` sharing the longest run of leading tokens with `tokens` (at most
  // `limit` of them, and at least one); kNoBlock when none shares any. `*matched` gets the run's length.
  BlockId find_partial(const BlockHash& parent, const int32_t* tokens, int32_t limit, int32_t* matched) const;
  // Registers a full block in use under `hash`. A hash already registered keeps its block.
  void register_block(BlockId id, const BlockHash& hash, const BlockHash& parent, const int32_t* tokens);
  bool is_registered(BlockId id) const { return entries_[id].registered; }
  // Every registered block (in use or cached), and what it was registered with.
  std::vector<BlockId> registered_blocks() const;
  const BlockHash& hash_of(BlockId id) const { return entries_[id].hash; }
  const BlockHash& parent_of(BlockId id) const { return entries_[id].parent; }
  const int32_t* tokens_of(BlockId id) const { return tokens_.data() + static_cast<size_t>(id) * block_size_; }
  // The block registered under `hash`, or kNoBlock.
  BlockId registered_block(const BlockHash& hash) const {
    const auto it = index_.find(hash);
    return it == index_.end() ? kNoBlock : it->second;
  }
  // Calls visit(BlockId) for each registered block whose parent hash is `parent`.
  template <typename Visit>
  void for_each_child(const BlockHash& parent, Visit&& visit) const {
    const auto [first, end] = children_.equal_range(parent);
    for (auto child = first; child != end; ++child) visit(child->second);
  }
  // At most one observer; nullptr detaches it. It sees registrations and removals from then on only.
  void set_observer(BlockObserver* observer) { observer_ = observer; }
  // At most one; nullptr detaches it. clear_cache() forgets blocks without telling it.
  void set_eviction_listener(EvictionListener* listener) { eviction_listener_ = listener; }
  // Forgets every cached (ref 0) block; returns how many.
  int32_t clear_cache();

  // Aborts with a message when counts, queue and index disagree. For tests.
  void check_invariants() const;

 private:
  struct Entry {
    bool registered = false;
    BlockHash hash;
    BlockHash parent;
  };
  void unlink(BlockId id);
  void push_back(BlockId id);
  void push_front(BlockId id);
  void forget(BlockId id);

  int32_t block_size_;
  std::vector<int32_t> ref_counts_;  // [num_blocks]
  std::vector<BlockId> prev_;        // [num_blocks] free-queue links; kNoBlock at the ends
  std::vector<BlockId> next_;        // [num_blocks]
  BlockId head_ = kNoBlock;          // next to allocate
  BlockId tail_ = kNoBlock;
  int32_t num_free_ = 0;
  int32_t num_cached_free_ = 0;
  uint64_t evictions_ = 0;
  std::vector<Entry> entries_;       // [num_blocks]
  std::vector<int32_t> tokens_;      // [num_blocks, block_size] token ids of registered blocks
  std::unordered_map<BlockHash, BlockId, BlockHashHasher> index_;
  // Registered blocks by their parent's hash: the continuations of a prefix, for partial matches.
  std::unordered_multimap<BlockHash, BlockId, BlockHashHasher> children_;
  BlockObserver* observer_ = nullptr;
  EvictionListener* eviction_listener_ = nullptr;
};

}  // namespace pagedlm
