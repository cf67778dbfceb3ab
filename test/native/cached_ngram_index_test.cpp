// The n-gram index over the prefix cache's registered blocks: what it finds, what follows a match (into a
// child block, up to the end of the cached chain), that it follows registration, eviction and
// clear_cache exactly, keeps salts apart, and leaves the block pool's invariants intact.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <unordered_map>

#include "kv/kv_cache_manager.h"
#include "speculative/cached_ngram_index.h"

namespace pagedlm::speculative {
namespace {

constexpr int32_t kBlock = 4;

// The prefix cache with an index attached, as the n-gram proposer sets it up.
struct IndexedCache {
  explicit IndexedCache(int32_t num_blocks) : kv(num_blocks, kBlock), index(kv.pool(), 2, 4) {
    kv.set_block_observer(&index);
  }
  ~IndexedCache() { kv.set_block_observer(nullptr); }

  // Computes and caches `tokens` (whole blocks only) as a finished request would, leaving them at ref 0.
  void cache(const std::vector<int32_t>& tokens, uint64_t salt = 0) {
    std::vector<BlockId> table;
    std::vector<BlockHash> hashes;
    ASSERT_GE(kv.allocate_slots(table, static_cast<int64_t>(tokens.size())), 0);
    kv.cache_full_blocks(tokens, static_cast<int32_t>(tokens.size()), salt, table, hashes);
    kv.free(table);
  }
  std::vector<int32_t> draft(const std::vector<int32_t>& query, int32_t max_tokens = 4, uint64_t salt = 0,
                             int32_t* length = nullptr) const {
    std::vector<int32_t> out;
    const int32_t matched = index.lookup(query.data(), query.size(), root_hash(salt), max_tokens, out);
    if (length != nullptr) *length = matched;
    EXPECT_EQ(matched == 0, out.empty());
    return out;
  }
  void check() const {
    kv.pool().check_invariants();
    index.check_invariants();
  }

