// The whole engine on the CUDA backend behaves as on the CPU: the same greedy tokens, prefix-cache hits
// that reproduce a cold run, and preemption under a small pool that changes nothing in the outputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "engine/engine.h"
#include "gpu_test_support.h"
#include "support/event_collector.h"
#include "support/shared_models.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

class DeviceEngine {
 public:
  DeviceEngine(const std::string& device, int32_t blocks, const std::string& path = model_path(), KvDtype dtype = KvDtype::kF32,
               const OffloadOptions& offload = {})
      : DeviceEngine(device, blocks, path, KvTypes::both(dtype), offload) {}
  DeviceEngine(const std::string& device, int32_t blocks, const std::string& path, KvTypes types, const OffloadOptions& offload = {}) {
    EngineOptions o;
    o.offload = offload;
    o.device = device;
    o.threads = 2;
    o.kv_types = types;
    o.kv_blocks = blocks;
    o.block_size = 16;
    o.context_length = 256;
    o.max_batch_tokens = 48;
    auto e = Engine::load(path, o, &events_);
    EXPECT_TRUE(e.is_ok()) << e.status().message();
    if (e.is_ok()) engine_ = e.take();
  }
  // `sample`: temperature with top-k (the backend's candidates path), seeded alike for every request.
  RequestId submit(const std::vector<int32_t>& prompt, int max_tokens, speculative::SpeculativeParams speculation = {}, bool sample = false) {
    GenerateParams p;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    p.sampling.temperature = sample ? 0.8f : 0.0f;
    p.sampling.seed = 11;
    p.speculative = speculation;
    const RequestId id = ++next_;
    EXPECT_TRUE(engine_->submit({id, prompt, p}).is_ok());
    return id;
  }
  std::vector<int32_t> tokens(RequestId id) { return events_.wait(id).tokens; }
  std::vector<float> embedding(const std::vector<int32_t>& prompt) {
    GenerateParams p;
    p.embed = EmbedParams{};
    const RequestId id = ++next_;
    EXPECT_TRUE(engine_->submit({id, prompt, p}).is_ok());
    return events_.wait(id).embedding;
  }
  Engine& engine() { return *engine_; }
  explicit operator bool() const { return engine_ != nullptr; }

  static const std::string& model_path() {
    static const std::string path = testing::write_synthetic_model(
        {.dim = 128, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 64, .ffn = 192}, "cuda_engine.gguf");
    return path;
  }

 private:
  testing::EventCollector events_;
  std::unique_ptr<Engine> engine_;
  RequestId next_ = 0;
};

std::vector<int32_t> prompt(int start, int count) {
  std::vector<int32_t> t = {1};
  for (int i = 0; i < count; ++i) t.push_back(3 + (start + i * 13) % 300);
  return t;
}

// Prefixes the pool evicted come back from the pinned memory tier (asynchronous copies on the stream) and
// from the disk tier with the tokens of a run that computed them.
TEST(CudaEngine, OffloadedPrefixesComeBackAsComputed) {
  PAGEDLM_REQUIRE_DEVICE();
  const std::string folder = ::testing::TempDir() + "pagedlm_cuda_offload";
  std::filesystem::remove_all(folder);
  std::vector<std::vector<int32_t>> expected;
  {
    DeviceEngine roomy("cuda", 64);
    ASSERT_TRUE(roomy);
    for (int p = 0; p < 4; ++p) expected.push_back(roomy.tokens(roomy.submit(prompt(p * 50, 47), 4)));
  }
  for (const OffloadOptions& tiers : {OffloadOptions{1 << 22, 0, ""}, OffloadOptions{0, 1 << 24, folder}}) {
    DeviceEngine small("cuda", 8, DeviceEngine::model_path(), KvDtype::kF32, tiers);  // two 52-token requests
    ASSERT_TRUE(small);
    for (int round = 0; round < 2; ++round) {
      for (int p = 0; p < 4; ++p) {
        ASSERT_TRUE(small.engine().flush_offload().is_ok());
        EXPECT_EQ(small.tokens(small.submit(prompt(p * 50, 47), 4)), expected[p]) << "round " << round << ", prompt " << p;
      }
    }
    const OffloadStats s = small.engine().stats().offload_tiers;
    EXPECT_GT(s.memory_hits + s.disk_hits, 0u);
    EXPECT_EQ(s.read_errors + s.write_errors, 0u);
    EXPECT_TRUE(small.engine().check_kv_invariants().is_ok());
  }
}

