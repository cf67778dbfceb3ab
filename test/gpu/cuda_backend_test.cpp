// The CUDA backend against the double-precision reference and against the CPU backend, on synthetic models
// of realistic head sizes: prefill, decode through scrambled block tables, mixed batches, every KV type and
// K/V type pair, and the block copies the prefix cache relies on. Runs on the device, or on the CUDA emulator.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_entry.h"
#include "gpu_test_support.h"
#include "support/synthetic_model.h"

extern "C" void pagedlm_create_cuda_backend(const pagedlm::CudaBackendRequest& request, pagedlm::CudaBackendReply& reply);

namespace pagedlm {
namespace {

using testing::load_synthetic_model;
using testing::SyntheticSpec;

// Prefill attention multiplies on tensor cores with 16-bit inputs (Q and the softmax weights rounded to f16 or
// bf16, f32 sums: kernels/prefill_attention.cu) where the CPU backend keeps f32, so what passed through it
// agrees with the CPU to these (normalized) errors; rounding bugs and wrong rows miss them by orders of magnitude.
constexpr double kPrefilledTolerance = 1e-3;        // f16 / bf16 / f32 pools
constexpr double kPrefilledQuantizedTolerance = 1e-2;  // int8 / fp8 / int4 pools, whose own rounding the 16-bit inputs add to

KvLayout layout_for(const LlamaModel& model, KvTypes types, int block_size = 16) {
  const ModelConfig& c = model.config();
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, block_size, 48, types.k, types.v};
  layout.v_dim = c.value_dim(), layout.v_in_k = c.latent_attention();
  return layout;
}
KvLayout layout_for(const LlamaModel& model, KvDtype dtype, int block_size = 16) { return layout_for(model, KvTypes::both(dtype), block_size); }

// deepseek2 with a 64-wide latent row (48 latent + 16 RoPE dims), queries from attn_q or the query LoRA.
SyntheticSpec latent_spec(int q_lora_rank, TensorType type = TensorType::kF32) {
  SyntheticSpec s;
  s.architecture = "deepseek2";
  s.dim = 128;
  s.heads = 4;
  s.ffn = 192;
  s.kv_lora_rank = 48;
  s.mla_rope_dim = 16;
  s.qk_nope_dim = 32;
  s.v_head_dim = 32;
  s.q_lora_rank = q_lora_rank;
  s.weight_type = type;
  return s;
}

std::unique_ptr<Backend> cuda_backend(const std::shared_ptr<const LlamaModel>& model, KvLayout layout) {
  CudaBackendRequest request{model, layout, 0, 64, 0.9};
  CudaBackendReply reply;
  pagedlm_create_cuda_backend(request, reply);
  EXPECT_TRUE(reply.backend != nullptr) << reply.status.message();
  return std::move(reply.backend);
}

std::unique_ptr<Backend> cpu_backend(const std::shared_ptr<const LlamaModel>& model, KvLayout layout) {
  auto b = CpuBackend::create(model, layout, 2);
  EXPECT_TRUE(b.is_ok());
  return b.take();
}

// The CUDA backend with graphs turned off: the eager path that replays are checked against.
std::unique_ptr<Backend> eager_cuda_backend(const std::shared_ptr<const LlamaModel>& model, KvLayout layout) {
  setenv("PAGEDLM_CUDA_GRAPHS", "0", 1);
  auto backend = cuda_backend(model, layout);
  unsetenv("PAGEDLM_CUDA_GRAPHS");
  return backend;
}

std::vector<int32_t> prompt_of(int length, int vocab, int salt = 0) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < length; ++i) tokens.push_back((i * 37 + 11 + salt * 101) % vocab);
  return tokens;
}

int argmax(const float* logits, int vocab) { return static_cast<int>(std::max_element(logits, logits + vocab) - logits); }

// Realistic head sizes (the kernels' 64..256) on small widths, so the emulator runs them quickly.
SyntheticSpec spec_with(TensorType type) {
  SyntheticSpec s;
  s.dim = 128;
  s.heads = 4;
  s.kv_heads = 2;
  s.head_dim = 64;
  s.ffn = 192;
  s.weight_type = type;
  return s;
}

// One model on both backends, with the same pool layout.
struct BothBackends {
  explicit BothBackends(const SyntheticSpec& spec, KvDtype dtype = KvDtype::kF32, int block_size = 16)
      : BothBackends(spec, KvTypes::both(dtype), block_size) {}
  BothBackends(const SyntheticSpec& spec, KvTypes types, int block_size)
      : model(load_synthetic_model(spec, storage)), vocab(model->config().vocab_size), gpu(cuda_backend(model, layout_for(*model, types, block_size))),
        cpu(cpu_backend(model, layout_for(*model, types, block_size))) {}
  std::vector<uint8_t> storage;
  std::shared_ptr<const LlamaModel> model;
  int vocab;
  std::unique_ptr<Backend> gpu, cpu;
};

// Prefills tokens [0, prefill) of one sequence through `table`, then decodes the rest a token a step, on both
// backends: every step's logits agree within kPrefilledQuantizedTolerance and, with `same_greedy`, so do their greedy tokens.
void expect_same_steps(BothBackends& both, const std::vector<int32_t>& tokens, int prefill, const std::vector<BlockId>& table,
                       const std::string& label, bool same_greedy = false) {
  const int vocab = both.vocab;
  std::vector<float> a(vocab), b(vocab);
  const auto compare = [&](const ForwardBatch& batch, const std::string& where) {
    ASSERT_TRUE(both.gpu->forward(batch, a.data()).is_ok()) << label << where;
    ASSERT_TRUE(both.cpu->forward(batch, b.data()).is_ok()) << label << where;
    EXPECT_LT(testing::normalized_error(a.data(), std::vector<double>(b.begin(), b.end())), kPrefilledQuantizedTolerance) << label << where;
    if (same_greedy) EXPECT_EQ(argmax(a.data(), vocab), argmax(b.data(), vocab)) << label << where;
  };
  ForwardBatch first;
  first.tokens.assign(tokens.begin(), tokens.begin() + prefill);
  first.sequences.push_back({0, prefill, 0, table.data(), true});
  compare(first, " prefill");
  for (int pos = prefill; pos < static_cast<int>(tokens.size()); ++pos) {
    ForwardBatch step;
    step.tokens = {tokens[pos]};
    step.sequences.push_back({0, 1, pos, table.data(), true});
    compare(step, " at " + std::to_string(pos));
  }
}

