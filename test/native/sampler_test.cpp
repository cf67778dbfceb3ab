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
