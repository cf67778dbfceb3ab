// Model loading: hyperparameters, tensor binding, and the errors for files that contradict themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "model/llama_model.h"
#include "support/shared_models.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

using testing::GgufWriter;
using testing::SyntheticSpec;

Result<std::shared_ptr<const LlamaModel>> load_bytes(const std::vector<uint8_t>& bytes) {
  auto file = GgufFile::parse(bytes.data(), bytes.size());
  if (!file.is_ok()) return file.status();
  return LlamaModel::load(file.take());
}

TEST(Model, ReadsSyntheticHyperparameters) {
  const auto bytes = testing::synthetic_model({.dim = 48, .layers = 3, .heads = 6, .kv_heads = 2, .ffn = 80, .vocab = 300, .tied_output = true}).build();
  auto m = load_bytes(bytes);
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  const ModelConfig& c = m.value()->config();
  EXPECT_EQ(c.dim, 48);
  EXPECT_EQ(c.n_layers, 3);
  EXPECT_EQ(c.n_heads, 6);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.ffn_dim, 80);
  EXPECT_EQ(c.vocab_size, 300);
  EXPECT_TRUE(c.tied_output);
  EXPECT_EQ(m.value()->output().data, m.value()->token_embedding().data);
  // embeddings + 3 x (2 norms + q,k,v,o + gate,up,down) + output norm
  const uint64_t per_layer = 2 * 48 + 48 * 48 + 2 * 16 * 48 + 48 * 48 + 3 * 80 * 48;
  EXPECT_EQ(m.value()->parameter_count(), 300 * 48 + 3 * per_layer + 48);
}

TEST(Model, ReadsTheSharedModels) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "synth-tiny-f16.gguf");
  auto file = GgufFile::open(path);
  ASSERT_TRUE(file.is_ok());
  auto m = LlamaModel::load(file.take());
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  const ModelConfig& c = m.value()->config();
  EXPECT_EQ(c.dim, 256);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.context_length, 4096);
  EXPECT_FALSE(c.tied_output);
  EXPECT_EQ(m.value()->layers()[0].wq.type, TensorType::kF16);
}

TEST(Model, Llama3RopeScalingFactors) {
  auto m = load_bytes(testing::synthetic_model({.rope_scaling = "llama3"}).build());
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  const auto& f = m.value()->config().rope_freq_factors;
  ASSERT_EQ(f.size(), 8u);
  EXPECT_FLOAT_EQ(f.front(), 1.0f);  // high frequencies are untouched
  EXPECT_FLOAT_EQ(f.back(), 8.0f);   // low frequencies divide by the factor
  auto linear = load_bytes(testing::synthetic_model({.rope_scaling = "linear"}).build());
  EXPECT_FLOAT_EQ(linear.value()->config().rope_position_scale, 0.25f);
}

void expect_load_error(const std::vector<uint8_t>& bytes, ErrorCode code, const std::string& fragment) {
  auto m = load_bytes(bytes);
  ASSERT_FALSE(m.is_ok()) << "expected: " << fragment;
  EXPECT_EQ(m.status().code(), code);
  EXPECT_NE(m.status().message().find(fragment), std::string::npos) << m.status().message();
}

TEST(ModelMalformed, UnsupportedArchitecture) {
  GgufWriter w;
  w.add_string("general.architecture", "mamba");
  expect_load_error(w.build(), ErrorCode::kUnsupported, "unsupported architecture 'mamba'");
  expect_load_error(w.build(), ErrorCode::kUnsupported, "llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3");
}