// Rows of 256 values, the K types' block: dim and ffn multiples of 256.
SyntheticSpec k_quant_spec(TensorType type) {
  SyntheticSpec s = spec_with(type);
  s.dim = 256;
  s.ffn = 512;
  return s;
}

struct Case {
  const char* name;
  SyntheticSpec spec;
  double tolerance;  // normalized logit error against the double reference
};

class CudaForward : public ::testing::TestWithParam<Case> {};

// Prefill 20 tokens as one batch, then decode to 37 one token at a time through an out-of-order table.
TEST_P(CudaForward, MatchesDoubleReference) {
  PAGEDLM_REQUIRE_DEVICE();
  const Case& tc = GetParam();
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(tc.spec, storage);
  auto backend = cuda_backend(model, layout_for(*model, KvDtype::kF32));
  ASSERT_TRUE(backend);
  const auto tokens = prompt_of(37, model->config().vocab_size);
  EXPECT_TRUE(testing::prefill_then_decode_matches_reference(*backend, *model, tokens, {5, 2, 9}, 20, tc.tolerance));
}

// f32 weights multiply in f32 (prefill attention in f16: kPrefilledTolerance); f16/bf16 weights multiply
// f16/bf16 copies of the activations (tensor-core GEMMs), which costs about 1e-3 of the logits' scale; Q8_0
// prefill expands weights to f16 the same way.
const Case kCases[] = {
    {"f32_gqa", spec_with(TensorType::kF32), kPrefilledTolerance},
    {"f16", spec_with(TensorType::kF16), 1e-2},
    {"bf16", spec_with(TensorType::kBF16), 3e-2},
    {"q8_0", spec_with(TensorType::kQ8_0), 1e-2},
    // Q4_0, Q4_K and Q6_K stay quantized on the device and multiply int8 activations (per 32 values), as the
    // CPU's int8 kernels do: about 1% of the logits' scale against the exact double reference.
    {"q4_0", spec_with(TensorType::kQ4_0), 3e-2},
    {"q4_k", k_quant_spec(TensorType::kQ4_K), 3e-2},
    {"q6_k", k_quant_spec(TensorType::kQ6_K), 3e-2},
    {"qwen2_neox_bias", [] { SyntheticSpec s = spec_with(TensorType::kF32); s.architecture = "qwen2"; s.qkv_bias = true; return s; }(), kPrefilledTolerance},
    {"llama3_rope_tied", [] { SyntheticSpec s = spec_with(TensorType::kF32); s.rope_scaling = "llama3"; s.tied_output = true; return s; }(), kPrefilledTolerance},
    {"mha_head128", [] { SyntheticSpec s = spec_with(TensorType::kF32); s.dim = 256; s.heads = 2; s.kv_heads = 2; s.head_dim = 128; return s; }(), kPrefilledTolerance},
    // Windowed on every layer: 12 positions, over blocks of 16, in the prefill and the decode kernels.
    {"mistral_window", [] { SyntheticSpec s = spec_with(TensorType::kF32); s.architecture = "mistral"; s.sliding_window = 12; return s; }(), kPrefilledTolerance},
    {"phi3_fused", [] { SyntheticSpec s = spec_with(TensorType::kF32); s.architecture = "phi3"; return s; }(), kPrefilledTolerance},
    // Q|K|V and gate|up of different types do not stack: separate projections, the same kernels after.
    {"mixed_types", [] { SyntheticSpec s = spec_with(TensorType::kQ8_0); s.architecture = "qwen2"; s.qkv_bias = true; s.v_up_type = TensorType::kF16; return s; }(), 1e-2},
    // Multi-head latent attention: the absorbed form over a pool of K rows only.
    {"mla_attn_q", latent_spec(0), kPrefilledTolerance},
    {"mla_query_lora", latent_spec(64), kPrefilledTolerance},
    {"mla_f16", latent_spec(64, TensorType::kF16), 1e-2},
};
INSTANTIATE_TEST_SUITE_P(Shapes, CudaForward, ::testing::ValuesIn(kCases), [](const auto& info) { return std::string(info.param.name); });

// Q4_K weights stay Q4_K on the device: the weights take about the file's tensor bytes (the embedding table,
// which the gather reads as f16, expanded), not 2 bytes a weight.
TEST(CudaBackend, KeepsQ4_KWeightsAsStored) {
  PAGEDLM_REQUIRE_DEVICE();
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(k_quant_spec(TensorType::kQ4_K), storage);
  CudaBackendRequest request{model, layout_for(*model, KvDtype::kF32), 0, 64, 0.9};
  CudaBackendReply reply;
  pagedlm_create_cuda_backend(request, reply);
  ASSERT_TRUE(reply.backend != nullptr) << reply.status.message();
  uint64_t file_bytes = 0, weights = 0;
  const auto matrix = [&](const WeightMatrix& w) {
    file_bytes += static_cast<uint64_t>(w.rows) * w.row_bytes;
    weights += static_cast<uint64_t>(w.rows) * w.cols;
  };
  const auto floats = [&](const std::vector<float>& v) { file_bytes += v.size() * sizeof(float); };
  for (const LayerWeights& l : model->layers()) {
    for (const WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) matrix(*w);
    floats(l.attn_norm), floats(l.ffn_norm);
  }
  matrix(model->output());
  floats(model->output_norm());
  const WeightMatrix& embedding = model->token_embedding();
  ASSERT_EQ(embedding.type, TensorType::kQ4_K);
  const uint64_t expected = file_bytes + static_cast<uint64_t>(embedding.rows) * embedding.cols * sizeof(uint16_t);
  EXPECT_NEAR(static_cast<double>(reply.weight_bytes), static_cast<double>(expected), 0.02 * static_cast<double>(expected));
  EXPECT_LT(static_cast<double>(reply.weight_bytes), 0.5 * 2.0 * static_cast<double>(weights));
}

