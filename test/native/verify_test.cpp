// The pure decisions of speculative decoding (speculative/verify.h) and the block-table truncation that
// rolls back rejected proposed tokens.
#include <gtest/gtest.h>

#include <random>

#include "kv/kv_cache_manager.h"
#include "speculative/verify.h"

namespace pagedlm::speculative {
namespace {

// A draw that returns `targets` in order, recording how many rows it was asked for.
struct ScriptedDraws {
  std::vector<int32_t> targets;
  std::vector<size_t> rows;
  int32_t operator()(size_t row) {
    rows.push_back(row);
    return targets.at(row);
  }
};

TEST(VerifyProposal, KeepsTheLongestAgreeingPrefixThenTheTargetsToken) {
  ScriptedDraws draws{{5, 6, 9, 1}, {}};
  EXPECT_EQ(verify_proposal({5, 6, 7}, std::ref(draws)), 2);
  EXPECT_EQ(draws.rows, (std::vector<size_t>{0, 1, 2})) << "the step's tokens: 5, 6, then the target's 9";
}

TEST(VerifyProposal, AFullyAcceptedProposalAddsTheNextRowsToken) {
  ScriptedDraws draws{{5, 6, 7, 8}, {}};
  EXPECT_EQ(verify_proposal({5, 6, 7}, std::ref(draws)), 3);
  EXPECT_EQ(draws.rows, (std::vector<size_t>{0, 1, 2, 3}));
}

TEST(VerifyProposal, AWrongFirstGuessStillYieldsOneToken) {
  ScriptedDraws draws{{4, 6}, {}};
  EXPECT_EQ(verify_proposal({5, 6}, std::ref(draws)), 0);
  EXPECT_EQ(draws.rows, (std::vector<size_t>{0}));
}

// Sampling: drawing t ~ p and keeping the guess x only when t == x accepts x with probability p(x) and
// otherwise yields p without x, renormalized; overall the step's first token is distributed as p.
TEST(VerifyProposal, DrawsKeepTheTargetDistribution) {
  const std::vector<double> p = {0.5, 0.3, 0.15, 0.05};
  std::mt19937_64 rng(3);
  std::discrete_distribution<int32_t> target(p.begin(), p.end());
  constexpr int kTrials = 200000;
  std::vector<int> first(p.size(), 0);
  int accepted = 0;
  for (int i = 0; i < kTrials; ++i) {
    std::vector<int32_t> drawn;
    const int32_t kept = verify_proposal({1}, [&](size_t) {
      drawn.push_back(target(rng));
      return drawn.back();
    });
    accepted += kept;
    ++first[static_cast<size_t>(drawn[0])];
  }
  EXPECT_NEAR(static_cast<double>(accepted) / kTrials, p[1], 0.005);
  for (size_t t = 0; t < p.size(); ++t) EXPECT_NEAR(static_cast<double>(first[t]) / kTrials, p[t], 0.005) << "token " << t;
}

TEST(ProposalRoom, LeavesRoomForTheTargetsOwnToken) {
  EXPECT_EQ(proposal_room(0, 10, 5, 100), 9);
  EXPECT_EQ(proposal_room(8, 10, 5, 100), 1);
  EXPECT_EQ(proposal_room(9, 10, 5, 100), 0);
  EXPECT_EQ(proposal_room(0, 100, 97, 100), 2);
  EXPECT_EQ(proposal_room(0, 100, 100, 100), 0);
}

TEST(AdaptiveK, GrowsOnFullAcceptanceAndShrinksOnFullRejection) {
  AdaptiveK k(8);
  EXPECT_EQ(k.next(), 8);
  k.record(8, 0);
  EXPECT_EQ(k.next(), 4);
  k.record(4, 2);
  EXPECT_EQ(k.next(), 4) << "a partial acceptance keeps k";
  k.record(4, 4);
  EXPECT_EQ(k.next(), 8);
  k.record(8, 8);
  EXPECT_EQ(k.next(), 8) << "never past the request's limit";
  k.record(0, 0);
  EXPECT_EQ(k.next(), 8) << "an empty proposal says nothing";
}

TEST(AdaptiveK, PausesLongerAfterEachRejectionAtOne) {
  AdaptiveK k(2);
  k.record(2, 0);
  ASSERT_EQ(k.next(), 1);
  std::vector<int32_t> pauses;
  for (int round = 0; round < 9; ++round) {
    k.record(1, 0);
    int32_t paused = 0;
    while (k.next() == 0) ++paused;
    pauses.push_back(paused);
  }
  EXPECT_EQ(pauses, (std::vector<int32_t>{1, 2, 4, 8, 16, 32, 64, 64, 64}));
  k.record(1, 1);  // accepted: proposing resumes at once, growing again
  EXPECT_EQ(k.next(), 2);
  k.record(2, 0);
  k.record(1, 0);
  EXPECT_EQ(k.next(), 0);
  EXPECT_EQ(k.next(), 1) << "the pause starts over after an acceptance";
}

TEST(KvTruncate, ReleasesTheBlocksPastTheKeptTokens) {
  KvCacheManager kv(10, 4);
  std::vector<BlockId> table;
  ASSERT_EQ(kv.allocate_slots(table, 14), 4);
  std::vector<int32_t> tokens(14);
  for (int i = 0; i < 14; ++i) tokens[static_cast<size_t>(i)] = i;
  std::vector<BlockHash> hashes;
  kv.cache_full_blocks(tokens, 6, 0, table, hashes);  // one full block registered
  EXPECT_EQ(kv.truncate(table, 6), 2);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(kv.pool().num_free(), 8);
  EXPECT_EQ(kv.pool().num_cached(), 0) << "the released blocks held no registered tokens";
  kv.check_invariants({&table});
  EXPECT_EQ(kv.truncate(table, 8), 0);
  EXPECT_EQ(kv.truncate(table, 0), 2);
  kv.check_invariants({&table});
  EXPECT_EQ(kv.pool().num_cached(), 1) << "the registered block stays cached";
}

}  // namespace
}  // namespace pagedlm::speculative
