// KV element types: conversions, their error bounds, and what each costs in model quality against f32.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "common/half.h"
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
      std::vector<uint8_t> bytes(kv_row_bytes(dtype, n));
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
  EXPECT_EQ(parse_kv_dtype("int4"), KvDtype::kInt4);
  EXPECT_FALSE(parse_kv_dtype("f8").has_value());
}

// int4 V: each value within half a step (scale / 2) of itself, the step set by its group of 32's largest
// magnitude; a group's largest value never clips.
TEST(KvDtype, Int4ValueRowsRoundTripWithinHalfAStep) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0, 2);
  for (int n : {1, 8, 31, 32, 33, 64, 80, 128}) {
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<float> x(n), y(n);
      for (float& v : x) v = dist(rng) * (trial % 5 == 0 ? 1000.0f : 1.0f);
      if (trial == 1) std::fill(x.begin(), x.end(), 0.0f);
      std::vector<uint8_t> row(kv_row_bytes(KvDtype::kInt4, n));
      std::vector<uint16_t> scales((n + kInt4ValueGroup - 1) / kInt4ValueGroup);
      int4_store_value_row(x.data(), row.data(), scales.data(), n);
      int4_load_value_row(row.data(), scales.data(), y.data(), n);
      for (int g = 0; g * kInt4ValueGroup < n; ++g) {
        float amax = 0;
        for (int i = g * kInt4ValueGroup; i < std::min(n, (g + 1) * kInt4ValueGroup); ++i) amax = std::max(amax, std::fabs(x[i]));
        const float step = fp16_to_float(scales[g]);
        ASSERT_GE(step * kInt4Levels, amax) << "n=" << n << " group " << g;
        ASSERT_LE(step, amax / kInt4Levels * 1.001f + 1e-7f) << "n=" << n << " group " << g;
        for (int i = g * kInt4ValueGroup; i < std::min(n, (g + 1) * kInt4ValueGroup); ++i) {
          ASSERT_LE(std::fabs(y[i] - x[i]), step / 2 * 1.0001f) << "n=" << n << " i=" << i;
        }
      }
    }
  }
}

// int4 K: channels share a scale across the block's rows. A row is rounded once under the scale its channel
// has when it is written and once more under each wider scale a later row brings (the requantization), each
// rounding within half of that step; the channel's final scale reaches its largest magnitude.
TEST(KvDtype, Int4KeyPiecesRoundTripPerChannel) {
  std::mt19937 rng(6);
  std::normal_distribution<float> dist(0, 1);
  const int d = 64, bs = 16;
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<float> x(static_cast<size_t>(bs) * d), y(x.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = dist(rng) * (1 + static_cast<float>(i % d) / 8) + (i % d == 3 ? 20.0f : 0.0f);
    if (trial % 2 == 1) std::sort(x.begin(), x.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); });  // widen on every row
    std::vector<uint8_t> piece(kv_row_bytes(KvDtype::kInt4, d) * bs, 0xAB);  // a reused block's stale bytes
    std::vector<uint16_t> scales(d, 0x7BFF);
    std::vector<std::vector<float>> history(d);  // each channel's scale after each row
    for (int slot = 0; slot < bs; ++slot) {
      int4_store_key_row(x.data() + static_cast<size_t>(slot) * d, piece.data(), scales.data(), slot, d);
      for (int c = 0; c < d; ++c) history[c].push_back(fp16_to_float(scales[c]));
    }
    int4_load_key_rows(piece.data(), scales.data(), 0, bs, d, y.data());
    for (int c = 0; c < d; ++c) {
      float amax = 0;
      for (int r = 0; r < bs; ++r) amax = std::max(amax, std::fabs(x[static_cast<size_t>(r) * d + c]));
      ASSERT_GE(fp16_to_float(scales[c]) * kInt4Levels, amax) << "channel " << c;
      for (int r = 0; r < bs; ++r) {
        float bound = history[c][r] / 2;
        for (int later = r + 1; later < bs; ++later) {
          if (history[c][later] != history[c][later - 1]) bound += history[c][later] / 2;
        }
        const size_t i = static_cast<size_t>(r) * d + c;
        ASSERT_LE(std::fabs(y[i] - x[i]), bound * 1.0001f) << "channel " << c << " row " << r;
      }
    }
  }
}