// A step mixing two prefills (the prefill kernel) and a decode (the decode kernel), then a step of three
// decodes: every row as the CPU backend computes it, and the same greedy tokens.
TEST(CudaBackend, MixedBatchesMatchTheCpuBackend) {
  PAGEDLM_REQUIRE_DEVICE();
  BothBackends both(spec_with(TensorType::kF32));
  const int vocab = both.vocab;
  Backend* gpu = both.gpu.get();
  Backend* cpu = both.cpu.get();
  ASSERT_TRUE(gpu && cpu);
  std::vector<BlockId> t0 = {7, 1}, t1 = {3, 11, 4}, t2 = {0};
  const auto p0 = prompt_of(19, vocab, 0), p1 = prompt_of(33, vocab, 1), p2 = prompt_of(6, vocab, 2);
  // Sequence 2 first gets its prompt alone, so that the mixed step can decode it.
  ForwardBatch first;
  first.tokens = p2;
  first.sequences.push_back({0, 6, 0, t2.data(), true});
  std::vector<float> a(3 * vocab), b(3 * vocab);
  ASSERT_TRUE(gpu->forward(first, a.data()).is_ok());
  ASSERT_TRUE(cpu->forward(first, b.data()).is_ok());
  ForwardBatch mixed;
  mixed.tokens = p0;
  mixed.tokens.insert(mixed.tokens.end(), p1.begin(), p1.end());
  mixed.tokens.push_back(argmax(b.data(), vocab));
  mixed.sequences = {{0, 19, 0, t0.data(), true}, {19, 33, 0, t1.data(), true}, {52, 1, 6, t2.data(), true}};
  ASSERT_TRUE(gpu->forward(mixed, a.data()).is_ok());
  ASSERT_TRUE(cpu->forward(mixed, b.data()).is_ok());
  for (int step = 0; step < 4; ++step) {
    for (int r = 0; r < 3; ++r) {
      const std::vector<double> want(b.begin() + r * vocab, b.begin() + (r + 1) * vocab);
      EXPECT_LT(testing::normalized_error(a.data() + r * vocab, want), kPrefilledTolerance) << "step " << step << " row " << r;
      EXPECT_EQ(argmax(a.data() + r * vocab, vocab), argmax(b.data() + r * vocab, vocab)) << "step " << step << " row " << r;
    }
    ForwardBatch decode;
    const int positions[3] = {19 + step, 33 + step, 7 + step};
    BlockId* tables[3] = {t0.data(), t1.data(), t2.data()};
    for (int r = 0; r < 3; ++r) {
      decode.tokens.push_back(argmax(b.data() + r * vocab, vocab));
      decode.sequences.push_back({r, 1, positions[r], tables[r], true});
    }
    ASSERT_TRUE(gpu->forward(decode, a.data()).is_ok());
    ASSERT_TRUE(cpu->forward(decode, b.data()).is_ok());
  }
}

// Decode rows beside prefill rows: each run of decode sequences (one long enough to be split into partitions)
// goes through the decode kernel, the prefill sequence between them through the prefill kernel; every row as
// the CPU backend computes it.
TEST(CudaBackend, DecodeRowsOfMixedStepsMatchTheCpuBackend) {
  PAGEDLM_REQUIRE_DEVICE();
  BothBackends both(spec_with(TensorType::kF32));
  const int vocab = both.vocab;
  ASSERT_TRUE(both.gpu && both.cpu);
  std::vector<BlockId> t0(34), t1 = {40, 36}, t2 = {37}, t3 = {38, 39};
  std::iota(t0.begin(), t0.end(), 0);
  const auto p0 = prompt_of(530, vocab, 0), p1 = prompt_of(20, vocab, 1), p2 = prompt_of(5, vocab, 2), p3 = prompt_of(25, vocab, 3);
  ForwardBatch first;
  for (const auto* p : {&p0, &p1, &p2}) first.tokens.insert(first.tokens.end(), p->begin(), p->end());
  first.sequences = {{0, 530, 0, t0.data(), true}, {530, 20, 0, t1.data(), true}, {550, 5, 0, t2.data(), true}};
  std::vector<float> a(4 * vocab), b(4 * vocab);
  ASSERT_TRUE(both.gpu->forward(first, a.data()).is_ok());
  ASSERT_TRUE(both.cpu->forward(first, b.data()).is_ok());
  ForwardBatch mixed;
  mixed.tokens = {argmax(b.data() + vocab, vocab)};
  mixed.tokens.insert(mixed.tokens.end(), p3.begin(), p3.end());
  mixed.tokens.push_back(argmax(b.data(), vocab));
  mixed.tokens.push_back(argmax(b.data() + 2 * vocab, vocab));
  mixed.sequences = {{0, 1, 20, t1.data(), true}, {1, 25, 0, t3.data(), true}, {26, 1, 530, t0.data(), true}, {27, 1, 5, t2.data(), true}};
  ASSERT_TRUE(both.gpu->forward(mixed, a.data()).is_ok());
  ASSERT_TRUE(both.cpu->forward(mixed, b.data()).is_ok());
  for (int r = 0; r < 4; ++r) {
    const std::vector<double> want(b.begin() + r * vocab, b.begin() + (r + 1) * vocab);
    EXPECT_LT(testing::normalized_error(a.data() + r * vocab, want), kPrefilledTolerance) << "row " << r;
  }
}

