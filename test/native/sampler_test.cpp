#include <gtest/gtest.h>

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

}  // namespace
}  // namespace pagedlm
