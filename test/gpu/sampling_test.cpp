// Device sampling against the CPU sampler: penalties + argmax pick the token greedy Sampler picks, and the
// top-k candidates come back in the sampler's order (value, then id), ties and NaN included.
#include <algorithm>
#include <map>

#include "engine/sampler.h"
#include "gpu_test_support.h"

namespace pagedlm {
namespace {

using gpu_test::DeviceBuffer;
using gpu_test::random_floats;

// Logits rounded to a coarse grid, so that many tie, with a NaN and infinities sprinkled in.
std::vector<float> tied_logits(std::mt19937& rng, int rows, int vocab) {
  std::vector<float> logits = random_floats(rng, static_cast<size_t>(rows) * vocab, 3.0f);
  for (float& x : logits) x = std::round(x * 4.0f) / 4.0f;
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  for (int r = 0; r < rows; ++r) {
    logits[static_cast<size_t>(r) * vocab + pick(rng)] = NAN;
    logits[static_cast<size_t>(r) * vocab + pick(rng)] = -INFINITY;
    if (r % 2 == 1) logits[static_cast<size_t>(r) * vocab + pick(rng)] = -0.0f;
  }
  return logits;
}

TEST(CudaSampling, PenaltiesThenArgmaxPickWhatGreedySamplerPicks) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(13);
  const int rows = 6, vocab = 3001;
  const std::vector<float> logits = tied_logits(rng, rows, vocab);
  std::vector<cuda::PenaltyRow> penalties;
  std::vector<int32_t> row_starts = {0}, ids, counts;
  std::vector<std::vector<int32_t>> histories(rows);
  std::uniform_int_distribution<int> token(0, 40);  // histories revisit a few ids
  for (int r = 0; r < rows; ++r) {
    SamplingParams sp;
    sp.temperature = 0.0f;
    sp.repetition_penalty = r == 0 ? 1.0f : 1.0f + 0.3f * r;
    sp.frequency_penalty = 0.1f * (r % 3);
    sp.presence_penalty = 0.5f * (r % 2);
    sp.penalty_last_n = -1;
    penalties.push_back({sp.repetition_penalty, sp.frequency_penalty, sp.presence_penalty});
    for (int i = 0; i < 30 * r; ++i) histories[r].push_back(token(rng));
    std::map<int32_t, int32_t> window;
    for (int32_t id : histories[r]) ++window[id];
    for (const auto& [id, count] : window) {
      ids.push_back(id);
      counts.push_back(count);
    }
    row_starts.push_back(static_cast<int32_t>(ids.size()));
  }
  DeviceBuffer<float> dlogits(logits);
  DeviceBuffer<cuda::PenaltyRow> dpenalties(penalties);
  DeviceBuffer<int32_t> dstarts(row_starts), dids(ids), dcounts(counts), picked(rows);
  ASSERT_EQ(cuda::launch_penalties({dlogits.get(), dpenalties.get(), dstarts.get(), dids.get(), dcounts.get(), rows, vocab}, nullptr),
            cudaSuccess);
  ASSERT_EQ(cuda::launch_argmax({dlogits.get(), picked.get(), rows, vocab}, nullptr), cudaSuccess);
  const std::vector<int32_t> got = picked.download();
  for (int r = 0; r < rows; ++r) {
    SamplingParams sp;
    sp.temperature = 0.0f;
    sp.repetition_penalty = penalties[r].repetition;
    sp.frequency_penalty = penalties[r].frequency;
    sp.presence_penalty = penalties[r].presence;
    sp.penalty_last_n = -1;
    Sampler sampler(sp);
    EXPECT_EQ(got[r], sampler.sample(logits.data() + static_cast<size_t>(r) * vocab, vocab, histories[r])) << "row " << r;
  }
}

TEST(CudaSampling, ArgmaxBreaksTiesByLowestIdAndRanksNanLast) {
  PAGEDLM_REQUIRE_DEVICE();
  const std::vector<float> logits = {NAN, 2.0f, 5.0f, 5.0f, -1.0f, /* row 2 */ NAN, NAN, -INFINITY, NAN, NAN};
  DeviceBuffer<float> dlogits(logits);
  DeviceBuffer<int32_t> picked(2);
  ASSERT_EQ(cuda::launch_argmax({dlogits.get(), picked.get(), 2, 5}, nullptr), cudaSuccess);
  EXPECT_EQ(picked.download(), (std::vector<int32_t>{2, 0}));
}

TEST(CudaSampling, TopKMatchesTheSamplerOrder) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(14);
  for (const auto& [vocab, k] : {std::pair{10, 10}, {10, 1}, {1000, 5}, {1000, 40}, {5000, 1024}, {32000, 64}}) {
    const int rows = 3;
    const std::vector<float> logits = tied_logits(rng, rows, vocab);
    DeviceBuffer<float> dlogits(logits), values(static_cast<size_t>(rows) * k);
    DeviceBuffer<int32_t> ids(static_cast<size_t>(rows) * k);
    ASSERT_EQ(cuda::launch_top_k({dlogits.get(), ids.get(), values.get(), rows, vocab, k}, nullptr), cudaSuccess);
    const std::vector<int32_t> got_ids = ids.download();
    const std::vector<float> got_values = values.download();
    for (int r = 0; r < rows; ++r) {
      std::vector<std::pair<float, int32_t>> c(vocab);
      for (int i = 0; i < vocab; ++i) {
        const float x = logits[static_cast<size_t>(r) * vocab + i];
        c[i] = {std::isnan(x) ? -INFINITY : x, i};
      }
      std::partial_sort(c.begin(), c.begin() + k, c.end(),
                        [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
      for (int i = 0; i < k; ++i) {
        ASSERT_EQ(got_ids[static_cast<size_t>(r) * k + i], c[i].second) << "vocab " << vocab << " k " << k << " row " << r << " rank " << i;
        ASSERT_EQ(got_values[static_cast<size_t>(r) * k + i], c[i].first) << "vocab " << vocab << " k " << k << " rank " << i;
      }
    }
  }
}

TEST(CudaSampling, TopKRejectsKOutOfRange) {
  EXPECT_EQ(cuda::launch_top_k({nullptr, nullptr, nullptr, 1, 100, 0}, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::launch_top_k({nullptr, nullptr, nullptr, 1, 100, 101}, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::launch_top_k({nullptr, nullptr, nullptr, 1, 5000, cuda::kMaxTopK + 1}, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace pagedlm