// Embedding sequences' final-norm rows beside a sequence that wants logits: both as on the CPU backend.
TEST(CudaBackend, HiddenRowsMatchTheCpuBackend) {
  PAGEDLM_REQUIRE_DEVICE();
  BothBackends both(spec_with(TensorType::kF32));
  ASSERT_TRUE(both.gpu && both.cpu);
  ASSERT_TRUE(both.gpu->computes_hidden_states());
  const int vocab = both.vocab;
  const int dim = both.model->config().dim;
  std::vector<BlockId> t0 = {5, 2}, t1 = {9}, t2 = {0, 8};
  const auto p0 = prompt_of(21, vocab, 3), p1 = prompt_of(7, vocab, 4), p2 = prompt_of(17, vocab, 5);
  ForwardBatch batch;
  batch.tokens = p0;
  batch.tokens.insert(batch.tokens.end(), p1.begin(), p1.end());
  batch.tokens.insert(batch.tokens.end(), p2.begin(), p2.end());
  batch.sequences = {{0, 21, 0, t0.data(), false}, {21, 7, 0, t1.data(), true}, {28, 17, 0, t2.data(), false}};
  batch.sequences[0].want_hidden = true;
  batch.sequences[2].want_hidden = true;
  const size_t rows = static_cast<size_t>(batch.num_hidden_rows());
  ASSERT_EQ(rows, 38u);
  std::vector<float> gpu_hidden(rows * dim), cpu_hidden(rows * dim), gpu_logits(vocab), cpu_logits(vocab);
  batch.hidden = gpu_hidden.data();
  ASSERT_TRUE(both.gpu->forward(batch, gpu_logits.data()).is_ok());
  batch.hidden = cpu_hidden.data();
  ASSERT_TRUE(both.cpu->forward(batch, cpu_logits.data()).is_ok());
  for (size_t r = 0; r < rows; ++r) {
    const std::vector<double> want(cpu_hidden.begin() + r * dim, cpu_hidden.begin() + (r + 1) * dim);
    EXPECT_LT(testing::normalized_error(gpu_hidden.data() + r * dim, want), kPrefilledTolerance) << "row " << r;
  }
  EXPECT_LT(testing::normalized_error(gpu_logits.data(), std::vector<double>(cpu_logits.begin(), cpu_logits.end())), kPrefilledTolerance);
}

// The same KV type on both backends: the device quantizes K/V exactly as the CPU does, so the logits
// differ only by summation order.
TEST(CudaBackend, EveryKvTypeMatchesTheCpuBackend) {
  PAGEDLM_REQUIRE_DEVICE();
  for (KvDtype dtype : {KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3}) {
    BothBackends both(spec_with(TensorType::kF32), dtype, 32);
    ASSERT_TRUE(both.gpu && both.cpu);
    expect_same_steps(both, prompt_of(40, both.vocab), 35, {2, 0}, kv_dtype_name(dtype));
  }
}

// Latent attention over each K-only pool type: prefill, then decode steps (replayed from graphs), as the CPU
// backend computes them; the blocks hold K rows only on both.
TEST(CudaBackend, LatentAttentionMatchesTheCpuBackend) {
  PAGEDLM_REQUIRE_DEVICE();
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kInt8}) {
    BothBackends both(latent_spec(64), dtype, 16);
    ASSERT_TRUE(both.gpu && both.cpu);
    EXPECT_EQ(both.gpu->block_bytes(), both.cpu->block_bytes());
    EXPECT_EQ(both.gpu->block_bytes(), both.gpu->kv_layout().bytes_per_block());
    expect_same_steps(both, prompt_of(40, both.vocab), 33, {5, 0, 3}, kv_dtype_name(dtype));
  }
}

// Exported blocks read the same on both backends (the cache file format), and copy_block copies them.
TEST(CudaBackend, BlocksExportImportAndCopyLikeTheCpuBackend) {
  PAGEDLM_REQUIRE_DEVICE();
  BothBackends both(spec_with(TensorType::kF32));
  const int vocab = both.vocab;
  Backend* gpu = both.gpu.get();
  Backend* cpu = both.cpu.get();
  ASSERT_TRUE(gpu && cpu);
  ASSERT_EQ(gpu->block_bytes(), cpu->block_bytes());
  std::vector<BlockId> table = {4, 6};
  ForwardBatch batch;
  batch.tokens = prompt_of(20, vocab);
  batch.sequences.push_back({0, 20, 0, table.data(), false});
  ASSERT_TRUE(gpu->forward(batch, nullptr).is_ok());
  ASSERT_TRUE(cpu->forward(batch, nullptr).is_ok());
  std::vector<uint8_t> from_gpu(gpu->block_bytes()), from_cpu(cpu->block_bytes());
  ASSERT_TRUE(gpu->export_block(4, from_gpu.data()).is_ok());
  ASSERT_TRUE(cpu->export_block(4, from_cpu.data()).is_ok());
  std::vector<float> g(from_gpu.size() / 4), c(from_cpu.size() / 4);
  std::memcpy(g.data(), from_gpu.data(), from_gpu.size());
  std::memcpy(c.data(), from_cpu.data(), from_cpu.size());
  EXPECT_TRUE(gpu_test::all_close(g, c, static_cast<float>(kPrefilledTolerance)));
  ASSERT_TRUE(gpu->copy_block(4, 9).is_ok());
  std::vector<uint8_t> copied(gpu->block_bytes());
  ASSERT_TRUE(gpu->export_block(9, copied.data()).is_ok());
  EXPECT_EQ(copied, from_gpu);
  ASSERT_TRUE(gpu->import_block(10, from_cpu.data()).is_ok());
  ASSERT_TRUE(gpu->export_block(10, copied.data()).is_ok());
  EXPECT_EQ(copied, from_cpu);
}

