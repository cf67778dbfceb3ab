// The n-gram lookup proposer: matches in the sequence's own tokens (most recent, longest first, capped),
// incremental state that equals a fresh build, forget(), and drafting across requests from the prefix
// cache (priority against the sequence itself, salts, eviction, attaching to a warm cache).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "kv/kv_cache_manager.h"
#include "speculative/ngram_proposer.h"

namespace pagedlm::speculative {
namespace {

using Tokens = std::vector<int32_t>;

Tokens draft(NgramProposer& proposer, const Tokens& tokens, int32_t max_tokens = 4, uint64_t key = 1,
             uint64_t salt = 0) {
  std::vector<Tokens> out;
  proposer.propose({DraftRequest{key, &tokens, max_tokens, salt}}, out);
  EXPECT_EQ(out.size(), 1u);
  return out.empty() ? Tokens{} : out[0];
}

TEST(NgramProposer, DraftsWhatFollowedAnEarlierOccurrence) {
  NgramProposer proposer(nullptr);
  EXPECT_EQ(draft(proposer, {1, 2, 3, 4, 5, 6, 7, 9, 3, 4}), (Tokens{5, 6, 7, 9}));  // max_tokens caps it
  EXPECT_EQ(draft(proposer, {1, 2, 3, 4, 5, 6, 7, 9, 3, 4}, 2, 2), (Tokens{5, 6}));
}

TEST(NgramProposer, PrefersTheMostRecentOccurrence) {
  NgramProposer proposer(nullptr);
  EXPECT_EQ(draft(proposer, {3, 4, 10, 8, 3, 4, 20, 8, 3, 4}, 1), (Tokens{20}));
}

TEST(NgramProposer, PrefersTheLongerMatchToTheMoreRecentOne) {
  NgramProposer proposer(nullptr);
  // "5 3 4" occurred once, early; "3 4" more recently.
  EXPECT_EQ(draft(proposer, {5, 3, 4, 10, 9, 9, 3, 4, 20, 9, 5, 3, 4}, 1), (Tokens{10}));
}

TEST(NgramProposer, TheDraftEndsWithTheKnownTextUnlessItRepeats) {
  NgramOptions no_repeat;
  no_repeat.repeat_at_end = false;
  NgramProposer capped(nullptr, no_repeat);
  EXPECT_EQ(draft(capped, {1, 2, 3, 7, 1, 2}, 8), (Tokens{3, 7, 1, 2}));
  EXPECT_EQ(draft(capped, {5, 5, 5, 5}, 4, 2), (Tokens{5}));
  NgramProposer repeating(nullptr);
  EXPECT_EQ(draft(repeating, {1, 2, 3, 7, 1, 2}, 8), (Tokens{3, 7, 1, 2, 3, 7, 1, 2}));
  EXPECT_EQ(draft(repeating, {5, 5, 5, 5}, 4, 2), (Tokens{5, 5, 5, 5}));
  EXPECT_EQ(draft(repeating, {9, 1, 2, 1, 2}, 5, 3), (Tokens{1, 2, 1, 2, 1}));
}

TEST(NgramProposer, ProposesNothingForTextThatNeverRepeats) {
  NgramProposer proposer(nullptr);
  Tokens tokens(4096);
  std::iota(tokens.begin(), tokens.end(), 1000);
  std::shuffle(tokens.begin(), tokens.end(), std::mt19937(5));
  EXPECT_TRUE(draft(proposer, tokens).empty());
  EXPECT_TRUE(draft(proposer, {}).empty());
  EXPECT_TRUE(draft(proposer, {7}).empty());
  EXPECT_TRUE(draft(proposer, {7, 7}).empty());  // a unigram repeat is below min_match
  EXPECT_TRUE(draft(proposer, {1, 2, 1, 2}, 0).empty());
}

TEST(NgramProposer, AnswersEachRequestOfABatchInOrder) {
  NgramProposer proposer(nullptr);
  const Tokens a = {1, 2, 3, 1, 2}, b = {4, 5, 6, 7}, c = {8, 9, 8, 9, 8};
  std::vector<Tokens> out(7, Tokens{99});  // stale contents from an earlier step
  proposer.propose({{1, &a, 1, 0}, {2, &b, 4, 0}, {3, &c, 2, 0}}, out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], (Tokens{3}));
  EXPECT_TRUE(out[1].empty());
  EXPECT_EQ(out[2], (Tokens{9, 8}));
  EXPECT_EQ(proposer.tracked_sequences(), 3u);
}

TEST(NgramProposer, IncrementalUpdatesDraftAsAFreshBuildDoes) {
  // A small vocabulary repeats grams everywhere; the sequence grows by 1 to 5 tokens a step, as accepted
  // drafts would grow it, and every step's draft equals that of a proposer seeing the sequence anew.
  std::mt19937 rng(28);
  for (int32_t vocabulary : {3, 6, 40}) {
    NgramProposer incremental(nullptr);
    Tokens tokens;
    for (int step = 0; step < 400; ++step) {
      const int32_t grow = 1 + static_cast<int32_t>(rng() % 5);
      for (int32_t i = 0; i < grow; ++i) tokens.push_back(static_cast<int32_t>(rng() % vocabulary));
      const int32_t max_tokens = 1 + static_cast<int32_t>(rng() % 8);
      NgramProposer fresh(nullptr);
      ASSERT_EQ(draft(incremental, tokens, max_tokens), draft(fresh, tokens, max_tokens))
          << "vocabulary " << vocabulary << ", " << tokens.size() << " tokens";
    }
  }
}

TEST(NgramProposer, ForgetDropsASequencesState) {
  NgramProposer proposer(nullptr);
  EXPECT_EQ(draft(proposer, {1, 2, 3, 1, 2}, 1, 10), (Tokens{3}));
  EXPECT_EQ(draft(proposer, {4, 5, 6, 4, 5}, 1, 11), (Tokens{6}));
  EXPECT_EQ(proposer.tracked_sequences(), 2u);
  proposer.forget(10);
  EXPECT_EQ(proposer.tracked_sequences(), 1u);
  proposer.forget(10);
  EXPECT_EQ(proposer.tracked_sequences(), 1u);
  // The key, reused by a new sequence, sees none of the old one's grams (which would draft tokens[3]).
  EXPECT_TRUE(draft(proposer, {5, 6, 7, 8, 2, 1, 2}, 1, 10).empty());
}

TEST(NgramProposer, ASequenceRewrittenUnderTheSameKeyStartsOver) {
  // A key's tokens only grow while it lives; a sequence that is shorter, or differs in the last token
  // seen, is indexed anew rather than read through stale positions.
  NgramProposer proposer(nullptr);
  EXPECT_EQ(draft(proposer, {1, 2, 3, 4, 1, 2}, 1), (Tokens{3}));
  EXPECT_TRUE(draft(proposer, {5, 1, 2}, 1).empty());
  EXPECT_EQ(draft(proposer, {1, 2, 3, 4, 1, 2}, 1), (Tokens{3}));
  EXPECT_TRUE(draft(proposer, {9, 9, 9, 9, 9, 7, 1, 2}, 1).empty());
}

// ---- across requests, through the prefix cache ------------------------------------------------------

constexpr int32_t kBlock = 4;

void cache_tokens(KvCacheManager& kv, const Tokens& tokens, uint64_t salt = 0) {
  std::vector<BlockId> table;
  std::vector<BlockHash> hashes;
  ASSERT_GE(kv.allocate_slots(table, static_cast<int64_t>(tokens.size())), 0);
  kv.cache_full_blocks(tokens, static_cast<int32_t>(tokens.size()), salt, table, hashes);
  kv.free(table);
}

Tokens iota_tokens(int32_t first, int32_t count) {
  Tokens tokens(static_cast<size_t>(count));
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

TEST(NgramProposer, DraftsFromTextAnotherRequestCached) {
  KvCacheManager kv(8, kBlock);
  NgramProposer proposer(&kv);
  cache_tokens(kv, iota_tokens(100, 12));
  EXPECT_EQ(draft(proposer, {1, 2, 105, 106}), (Tokens{107, 108, 109, 110}));
  kv.pool().check_invariants();
  proposer.cached_index()->check_invariants();
}

TEST(NgramProposer, TheLongerMatchWinsBetweenTheSequenceAndTheCache) {
  KvCacheManager kv(8, kBlock);
  NgramProposer proposer(&kv);
  cache_tokens(kv, {40, 50, 51, 60, 61, 62, 63, 64});
  // The sequence itself has "50 51" followed by 70; the cache has "40 50 51" followed by 60.
  EXPECT_EQ(draft(proposer, {50, 51, 70, 40, 50, 51}, 1), (Tokens{60}));
  // Both match "50 51" only: the tie goes to the sequence.
  EXPECT_EQ(draft(proposer, {50, 51, 70, 41, 50, 51}, 1, 2), (Tokens{70}));
}

TEST(NgramProposer, ReadsOnlyTextCachedUnderTheRequestsSalt) {
  KvCacheManager kv(8, kBlock);
  NgramProposer proposer(&kv);
  cache_tokens(kv, iota_tokens(100, 8), 42);
  EXPECT_TRUE(draft(proposer, {101, 102}, 4, 1, 0).empty());
  EXPECT_EQ(draft(proposer, {101, 102}, 4, 2, 42), (Tokens{103, 104, 105, 106}));
}

TEST(NgramProposer, StopsDraftingFromEvictedAndClearedBlocks) {
  KvCacheManager kv(4, kBlock);
  NgramProposer proposer(&kv);
  cache_tokens(kv, iota_tokens(100, 8));
  EXPECT_EQ(draft(proposer, {101, 102}, 2, 1), (Tokens{103, 104}));
  std::vector<BlockId> table;
  ASSERT_EQ(kv.allocate_slots(table, 4 * kBlock), 4);  // every block, the cached two evicted
  EXPECT_TRUE(draft(proposer, {101, 102}, 2, 2).empty());
  kv.free(table);
  cache_tokens(kv, iota_tokens(100, 8));
  EXPECT_EQ(kv.clear_cache(), 2);
  EXPECT_TRUE(draft(proposer, {101, 102}, 2, 3).empty());
  kv.pool().check_invariants();
  proposer.cached_index()->check_invariants();
}

TEST(NgramProposer, AttachesToAWarmCacheAndDetachesWhenDestroyed) {
  KvCacheManager kv(8, kBlock);
  cache_tokens(kv, iota_tokens(100, 8));
  {
    NgramProposer proposer(&kv);
    EXPECT_EQ(draft(proposer, {101, 102}, 2), (Tokens{103, 104}));
  }
  cache_tokens(kv, iota_tokens(200, 8));  // no observer left to call
  EXPECT_EQ(kv.clear_cache(), 4);
  kv.pool().check_invariants();
}

}  // namespace
}  // namespace pagedlm::speculative
