// Candidates picked where the logits are (backend/cpu/logit_select.h) against the sampler's own choice from
// the whole row: the same token for greedy, the same ordered candidates (and so the same draws) for top-k.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/logit_select.h"
#include "engine/sampler.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

// Logits with many ties (rounded to halves), a few NaN and infinities when `odd`.
std::vector<float> tied_logits(std::mt19937& rng, int n, bool odd) {
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::uniform_int_distribution<int> pick(0, 99);
  std::vector<float> x(n);
  for (float& v : x) {
    v = std::round(dist(rng) * 2.0f) / 2.0f;
    if (!odd) continue;
    const int p = pick(rng);
    if (p == 0) v = NAN;
    if (p == 1) v = -INFINITY;
  }
  return x;
}

const int kSizes[] = {1, 2, 7, 31, 4095, 4096, 4097, 9001, 20000};

class LogitSelect : public ::testing::TestWithParam<const CpuKernels*> {
 protected:
  void SetUp() override {
    if (!cpu_supports_kernels(*GetParam())) GTEST_SKIP() << "this CPU cannot run the " << GetParam()->name << " kernels";
  }
};

TEST_P(LogitSelect, ArgmaxIsTheGreedySample) {
  std::mt19937 rng(41);
  Sampler greedy({.temperature = 0.0f});
  for (int n : kSizes) {
    for (int trial = 0; trial < 6; ++trial) {
      std::vector<float> x = tied_logits(rng, n, trial % 2 == 1);
      if (trial == 4) x.back() = 1e30f;   // the best in the last chunk's tail
      if (trial == 5) x.assign(n, NAN);   // nothing to rank
      ASSERT_EQ(argmax_logits(*GetParam(), x.data(), n), greedy.sample(x.data(), n, {})) << "n " << n << " trial " << trial;
    }
  }
  // The largest value in two places thousands apart (argmax_logits looks at chunks): the lower id wins.
  std::vector<float> x(9000, 0.0f);
  x[5000] = x[1000] = 2.0f;
  EXPECT_EQ(argmax_logits(*GetParam(), x.data(), 9000), 1000);
  std::vector<float> mixed = {NAN, -INFINITY, NAN, -INFINITY};
  EXPECT_EQ(argmax_logits(*GetParam(), mixed.data(), 4), greedy.sample(mixed.data(), 4, {}));
}

TEST(LogitSelectTopK, IsTheSortedBestAndDrawsAsTheWholeRow) {
  std::mt19937 rng(43);
  for (int n : kSizes) {
    for (int k : {1, 5, 40, 300}) {
      if (k > n) continue;
      const std::vector<float> x = tied_logits(rng, n, k % 2 == 1);
      std::vector<int32_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      const auto value = [&](int i) { return std::isnan(x[i]) ? -INFINITY : x[i]; };
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return value(a) > value(b); });
      std::vector<int32_t> ids(k);
      std::vector<float> values(k);
      top_k_logits(x.data(), n, k, ids.data(), values.data());
      for (int i = 0; i < k; ++i) {
        ASSERT_EQ(ids[i], order[i]) << "n " << n << " k " << k << " rank " << i;
        ASSERT_EQ(values[i], value(order[i]));
      }
      if (k == n) continue;
      const SamplingParams p{.temperature = 0.9f, .top_k = k, .seed = static_cast<uint64_t>(n)};
      Sampler whole(p), from_top(p);
      for (int draw = 0; draw < 20; ++draw) ASSERT_EQ(from_top.sample_top_k(ids.data(), values.data(), k), whole.sample(x.data(), n, {}));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tables, LogitSelect, ::testing::ValuesIn(built_cpu_kernels()),
                         [](const auto& info) {
                           std::string name = info.param->name;  // "neon-dotprod": a test name takes no '-'
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// A decode step whose rows want the argmax or the top-k gets them from the CPU backend, matching its logits.
TEST(CpuBackendCandidates, GreedyAndTopKRowsAreFilledFromTheLogits) {
  std::vector<uint8_t> storage;
  auto model = testing::load_synthetic_model({.layers = 2}, storage);
  const ModelConfig& c = model->config();
  auto backend = CpuBackend::create(model, KvLayout{c.n_layers, c.n_kv_heads, c.head_dim, 16, 8, KvDtype::kF32, KvDtype::kF32}, 2).take();
  std::vector<BlockId> table_a = {0}, table_b = {1}, table_c = {2};
  ForwardBatch batch;
  batch.tokens = {3, 5, 7, 11, 13};
  batch.sequences.push_back({0, 2, 0, table_a.data(), true, true, 0});    // greedy
  batch.sequences.push_back({2, 2, 0, table_b.data(), true, false, 6});   // top-6
  batch.sequences.push_back({4, 1, 0, table_c.data(), true, false, 0});   // needs every logit
  const int width = 6, vocab = c.vocab_size;
  std::vector<int32_t> greedy(3, -1), top_ids(3 * width, -1);
  std::vector<float> top_values(top_ids.size()), logits(3 * vocab);
  batch.greedy_tokens = greedy.data();
  batch.top_k_width = width;
  batch.top_ids = top_ids.data();
  batch.top_values = top_values.data();
  ASSERT_TRUE(backend->forward(batch, logits.data()).is_ok());
  EXPECT_EQ(greedy[0], Sampler({.temperature = 0.0f}).sample(logits.data(), vocab, {}));
  std::vector<int32_t> want_ids(width);
  std::vector<float> want_values(width);
  top_k_logits(logits.data() + vocab, vocab, width, want_ids.data(), want_values.data());
  EXPECT_EQ(std::vector<int32_t>(top_ids.begin() + width, top_ids.begin() + 2 * width), want_ids);
  EXPECT_EQ(greedy[1], -1);
  EXPECT_EQ(greedy[2], -1) << "a row that needs every logit is left to the sampler";
  EXPECT_EQ(top_ids[2 * width], -1);
  EXPECT_EQ(top_ids[0], -1) << "a greedy row needs only its token";
}

}  // namespace
}  // namespace pagedlm