// The offload tier's copies: a block exported asynchronously into the backend's host memory and imported
// back into another block, then overwritten by a step queued behind both, round-trips its bytes; the
// next step reads the imported block as the original.
TEST(CudaBackend, AsyncHostCopiesAreOrderedOnTheStream) {
  PAGEDLM_REQUIRE_DEVICE();
  BothBackends both(spec_with(TensorType::kF16));
  const int vocab = both.vocab;
  Backend* gpu = both.gpu.get();
  ASSERT_TRUE(gpu);
  const size_t bytes = gpu->block_bytes();
  std::shared_ptr<uint8_t> host = gpu->allocate_host_blocks(2 * bytes);
  ASSERT_TRUE(host);
  std::vector<BlockId> table = {3, 5};
  ForwardBatch batch;
  batch.tokens = prompt_of(20, vocab);
  batch.sequences.push_back({0, 20, 0, table.data(), false});
  ASSERT_TRUE(gpu->forward(batch, nullptr).is_ok());
  std::vector<uint8_t> original(bytes);
  ASSERT_TRUE(gpu->export_block(3, original.data()).is_ok());
  ASSERT_TRUE(gpu->export_block_async(3, host.get()).is_ok());
  ASSERT_TRUE(gpu->import_block_async(7, host.get()).is_ok());
  // A step that rewrites block 3 runs after the export on the stream.
  std::vector<BlockId> other = {3};
  ForwardBatch overwrite;
  overwrite.tokens = prompt_of(16, vocab, 5);
  overwrite.sequences.push_back({0, 16, 0, other.data(), false});
  ASSERT_TRUE(gpu->forward(overwrite, nullptr).is_ok());
  ASSERT_TRUE(gpu->finish_host_copies().is_ok());
  EXPECT_EQ(std::vector<uint8_t>(host.get(), host.get() + bytes), original);
  std::vector<uint8_t> restored(bytes);
  ASSERT_TRUE(gpu->export_block(7, restored.data()).is_ok());
  EXPECT_EQ(restored, original);
}

// Decode steps of 1-5 sequences replayed from CUDA graphs (padded to 1, 2, 4, 8) give the logits of the
// eager path, also when a new context bucket or batch size needs a new graph mid-way.
TEST(CudaBackend, GraphReplaysMatchEagerSteps) {
  PAGEDLM_REQUIRE_DEVICE();
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(spec_with(TensorType::kF16), storage);
  const int vocab = model->config().vocab_size;
  auto eager = eager_cuda_backend(model, layout_for(*model, KvDtype::kF16));
  auto graphed = cuda_backend(model, layout_for(*model, KvDtype::kF16));
  ASSERT_TRUE(eager && graphed);
#ifdef PAGEDLM_CUDA_EMULATION
  const uint64_t launches_before = pagedlm::emu::graph_launches();
#endif
  std::vector<std::vector<BlockId>> tables = {{0, 1, 2}, {3, 4, 5}, {6, 7, 8}, {9, 10, 11}, {12, 13, 14}};
  std::vector<int> lengths(5, 0);
  std::vector<float> a(5 * vocab), b(5 * vocab);
  for (int step = 0; step < 12; ++step) {
    const int active = 1 + step % 5;  // batch sizes 1..5
    ForwardBatch batch;
    for (int s = 0; s < active; ++s) {
      batch.tokens.push_back((step * 7 + s * 31 + 5) % vocab);
      batch.sequences.push_back({s, 1, lengths[s], tables[s].data(), true});
      ++lengths[s];
    }
    ASSERT_TRUE(eager->forward(batch, a.data()).is_ok());
    const Status s = graphed->forward(batch, b.data());
    ASSERT_TRUE(s.is_ok()) << s.message();
    for (int r = 0; r < active; ++r) {
      const std::vector<double> want(a.begin() + r * vocab, a.begin() + (r + 1) * vocab);
      EXPECT_LT(testing::normalized_error(b.data() + r * vocab, want), 1e-5) << "step " << step << " row " << r;
    }
  }
#ifdef PAGEDLM_CUDA_EMULATION
  EXPECT_EQ(pagedlm::emu::graph_launches() - launches_before, 12u);
#endif
}

// Greedy rows come back as tokens (the argmax, as the CPU's logits give it) from prefill and from decode
// graphs; one row that needs its logits makes the whole step return logits.
// Within one context bucket a sequence grows past a decode partition boundary: the replayed graph still
// reads every token (its kernels were sized by the bucket, not by the step it was captured at).
TEST(CudaBackend, GraphReplaysFollowGrowingContextsWithinABucket) {
  PAGEDLM_REQUIRE_DEVICE();
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(spec_with(TensorType::kF32), storage);
  const int vocab = model->config().vocab_size;
  KvLayout layout = layout_for(*model, KvDtype::kF32);
  layout.num_blocks = 96;
  auto eager = eager_cuda_backend(model, layout);
  auto graphed = cuda_backend(model, layout);
  ASSERT_TRUE(eager && graphed);
  std::vector<BlockId> t0(45), t1(45);
  for (int i = 0; i < 45; ++i) t0[i] = i, t1[i] = 45 + i;
  const int prompt = 185;
  const auto p0 = prompt_of(prompt, vocab, 5), p1 = prompt_of(prompt, vocab, 6);
  ForwardBatch prefill;
  prefill.tokens = p0;
  prefill.tokens.insert(prefill.tokens.end(), p1.begin(), p1.end());
  prefill.sequences = {{0, prompt, 0, t0.data(), true}, {prompt, prompt, 0, t1.data(), true}};
  std::vector<float> a(2 * vocab), b(2 * vocab);
  ASSERT_TRUE(eager->forward(prefill, a.data()).is_ok());
  ASSERT_TRUE(graphed->forward(prefill, b.data()).is_ok());
  // The emulated device has 4 SMs: 2 sequences x 2 KV heads split into 64-token partitions; the graph of
  // the 256-token bucket is captured at context 186 (3 partitions) and must still read position 192 and on.
  for (int pos = prompt; pos < 200; ++pos) {
    ForwardBatch step;
    step.tokens = {argmax(a.data(), vocab), argmax(a.data() + vocab, vocab)};
    step.sequences = {{0, 1, pos, t0.data(), true}, {1, 1, pos, t1.data(), true}};
    ASSERT_TRUE(eager->forward(step, a.data()).is_ok());
    ASSERT_TRUE(graphed->forward(step, b.data()).is_ok());
    for (int r = 0; r < 2; ++r) {
      ASSERT_LT(testing::normalized_error(b.data() + r * vocab, std::vector<double>(a.begin() + r * vocab, a.begin() + (r + 1) * vocab)), 1e-5)
          << "position " << pos << " row " << r;
    }
  }
}

