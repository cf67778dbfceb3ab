// KV element types: conversions, their error bounds, and what each costs in model quality against f32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "kv/kv_dtype.h"
#include "support/shared_models.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

TEST(KvDtype, Fp8E4M3Codes) {
  EXPECT_EQ(fp8_e4m3_to_float(0x00), 0.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x38), 1.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_float(0x7F)));
  EXPECT_EQ(float_to_fp8_e4m3(1e6f), 0x7E);  // saturates
  EXPECT_EQ(float_to_fp8_e4m3(-1.0f), 0xB8);
  // Every finite code round-trips; every float lands on its nearest code.
  for (int b = 0; b < 256; ++b) {
    const float v = fp8_e4m3_to_float(static_cast<uint8_t>(b));
    if (std::isnan(v) || (b & 0x7F) == 0) continue;
    EXPECT_EQ(float_to_fp8_e4m3(v), b) << b;
  }
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> dist(-448, 448);
  for (int i = 0; i < 10000; ++i) {
    const float x = dist(rng);
    const float y = fp8_e4m3_to_float(float_to_fp8_e4m3(x));
    EXPECT_LE(std::fabs(y - x), std::fabs(x) / 16 + std::ldexp(1.0f, -10)) << x;  // 3 mantissa bits: half an ulp
  }
}

TEST(KvDtype, RowsRoundTripWithinTheirPrecision) {
  std::mt19937 rng(4);
  std::normal_distribution<float> dist(0, 2);
  const std::pair<KvDtype, float> cases[] = {
      {KvDtype::kF32, 0}, {KvDtype::kF16, 1e-3f}, {KvDtype::kBF16, 8e-3f}, {KvDtype::kInt8, 1.0f / 254}, {KvDtype::kFp8E4M3, 1.0f / 16}};
  for (auto [dtype, relative] : cases) {
    for (int n : {1, 8, 64, 128}) {
      std::vector<float> x(n), y(n);
      for (float& v : x) v = dist(rng);
      std::vector<uint8_t> bytes(n * kv_dtype_bytes(dtype));
      float scale = 0;
      kv_store_row(dtype, x.data(), bytes.data(), &scale, n);
      kv_load_row(dtype, bytes.data(), &scale, y.data(), n);
      float amax = 0;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      for (int i = 0; i < n; ++i) {
        const float bound = (dtype == KvDtype::kInt8 ? amax : std::fabs(x[i])) * relative + 1e-6f;
        ASSERT_LE(std::fabs(y[i] - x[i]), bound) << kv_dtype_name(dtype) << " n=" << n;
      }
    }
  }
  EXPECT_EQ(parse_kv_dtype("fp8"), KvDtype::kFp8E4M3);
  EXPECT_FALSE(parse_kv_dtype("f8").has_value());
}

TEST(KvDtype, BytesPerTokenFollowTheFormula) {
  // 2 x layers x kv_heads x (head_dim x bytes + scale)
  EXPECT_EQ(KvLayout::kv_bytes_per_token(16, 8, 64, KvDtype::kF16), 2u * 16 * 8 * 64 * 2);
  EXPECT_EQ(KvLayout::kv_bytes_per_token(16, 8, 64, KvDtype::kF32), 2u * 16 * 8 * 64 * 4);
  EXPECT_EQ(KvLayout::kv_bytes_per_token(16, 8, 64, KvDtype::kBF16), 2u * 16 * 8 * 64 * 2);
  EXPECT_EQ(KvLayout::kv_bytes_per_token(16, 8, 64, KvDtype::kInt8), 2u * 16 * 8 * (64 + 4));
  EXPECT_EQ(KvLayout::kv_bytes_per_token(16, 8, 64, KvDtype::kFp8E4M3), 2u * 16 * 8 * (64 + 4));
}

// Teacher-forced: every KV type sees the same tokens; compare each position's logits with f32 KV.
struct Quality {
  double agreement;    // fraction of positions whose argmax equals f32's
  double logit_error;  // largest |logit - f32 logit| over the largest |f32 logit|, over all positions
};

std::vector<std::vector<float>> teacher_forced_logits(const std::shared_ptr<const LlamaModel>& model, KvDtype dtype, const std::vector<int32_t>& tokens) {
  const ModelConfig& c = model->config();
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, 16, static_cast<int32_t>((tokens.size() + 15) / 16), dtype};
  auto backend = CpuBackend::create(model, layout, 2).take();
  std::vector<BlockId> table(layout.num_blocks);
  for (int b = 0; b < layout.num_blocks; ++b) table[b] = b;
  std::vector<std::vector<float>> out;
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    ForwardBatch step;
    step.tokens = {tokens[pos]};
    step.sequences.push_back({0, 1, static_cast<int32_t>(pos), table.data(), true});
    out.emplace_back(c.vocab_size);
    EXPECT_TRUE(backend->forward(step, out.back().data()).is_ok());
  }
  return out;
}

Quality compare(const std::vector<std::vector<float>>& got, const std::vector<std::vector<float>>& ref) {
  int agree = 0;
  double err = 0;
  for (size_t p = 0; p < ref.size(); ++p) {
    const auto argmax = [](const std::vector<float>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); };
    agree += argmax(got[p]) == argmax(ref[p]);
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < ref[p].size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(got[p][i] - ref[p][i])));
      max_ref = std::max(max_ref, static_cast<double>(std::fabs(ref[p][i])));
    }
    err = std::max(err, max_diff / max_ref);
  }
  return {static_cast<double>(agree) / ref.size(), err};
}

// Prints the table the README quotes, and holds each type to a floor.
TEST(KvDtype, QualityAgainstF32) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "stories260K.gguf");
  auto file = GgufFile::open(path);
  auto model = LlamaModel::load(file.take()).take();
  // 500 positions of the model's own greedy continuation from BOS (a natural sequence for it).
  std::vector<int32_t> tokens = {1};
  {
    KvLayout layout{model->config().n_layers, model->config().n_kv_heads, model->config().head_dim, 16, 32, KvDtype::kF32};
    auto backend = CpuBackend::create(model, layout, 2).take();
    std::vector<BlockId> table(32);
    for (int b = 0; b < 32; ++b) table[b] = b;
    std::vector<float> logits(model->config().vocab_size);
    while (tokens.size() < 500) {
      ForwardBatch step;
      step.tokens = {tokens.back()};
      step.sequences.push_back({0, 1, static_cast<int32_t>(tokens.size() - 1), table.data(), true});
      ASSERT_TRUE(backend->forward(step, logits.data()).is_ok());
      tokens.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    }
  }
  const auto reference = teacher_forced_logits(model, KvDtype::kF32, tokens);
  std::printf("KV dtype quality on stories260K, %zu teacher-forced positions:\n", tokens.size());
  std::printf("  dtype  bytes/token  argmax agreement  max logit error\n");
  const std::pair<KvDtype, double> floors[] = {{KvDtype::kF16, 0.99}, {KvDtype::kBF16, 0.97}, {KvDtype::kInt8, 0.97}, {KvDtype::kFp8E4M3, 0.85}};
  for (auto [dtype, floor] : floors) {
    const Quality q = compare(teacher_forced_logits(model, dtype, tokens), reference);
    const ModelConfig& c = model->config();
    std::printf("  %-5s  %11zu  %15.1f%%  %15.2e\n", kv_dtype_name(dtype), KvLayout::kv_bytes_per_token(c.n_layers, c.n_kv_heads, c.head_dim, dtype),
                100 * q.agreement, q.logit_error);
    EXPECT_GE(q.agreement, floor) << kv_dtype_name(dtype);
  }
}

}  // namespace
}  // namespace pagedlm