TEST(CudaEngine, RunsOnTheDeviceAndSaysSo) {
  PAGEDLM_REQUIRE_DEVICE();
  DeviceEngine gpu("cuda", 64);
  ASSERT_TRUE(gpu);
  EXPECT_EQ(gpu.engine().info().backend, "cuda");
  EXPECT_FALSE(gpu.engine().info().gpu_name.empty());
  EXPECT_GT(gpu.engine().info().gpu_weight_bytes, 0u);
}

TEST(CudaEngine, PrefixHitsAndGreedyTokensAsOnTheCpu) {
  PAGEDLM_REQUIRE_DEVICE();
  DeviceEngine gpu("cuda", 64), cpu("cpu", 64);
  ASSERT_TRUE(gpu && cpu);
  const std::vector<int32_t> first = prompt(0, 40);
  std::vector<int32_t> second = first;
  for (int32_t t : prompt(500, 9)) second.push_back(t);
  for (DeviceEngine* e : {&gpu, &cpu}) e->tokens(e->submit(first, 12));
  const std::vector<int32_t> gpu_second = gpu.tokens(gpu.submit(second, 12));
  EXPECT_EQ(gpu_second, cpu.tokens(cpu.submit(second, 12)));
  EXPECT_GT(gpu.engine().stats().prefix.hit_tokens, 0u);
  EXPECT_EQ(gpu.engine().stats().prefix.hit_tokens, cpu.engine().stats().prefix.hit_tokens);
  DeviceEngine cold("cuda", 64);
  EXPECT_EQ(cold.tokens(cold.submit(second, 12)), gpu_second) << "a prefix hit must equal a cold run";
}

// K and V of different types and int4 on the device: the CPU's greedy tokens, and a prefix hit (whole blocks
// for int4 K) equal to a cold run.
TEST(CudaEngine, SplitAndInt4PoolsAsOnTheCpu) {
  PAGEDLM_REQUIRE_DEVICE();
  for (const KvTypes types : {KvTypes{KvDtype::kF16, KvDtype::kInt4}, KvTypes::both(KvDtype::kInt4), KvTypes{KvDtype::kInt4, KvDtype::kInt8}}) {
    const std::string where = std::string("K ") + kv_dtype_name(types.k) + " V " + kv_dtype_name(types.v);
    DeviceEngine gpu("cuda", 64, DeviceEngine::model_path(), types), cpu("cpu", 64, DeviceEngine::model_path(), types);
    ASSERT_TRUE(gpu && cpu);
    EXPECT_EQ(gpu.engine().info().backend, "cuda");
    const std::vector<int32_t> first = prompt(0, 40);
    std::vector<int32_t> second = first;
    for (int32_t t : prompt(500, 9)) second.push_back(t);
    for (DeviceEngine* e : {&gpu, &cpu}) e->tokens(e->submit(first, 12));
    const std::vector<int32_t> gpu_second = gpu.tokens(gpu.submit(second, 12));
    EXPECT_EQ(gpu_second, cpu.tokens(cpu.submit(second, 12))) << where;
    EXPECT_GT(gpu.engine().stats().prefix.hit_tokens, 0u) << where;
    EXPECT_EQ(gpu.engine().stats().prefix.hit_tokens, cpu.engine().stats().prefix.hit_tokens) << where;
    DeviceEngine cold("cuda", 64, DeviceEngine::model_path(), types);
    EXPECT_EQ(cold.tokens(cold.submit(second, 12)), gpu_second) << where << ": a prefix hit must equal a cold run";
  }
}

// An embedding (pooled over chunks of 48 tokens) and a generation in the same steps, as on the CPU.
TEST(CudaEngine, EmbeddingsAsOnTheCpu) {
  PAGEDLM_REQUIRE_DEVICE();
  DeviceEngine gpu("cuda", 64), cpu("cpu", 64);
  ASSERT_TRUE(gpu && cpu);
  const std::vector<int32_t> text = prompt(7, 100);
  const RequestId generation = gpu.submit(prompt(3, 20), 30);
  const std::vector<float> on_gpu = gpu.embedding(text);
  const std::vector<float> on_cpu = cpu.embedding(text);
  ASSERT_EQ(on_gpu.size(), on_cpu.size());
  ASSERT_FALSE(on_gpu.empty());
  // 1e-3: the CUDA prefill attention multiplies 16-bit Q, K, V and softmax weights (kernels/prefill_attention.cu).
  EXPECT_LT(testing::normalized_error(on_gpu.data(), std::vector<double>(on_cpu.begin(), on_cpu.end())), 1e-3);
  EXPECT_EQ(gpu.tokens(generation), cpu.tokens(cpu.submit(prompt(3, 20), 30)));
}