TEST(CudaBackend, GreedyRowsReturnTokensInsteadOfLogits) {
  PAGEDLM_REQUIRE_DEVICE();
  BothBackends both(spec_with(TensorType::kF32));
  const int vocab = both.vocab;
  Backend* gpu = both.gpu.get();
  Backend* cpu = both.cpu.get();
  ASSERT_TRUE(gpu && cpu);
  std::vector<BlockId> t0 = {1, 2}, t1 = {5, 6};
  const auto p0 = prompt_of(17, vocab, 3), p1 = prompt_of(9, vocab, 4);
  ForwardBatch prefill;
  prefill.tokens = p0;
  prefill.tokens.insert(prefill.tokens.end(), p1.begin(), p1.end());
  prefill.sequences = {{0, 17, 0, t0.data(), true, true}, {17, 9, 0, t1.data(), true, true}};
  std::vector<float> want(2 * vocab), logits(2 * vocab, -7.0f);
  ASSERT_TRUE(cpu->forward(prefill, want.data()).is_ok());
  std::vector<int32_t> tokens = {-1, -1};
  prefill.greedy_tokens = tokens.data();
  ASSERT_TRUE(gpu->forward(prefill, logits.data()).is_ok());
  EXPECT_EQ(tokens, (std::vector<int32_t>{argmax(want.data(), vocab), argmax(want.data() + vocab, vocab)}));
  EXPECT_EQ(logits[0], -7.0f) << "greedy rows copy no logits";

  ForwardBatch decode;
  decode.tokens = {tokens[0], tokens[1]};
  decode.sequences = {{0, 1, 17, t0.data(), true, true}, {1, 1, 9, t1.data(), true, false}};  // row 1 samples
  ASSERT_TRUE(cpu->forward(decode, want.data()).is_ok());
  tokens = {-1, -1};
  decode.greedy_tokens = tokens.data();
  ASSERT_TRUE(gpu->forward(decode, logits.data()).is_ok());
  EXPECT_EQ(tokens, (std::vector<int32_t>{-1, -1}));
  EXPECT_LT(testing::normalized_error(logits.data() + vocab, std::vector<double>(want.begin() + vocab, want.end())), 1e-4);

  ForwardBatch greedy_decode;
  greedy_decode.tokens = {argmax(want.data(), vocab), argmax(want.data() + vocab, vocab)};
  greedy_decode.sequences = {{0, 1, 18, t0.data(), true, true}, {1, 1, 10, t1.data(), true, true}};
  ASSERT_TRUE(cpu->forward(greedy_decode, want.data()).is_ok());
  greedy_decode.greedy_tokens = tokens.data();
  ASSERT_TRUE(gpu->forward(greedy_decode, logits.data()).is_ok());
  EXPECT_EQ(tokens, (std::vector<int32_t>{argmax(want.data(), vocab), argmax(want.data() + vocab, vocab)}));
}

// A sequence verifying proposed tokens (several logit rows) beside a one-row sequence: every row as the CPU
// backend computes it, and with greedy rows each row's own argmax.
TEST(CudaBackend, SeveralLogitRowsPerSequenceMatchTheCpuBackend) {
  PAGEDLM_REQUIRE_DEVICE();
  BothBackends both(spec_with(TensorType::kF32));
  const int vocab = both.vocab;
  Backend* gpu = both.gpu.get();
  Backend* cpu = both.cpu.get();
  ASSERT_TRUE(gpu && cpu);
  std::vector<BlockId> t0 = {1, 2}, t1 = {5, 6};
  const auto p0 = prompt_of(17, vocab, 5), p1 = prompt_of(9, vocab, 6);
  ForwardBatch batch;
  batch.tokens = p0;
  batch.tokens.insert(batch.tokens.end(), p1.begin(), p1.end());
  batch.sequences = {{0, 17, 0, t0.data(), true}, {17, 9, 0, t1.data(), true}};
  batch.sequences[0].logit_rows = 5;
  std::vector<float> want(6 * vocab), logits(6 * vocab);
  ASSERT_TRUE(cpu->forward(batch, want.data()).is_ok());
  ASSERT_TRUE(gpu->forward(batch, logits.data()).is_ok());
  for (int r = 0; r < 6; ++r) {
    const std::vector<double> row(want.begin() + r * vocab, want.begin() + (r + 1) * vocab);
    EXPECT_LT(testing::normalized_error(logits.data() + r * vocab, row), kPrefilledTolerance) << "row " << r;
  }
  for (BatchSequence& s : batch.sequences) s.greedy = true;
  std::vector<int32_t> tokens(6, -1);
  batch.greedy_tokens = tokens.data();
  ASSERT_TRUE(gpu->forward(batch, logits.data()).is_ok());
  for (int r = 0; r < 6; ++r) EXPECT_EQ(tokens[r], argmax(want.data() + r * vocab, vocab)) << "row " << r;
}

