// The block pool and the KV cache manager: reference counts, the free queue, the prefix-cache index and
// their invariants, including a randomized property test.
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "kv/block_pool.h"
#include "kv/kv_cache_manager.h"

namespace pagedlm {
namespace {

constexpr int32_t kBlock = 4;

std::vector<int32_t> block_tokens(int32_t seed) { return {seed, seed + 1, seed + 2, seed + 3}; }

TEST(BlockPool, AllocatesEveryBlockOnceThenRunsOut) {
  BlockPool pool(4, kBlock);
  std::vector<BlockId> got;
  for (int i = 0; i < 4; ++i) got.push_back(pool.allocate());
  EXPECT_EQ(got, (std::vector<BlockId>{0, 1, 2, 3}));
  EXPECT_EQ(pool.allocate(), kNoBlock);
  EXPECT_EQ(pool.num_free(), 0);
  pool.check_invariants();
}

TEST(BlockPool, SharedBlocksReturnWithTheirLastReference) {
  BlockPool pool(2, kBlock);
  const BlockId b = pool.allocate();
  pool.retain(b);  // a second sequence shares it
  pool.release(b);
  EXPECT_EQ(pool.ref_count(b), 1);
  EXPECT_EQ(pool.num_free(), 1);
  pool.release(b);
  EXPECT_EQ(pool.num_free(), 2);
  pool.check_invariants();
}

TEST(BlockPool, UncachedBlocksAreReusedBeforeCachedOnes) {
  BlockPool pool(3, kBlock);
  const BlockId a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  const auto tokens = block_tokens(10);
  pool.register_block(a, hash_block(root_hash(0), tokens.data(), kBlock), root_hash(0), tokens.data());
  pool.release(a);  // cached: back of the queue
  pool.release(b);  // plain: front
  pool.release(c);  // plain: front
  EXPECT_EQ(pool.num_cached(), 1);
  EXPECT_EQ(pool.allocate(), c);
  EXPECT_EQ(pool.allocate(), b);
  EXPECT_EQ(pool.evictions(), 0u);
  EXPECT_EQ(pool.allocate(), a);  // only now is the cached block evicted
  EXPECT_EQ(pool.evictions(), 1u);
  EXPECT_FALSE(pool.is_registered(a));
  pool.check_invariants();
}

TEST(BlockPool, CachedBlocksAreEvictedLeastRecentlyReleasedFirst) {
  BlockPool pool(3, kBlock);
  std::vector<BlockId> ids;
  for (int i = 0; i < 3; ++i) {
    const BlockId id = pool.allocate();
    const auto t = block_tokens(i * 10);
    pool.register_block(id, hash_block(root_hash(0), t.data(), kBlock), root_hash(0), t.data());
    ids.push_back(id);
  }
  pool.release(ids[1]);
  pool.release(ids[0]);
  pool.release(ids[2]);
  pool.retain(ids[0]);  // a hit revives it from the queue
  pool.release(ids[0]);  // and puts it at the back again
  EXPECT_EQ(pool.allocate(), ids[1]);
  EXPECT_EQ(pool.allocate(), ids[2]);
  EXPECT_EQ(pool.allocate(), ids[0]);
  pool.check_invariants();
}

TEST(BlockPool, FindsOnlyExactTokensAndParent) {
  BlockPool pool(2, kBlock);
  const BlockId id = pool.allocate();
  const auto t = block_tokens(5);
  const BlockHash parent = root_hash(0);
  const BlockHash h = hash_block(parent, t.data(), kBlock);
  pool.register_block(id, h, parent, t.data());
  EXPECT_EQ(pool.find_cached(h, parent, t.data()), id);
  const auto other = block_tokens(6);
  EXPECT_EQ(pool.find_cached(h, parent, other.data()), kNoBlock);  // a forged hash with other tokens
  EXPECT_EQ(pool.find_cached(h, root_hash(7), t.data()), kNoBlock);
  EXPECT_NE(hash_block(root_hash(1), t.data(), kBlock), h);  // salts separate chains
  pool.release(id);
  EXPECT_EQ(pool.clear_cache(), 1);
  EXPECT_EQ(pool.find_cached(h, parent, t.data()), kNoBlock);
  pool.check_invariants();
}

TEST(KvCacheManager, AllocatesWholeOrNothing) {
  KvCacheManager kv(4, 16);
  std::vector<BlockId> a, b;
  EXPECT_EQ(kv.allocate_slots(a, 17), 2);
  EXPECT_EQ(kv.allocate_slots(a, 32), 0);
  EXPECT_EQ(kv.allocate_slots(b, 48), -1);  // 3 blocks, 2 free
  EXPECT_TRUE(b.empty());
  kv.free(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(kv.pool().num_free(), 4);
}

TEST(KvCacheManager, MatchesTheLongestCachedChainButNeverTheLastToken) {
  KvCacheManager kv(8, kBlock);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 12; ++i) tokens.push_back(100 + i);
  std::vector<BlockId> table;
  std::vector<BlockHash> hashes;
  ASSERT_EQ(kv.allocate_slots(table, 12), 3);
  kv.cache_full_blocks(tokens, 12, 0, table, hashes);
  EXPECT_EQ(hashes.size(), 3u);
  const BlockId last_block = table[2];
  kv.free(table);

  // 12 tokens: two full blocks, then 3 of the last block's 4 (the last token is always computed).
  const PrefixMatch whole = kv.match_prefix(tokens, 0);
  EXPECT_EQ(whole.blocks.size(), 2u);
  EXPECT_EQ(whole.partial_source, last_block);
  EXPECT_EQ(whole.partial_tokens, 3);
  EXPECT_EQ(whole.num_tokens, 11);
  EXPECT_EQ(whole.idle_blocks, 3);
  auto longer = tokens;
  longer.push_back(7);
  EXPECT_EQ(kv.match_prefix(longer, 0).num_tokens, 12);
  EXPECT_EQ(kv.match_prefix(longer, 0).partial_source, kNoBlock);  // nothing cached continues the third block
  auto diverging = longer;
  diverging[5] = 0;  // the second block differs from its second token: one full block and one token
  EXPECT_EQ(kv.match_prefix(diverging, 0).num_tokens, 5);
  diverging[4] = 0;  // ... from its first: the first block only
  EXPECT_EQ(kv.match_prefix(diverging, 0).num_tokens, 4);
  EXPECT_EQ(kv.match_prefix(diverging, 0).partial_source, kNoBlock);
  EXPECT_EQ(kv.match_prefix(longer, 42).num_tokens, 0);  // another salt shares nothing
}

// A model windowed on every layer gives back the blocks its window has passed; registered ones stay cached,
// so a later prompt with the same prefix still finds them until they are evicted.
TEST(KvCacheManager, ReleaseBelowFreesPassedBlocksAndKeepsThemCached) {
  KvCacheManager kv(8, kBlock);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 14; ++i) tokens.push_back(200 + i);
  std::vector<BlockId> table;
  std::vector<BlockHash> hashes;
  ASSERT_EQ(kv.allocate_slots(table, 14), 4);
  kv.cache_full_blocks(tokens, 14, 0, table, hashes);
  const BlockId first = table[0];
  EXPECT_EQ(kv.release_below(table, 3), 0);  // position 3 lies in block 0: nothing is wholly passed
  EXPECT_EQ(kv.release_below(table, 9), 2);  // blocks 0 and 1 hold positions 0-7
  EXPECT_EQ(table[0], kNoBlock);
  EXPECT_EQ(table[1], kNoBlock);
  EXPECT_NE(table[2], kNoBlock);
  EXPECT_EQ(kv.release_below(table, 9), 0);  // already released
  EXPECT_EQ(kv.pool().ref_count(first), 0);
  kv.check_invariants({&table});
  EXPECT_EQ(kv.match_prefix(tokens, 0).blocks.front(), first);
  std::vector<BlockId> child = table;  // a fork shares the table, released entries included
  kv.retain(child);
  kv.check_invariants({&table, &child});
  kv.free(child);
  kv.free(table);
  EXPECT_EQ(kv.pool().num_free(), 8);
}

// A partial hit takes a fresh block for the copy and holds its source until the copy ran: the source is
// not evicted meanwhile even when every other block is allocated.
TEST(KvCacheManager, PartialHitHoldsItsSourceUntilCopied) {
  KvCacheManager kv(4, kBlock);
  const std::vector<int32_t> first = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<BlockId> table;
  std::vector<BlockHash> hashes;
  ASSERT_EQ(kv.allocate_slots(table, 8), 2);
  kv.cache_full_blocks(first, 8, 0, table, hashes);
  kv.free(table);

  const std::vector<int32_t> second = {1, 2, 3, 4, 5, 6, 9, 9, 9};  // 4 + 2 tokens shared
  PrefixMatch match = kv.match_prefix(second, 0);
  ASSERT_EQ(match.num_tokens, 6);
  ASSERT_EQ(match.idle_blocks, 2);
  const BlockCopy copy = kv.take_prefix(match, 9, table);
  ASSERT_NE(copy.from, kNoBlock);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table[1], copy.to);
  EXPECT_NE(copy.to, copy.from);
  EXPECT_EQ(kv.allocate_slots(table, 9), 1);  // the last free block, not the held source
  EXPECT_EQ(kv.pool().num_free(), 0);
  kv.release_copy_source(copy);
  EXPECT_EQ(kv.pool().num_free(), 1);
  EXPECT_TRUE(kv.pool().is_registered(copy.from));
  kv.check_invariants({&table});
  kv.free(table);
}

