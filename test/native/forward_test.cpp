// The CPU forward pass against a plain double-precision reference on synthetic models of many shapes
// and weight types; prefill as one batch, token by token, and several sequences in one batch.
#include <gtest/gtest.h>

#include <cstdio>

#include "backend/cpu/cpu_backend.h"
#include "common/platform.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

using testing::load_synthetic_model;
using testing::SyntheticSpec;

struct Case {
  const char* name;
  SyntheticSpec spec;
  double tolerance;  // normalized logit error allowed against the double reference
};

std::unique_ptr<CpuBackend> backend_for(const std::shared_ptr<const LlamaModel>& model, KvTypes types, int block_size = 16, int threads = 2) {
  const ModelConfig& c = model->config();
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, block_size, 64, types.k, types.v};
  auto b = CpuBackend::create(model, layout, threads);
  EXPECT_TRUE(b.is_ok());
  return b.take();
}

std::vector<int32_t> prompt_of(int length, int vocab) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < length; ++i) tokens.push_back((i * 37 + 11) % vocab);
  return tokens;
}

class Forward : public ::testing::TestWithParam<Case> {};

// Prefill the prompt as one batch (logits of the last token), then decode the rest one token at a time.
TEST_P(Forward, MatchesDoubleReference) {
  const Case& tc = GetParam();
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(tc.spec, storage);
  const auto tokens = prompt_of(37, model->config().vocab_size);  // crosses two block boundaries, last block part filled
  auto backend = backend_for(model, KvTypes::both(KvDtype::kF32), 16);
  const std::vector<BlockId> table = {5, 2, 9};  // deliberately out of order: attention must follow the table
  EXPECT_TRUE(testing::prefill_then_decode_matches_reference(*backend, *model, tokens, table, 20, tc.tolerance));
}

const Case kCases[] = {
    {"gqa_f32", {.dim = 64, .heads = 4, .kv_heads = 2}, 1e-4},
    {"mha_f32_tied", {.dim = 48, .heads = 3, .kv_heads = 3, .tied_output = true}, 1e-4},
    {"mqa_odd_heads", {.dim = 80, .layers = 3, .heads = 5, .kv_heads = 1, .ffn = 72}, 1e-4},
    {"wide_heads_f32", {.dim = 64, .heads = 2, .kv_heads = 1, .head_dim = 48, .ffn = 100}, 1e-4},
    {"f16", {.weight_type = TensorType::kF16}, 1e-4},
    {"bf16", {.weight_type = TensorType::kBF16}, 1e-4},
    // The AVX2 kernels multiply Q8_0 weights with int8-quantized activations (as llama.cpp does), which
    // costs about 1% of the logits' scale after a few layers; the portable kernels are exact.
    {"q8_0", {.weight_type = TensorType::kQ8_0}, 2e-2},
    {"q4_0", {.weight_type = TensorType::kQ4_0}, 1e-4},
    {"q6_k", {.dim = 256, .heads = 4, .kv_heads = 2, .ffn = 256, .weight_type = TensorType::kQ6_K}, 3e-2},  // int8 activations, as q8_0, over 4x wider rows
    // The other 32-value types multiply int8 activations on x86, as q8_0.
    {"q4_1", {.weight_type = TensorType::kQ4_1}, 3e-2},
    {"q5_0", {.weight_type = TensorType::kQ5_0}, 3e-2},
    {"q5_1", {.weight_type = TensorType::kQ5_1}, 3e-2},
    {"iq4_nl", {.weight_type = TensorType::kIQ4_NL}, 3e-2},
    {"q2_k", {.dim = 256, .heads = 4, .kv_heads = 2, .ffn = 256, .weight_type = TensorType::kQ2_K}, 3e-2},
    {"q3_k", {.dim = 256, .heads = 4, .kv_heads = 2, .ffn = 256, .weight_type = TensorType::kQ3_K}, 3e-2},
    {"q5_k", {.dim = 256, .heads = 4, .kv_heads = 2, .ffn = 256, .weight_type = TensorType::kQ5_K}, 3e-2},
    {"iq4_xs", {.dim = 256, .heads = 4, .kv_heads = 2, .ffn = 256, .weight_type = TensorType::kIQ4_XS}, 3e-2},
    {"qwen2_neox_bias", {.architecture = "qwen2", .qkv_bias = true}, 1e-4},
    {"llama3_rope", {.rope_scaling = "llama3"}, 1e-4},
    {"linear_rope", {.rope_scaling = "linear"}, 1e-4},
    // Llama 3.x as its files come: the converter's rope_freqs tensor, the output tied to the embeddings.
    {"llama3_rope_freqs_tied", {.tied_output = true, .rope_scaling = "llama3_tensor"}, 1e-4},
    {"qwen3_qk_norm", {.architecture = "qwen3", .head_dim = 32}, 1e-4},
    {"phi3_fused", {.architecture = "phi3"}, 1e-4},
    {"phi3_longrope", {.architecture = "phi3", .rope_scaling = "longrope"}, 1e-4},
    {"phi3_q4_0", {.architecture = "phi3", .weight_type = TensorType::kQ4_0}, 1e-4},
    // Window 4096 (gemma2's default) over 37 tokens: the caps at their defaults are what this case checks.
    {"gemma2_default_caps", {.architecture = "gemma2", .tied_output = true}, 1e-4},
    {"gemma2_window_caps", {.architecture = "gemma2", .layers = 3, .sliding_window = 7, .attn_softcap = 2.0f, .final_softcap = 5.0f}, 1e-4},
    // Seven layers: local 0-4, global 5, local 6. Window 20 over blocks of 16 skips whole blocks.
    {"gemma3_window", {.architecture = "gemma3", .layers = 7, .head_dim = 32, .tied_output = true, .sliding_window = 20}, 1e-4},
    {"gemma3_linear_global", {.architecture = "gemma3", .layers = 6, .rope_scaling = "linear", .sliding_window = 5}, 1e-4},
    {"mistral_window", {.architecture = "mistral", .sliding_window = 12}, 1e-4},
};

