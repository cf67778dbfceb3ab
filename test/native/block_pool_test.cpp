#include <gtest/gtest.h>

#include <random>

#include "kv/block_pool.h"
#include "kv/kv_cache_manager.h"

namespace pagedlm {
namespace {

TEST(BlockPool, AllocatesEveryBlockOnceThenRunsOut) {
  BlockPool pool(4);
  std::vector<BlockId> got;
  for (int i = 0; i < 4; ++i) got.push_back(pool.allocate());
  EXPECT_EQ(got, (std::vector<BlockId>{0, 1, 2, 3}));
  EXPECT_EQ(pool.allocate(), kNoBlock);
  EXPECT_EQ(pool.num_free(), 0);
  pool.check_invariants();
}

TEST(BlockPool, SharedBlocksReturnWithTheirLastReference) {
  BlockPool pool(2);
  const BlockId b = pool.allocate();
  pool.retain(b);  // a second sequence shares it
  pool.release(b);
  EXPECT_EQ(pool.ref_count(b), 1);
  EXPECT_EQ(pool.num_free(), 1);
  pool.release(b);
  EXPECT_EQ(pool.num_free(), 2);
  pool.check_invariants();
}

TEST(BlockPool, FreeQueueIsLeastRecentlyFreedFirst) {
  BlockPool pool(3);
  const BlockId a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  pool.release(b);
  pool.release(c);
  pool.release(a);
  EXPECT_EQ(pool.allocate(), b);
  EXPECT_EQ(pool.allocate(), c);
  pool.retain(a);  // revived from the free queue (a cached block reused)
  EXPECT_EQ(pool.num_free(), 0);
  pool.check_invariants();
}

TEST(BlockPool, RandomOperationsKeepInvariants) {
  BlockPool pool(64);
  std::vector<BlockId> held;
  std::mt19937 rng(7);
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(rng() % 3);
    if (op == 0) {
      const BlockId b = pool.allocate();
      if (b != kNoBlock) held.push_back(b);
    } else if (op == 1 && !held.empty()) {
      const BlockId b = held[rng() % held.size()];
      pool.retain(b);
      held.push_back(b);
    } else if (!held.empty()) {
      const size_t i = rng() % held.size();
      pool.release(held[i]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
    }
    if (step % 1000 == 0) pool.check_invariants();
  }
  for (BlockId b : held) pool.release(b);
  EXPECT_EQ(pool.num_free(), 64);
  pool.check_invariants();
}

TEST(KvCacheManager, AllocatesWholeOrNothing) {
  KvCacheManager kv(4, 16);
  std::vector<BlockId> a, b;
  EXPECT_TRUE(kv.allocate_slots(a, 17));  // 2 blocks
  EXPECT_EQ(a.size(), 2u);
  EXPECT_TRUE(kv.allocate_slots(a, 32));  // still 2
  EXPECT_EQ(a.size(), 2u);
  EXPECT_FALSE(kv.allocate_slots(b, 48)); // 3 blocks, 2 free
  EXPECT_TRUE(b.empty());
  kv.free(a);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(kv.pool().num_free(), 4);
}

}  // namespace
}  // namespace pagedlm