  KvCacheManager kv;
  CachedNgramIndex index;
};

std::vector<int32_t> iota_tokens(int32_t first, int32_t count) {
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

using Tokens = std::vector<int32_t>;

// What lookup must find, by brute force over every registered block of the salt (few enough that the
// index's bounded chain walk reaches them all): the longest match's length and the continuation of each
// block offset that matches that long.
struct BruteForceMatches {
  int32_t length = 0;
  std::vector<Tokens> drafts;
};

using SaltOfHash = std::unordered_map<BlockHash, uint64_t, BlockHashHasher>;

BruteForceMatches brute_force_lookup(const BlockPool& pool, const SaltOfHash& salt_of, const Tokens& query,
                                     uint64_t salt, int32_t max_tokens) {
  const auto same_salt = [&](BlockId id) { return id != kNoBlock && salt_of.at(pool.hash_of(id)) == salt; };
  const auto child_of = [&](BlockId id) {
    BlockId found = kNoBlock;
    pool.for_each_child(pool.hash_of(id), [&](BlockId child) {
      if (found == kNoBlock && same_salt(child)) found = child;
    });
    return found;
  };
  BruteForceMatches best;
  const int32_t count = static_cast<int32_t>(query.size());
  for (BlockId id : pool.registered_blocks()) {
    if (!same_salt(id)) continue;
    for (int32_t end = 1; end < pool.block_size(); ++end) {
      // Backwards from `end` while the tokens agree, into registered parents, up to 4.
      int32_t length = 0;
      BlockId block = id;
      for (int32_t offset = end; length < std::min(count, 4); ++length, --offset) {
        if (offset < 0) {
          block = pool.registered_block(pool.parent_of(block));
          if (!same_salt(block)) break;
          offset = pool.block_size() - 1;
        }
        if (pool.tokens_of(block)[offset] != query[static_cast<size_t>(count - 1 - length)]) break;
      }
      if (length < 2) continue;
      Tokens draft;
      block = id;
      for (int32_t offset = end + 1; static_cast<int32_t>(draft.size()) < max_tokens; ++offset) {
        if (offset == pool.block_size()) {
          block = child_of(block);
          if (block == kNoBlock) break;
          offset = 0;
        }
        draft.push_back(pool.tokens_of(block)[offset]);
      }
      if (draft.empty() || length < best.length) continue;
      if (length > best.length) best = BruteForceMatches{length, {}};
      best.drafts.push_back(draft);
    }
  }
  return best;
}

TEST(CachedNgramIndex, ABlockCachedByOneRequestDraftsForAnother) {
  IndexedCache cache(8);
  cache.cache(iota_tokens(100, 16));  // blocks [100..103] [104..107] [108..111] [112..115]
  EXPECT_EQ(cache.index.indexed_blocks(), 4);
  int32_t length = 0;
  // 105 106 sits inside the second block; what follows runs on into the third.
  EXPECT_EQ(cache.draft({7, 9, 105, 106}, 4, 0, &length), (Tokens{107, 108, 109, 110}));
  EXPECT_EQ(length, 2);
  cache.check();
}

TEST(CachedNgramIndex, AMatchExtendsBackwardsIntoTheParentBlock) {
  IndexedCache cache(8);
  cache.cache(iota_tokens(100, 16));
  int32_t length = 0;
  EXPECT_EQ(cache.draft({103, 104, 105}, 2, 0, &length), (Tokens{106, 107}));
  EXPECT_EQ(length, 3);  // 103 is the parent block's last token
  EXPECT_EQ(cache.draft({9, 102, 103, 104, 105}, 2, 0, &length), (Tokens{106, 107}));
  EXPECT_EQ(length, 4);  // capped at max_match
}

TEST(CachedNgramIndex, TheDraftEndsWithTheCachedChain) {
  IndexedCache cache(8);
  cache.cache(iota_tokens(100, 16));
  EXPECT_EQ(cache.draft({113, 114}, 8), (Tokens{115}));
  EXPECT_TRUE(cache.draft({114, 115}, 8).empty());  // the chain's last gram: nothing cached follows it
  EXPECT_EQ(cache.draft({101, 102}, 3), (Tokens{103, 104, 105}));  // and max_tokens caps it
}

TEST(CachedNgramIndex, UnknownTextFindsNothing) {
  IndexedCache cache(8);
  cache.cache(iota_tokens(100, 16));
  EXPECT_TRUE(cache.draft({105, 107}).empty());
  EXPECT_TRUE(cache.draft({106}).empty());  // shorter than a key
  EXPECT_TRUE(cache.draft({}).empty());
  EXPECT_TRUE(cache.draft({105, 106}, 0).empty());
}

TEST(CachedNgramIndex, TheLongerMatchWinsAndTiesGoToTheNewestBlock) {
  IndexedCache cache(8);
  cache.cache({1, 2, 3, 4, 50, 51, 60, 61});
  cache.cache({9, 9, 9, 9, 50, 51, 70, 71});
  EXPECT_EQ(cache.draft({8, 50, 51}, 2), (Tokens{70, 71}));  // both match two tokens: the newer wins
  EXPECT_EQ(cache.draft({4, 50, 51}, 2), (Tokens{60, 61}));  // three tokens beat two
}

TEST(CachedNgramIndex, EvictionRemovesBlocksFromTheIndex) {
  IndexedCache cache(5);
  cache.cache(iota_tokens(100, 16));  // four cached blocks and one free
  std::vector<BlockId> table;
  // The free block, then the least recently released cached one: the chain's last block.
  ASSERT_EQ(cache.kv.allocate_slots(table, 2 * kBlock), 2);
  EXPECT_EQ(cache.index.indexed_blocks(), 3);
  cache.check();
  EXPECT_TRUE(cache.draft({113, 114}).empty());
  EXPECT_EQ(cache.draft({109, 110}), (Tokens{111}));  // its continuation ends where the evicted child was
  ASSERT_EQ(cache.kv.allocate_slots(table, 5 * kBlock), 3);
  EXPECT_EQ(cache.index.indexed_blocks(), 0);
  EXPECT_TRUE(cache.draft({101, 102}).empty());
  cache.kv.free(table);
  cache.check();
}

TEST(CachedNgramIndex, ClearCacheEmptiesTheIndexButKeepsBlocksInUse) {
  IndexedCache cache(8);
  cache.cache(iota_tokens(100, 8));
  const Tokens held = iota_tokens(200, 8);
  std::vector<BlockId> table;
  std::vector<BlockHash> hashes;
  ASSERT_EQ(cache.kv.allocate_slots(table, 8), 2);
  cache.kv.cache_full_blocks(held, 8, 0, table, hashes);  // registered and still in use
  EXPECT_EQ(cache.kv.clear_cache(), 2);
  cache.check();
  EXPECT_TRUE(cache.draft({101, 102}).empty());
  EXPECT_EQ(cache.draft({201, 202}), (Tokens{203, 204, 205, 206}));
  cache.kv.free(table);
  EXPECT_EQ(cache.kv.clear_cache(), 2);
  EXPECT_EQ(cache.index.indexed_blocks(), 0);
  cache.check();
}

TEST(CachedNgramIndex, ASaltReadsOnlyItsOwnCachedText) {
  IndexedCache cache(8);
  cache.cache(iota_tokens(100, 8), /*salt=*/7);
  EXPECT_TRUE(cache.draft({101, 102}, 4, 0).empty());
  EXPECT_TRUE(cache.draft({101, 102}, 4, 8).empty());
  EXPECT_EQ(cache.draft({101, 102}, 4, 7), (Tokens{103, 104, 105, 106}));
}

TEST(CachedNgramIndex, AnImportedChildWaitsForItsParentsSalt) {
  // A cache file lists blocks in id order, so a child can be adopted before its parent.
  IndexedCache cache(8);
  const Tokens first = iota_tokens(100, 4), second = iota_tokens(104, 4);
  const BlockHash root = root_hash(3);
  const BlockHash first_hash = hash_block(root, first.data(), kBlock);
  const BlockHash second_hash = hash_block(first_hash, second.data(), kBlock);
  ASSERT_TRUE(cache.kv.adopt_imported(cache.kv.take_block_for_import(), second_hash, first_hash, second.data()));
  EXPECT_TRUE(cache.draft({105, 106}, 4, 3).empty());
  cache.check();
  ASSERT_TRUE(cache.kv.adopt_imported(cache.kv.take_block_for_import(), first_hash, root, first.data()));
  EXPECT_EQ(cache.draft({105, 106}, 4, 3), (Tokens{107}));
  EXPECT_EQ(cache.draft({101, 102}, 4, 3), (Tokens{103, 104, 105, 106}));
  EXPECT_TRUE(cache.draft({105, 106}, 4, 0).empty());
  cache.check();
}

TEST(CachedNgramIndex, IndexesWhatWasCachedBeforeItWasAttached) {
  KvCacheManager kv(8, kBlock);
  const Tokens tokens = iota_tokens(100, 8);
  std::vector<BlockId> table;
  std::vector<BlockHash> hashes;
  ASSERT_EQ(kv.allocate_slots(table, 8), 2);
  kv.cache_full_blocks(tokens, 8, 0, table, hashes);
  kv.free(table);
  CachedNgramIndex index(kv.pool(), 2, 4);
  index.index_registered_blocks();
  kv.set_block_observer(&index);
  std::vector<int32_t> out;
  EXPECT_EQ(index.lookup(tokens.data(), 3, root_hash(0), 2, out), 3);
  EXPECT_EQ(out, (Tokens{103, 104}));
  index.check_invariants();
  kv.clear_cache();
  EXPECT_EQ(index.indexed_blocks(), 0);
  index.check_invariants();
  kv.set_block_observer(nullptr);
}

TEST(CachedNgramIndex, RandomizedOperationsKeepTheIndexEqualToTheCache) {
  // Sequences over a small vocabulary share prefixes and grams, so blocks get hits, collide in chains and
  // are evicted in every order; after each operation the index mirrors exactly the registered blocks.
  std::mt19937 rng(28);
  IndexedCache cache(24);
  struct Live {
    std::vector<BlockId> table;
    std::vector<BlockHash> hashes;
    std::vector<int32_t> tokens;
    uint64_t salt = 0;
  };
  std::vector<Live> live;
  SaltOfHash salt_of;  // every block hash the run made
  int drafted_steps = 0, empty_steps = 0;
  for (int step = 0; step < 3000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 5) {
      Live seq;
      seq.salt = rng() % 2;
      const int32_t count = 1 + static_cast<int32_t>(rng() % 20);
      for (int32_t i = 0; i < count; ++i) seq.tokens.push_back(static_cast<int32_t>(rng() % 3));
      PrefixMatch match = cache.kv.match_prefix(seq.tokens, seq.salt);
      const int32_t free_needed =
          cache.kv.blocks_for_tokens(count) - static_cast<int32_t>(match.blocks.size()) + match.idle_blocks;
      if (free_needed > cache.kv.pool().num_free()) continue;
      const BlockCopy copy = cache.kv.take_prefix(match, count, seq.table);
      if (copy.from != kNoBlock) cache.kv.release_copy_source(copy);
      ASSERT_GE(cache.kv.allocate_slots(seq.table, count), 0);
      cache.kv.cache_full_blocks(seq.tokens, count, seq.salt, seq.table, seq.hashes);
      for (const BlockHash& hash : seq.hashes) salt_of[hash] = seq.salt;
      live.push_back(std::move(seq));
    } else if (op < 9 && !live.empty()) {
      const size_t victim = rng() % live.size();
      cache.kv.free(live[victim].table);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(victim));
    } else if (op == 9) {
      cache.kv.clear_cache();
    }
    cache.check();
    std::vector<const std::vector<BlockId>*> tables;
    for (const Live& seq : live) tables.push_back(&seq.table);
    cache.kv.check_invariants(tables);
    // The draft is one of the longest matches' continuations, found by brute force over every block.
    Tokens query(2 + rng() % 4);
    for (int32_t& t : query) t = static_cast<int32_t>(rng() % 3);
    const uint64_t salt = rng() % 2;
    int32_t length = 0;
    const Tokens drafted = cache.draft(query, 4, salt, &length);
    const BruteForceMatches expected = brute_force_lookup(cache.kv.pool(), salt_of, query, salt, 4);
    ASSERT_EQ(length, expected.length) << "step " << step;
    if (length > 0) {
      EXPECT_NE(std::find(expected.drafts.begin(), expected.drafts.end(), drafted), expected.drafts.end())
          << "step " << step;
    }
    ++(length > 0 ? drafted_steps : empty_steps);
  }
  // The run covered both outcomes and evicted cached blocks.
  EXPECT_GT(drafted_steps, 100);
  EXPECT_GT(empty_steps, 100);
  EXPECT_GT(cache.kv.pool().evictions(), 100u);
  for (Live& seq : live) cache.kv.free(seq.table);
  cache.check();
}

}  // namespace
}  // namespace pagedlm::speculative