INSTANTIATE_TEST_SUITE_P(Shapes, Forward, ::testing::ValuesIn(kCases), [](const auto& info) { return std::string(info.param.name); });

// A windowed layer in every KV dtype and some pairs: the encoded, decoded and direct paths (each side on
// its own) skip the rows below the window (at block boundaries and inside a block).
class WindowedKv : public ::testing::TestWithParam<KvTypes> {};

TEST_P(WindowedKv, MatchesDoubleReference) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model({.architecture = "mistral", .sliding_window = 11}, storage);
  const auto tokens = prompt_of(45, model->config().vocab_size);
  auto backend = backend_for(model, GetParam(), 8);
  const std::vector<BlockId> table = {7, 1, 4, 0, 9, 2};
  const KvTypes t = GetParam();
  const bool int4 = t.k == KvDtype::kInt4 || t.v == KvDtype::kInt4;
  const double tolerance = t == KvTypes::both(KvDtype::kF32) ? 1e-4 : t == KvTypes::both(KvDtype::kF16) ? 5e-3 : int4 ? 2e-1 : 6e-2;
  EXPECT_TRUE(testing::prefill_then_decode_matches_reference(*backend, *model, tokens, table, 13, tolerance));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, WindowedKv,
                         ::testing::Values(KvTypes::both(KvDtype::kF32), KvTypes::both(KvDtype::kF16), KvTypes::both(KvDtype::kBF16),
                                           KvTypes::both(KvDtype::kInt8), KvTypes::both(KvDtype::kFp8E4M3), KvTypes::both(KvDtype::kInt4),
                                           KvTypes{KvDtype::kF16, KvDtype::kInt8}, KvTypes{KvDtype::kFp8E4M3, KvDtype::kBF16},
                                           KvTypes{KvDtype::kInt8, KvDtype::kInt4}, KvTypes{KvDtype::kInt4, KvDtype::kF32}),
                         [](const auto& info) { return std::string("K_") + kv_dtype_name(info.param.k) + "_V_" + kv_dtype_name(info.param.v); });

