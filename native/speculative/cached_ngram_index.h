// An n-gram index over the token ids of the prefix cache's registered blocks, so that one request can be
// drafted from text another request left in the cache (an agent loop resending a tool's output, a chat
// quoting an earlier answer). It follows the pool as its BlockObserver: a block is indexed when it is
// registered and unindexed when it is evicted or cleared, so a lookup never reads a block the cache lost.
//
// Entries: every offset of a registered block where a gram of key_tokens tokens ends inside the block is a
// link in that gram's hash chain, newest registration first (a gram that straddles a block boundary is
// not a key; a match found inside a block still extends backwards into its registered parent). A lookup
// walks a bounded number of chain links, extends each candidate backwards up to max_match tokens, and
// copies what follows the best one: the rest of its block, then a registered child block's tokens.
//
// Salts: each block carries the root of its hash chain (root_hash(salt)), learned from its registered
// parent; a lookup reads only blocks under the asking request's root. A block whose parent is not
// registered (an import that arrives before its parent) holds its parent's hash as a stand-in, which no
// salt's root equals, until the parent arrives and passes the real root down.
//
// Memory: two int32 links per token slot of the pool and a BlockHash per block, allocated once, plus one
// hash-map node per distinct gram among the registered blocks. Engine thread only.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "kv/block_pool.h"

namespace pagedlm::speculative {

class CachedNgramIndex : public BlockObserver {
 public:
  // Chain links a lookup examines at most: a gram as common as a newline would otherwise cost a walk
  // over most of the cache.
  static constexpr int32_t kMaxCandidates = 32;

  // Keys grams of `key_tokens` tokens (1..block size); matches extend backwards to at most `max_match`.
  CachedNgramIndex(const BlockPool& pool, int32_t key_tokens, int32_t max_match);

  void on_registered(BlockId id) override;
  void on_forgotten(BlockId id) override;
  // Indexes every block registered before this index was attached as the pool's observer.
  void index_registered_blocks();

  // The longest match, key_tokens..max_match tokens long, of the end of tokens[0, count) in blocks cached
  // under `root` (the asking request's root_hash(salt)) that is followed by at least one cached token; ties
  // go to the most recently registered block. Writes what follows it, at most `max_tokens` tokens, to `out`
  // (cleared first) and returns the match's length; 0 with `out` empty when there is none.
  int32_t lookup(const int32_t* tokens, size_t count, const BlockHash& root, int32_t max_tokens,
                 std::vector<int32_t>& out) const;

  int32_t key_tokens() const { return key_tokens_; }
  int32_t indexed_blocks() const { return indexed_blocks_; }
  // Aborts with a message unless exactly the pool's registered blocks are indexed, each chain is well
  // linked and every block under a registered parent carries its parent's root. For tests.
  void check_invariants() const;

 private:
  static constexpr int32_t kNoSlot = -1;

  uint64_t key_at(BlockId id, int32_t end) const;  // the gram ending at offset `end` of block `id`
  BlockId indexed_block(const BlockHash& hash) const;
  BlockId parent_block(BlockId id) const;
  BlockId child_block(BlockId id) const;  // an indexed child under the same root, or kNoBlock
  int32_t match_length(const int32_t* tokens, size_t count, BlockId id, int32_t end) const;
  void link(int32_t slot, uint64_t key);
  void unlink(int32_t slot, uint64_t key);
  void pass_root_to_children(BlockId id);

  const BlockPool& pool_;
  int32_t block_size_;
  int32_t key_tokens_;
  int32_t max_match_;
  int32_t indexed_blocks_ = 0;
  std::vector<int32_t> newer_;    // [num_blocks * block_size] chain links by slot (block * block_size + offset)
  std::vector<int32_t> older_;
  std::vector<uint8_t> indexed_;  // [num_blocks]
  std::vector<BlockHash> root_;   // [num_blocks] the chain root a block was cached under
  std::unordered_map<uint64_t, int32_t> newest_;  // gram hash -> newest slot where it ends
};

}  // namespace pagedlm::speculative
