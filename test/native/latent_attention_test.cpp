// Multi-head latent attention (deepseek2): the loader's reading of the MLA form, the KV pool that holds one
// latent row per token and layer (no V array), and the CPU forward pass in the absorbed form against the
// plain decompressed form (support/synthetic_model.cpp's double-precision reference).
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

using testing::load_synthetic_model;
using testing::SyntheticSpec;

SyntheticSpec latent_spec(int q_lora_rank) {
  return {.architecture = "deepseek2", .dim = 64, .layers = 2, .heads = 4, .ffn = 96, .kv_lora_rank = 32, .q_lora_rank = q_lora_rank,
          .mla_rope_dim = 8, .qk_nope_dim = 16, .v_head_dim = 12};
}

KvLayout latent_layout(const ModelConfig& c, KvDtype dtype, int blocks) {
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, 16, blocks, dtype, dtype};
  layout.v_dim = c.value_dim(), layout.v_in_k = c.latent_attention();
  return layout;
}

std::vector<int32_t> prompt_of(int length, int vocab) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < length; ++i) tokens.push_back((i * 37 + 11) % vocab);
  return tokens;
}

TEST(LatentAttention, ReadsTheMlaForm) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(latent_spec(24), storage);
  const ModelConfig& c = model->config();
  EXPECT_TRUE(c.latent_attention());
  EXPECT_EQ(c.kv_lora_rank, 32);
  EXPECT_EQ(c.q_lora_rank, 24);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 32 + 8);  // the shared K row: the latent, then the RoPE part
  EXPECT_EQ(c.value_dim(), 32);
  EXPECT_EQ(c.rope_dim, 8);
  EXPECT_EQ(c.qk_nope_dim, 16);
  EXPECT_EQ(c.attention_output_dim(), 4 * 12);
  EXPECT_FLOAT_EQ(c.attention_scale, 1.0f / std::sqrt(16.0f + 8.0f));
  ASSERT_EQ(model->layers()[0].wk_b.size(), 4u);
  EXPECT_EQ(model->layers()[0].wk_b[1].rows, 32);
  EXPECT_EQ(model->layers()[0].wv_b[3].cols, 32);
  EXPECT_EQ(model->layers()[0].wq.data, nullptr);  // query LoRA instead
}

// Mixture-of-experts layers (those past leading_dense_block_count) are refused before any tensor is read.
TEST(LatentAttention, RefusesMixtureOfExpertsLayers) {
  SyntheticSpec spec = latent_spec(0);
  spec.dense_layers = 1;
  const std::vector<uint8_t> bytes = testing::synthetic_model(spec).build();
  auto file = GgufFile::parse(bytes.data(), bytes.size());
  ASSERT_TRUE(file.is_ok());
  auto model = LlamaModel::load(file.take());
  ASSERT_FALSE(model.is_ok());
  EXPECT_EQ(model.status().code(), ErrorCode::kUnsupported);
  EXPECT_NE(model.status().message().find("mixture-of-experts"), std::string::npos) << model.status().message();
}

// KV bytes per token = layers x (kv_lora_rank + rope_dim) x bytes (+ one scale per row for int8/fp8), and the
// pool's blocks hold exactly that: K rows only.
TEST(LatentAttention, PoolHoldsOnlyTheLatentRows) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(latent_spec(0), storage);
  const ModelConfig& c = model->config();
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kInt8}) {
    const KvLayout layout = latent_layout(c, dtype, 4);
    const size_t element_bytes = dtype == KvDtype::kF32 ? 4 : dtype == KvDtype::kF16 ? 2 : 1;
    const size_t row = static_cast<size_t>(32 + 8) * element_bytes + (kv_dtype_has_scales(dtype) ? sizeof(float) : 0);
    EXPECT_EQ(layout.bytes_per_token(), 2 * row) << kv_dtype_name(dtype);
    auto backend = CpuBackend::create(model, layout, 1);
    ASSERT_TRUE(backend.is_ok());
    EXPECT_EQ(backend.value()->block_bytes(), layout.bytes_per_block()) << kv_dtype_name(dtype);
  }
}

struct LatentCase {
  const char* name;
  int q_lora_rank;
  KvDtype dtype;
  double tolerance;
};

class LatentForward : public ::testing::TestWithParam<LatentCase> {};

// The absorbed form (latent queries against the cached latent) against the decompressed one, prefill then
// decode over blocks out of order.
TEST_P(LatentForward, MatchesDecompressedReference) {
  const LatentCase& tc = GetParam();
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(latent_spec(tc.q_lora_rank), storage);
  const auto tokens = prompt_of(37, model->config().vocab_size);
  auto backend = CpuBackend::create(model, latent_layout(model->config(), tc.dtype, 16), 2);
  ASSERT_TRUE(backend.is_ok());
  EXPECT_TRUE(testing::prefill_then_decode_matches_reference(*backend.value(), *model, tokens, {5, 2, 9}, 20, tc.tolerance));
}

const LatentCase kLatentCases[] = {
    {"attn_q_f32", 0, KvDtype::kF32, 1e-4},
    {"query_lora_f32", 24, KvDtype::kF32, 1e-4},
    {"query_lora_f16", 24, KvDtype::kF16, 5e-3},
    {"query_lora_int8", 24, KvDtype::kInt8, 6e-2},
};

INSTANTIATE_TEST_SUITE_P(Shapes, LatentForward, ::testing::ValuesIn(kLatentCases), [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace pagedlm
