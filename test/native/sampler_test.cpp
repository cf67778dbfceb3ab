#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <map>

#include "engine/sampler.h"

namespace pagedlm {
namespace {

std::map<int32_t, int> histogram(SamplingParams p, const std::vector<float>& logits, int draws, std::vector<int32_t> history = {}) {
  Sampler s(p);
  std::map<int32_t, int> h;
  for (int i = 0; i < draws; ++i) ++h[s.sample(logits.data(), static_cast<int32_t>(logits.size()), history)];
  return h;
}

const std::vector<float> kLogits = {1.0f, 3.0f, 2.9f, -1.0f, 0.5f};

TEST(Sampler, GreedyPicksTheLargest) {
  EXPECT_EQ(histogram({.temperature = 0}, kLogits, 5), (std::map<int32_t, int>{{1, 5}}));
}

TEST(Sampler, TopKKeepsOnlyTheBest) {
  const auto h = histogram({.temperature = 1.0f, .top_k = 2, .top_p = 1, .min_p = 0, .seed = 1}, kLogits, 2000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_GT(h.at(1), h.at(2));
}

TEST(Sampler, TopPCutsTheTail) {
  // Softmax of kLogits: ~[0.06, 0.47, 0.43, 0.01, 0.03]; top_p 0.85 keeps tokens 1 and 2.
  const auto h = histogram({.temperature = 1.0f, .top_k = 0, .top_p = 0.85f, .min_p = 0, .seed = 2}, kLogits, 2000);
  EXPECT_EQ(h.size(), 2u);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  const auto h = histogram({.temperature = 1.0f, .top_k = 0, .top_p = 1, .min_p = 0.2f, .seed = 3}, kLogits, 2000);
  EXPECT_EQ(h.size(), 2u);  // 0.06 < 0.2 * 0.47
}

TEST(Sampler, PenaltiesDiscourageRepeats) {
  const SamplingParams greedy_rep{.temperature = 0, .repetition_penalty = 2.0f};
  EXPECT_EQ(histogram(greedy_rep, kLogits, 1, {1}).begin()->first, 2);  // 3.0 / 2 < 2.9
  const SamplingParams presence{.temperature = 0, .presence_penalty = 0.5f};
  EXPECT_EQ(histogram(presence, kLogits, 1, {1}).begin()->first, 2);
  const SamplingParams frequency{.temperature = 0, .frequency_penalty = 0.05f};
  EXPECT_EQ(histogram(frequency, kLogits, 1, {1}).begin()->first, 1);       // 3.0 - 0.05 > 2.9
  EXPECT_EQ(histogram(frequency, kLogits, 1, {1, 1, 1}).begin()->first, 2); // 3.0 - 0.15 < 2.9
}

TEST(Sampler, SameSeedSameDraws) {
  const SamplingParams p{.temperature = 1.5f, .top_k = 0, .top_p = 1, .min_p = 0, .seed = 42};
  Sampler a(p), b(p);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(kLogits.data(), 5, {}), b.sample(kLogits.data(), 5, {}));
}

TEST(Sampler, TemperatureFlattens) {
  const auto hot = histogram({.temperature = 5.0f, .top_k = 0, .top_p = 1, .min_p = 0, .seed = 4}, kLogits, 4000);
  EXPECT_EQ(hot.size(), 5u);
}

// A backend that returns the top-k candidates (value, then id; more than top_k allowed) gets the draws
// sample() makes from the whole vocabulary with the same seed, ties and all.
TEST(Sampler, TopKCandidatesDrawAsTheWholeVocabulary) {
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> logits(1000);
  for (float& x : logits) x = std::round(dist(rng) * 2.0f) / 2.0f;  // many ties
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  for (const SamplingParams& p : {SamplingParams{.temperature = 0.8f, .top_k = 40, .seed = 5},
                                  SamplingParams{.temperature = 1.3f, .top_k = 7, .top_p = 0.5f, .min_p = 0.0f, .seed = 6},
                                  SamplingParams{.temperature = 0.0f, .top_k = 40}}) {
    Sampler whole(p), from_top(p);
    const int32_t width = std::max(p.temperature > 0 ? from_top.top_k_needed(1000) : 1, 64);
    std::vector<int32_t> ids(order.begin(), order.begin() + width);
    std::vector<float> values;
    for (int32_t id : ids) values.push_back(logits[id]);
    for (int i = 0; i < 200; ++i) ASSERT_EQ(from_top.sample_top_k(ids.data(), values.data(), width), whole.sample(logits.data(), 1000, {})) << i;
  }
  EXPECT_EQ(Sampler({.temperature = 0.8f, .top_k = 40, .repetition_penalty = 1.1f}).top_k_needed(1000), 0) << "penalties need every logit";
  EXPECT_EQ(Sampler({.temperature = 0.8f, .top_k = 0}).top_k_needed(1000), 0);
  EXPECT_EQ(Sampler({.temperature = 0.8f, .top_k = 40}).top_k_needed(1000), 40);
}

}  // namespace
}  // namespace pagedlm

