// Gives sequences the KV blocks their tokens need and shares full blocks between sequences through the
// prefix cache. All reference counting goes through the BlockPool; block tables are vectors of block ids
// held by the sequences, growing at the end (cut back there only by truncate), where kNoBlock marks a block
// released because every layer's sliding window has passed it (release_below). Engine thread only.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/block_pool.h"
#include "kv/offload_store.h"

namespace pagedlm {

// The cached blocks a prompt can reuse, found by lookup and not yet taken.
struct PrefixMatch {
  std::vector<BlockId> blocks;
  std::vector<BlockHash> hashes;  // hash of each matched block
  // A cached block continuing the matched chain whose first partial_tokens tokens (fewer than a block)
  // continue the prompt too: the sequence gets a copy of it, so a prefix that ends mid-block (a system
  // prompt followed by different questions) is reused to its last token. kNoBlock when none.
  BlockId partial_source = kNoBlock;
  int32_t partial_tokens = 0;
  int32_t num_tokens = 0;         // blocks.size() * block_size + partial_tokens
  int32_t idle_blocks = 0;        // matched blocks (and the partial source) now at ref 0: taking them shrinks the free count
  // Of `blocks`, those only an offload tier holds (kNoBlock there): taking them takes a fresh block each.
  int32_t offloaded = 0;
  BlockHash root;                 // the first block's parent
  const std::vector<int32_t>* tokens = nullptr;  // the prompt matched
  int32_t resident_blocks() const { return static_cast<int32_t>(blocks.size()) - offloaded; }
};

// A block the caller copies before computing into the destination: `from` stays held (ref + 1) until
// release_copy_source, so that no allocation can evict it first.
struct BlockCopy {
  BlockId from = kNoBlock;
  BlockId to = kNoBlock;
};

struct PrefixCacheCounters {
  uint64_t queries = 0;        // requests that looked up the cache
  uint64_t hits = 0;           // of those, requests that reused at least one block
  uint64_t query_tokens = 0;   // prompt tokens looked up
  uint64_t hit_tokens = 0;     // prompt tokens served from the cache
};

class KvCacheManager {
 public:
  // `partial_matches` false: only whole cached blocks match (a pool whose rows are not independent,
  // KvLayout::rows_independent).
  KvCacheManager(int32_t num_blocks, int32_t block_size, bool partial_matches = true)
      : pool_(num_blocks, block_size), block_size_(block_size), partial_matches_(partial_matches) {}

  int32_t block_size() const { return block_size_; }
  int32_t blocks_for_tokens(int64_t tokens) const { return static_cast<int32_t>((tokens + block_size_ - 1) / block_size_); }

  // Longest chain of cached full blocks at the start of `tokens`, then the longest partial continuation,
  // leaving at least the last token to compute (it must run to produce logits).
  PrefixMatch match_prefix(const std::vector<int32_t>& tokens, uint64_t salt) const;
  // Takes the matched blocks (ref + 1) as the start of an empty block table, restoring the offloaded ones
  // into fresh blocks, plus a fresh block for a partial match, which the caller fills with the returned
  // copy (from == kNoBlock: nothing to copy). A restore that fails cuts the match short before that block
  // (`match` says what was taken). Counts the query. The tokens `match` was made from must still be alive.
  BlockCopy take_prefix(PrefixMatch& match, int32_t prompt_tokens, std::vector<BlockId>& block_table);
  // Drops the hold take_prefix put on a copy's source, once the copy ran.
  void release_copy_source(const BlockCopy& copy) { pool_.release(copy.from); }

  // Grows `block_table` to cover `num_tokens` tokens; returns how many blocks it took, or -1 (table
  // unchanged) when the pool lacks them.
  int32_t allocate_slots(std::vector<BlockId>& block_table, int64_t num_tokens);
  // Registers the sequence's newly completed blocks in the prefix cache. `hashes` holds the hashes of the
  // blocks registered so far and grows; `tokens[0, num_computed)` have their K/V in the pool.
  void cache_full_blocks(const std::vector<int32_t>& tokens, int32_t num_computed, uint64_t salt,
                         const std::vector<BlockId>& block_table, std::vector<BlockHash>& hashes);
  // Adds a reference to each block (a pin holding a prefix; a fork sharing its parent's table).
  void retain(const std::vector<BlockId>& blocks) {
    for (BlockId id : blocks) {
      if (id != kNoBlock) pool_.retain(id);
    }
  }
  // Releases every block of the table and clears it. Registered blocks stay cached until evicted.
  void free(std::vector<BlockId>& block_table);
  // Releases the table's blocks that hold only positions below `first_needed` and marks them kNoBlock:
  // a model whose every layer attends to a sliding window never reads them again. Registered blocks stay
  // cached (at ref 0, evictable) for prefix hits. Returns how many it released.
  int32_t release_below(std::vector<BlockId>& block_table, int64_t first_needed);
  // Shrinks the table to the blocks its first `num_tokens` tokens occupy, releasing the rest (newest first):
  // a step that verified proposed tokens keeps only the accepted ones. Returns how many it released.
  int32_t truncate(std::vector<BlockId>& block_table, int64_t num_tokens);
  // Forgets the pool's cached blocks (and the memory tier's); the disk tier keeps its files.
  int32_t clear_cache() {
    if (offload_ != nullptr) offload_->clear_memory();
    return pool_.clear_cache();
  }

  // Loading a saved cache: take a block (evicting the oldest cached one if need be), fill it, then adopt it
  // as a cached block at ref 0. Returns false (block released) when the hash is already cached.
  BlockId take_block_for_import() { return pool_.allocate(); }
  bool adopt_imported(BlockId id, const BlockHash& hash, const BlockHash& parent, const int32_t* tokens);
  // Gives back a block taken for an import that failed.
  void discard_import(BlockId id) { pool_.release(id); }

  // Evicted cached blocks go to these tiers, and prefix matches look there after the pool; nullptr: none.
  // The store must outlive its use here.
  void set_offload(OffloadStore* store) {
    offload_ = store;
    pool_.set_eviction_listener(store);
  }
  OffloadStore* offload() const { return offload_; }

  const BlockPool& pool() const { return pool_; }
  // Follows the prefix cache's registrations and removals (BlockPool::set_observer); nullptr detaches.
  void set_block_observer(BlockObserver* observer) { pool_.set_observer(observer); }
  const PrefixCacheCounters& counters() const { return counters_; }

  // Aborts unless each block's reference count equals the number of `tables` holding it, on top of the
  // pool's own invariants. For tests.
  void check_invariants(const std::vector<const std::vector<BlockId>*>& tables) const;

 private:
  // take_prefix's restores of the match's offloaded blocks, in order; the first that fails ends the match.
  void restore_offloaded(PrefixMatch& match);

  BlockPool pool_;
  int32_t block_size_;
  bool partial_matches_;
  PrefixCacheCounters counters_;
  OffloadStore* offload_ = nullptr;
};

}  // namespace pagedlm