// Randomized operations on several sequences: admit (with prefix reuse), extend, fork, finish, abort, pin,
// unpin, evict by pressure, clear, save and load. After each operation the manager's invariants must hold.
TEST(KvCacheManager, RandomOperationsKeepInvariants) {
  KvCacheManager kv(20, kBlock);
  struct Seq {
    std::vector<int32_t> tokens;
    int32_t computed = 0;
    uint64_t salt = 0;
    std::vector<BlockId> table;
    std::vector<BlockHash> hashes;
  };
  std::vector<std::unique_ptr<Seq>> live;
  std::vector<std::vector<BlockId>> pins;  // prefixes held past their sequence, like Engine pins
  struct SavedBlock {
    BlockHash hash, parent;
    std::vector<int32_t> tokens;
  };
  std::vector<SavedBlock> saved;  // what a save would have written
  std::mt19937 rng(11);
  const auto tables = [&] {
    std::vector<const std::vector<BlockId>*> t;
    for (const auto& s : live) t.push_back(&s->table);
    for (const auto& p : pins) t.push_back(&p);
    return t;
  };
  uint64_t hits = 0;
  for (int op = 0; op < 20000; ++op) {
    const int kind = static_cast<int>(rng() % 10);
    if (kind < 3 && live.size() < 8) {  // admit a prompt drawn from a few shared prefixes
      auto s = std::make_unique<Seq>();
      const int family = static_cast<int>(rng() % 3);
      const int length = 1 + static_cast<int>(rng() % 20);
      for (int i = 0; i < length; ++i) s->tokens.push_back(i < 12 ? family * 100 + i : static_cast<int32_t>(rng() % 50));
      s->salt = rng() % 4 == 0 ? 9 : 0;
      PrefixMatch m = kv.match_prefix(s->tokens, s->salt);
      if (kv.blocks_for_tokens(length) - static_cast<int32_t>(m.blocks.size()) > kv.pool().num_free() - m.idle_blocks) continue;
      const BlockCopy copy = kv.take_prefix(m, length, s->table);
      if (copy.from != kNoBlock) kv.release_copy_source(copy);  // after the copy a step would run
      s->hashes = m.hashes;
      s->computed = m.num_tokens;
      hits += m.num_tokens > 0;
      ASSERT_GE(kv.allocate_slots(s->table, length), 0);
      live.push_back(std::move(s));
    } else if (kind == 3 && !live.empty() && live.size() < 8) {  // fork: share every block of a sequence
      const Seq& parent = *live[rng() % live.size()];
      auto child = std::make_unique<Seq>(parent);
      kv.retain(child->table);
      live.push_back(std::move(child));
    } else if (kind < 7 && !live.empty()) {  // compute some tokens, maybe generate one
      Seq& s = *live[rng() % live.size()];
      s.computed = static_cast<int32_t>(s.tokens.size());
      kv.cache_full_blocks(s.tokens, s.computed, s.salt, s.table, s.hashes);
      s.tokens.push_back(static_cast<int32_t>(rng() % 50));
      if (kv.allocate_slots(s.table, static_cast<int64_t>(s.tokens.size())) < 0) s.tokens.pop_back();
    } else if (kind < 9 && !live.empty()) {  // finish or abort, sometimes pinning the full blocks first
      const size_t i = rng() % live.size();
      Seq& s = *live[i];
      if (rng() % 6 == 0 && pins.size() < 3) {
        std::vector<BlockId> full(s.table.begin(), s.table.begin() + static_cast<std::ptrdiff_t>(s.hashes.size()));
        kv.retain(full);
        pins.push_back(std::move(full));
      }
      kv.free(s.table);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
    } else if (kind == 9 && rng() % 3 == 0) {  // save: snapshot what is registered
      saved.clear();
      for (BlockId id : kv.pool().registered_blocks()) {
        const int32_t* t = kv.pool().tokens_of(id);
        saved.push_back({kv.pool().hash_of(id), kv.pool().parent_of(id), std::vector<int32_t>(t, t + kBlock)});
      }
    } else if (kind == 9 && !saved.empty() && rng() % 2 == 0) {  // load: adopt saved blocks while there is room
      const int32_t room = kv.pool().num_free();
      for (int32_t i = 0; i < room && i < static_cast<int32_t>(saved.size()); ++i) {
        const SavedBlock& b = saved[i];
        if (kv.pool().find_cached(b.hash, b.parent, b.tokens.data()) != kNoBlock) continue;
        kv.adopt_imported(kv.take_block_for_import(), b.hash, b.parent, b.tokens.data());
      }
    } else if (!pins.empty() && rng() % 2 == 0) {  // unpin
      kv.free(pins.back());
      pins.pop_back();
    } else if (rng() % 8 == 0) {
      kv.clear_cache();
    }
    kv.check_invariants(tables());
  }
  EXPECT_GT(hits, 100u);
  EXPECT_GT(kv.pool().evictions(), 0u);
  for (auto& s : live) kv.free(s->table);
  live.clear();
  for (auto& p : pins) kv.free(p);
  pins.clear();
  kv.check_invariants(tables());
  EXPECT_EQ(kv.pool().num_free(), 20);
}

}  // namespace
}  // namespace pagedlm