// Soft-capped attention over a quantized pool takes the per-row path with decoded rows.
TEST(ForwardGemma2, SoftcapOverInt8KvStaysClose) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model({.architecture = "gemma2", .sliding_window = 9, .attn_softcap = 3.0f}, storage);
  const auto tokens = prompt_of(30, model->config().vocab_size);
  auto backend = backend_for(model, KvTypes::both(KvDtype::kInt8), 16);
  EXPECT_TRUE(testing::prefill_then_decode_matches_reference(*backend, *model, tokens, {3, 0}, 17, 6e-2));
}

// Phi-3's LongRoPE picks its factors by the context it is loaded with, as llama.cpp does: the short ones up to
// the original context (64 here), the long ones past it.
TEST(ForwardPhi3, LongRopeFactorsFollowTheContext) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model({.architecture = "phi3", .rope_scaling = "longrope"}, storage);
  const ModelConfig& c = model->config();
  ASSERT_EQ(c.rope_original_context, 64);
  const auto tokens = prompt_of(30, c.vocab_size);
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, 16, 8, KvDtype::kF32, KvDtype::kF32};
  auto short_context = CpuBackend::create(model, layout, 2, 64);
  ASSERT_TRUE(short_context.is_ok());
  EXPECT_TRUE(testing::prefill_then_decode_matches_reference(*short_context.value(), *model, tokens, {1, 2}, 10, 1e-4, 64));
  const auto short_reference = testing::reference_logits(*model, tokens, 64);
  const auto long_reference = testing::reference_logits(*model, tokens, 65);
  EXPECT_GT(testing::normalized_error(std::vector<float>(long_reference.back().begin(), long_reference.back().end()).data(), short_reference.back()), 1e-3)
      << "the two factor sets must give different logits for this test to tell them apart";
}

TEST(ForwardBatching, SequencesInOneBatchMatchEachAlone) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model({.layers = 2}, storage);
  const int vocab = model->config().vocab_size;
  auto backend = backend_for(model, KvTypes::both(KvDtype::kF32));
  const auto a = prompt_of(19, vocab), b = prompt_of(5, vocab);
  const auto ref_a = testing::reference_logits(*model, a), ref_b = testing::reference_logits(*model, b);
  std::vector<BlockId> table_a = {0, 1}, table_b = {2};
  ForwardBatch batch;
  batch.tokens = a;
  batch.tokens.insert(batch.tokens.end(), b.begin(), b.end());
  batch.sequences.push_back({0, 19, 0, table_a.data(), true});
  batch.sequences.push_back({19, 5, 0, table_b.data(), true});
  std::vector<float> logits(2 * vocab);
  ASSERT_TRUE(backend->forward(batch, logits.data()).is_ok());
  EXPECT_LT(testing::normalized_error(logits.data(), ref_a[18]), 1e-4);
  EXPECT_LT(testing::normalized_error(logits.data() + vocab, ref_b[4]), 1e-4);
}

// A sequence verifying proposed tokens asks for the logits of its last few positions: each row is its
// position's, beside a sequence with one row; greedy rows pick each row's own argmax.
TEST(ForwardBatching, SeveralLogitRowsPerSequenceAreEachPositionsRow) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model({.layers = 2}, storage);
  const int vocab = model->config().vocab_size;
  auto backend = backend_for(model, KvTypes::both(KvDtype::kF32));
  const auto a = prompt_of(19, vocab), b = prompt_of(5, vocab);
  const auto ref_a = testing::reference_logits(*model, a), ref_b = testing::reference_logits(*model, b);
  std::vector<BlockId> table_a = {0, 1}, table_b = {2};
  ForwardBatch batch;
  batch.tokens = b;
  batch.tokens.insert(batch.tokens.end(), a.begin(), a.end());
  batch.sequences.push_back({0, 5, 0, table_b.data(), true});
  BatchSequence verifying{5, 19, 0, table_a.data(), true};
  verifying.logit_rows = 4;
  batch.sequences.push_back(verifying);
  ASSERT_EQ(batch.num_logit_rows(), 5);
  std::vector<float> logits(5 * vocab);
  ASSERT_TRUE(backend->forward(batch, logits.data()).is_ok());
  EXPECT_LT(testing::normalized_error(logits.data(), ref_b[4]), 1e-4);
  for (int r = 0; r < 4; ++r) EXPECT_LT(testing::normalized_error(logits.data() + (1 + r) * vocab, ref_a[15 + r]), 1e-4) << "row " << r;

  for (BatchSequence& s : batch.sequences) s.greedy = true;
  std::vector<int32_t> greedy(5, -1);
  batch.greedy_tokens = greedy.data();
  std::vector<BlockId> fresh_a = {3, 4}, fresh_b = {5};
  batch.sequences[0].block_table = fresh_b.data();
  batch.sequences[1].block_table = fresh_a.data();
  ASSERT_TRUE(backend->forward(batch, logits.data()).is_ok());
  for (int r = 0; r < 5; ++r) {
    const float* row = logits.data() + r * vocab;
    EXPECT_EQ(greedy[r], std::max_element(row, row + vocab) - row) << "row " << r;
  }
}