// The shared test models (head sizes 8 and 16) generate the CPU's greedy tokens on the device.
TEST(CudaEngine, SharedModelsGenerateTheCpusGreedyTokens) {
  PAGEDLM_REQUIRE_DEVICE();
  for (const char* file : {"stories260K.gguf", "aidreams260K.gguf"}) {
    const std::string path = testing::shared_model(file);
    if (path.empty()) GTEST_SKIP() << "shared test model " << file << " not found (set PAGEDLM_MODELS_DIR)";
    for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16}) {
      DeviceEngine gpu("cuda", 64, path, dtype), cpu("cpu", 64, path, dtype);
      ASSERT_TRUE(gpu && cpu);
      const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
      EXPECT_EQ(gpu.tokens(gpu.submit(prompt, 60)), cpu.tokens(cpu.submit(prompt, 60))) << file << " " << kv_dtype_name(dtype);
    }
  }
}

// Proposes what known token sequences continue with; every third guess is wrong.
class KnownContinuations : public speculative::Proposer {
 public:
  explicit KnownContinuations(std::vector<std::vector<int32_t>> known) : known_(std::move(known)) {}
  void propose(const std::vector<speculative::DraftRequest>& requests, std::vector<std::vector<int32_t>>& out) override {
    out.assign(requests.size(), {});
    for (size_t r = 0; r < requests.size(); ++r) {
      const std::vector<int32_t>& tokens = *requests[r].tokens;
      for (const std::vector<int32_t>& ref : known_) {
        if (ref.size() <= tokens.size() || !std::equal(tokens.begin(), tokens.end(), ref.begin())) continue;
        for (size_t at = tokens.size(); at < ref.size() && out[r].size() < static_cast<size_t>(requests[r].max_tokens); ++at) {
          out[r].push_back(at % 3 == 0 ? (ref[at] + 1) % 300 : ref[at]);
        }
        break;
      }
    }
  }

 private:
  std::vector<std::vector<int32_t>> known_;
};

// Verifying steps (several logit rows per sequence, as argmax tokens or top-k candidates) give the tokens of
// plain decoding on the device, greedy and sampled.
TEST(CudaEngine, SpeculativeDecodingKeepsTheOutputs) {
  PAGEDLM_REQUIRE_DEVICE();
  DeviceEngine plain("cuda", 64), speculating("cuda", 64);
  ASSERT_TRUE(plain && speculating);
  std::vector<std::vector<int32_t>> known, outputs;
  for (int r = 0; r < 4; ++r) {
    std::vector<int32_t> p = prompt(50 * r, 10 + 7 * r);
    outputs.push_back(plain.tokens(plain.submit(p, 40, {}, r % 2 == 1)));
    p.insert(p.end(), outputs.back().begin(), outputs.back().end());
    known.push_back(std::move(p));
  }
  ASSERT_TRUE(speculating.engine().set_proposer(speculative::ProposerKind::kNgram, std::make_unique<KnownContinuations>(known)).is_ok());
  std::vector<RequestId> ids;
  for (int r = 0; r < 4; ++r) ids.push_back(speculating.submit(prompt(50 * r, 10 + 7 * r), 40, {speculative::ProposerKind::kNgram, 5}, r % 2 == 1));
  for (int r = 0; r < 4; ++r) EXPECT_EQ(speculating.tokens(ids[r]), outputs[r]) << "request " << r;
  const EngineStats s = speculating.engine().stats();
  EXPECT_GT(s.speculation.accepted, 0u);
  EXPECT_LT(s.speculation.accepted, s.speculation.proposed);
  EXPECT_EQ(s.in_use_blocks, 0);
  ASSERT_TRUE(speculating.engine().check_kv_invariants().is_ok());
}

TEST(CudaEngine, PreemptionUnderASmallPoolKeepsTheOutputs) {
  PAGEDLM_REQUIRE_DEVICE();
  // 4 requests of up to 4 blocks each in a pool of 8 blocks: some are preempted and recomputed.
  DeviceEngine gpu("cuda", 8), cpu("cpu", 64);
  ASSERT_TRUE(gpu && cpu);
  std::vector<RequestId> gpu_ids, cpu_ids;
  for (int r = 0; r < 4; ++r) {
    gpu_ids.push_back(gpu.submit(prompt(100 * r, 20), 30));
    cpu_ids.push_back(cpu.submit(prompt(100 * r, 20), 30));
  }
  for (int r = 0; r < 4; ++r) EXPECT_EQ(gpu.tokens(gpu_ids[r]), cpu.tokens(cpu_ids[r])) << "request " << r;
  EXPECT_GT(gpu.engine().stats().preemptions, 0u);
}

}  // namespace
}  // namespace pagedlm