// Steps whose rows are top-k sampled (or greedy) return each row's k best candidates, in the order the
// logits path would give them, eagerly and from a decode graph.
TEST(CudaBackend, TopKRowsReturnTheirBestCandidates) {
  PAGEDLM_REQUIRE_DEVICE();
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(spec_with(TensorType::kF32), storage);
  const int vocab = model->config().vocab_size;
  auto with_logits = cuda_backend(model, layout_for(*model, KvDtype::kF32));
  auto with_candidates = cuda_backend(model, layout_for(*model, KvDtype::kF32));
  ASSERT_TRUE(with_logits && with_candidates);
  std::vector<BlockId> t0 = {1, 2}, t1 = {5, 6};
  const auto p0 = prompt_of(17, vocab, 3), p1 = prompt_of(9, vocab, 4);
  const int width = 40;
  const auto check = [&](ForwardBatch batch, const char* what) {
    std::vector<float> logits(2 * vocab), unused(2 * vocab);
    ASSERT_TRUE(with_logits->forward(batch, logits.data()).is_ok());
    std::vector<int32_t> ids(2 * width, -1);
    std::vector<float> values(2 * width);
    batch.top_k_width = width;
    batch.top_ids = ids.data();
    batch.top_values = values.data();
    ASSERT_TRUE(with_candidates->forward(batch, unused.data()).is_ok());
    for (int r = 0; r < 2; ++r) {
      std::vector<int32_t> order(vocab);
      std::iota(order.begin(), order.end(), 0);
      const float* row = logits.data() + r * vocab;
      std::partial_sort(order.begin(), order.begin() + width, order.end(),
                        [&](int a, int b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
      for (int i = 0; i < width; ++i) {
        ASSERT_EQ(ids[r * width + i], order[i]) << what << " row " << r << " rank " << i;
        ASSERT_EQ(values[r * width + i], row[order[i]]) << what;
      }
    }
  };
  ForwardBatch prefill;
  prefill.tokens = p0;
  prefill.tokens.insert(prefill.tokens.end(), p1.begin(), p1.end());
  prefill.sequences = {{0, 17, 0, t0.data(), true, false, width}, {17, 9, 0, t1.data(), true, true, 0}};  // top-k and greedy
  check(prefill, "prefill");
  ForwardBatch decode;
  decode.tokens = {7, 8};
  decode.sequences = {{0, 1, 17, t0.data(), true, false, 25}, {1, 1, 9, t1.data(), true, false, width}};
  check(decode, "decode");
}

TEST(CudaBackend, ModelsWithoutKernelsForTheirHeadSizeAreUnavailable) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model({.dim = 48, .heads = 4, .kv_heads = 2}, storage);  // head size 12
  CudaBackendReply reply;
  pagedlm_create_cuda_backend({model, layout_for(*model, KvDtype::kF16), 0, 64, 0.9}, reply);
  EXPECT_FALSE(reply.backend);
  EXPECT_TRUE(reply.unavailable);
  EXPECT_NE(reply.status.message().find("head size 12"), std::string::npos) << reply.status.message();
}

// Features the CUDA step lacks refuse the model, by architecture and feature, rather than run it wrong.
TEST(CudaBackend, ModelsWithFeaturesItLacksAreUnavailable) {
  const std::pair<SyntheticSpec, const char*> cases[] = {
      {{.architecture = "qwen3"}, "qwen3 models (Q/K norms)"},
      {{.architecture = "gemma2", .sliding_window = 8}, "gemma2 models (post-norms, GeGLU, soft-capping, scaled embeddings)"},
      {{.architecture = "gemma3", .sliding_window = 8}, "gemma3 models (Q/K norms, post-norms, GeGLU, scaled embeddings, per-layer RoPE settings)"},
      {{.architecture = "phi3", .rope_scaling = "longrope"}, "phi3 models (LongRoPE)"},
  };
  for (const auto& [spec, fragment] : cases) {
    std::vector<uint8_t> storage;
    auto model = load_synthetic_model(spec, storage);
    CudaBackendReply reply;
    pagedlm_create_cuda_backend({model, layout_for(*model, KvDtype::kF16), 0, 64, 0.9}, reply);
    EXPECT_FALSE(reply.backend);
    EXPECT_TRUE(reply.unavailable);
    EXPECT_EQ(reply.status.code(), ErrorCode::kUnsupported);
    EXPECT_NE(reply.status.message().find(fragment), std::string::npos) << reply.status.message();
  }
}


std::string types_name(KvTypes types) { return std::string("K ") + kv_dtype_name(types.k) + " V " + kv_dtype_name(types.v); }

// K and V of different types, and int4 (K requantized per channel as a block fills, V per group): prefill
// across a block boundary, then decode steps (replayed from graphs) as the CPU backend computes them. The
// device encodes K/V as the CPU does, so the logits differ only by summation order, and the greedy tokens agree.
TEST(CudaBackend, SplitAndInt4KvPoolsMatchTheCpuBackend) {
  PAGEDLM_REQUIRE_DEVICE();
  for (const KvTypes types : {KvTypes{KvDtype::kF16, KvDtype::kInt4}, KvTypes{KvDtype::kInt8, KvDtype::kInt4}, KvTypes::both(KvDtype::kInt4),
                              KvTypes{KvDtype::kInt4, KvDtype::kF16}}) {
    BothBackends both(spec_with(TensorType::kF32), types, 16);
    ASSERT_TRUE(both.gpu && both.cpu);
    EXPECT_EQ(both.gpu->block_bytes(), both.cpu->block_bytes());
    expect_same_steps(both, prompt_of(26, both.vocab), 20, {2, 0}, types_name(types), /*same_greedy=*/true);
  }
}

// A block's bytes mean the same on both backends for every K/V type pair (saved caches, the offload tier):
// blocks the CPU filled, imported on the device, export as the same bytes and the device's next step reads
// them as the CPU does; and the other way round.
TEST(CudaBackend, BlocksMoveBetweenBackendsByteForByte) {
  PAGEDLM_REQUIRE_DEVICE();
  std::vector<KvTypes> pairs;
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3, KvDtype::kInt4}) pairs.push_back(KvTypes::both(dtype));
  for (const KvTypes types : {KvTypes{KvDtype::kF16, KvDtype::kInt4}, KvTypes{KvDtype::kInt8, KvDtype::kInt4}, KvTypes{KvDtype::kInt4, KvDtype::kF16},
                              KvTypes{KvDtype::kFp8E4M3, KvDtype::kBF16}}) {
    pairs.push_back(types);
  }
  for (const KvTypes types : pairs) {
    BothBackends both(spec_with(TensorType::kF32), types, 16);
    const int vocab = both.vocab;
    Backend* gpu = both.gpu.get();
    Backend* cpu = both.cpu.get();
    ASSERT_TRUE(gpu && cpu);
    ASSERT_EQ(gpu->block_bytes(), cpu->block_bytes()) << types_name(types);
    ASSERT_EQ(gpu->block_bytes(), gpu->kv_layout().bytes_per_block()) << types_name(types);
    const auto tokens = prompt_of(21, vocab);
    for (const auto& [writer, reader] : {std::pair{cpu, gpu}, {gpu, cpu}}) {
      const std::string where = types_name(types) + (writer == cpu ? ", CPU to device" : ", device to CPU");
      std::vector<BlockId> table = {writer == cpu ? 1 : 4, writer == cpu ? 3 : 6};
      ForwardBatch prefill;
      prefill.tokens.assign(tokens.begin(), tokens.begin() + 20);
      prefill.sequences.push_back({0, 20, 0, table.data(), false});
      ASSERT_TRUE(writer->forward(prefill, nullptr).is_ok());
      for (BlockId block : table) {
        std::vector<uint8_t> written(writer->block_bytes()), read(reader->block_bytes());
        ASSERT_TRUE(writer->export_block(block, written.data()).is_ok());
        ASSERT_TRUE(reader->import_block(block, written.data()).is_ok());
        ASSERT_TRUE(reader->export_block(block, read.data()).is_ok());
        EXPECT_EQ(read, written) << where << ", block " << block;
      }
      // Both continue from the writer's blocks: the same cache, read by each backend's kernels.
      std::vector<float> a(vocab), b(vocab);
      ForwardBatch step;
      step.tokens = {tokens[20]};
      step.sequences.push_back({0, 1, 20, table.data(), true});
      ASSERT_TRUE(writer->forward(step, a.data()).is_ok());
      ASSERT_TRUE(reader->forward(step, b.data()).is_ok());
      EXPECT_LT(testing::normalized_error(b.data(), std::vector<double>(a.begin(), a.end())), 2e-3) << where;
    }
  }
}