// Gemma 2: every other layer windowed (the even ones), 4096 when the file sets no window, soft-caps 50 and
// 30 unless set; GeGLU, post-norms, embeddings x sqrt(dim).
TEST(ModelArchitectures, Gemma2Features) {
  auto m = load_bytes(testing::synthetic_model({.architecture = "gemma2", .layers = 4}).build());
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  const ModelConfig& c = m.value()->config();
  ASSERT_EQ(c.layers.size(), 4u);
  EXPECT_EQ(c.layers[0].window, 4096);
  EXPECT_EQ(c.layers[1].window, 0);
  EXPECT_EQ(c.layers[2].window, 4096);
  EXPECT_EQ(c.layers[3].window, 0);
  EXPECT_FLOAT_EQ(c.attention_softcap, 50.0f);
  EXPECT_FLOAT_EQ(c.final_softcap, 30.0f);
  EXPECT_FLOAT_EQ(c.embedding_scale, 8.0f);
  EXPECT_FLOAT_EQ(c.attention_scale, 1.0f / 4.0f);
  EXPECT_EQ(c.ffn_activation, FfnActivation::kGeluTanh);
  EXPECT_TRUE(c.post_norms);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_FALSE(c.all_windowed());
  EXPECT_EQ(m.value()->layers()[1].ffn_post_norm.size(), 64u);
  auto set = load_bytes(testing::synthetic_model({.architecture = "gemma2", .sliding_window = 9, .attn_softcap = 2, .final_softcap = 3}).build());
  ASSERT_TRUE(set.is_ok()) << set.status().message();
  EXPECT_EQ(set.value()->config().layers[0].window, 9);
  EXPECT_FLOAT_EQ(set.value()->config().attention_softcap, 2.0f);
  EXPECT_FLOAT_EQ(set.value()->config().final_softcap, 3.0f);
}

// Gemma 3: five local layers to one global; local layers RoPE with base 10000 and no scaling, global ones
// with the file's base and scaling; Q/K norms; no soft-caps unless set.
TEST(ModelArchitectures, Gemma3LayerPattern) {
  auto m = load_bytes(testing::synthetic_model({.architecture = "gemma3", .layers = 13, .rope_scaling = "linear", .sliding_window = 32}).build());
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  const ModelConfig& c = m.value()->config();
  for (int l = 0; l < 13; ++l) {
    const bool global = l % 6 == 5;
    EXPECT_EQ(c.layers[l].window, global ? 0 : 32) << l;
    EXPECT_FLOAT_EQ(c.layers[l].rope_position_scale, global ? 0.25f : 1.0f) << l;
    EXPECT_FLOAT_EQ(c.layers[l].rope_base, 10000.0f) << l;
  }
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(m.value()->layers()[0].q_norm.size(), 16u);
  EXPECT_FLOAT_EQ(c.attention_softcap, 0.0f);
  EXPECT_FLOAT_EQ(c.final_softcap, 0.0f);
  // Without a window (as llama.cpp reads such a file) every layer is global, with the file's RoPE.
  auto unwindowed = load_bytes(testing::synthetic_model({.architecture = "gemma3", .rope_scaling = "linear"}).build());
  ASSERT_TRUE(unwindowed.is_ok()) << unwindowed.status().message();
  EXPECT_FALSE(unwindowed.value()->config().any_window());
  EXPECT_FLOAT_EQ(unwindowed.value()->config().layers[0].rope_position_scale, 0.25f);
}

// llama.cpp's rule for the 27B Gemmas (46 layers for gemma2, 62 for gemma3): queries scale by
// 1/sqrt(embedding_length / head_count), not 1/sqrt(key_length).
TEST(ModelArchitectures, GemmaQueryScaleFollowsTheLayerCount) {
  for (const auto& [arch, large] : {std::pair{"gemma2", 46}, {"gemma3", 62}}) {
    const SyntheticSpec small_spec{.architecture = arch, .dim = 32, .layers = 2, .heads = 2, .kv_heads = 1, .head_dim = 8, .ffn = 16, .vocab = 260};
    SyntheticSpec large_spec = small_spec;
    large_spec.layers = large;
    auto small = load_bytes(testing::synthetic_model(small_spec).build());
    auto big = load_bytes(testing::synthetic_model(large_spec).build());
    ASSERT_TRUE(small.is_ok() && big.is_ok()) << arch;
    EXPECT_FLOAT_EQ(small.value()->config().attention_scale, 1.0f / std::sqrt(8.0f)) << arch;
    EXPECT_FLOAT_EQ(big.value()->config().attention_scale, 1.0f / 4.0f) << arch;  // 32 / 2 = 16
  }
}

TEST(ModelArchitectures, WindowsOnlyWhereTheArchitectureHasThem) {
  auto mistral = load_bytes(testing::synthetic_model({.architecture = "mistral", .sliding_window = 12}).build());
  ASSERT_TRUE(mistral.is_ok());
  EXPECT_TRUE(mistral.value()->config().all_windowed());
  auto llama = load_bytes(testing::synthetic_model({}).build());
  EXPECT_FALSE(llama.value()->config().any_window());
  // llama.cpp runs Phi-3 without its window; so does pagedlm.
  auto phi3 = load_bytes(testing::synthetic_model({.architecture = "phi3", .sliding_window = 12}).build());
  ASSERT_TRUE(phi3.is_ok()) << phi3.status().message();
  EXPECT_FALSE(phi3.value()->config().any_window());
}