namespace pagedlm {
namespace {

std::vector<double> reference_log_softmax(const std::vector<float>& logits) {
  double max = -INFINITY;
  for (float v : logits) max = std::max(max, static_cast<double>(v));
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max);
  std::vector<double> out;
  for (float v : logits) out.push_back(static_cast<double>(v) - max - std::log(sum));
  return out;
}

TEST(Logprobs, EqualADoublePrecisionLogSoftmaxOfTheRawLogits) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 8.0f);
  std::vector<float> logits(1000);
  for (float& v : logits) v = normal(rng) + 500.0f;  // a large offset: a naive exp would overflow
  const std::vector<double> expected = reference_log_softmax(logits);
  const TokenLogprobs lp = compute_logprobs(logits.data(), 1000, 123, 20);
  EXPECT_EQ(lp.chosen.token, 123);
  EXPECT_NEAR(lp.chosen.logprob, expected[123], 1e-5);
  ASSERT_EQ(lp.top.size(), 20u);
  std::vector<int32_t> order(1000);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  for (size_t k = 0; k < lp.top.size(); ++k) {
    EXPECT_EQ(lp.top[k].token, order[k]) << k;
    EXPECT_NEAR(lp.top[k].logprob, expected[order[k]], 1e-5) << k;
    EXPECT_LE(lp.top[k].logprob, 0.0f);
  }
}

TEST(Logprobs, GreedysTokenHasTheLargestLogprob) {
  Sampler greedy({.temperature = 0});
  const int32_t token = greedy.sample(kLogits.data(), static_cast<int32_t>(kLogits.size()), {});
  const TokenLogprobs lp = compute_logprobs(kLogits.data(), static_cast<int32_t>(kLogits.size()), token, 5);
  EXPECT_EQ(lp.top[0].token, token);
  EXPECT_EQ(lp.top[0].logprob, lp.chosen.logprob);
  double total = 0;
  for (const LogprobEntry& e : lp.top) total += std::exp(static_cast<double>(e.logprob));
  EXPECT_NEAR(total, 1.0, 1e-6);  // top 5 of a 5-token vocabulary: the whole distribution
  EXPECT_EQ((std::vector<int32_t>{lp.top[0].token, lp.top[1].token, lp.top[2].token, lp.top[3].token, lp.top[4].token}),
            (std::vector<int32_t>{1, 2, 0, 4, 3}));
}

TEST(Logprobs, IgnoreTemperatureAndNanRanksLast) {
  const std::vector<float> logits = {0.0f, NAN, 1.0f, 1.0f};
  const TokenLogprobs lp = compute_logprobs(logits.data(), 4, 1, 4);
  EXPECT_EQ(lp.chosen.logprob, -INFINITY);
  const double expected = 1.0 - std::log(1.0 + 2.0 * std::exp(1.0));
  EXPECT_NEAR(lp.top[0].logprob, expected, 1e-6);
  EXPECT_EQ(lp.top[0].token, 2);  // a tie: the lower id first
  EXPECT_EQ(lp.top[1].token, 3);
  EXPECT_EQ(lp.top[3].token, 1);
  EXPECT_TRUE(compute_logprobs(logits.data(), 4, 0, 0).top.empty());
}

}  // namespace
}  // namespace pagedlm