// A piece's bits depend only on its rows in order, whichever calls wrote them.
TEST(KvDtype, Int4KeyPieceIsAFunctionOfItsRows) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0, 3);
  const int d = 40, bs = 8;
  std::vector<float> x(static_cast<size_t>(bs) * d);
  for (float& v : x) v = dist(rng);
  const auto write = [&](uint8_t stale) {
    std::vector<uint8_t> piece(kv_row_bytes(KvDtype::kInt4, d) * bs, stale);
    std::vector<uint16_t> scales(d, stale);
    for (int slot = 0; slot < bs; ++slot) {
      kv_store(KvDtype::kInt4, KvRole::kKey, x.data() + static_cast<size_t>(slot) * d, piece.data(), reinterpret_cast<uint8_t*>(scales.data()), slot, d);
    }
    return std::make_pair(piece, scales);
  };
  EXPECT_EQ(write(0x00), write(0xFF));
}

TEST(KvDtype, BytesPerTokenFollowTheFormula) {
  const auto per_token = [](KvDtype k, KvDtype v, int block_size = 16) { return KvLayout::kv_bytes_per_token(16, 8, 64, {k, v}, block_size); };
  // 2 x layers x kv_heads x (head_dim x bytes + scale)
  EXPECT_EQ(per_token(KvDtype::kF16, KvDtype::kF16), 2u * 16 * 8 * 64 * 2);
  EXPECT_EQ(per_token(KvDtype::kF32, KvDtype::kF32), 2u * 16 * 8 * 64 * 4);
  EXPECT_EQ(per_token(KvDtype::kBF16, KvDtype::kBF16), 2u * 16 * 8 * 64 * 2);
  EXPECT_EQ(per_token(KvDtype::kInt8, KvDtype::kInt8), 2u * 16 * 8 * (64 + 4));
  EXPECT_EQ(per_token(KvDtype::kFp8E4M3, KvDtype::kFp8E4M3), 2u * 16 * 8 * (64 + 4));
  // int4: K 32 bytes + a 2-byte scale per channel per block of 16 (8 a token), V 32 bytes + 2 per 32 values.
  EXPECT_EQ(per_token(KvDtype::kInt4, KvDtype::kInt4), 16u * 8 * ((32 + 8) + (32 + 4)));
  EXPECT_EQ(per_token(KvDtype::kInt4, KvDtype::kInt4, 32), 16u * 8 * ((32 + 4) + (32 + 4)));
  EXPECT_LE(per_token(KvDtype::kInt4, KvDtype::kInt4), 0.3 * per_token(KvDtype::kF16, KvDtype::kF16));
  // K and V add up apart.
  EXPECT_EQ(per_token(KvDtype::kInt8, KvDtype::kInt4), 16u * 8 * ((64 + 4) + (32 + 4)));
  EXPECT_EQ(per_token(KvDtype::kF16, KvDtype::kInt8), 16u * 8 * (128 + (64 + 4)));
}

// Teacher-forced: every KV type sees the same tokens; compare each position's logits with f32 KV.
struct Quality {
  double agreement;    // fraction of positions whose argmax equals f32's
  double logit_error;  // largest |logit - f32 logit| over the largest |f32 logit|, over all positions
};

std::vector<std::vector<float>> teacher_forced_logits(const std::shared_ptr<const LlamaModel>& model, KvTypes types, const std::vector<int32_t>& tokens) {
  const ModelConfig& c = model->config();
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, 16, static_cast<int32_t>((tokens.size() + 15) / 16), types.k, types.v};
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