// Phi-3's fused tensors become row ranges of one mapped tensor: Q, K, V; gate, then up.
TEST(ModelArchitectures, Phi3FusedTensorsAreRowRanges) {
  auto m = load_bytes(testing::synthetic_model({.architecture = "phi3"}).build());
  ASSERT_TRUE(m.is_ok()) << m.status().message();
  const LayerWeights& l = m.value()->layers()[0];
  EXPECT_EQ(l.wk.data, l.wq.row(l.wq.rows));
  EXPECT_EQ(l.wv.data, l.wk.row(l.wk.rows));
  EXPECT_EQ(l.w_up.data, l.w_gate.row(l.w_gate.rows));
  EXPECT_EQ(l.w_gate.rows, 96);
  const auto plain = load_bytes(testing::synthetic_model({}).build());
  EXPECT_EQ(m.value()->parameter_count(), plain.value()->parameter_count());
}

TEST(ModelArchitectures, MissingArchitectureTensorNamesTheArchitecture) {
  GgufWriter w = testing::synthetic_model({.architecture = "qwen3"});
  auto bytes = w.build();
  // Renaming the tensor in place keeps the file valid and drops the Q norm.
  const std::string name = "blk.1.attn_q_norm.weight";
  auto at = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
  ASSERT_NE(at, bytes.end());
  *(at + 4) = 'x';
  expect_load_error(bytes, ErrorCode::kModelFormat, "qwen3 model: missing tensor 'blk.1.attn_q_norm.weight'");
}

TEST(ModelMalformed, MissingHyperparameter) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  expect_load_error(w.build(), ErrorCode::kModelFormat, "missing metadata 'llama.embedding_length'");
}

TEST(ModelMalformed, ImplausibleSizes) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.embedding_length", 1u << 22);
  w.add_u32("llama.block_count", 1);
  w.add_u32("llama.feed_forward_length", 64);
  w.add_u32("llama.attention.head_count", 1);
  expect_load_error(w.build(), ErrorCode::kModelFormat, "embedding_length = 4194304 is implausibly large");
  GgufWriter heads;
  heads.add_string("general.architecture", "llama");
  heads.add_u32("llama.embedding_length", 64);
  heads.add_u32("llama.block_count", 1);
  heads.add_u32("llama.feed_forward_length", 64);
  heads.add_u32("llama.attention.head_count", 1u << 16);
  heads.add_u32("llama.attention.key_length", 1u << 16);
  expect_load_error(heads.build(), ErrorCode::kModelFormat, "implausibly large");
}

TEST(ModelMalformed, MissingTensor) {
  // Declaring three layers in a two-layer file: rewrite block_count in place (the value follows the key).
  auto bytes = testing::synthetic_model(SyntheticSpec{.layers = 2}).build();
  const std::string key = "llama.block_count";
  auto it = std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
  ASSERT_NE(it, bytes.end());
  *(it + static_cast<std::ptrdiff_t>(key.size()) + 4) = 3;
  expect_load_error(bytes, ErrorCode::kModelFormat, "missing tensor 'blk.2.attn_norm.weight'");
}

TEST(ModelMalformed, ShapeContradictsHyperparameters) {
  auto bytes = testing::synthetic_model({.ffn = 96}).build();
  const std::string key = "llama.feed_forward_length";
  auto it = std::search(bytes.begin(), bytes.end(), key.begin(), key.end());
  *(it + static_cast<std::ptrdiff_t>(key.size()) + 4) = 64;
  expect_load_error(bytes, ErrorCode::kModelFormat, "has shape [64, 96] but the hyperparameters say [64, 64]");
}

TEST(ModelMalformed, HeadsNotDivisible) {
  expect_load_error(testing::synthetic_model({.heads = 4, .kv_heads = 3}).build(), ErrorCode::kModelFormat, "not a multiple of head_count_kv");
}

}  // namespace
}  // namespace pagedlm