// Latent attention keeps V inside the K rows: K and V of two types cannot be stored, and the device says so.
TEST(CudaBackend, LatentAttentionWithSplitTypesIsRefused) {
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(latent_spec(0), storage);
  CudaBackendReply reply;
  pagedlm_create_cuda_backend({model, layout_for(*model, KvTypes{KvDtype::kF16, KvDtype::kInt4}), 0, 64, 0.9}, reply);
  EXPECT_FALSE(reply.backend);
  EXPECT_EQ(reply.status.code(), ErrorCode::kUnsupported);
  EXPECT_NE(reply.status.message().find("K f16 and V int4"), std::string::npos) << reply.status.message();
}

// Layer 0's FFN norm weights of 1e5 put its GEMM inputs (and SwiGLU's outputs, the down projection's input)
// far past f16's 65504, which a plain conversion makes inf; the norms after it undo the scale, so the logits
// still match the CPU backend's f32 activations within f16's rounding.
TEST(CudaBackend, ActivationsPastHalfRangeMatchTheCpuBackend) {
  PAGEDLM_REQUIRE_DEVICE();
  BothBackends both(spec_with(TensorType::kF16));
  for (float& w : const_cast<LayerWeights&>(both.model->layers()[0]).ffn_norm) w *= 1e5f;
  both.gpu = cuda_backend(both.model, layout_for(*both.model, KvDtype::kF32));
  both.cpu = cpu_backend(both.model, layout_for(*both.model, KvDtype::kF32));
  const std::vector<BlockId> table = {4, 1};
  expect_same_steps(both, prompt_of(22, both.vocab, 5), 18, table, "large activations", true);
}

// Slots reach the kernels as int32: a pool with more is refused before anything is allocated for it.
TEST(CudaBackend, PoolsWithMoreSlotsThanInt32AreRefused) {
  PAGEDLM_REQUIRE_DEVICE();
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(spec_with(TensorType::kF32), storage);
  KvLayout layout = layout_for(*model, KvDtype::kF16);
  layout.num_blocks = std::numeric_limits<int32_t>::max() / layout.block_size + 1;
  CudaBackendRequest request{model, layout, 0, 64, 0.9};
  CudaBackendReply reply;
  pagedlm_create_cuda_backend(request, reply);
  EXPECT_EQ(reply.backend, nullptr);
  EXPECT_EQ(reply.status.code(), ErrorCode::kInvalidArgument) << reply.status.message();
  EXPECT_NE(reply.status.message().find("2^31 - 1"), std::string::npos) << reply.status.message();
}

#ifdef PAGEDLM_CUDA_EMULATION
// A step that needs more activation memory than the device has fails with its Status; the next, smaller
// steps allocate again and match the CPU backend (none runs on the buffers the failed growth freed).
TEST(CudaBackend, AFailedActivationGrowthLeavesTheBackendUsable) {
  BothBackends both(spec_with(TensorType::kF32));
  ASSERT_TRUE(both.gpu && both.cpu);
  std::vector<BlockId> big_table = {10, 11, 12, 13, 14, 15};
  ForwardBatch big;
  big.tokens = prompt_of(80, both.vocab, 3);  // past the 64 tokens the backend was created for
  big.sequences.push_back({0, 80, 0, big_table.data(), true});
  std::vector<float> logits(both.vocab);
  pagedlm::emu::fail_allocations_after(2);
  const Status failed = both.gpu->forward(big, logits.data());
  pagedlm::emu::fail_allocations_after(-1);
  EXPECT_EQ(failed.code(), ErrorCode::kCuda) << failed.message();
  const std::vector<BlockId> table = {2, 5};
  expect_same_steps(both, prompt_of(24, both.vocab, 4), 20, table, "after a failed growth");
}
#endif

}  // namespace
}  // namespace pagedlm