// 500 positions of the model's own greedy continuation from BOS with f32 KV (a natural sequence for it).
std::vector<int32_t> greedy_tokens(const std::shared_ptr<const LlamaModel>& model, size_t count) {
  std::vector<int32_t> tokens = {1};
  const int32_t blocks = static_cast<int32_t>((count + 15) / 16);
  KvLayout layout{model->config().n_layers, model->config().n_kv_heads, model->config().head_dim, 16, blocks, KvDtype::kF32, KvDtype::kF32};
  auto backend = CpuBackend::create(model, layout, 2).take();
  std::vector<BlockId> table(blocks);
  for (int b = 0; b < blocks; ++b) table[b] = b;
  std::vector<float> logits(model->config().vocab_size);
  while (tokens.size() < count) {
    ForwardBatch step;
    step.tokens = {tokens.back()};
    step.sequences.push_back({0, 1, static_cast<int32_t>(tokens.size() - 1), table.data(), true});
    EXPECT_TRUE(backend->forward(step, logits.data()).is_ok());
    tokens.push_back(static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin()));
  }
  return tokens;
}

std::string types_name(KvTypes t) {
  return t.k == t.v ? kv_dtype_name(t.k) : std::string(kv_dtype_name(t.k)) + "/" + kv_dtype_name(t.v);
}

// Prints the table docs/benchmarks.md quotes (K/V types, bytes per token, agreement, logit error) and holds
// each pair to a floor on stories260K; PAGEDLM_KV_QUALITY_ALL=1 adds the other shared models (minutes).
TEST(KvDtype, QualityAgainstF32) {
  struct Case {
    KvTypes types;
    double floor;  // on stories260K
  };
  const Case cases[] = {{KvTypes::both(KvDtype::kF16), 0.99},        {KvTypes::both(KvDtype::kBF16), 0.97},
                        {KvTypes::both(KvDtype::kInt8), 0.97},       {KvTypes::both(KvDtype::kFp8E4M3), 0.85},
                        {KvTypes::both(KvDtype::kInt4), 0.68},       {{KvDtype::kInt8, KvDtype::kInt4}, 0.80},
                        {{KvDtype::kFp8E4M3, KvDtype::kInt4}, 0.78}, {{KvDtype::kInt4, KvDtype::kInt8}, 0.68},
                        {{KvDtype::kF16, KvDtype::kInt4}, 0.80}};
  const bool all_models = std::getenv("PAGEDLM_KV_QUALITY_ALL") != nullptr;
  bool any = false;
  for (const char* name : {"stories260K.gguf", "aidreams260K.gguf", "synth-tiny-f16.gguf"}) {
    if (!all_models && std::string(name) != "stories260K.gguf") continue;
    const std::string path = testing::shared_model(name);
    if (path.empty()) continue;
    any = true;
    auto model = LlamaModel::load(GgufFile::open(path).take()).take();
    const ModelConfig& c = model->config();
    const std::vector<int32_t> tokens = greedy_tokens(model, 500);
    const auto reference = teacher_forced_logits(model, KvTypes::both(KvDtype::kF32), tokens);
    std::printf("KV type quality on %s (head_dim %d), %zu teacher-forced positions:\n", name, c.head_dim, tokens.size());
    std::printf("  K/V        bytes/token  argmax agreement  max logit error\n");
    for (const Case& k : cases) {
      const Quality q = compare(teacher_forced_logits(model, k.types, tokens), reference);
      std::printf("  %-9s  %11zu  %15.1f%%  %15.2e\n", types_name(k.types).c_str(), KvLayout::kv_bytes_per_token(c.n_layers, c.n_kv_heads, c.head_dim, k.types, 16),
                  100 * q.agreement, q.logit_error);
      if (std::string(name) == "stories260K.gguf") EXPECT_GE(q.agreement, k.floor) << types_name(k.types);
    }
  }
  if (!any) GTEST_SKIP() << "no shared models";
}

}  // namespace
}  // namespace pagedlm