TEST(ForwardKvTypes, F16KvStaysClose) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model({}, storage);
  const auto tokens = prompt_of(30, model->config().vocab_size);
  const auto ref = testing::reference_logits(*model, tokens);
  auto backend = backend_for(model, KvTypes::both(KvDtype::kF16), 32, 1);
  std::vector<BlockId> table = {3};
  ForwardBatch batch;
  batch.tokens = tokens;
  batch.sequences.push_back({0, 30, 0, table.data(), true});
  std::vector<float> logits(model->config().vocab_size);
  ASSERT_TRUE(backend->forward(batch, logits.data()).is_ok());
  EXPECT_LT(testing::normalized_error(logits.data(), ref[29]), 5e-3);
}

// The RAM check before allocating counts the packed copy of the weights too: a pool that would fit in RAM
// only without that copy is refused with an error, not left to the OOM killer.
TEST(CpuBackendMemory, PoolThatFitsOnlyWithoutTheWeightsCopyIsRefused) {
  if (best_cpu_kernels().pack_rows == nullptr) GTEST_SKIP() << "the " << best_cpu_kernels().name << " kernels keep no packed copy";
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model({}, storage);
  const ModelConfig& c = model->config();
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, 16, 1, KvDtype::kF32, KvDtype::kF32};
  const uint64_t physical = physical_memory_bytes();
  // The most blocks RAM holds: less than a block (8 KiB) to spare, and the packed copy is 15 matrices of at
  // least a page each.
  layout.num_blocks = static_cast<int32_t>(physical / layout.bytes_per_block());
  auto backend = CpuBackend::create(model, layout, 1);
  ASSERT_FALSE(backend.is_ok());
  EXPECT_EQ(backend.status().code(), ErrorCode::kOutOfMemory);
  EXPECT_NE(backend.status().message().find("packed copy of the weights"), std::string::npos) << backend.status().message();
}

// With mmap: false the model file stays in the heap beside the packed copy: the RAM check counts it too.
TEST(CpuBackendMemory, PoolThatFitsOnlyWithoutTheHeapCopyOfTheModelIsRefused) {
  const std::string path = testing::write_synthetic_model({}, "heap_copy_ram_check.gguf");
  auto file = GgufFile::open(path, /*map=*/false);
  ASSERT_TRUE(file.is_ok()) << file.status().message();
  const size_t heap = file.value().heap_bytes();
  ASSERT_GT(heap, 0u);
  auto model = LlamaModel::load(file.take());
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  const ModelConfig& c = model.value()->config();
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, 16, 1, KvDtype::kF32, KvDtype::kF32};
  size_t packed = 0;
  {
    auto small = CpuBackend::create(model.value(), layout, 1);
    ASSERT_TRUE(small.is_ok()) << small.status().message();
    packed = small.value()->packed_weight_bytes();
  }
  // A pool that fits beside the packed copy with half the heap copy to spare, but not beside both.
  ASSERT_GT(heap / 2, 2 * layout.bytes_per_block());
  const uint64_t physical = physical_memory_bytes();
  layout.num_blocks = static_cast<int32_t>((physical - packed - heap / 2) / layout.bytes_per_block());
  auto backend = CpuBackend::create(model.value(), layout, 1);
  ASSERT_FALSE(backend.is_ok());
  EXPECT_EQ(backend.status().code(), ErrorCode::kOutOfMemory);
  EXPECT_NE(backend.status().message().find("heap copy of the model file"), std::string::npos) << backend.status().message();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace pagedlm
