// Embedding requests through the Engine: the pooled final-norm rows match a direct double-precision
// forward pass for each pooling type, batch with generation, survive preemption, abort, and leak no block.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "engine/engine.h"
#include "engine/pooling.h"
#include "support/event_collector.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

using testing::EventCollector;

constexpr int kDim = 64;

std::string model_with_pooling(int pooling_type) {
  testing::SyntheticSpec spec{.dim = kDim, .layers = 2};
  spec.pooling_type = pooling_type;
  return testing::write_synthetic_model(spec, "embedding_pooling_" + std::to_string(pooling_type + 1) + ".gguf");
}

// Also records the order in which requests finished, and can hold the engine thread after a request's first
// token until the test lets it go (so the test acts while that request is surely still running).
class OrderedEvents : public EventCollector {
 public:
  void deliver(std::vector<EngineEvent> events) override {
    bool hold = false;
    {
      std::lock_guard<std::mutex> lock(order_mutex_);
      for (const EngineEvent& e : events) {
        if (e.kind != EngineEvent::Kind::kToken) finished_.push_back(e.request);
        if (e.kind == EngineEvent::Kind::kToken && e.request == hold_after_) hold = !released_;
      }
    }
    EventCollector::deliver(std::move(events));
    if (!hold) return;
    std::unique_lock<std::mutex> lock(order_mutex_);
    release_.wait(lock, [&] { return released_; });
  }
  std::vector<RequestId> finished_order() {
    std::lock_guard<std::mutex> lock(order_mutex_);
    return finished_;
  }
  void hold_after_first_token_of(RequestId id) {
    std::lock_guard<std::mutex> lock(order_mutex_);
    hold_after_ = id;
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(order_mutex_);
      released_ = true;
    }
    release_.notify_all();
  }

 private:
  std::mutex order_mutex_;
  std::condition_variable release_;
  std::vector<RequestId> finished_;
  RequestId hold_after_ = 0;
  bool released_ = false;
};

struct Fixture {
  explicit Fixture(const std::string& path, int32_t kv_blocks = 0, int32_t batch_tokens = 16) {
    EngineOptions o;
    o.threads = 2;
    o.kv_types = KvTypes::both(KvDtype::kF32);
    o.block_size = 8;
    o.context_length = 128;
    o.kv_blocks = kv_blocks;
    o.max_batch_tokens = batch_tokens;
    auto loaded = Engine::load(path, o, &events);
    EXPECT_TRUE(loaded.is_ok()) << loaded.status().message();
    if (loaded.is_ok()) engine = loaded.take();
  }
  RequestId submit(std::vector<int32_t> prompt, GenerateParams params) {
    GenerateRequest r{++next_id, std::move(prompt), std::move(params)};
    const Status s = engine->submit(std::move(r));
    EXPECT_TRUE(s.is_ok()) << s.message();
    return next_id;
  }
  RequestId submit_embedding(std::vector<int32_t> prompt, bool normalize = false) { return submit(std::move(prompt), embed_params(normalize)); }
  static GenerateParams embed_params(bool normalize) {
    GenerateParams p;
    p.embed = EmbedParams{normalize};
    return p;
  }
  std::vector<float> embed(std::vector<int32_t> prompt, bool normalize = false) {
    const EngineEvent done = events.wait(submit_embedding(std::move(prompt), normalize));
    EXPECT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
    return done.embedding;
  }
  void expect_no_blocks_held() {
    ASSERT_TRUE(engine->check_kv_invariants().is_ok());
    EXPECT_EQ(engine->stats().in_use_blocks, 0);
    EXPECT_EQ(engine->stats().running + engine->stats().waiting, 0);
  }
  OrderedEvents events;
  std::unique_ptr<Engine> engine;
  RequestId next_id = 0;
};

std::vector<int32_t> prompt_of(int length, int seed) {
  std::vector<int32_t> t = {1};
  for (int i = 1; i < length; ++i) t.push_back(3 + (seed * 37 + i * 11) % 300);
  return t;
}

// The pooling of the reference's final-norm rows.
std::vector<double> expected_embedding(const LlamaModel& model, const std::vector<int32_t>& tokens, Pooling pooling) {
  const auto rows = testing::reference_hidden_states(model, tokens);
  if (pooling == Pooling::kCls) return rows.front();
  if (pooling == Pooling::kLast) return rows.back();
  std::vector<double> mean(rows.front().size(), 0.0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < mean.size(); ++i) mean[i] += row[i] / static_cast<double>(rows.size());
  }
  return mean;
}

double norm_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

struct PoolingCase {
  int pooling_type;
  Pooling pooling;
  const char* name;
};

class EmbeddingPooling : public ::testing::TestWithParam<PoolingCase> {};

TEST_P(EmbeddingPooling, MatchesTheDirectForwardPass) {
  const PoolingCase& c = GetParam();
  testing::SyntheticSpec spec{.dim = kDim, .layers = 2};
  spec.pooling_type = c.pooling_type;
  std::vector<uint8_t> storage;
  const auto model = testing::load_synthetic_model(spec, storage);
  Fixture f(model_with_pooling(c.pooling_type));
  // 45 tokens in chunks of 16: pooling spans several steps.
  for (const std::vector<int32_t>& prompt : {prompt_of(45, 1), prompt_of(3, 2), prompt_of(1, 3)}) {
    const std::vector<double> expected = expected_embedding(*model, prompt, c.pooling);
    const std::vector<float> raw = f.embed(prompt, false);
    ASSERT_EQ(raw.size(), static_cast<size_t>(kDim));
    EXPECT_LT(testing::normalized_error(raw.data(), expected), 1e-4) << prompt.size() << " tokens";
    const std::vector<float> unit = f.embed(prompt, true);
    EXPECT_NEAR(norm_of(unit), 1.0, 1e-5);
    const double scale = norm_of(raw);
    for (size_t i = 0; i < unit.size(); ++i) EXPECT_NEAR(unit[i], raw[i] / scale, 1e-5);
  }
  f.expect_no_blocks_held();
}

INSTANTIATE_TEST_SUITE_P(Types, EmbeddingPooling,
                         ::testing::Values(PoolingCase{1, Pooling::kMean, "mean"}, PoolingCase{2, Pooling::kCls, "cls"},
                                           PoolingCase{3, Pooling::kLast, "last"}, PoolingCase{0, Pooling::kMean, "none"},
                                           PoolingCase{-1, Pooling::kMean, "absent"}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Embedding, RequestPoolingOverridesTheModels) {
  std::vector<uint8_t> storage;
  const auto model = testing::load_synthetic_model({.dim = kDim, .layers = 2}, storage);
  Fixture f(model_with_pooling(-1));
  const std::vector<int32_t> prompt = prompt_of(21, 5);
  GenerateParams last = Fixture::embed_params(false);
  last.embed->pooling = Pooling::kLast;
  const EngineEvent done = f.events.wait(f.submit(prompt, last));
  ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished);
  EXPECT_LT(testing::normalized_error(done.embedding.data(), expected_embedding(*model, prompt, Pooling::kLast)), 1e-4);
}

TEST(Embedding, CachedPrefixBlocksAreNotReusedForItsHiddenStates) {
  Fixture f(model_with_pooling(1));
  const std::vector<int32_t> prompt = prompt_of(40, 4);
  const std::vector<float> first = f.embed(prompt);
  EXPECT_EQ(f.engine->stats().cached_blocks, 0) << "an embedding adds nothing to the prefix cache";
  // A generation of the same prompt caches its blocks.
  GenerateParams generate;
  generate.max_tokens = 2;
  generate.sampling.temperature = 0;
  EXPECT_EQ(f.events.wait(f.submit(prompt, generate)).kind, EngineEvent::Kind::kFinished);
  EXPECT_EQ(f.embed(prompt), first);
  f.expect_no_blocks_held();
}

TEST(Embedding, BatchesWithGenerationUnderPreemptionAndMatchesSoloRuns) {
  const std::string path = model_with_pooling(1);
  std::vector<std::vector<float>> solo;
  std::vector<int32_t> solo_tokens;
  GenerateParams generate;
  generate.max_tokens = 40;
  generate.ignore_eos = true;
  generate.sampling.temperature = 0;
  {
    Fixture f(path);
    for (int i = 0; i < 4; ++i) solo.push_back(f.embed(prompt_of(20 + 9 * i, 10 + i)));
    solo_tokens = f.events.wait(f.submit(prompt_of(30, 9), generate)).tokens;
  }
  // 10 blocks of 8 tokens: the generation grows into blocks the embeddings hold, preempting them; they
  // are recomputed from their first token.
  Fixture f(path, 10, 32);
  std::vector<RequestId> ids;
  const RequestId generation = f.submit(prompt_of(30, 9), generate);
  for (int i = 0; i < 4; ++i) ids.push_back(f.submit_embedding(prompt_of(20 + 9 * i, 10 + i)));
  const EngineEvent generated = f.events.wait(generation);
  ASSERT_EQ(generated.kind, EngineEvent::Kind::kFinished) << generated.error.message();
  EXPECT_EQ(generated.tokens, solo_tokens);
  for (int i = 0; i < 4; ++i) {
    const EngineEvent done = f.events.wait(ids[i]);
    ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
    EXPECT_TRUE(done.tokens.empty());
    EXPECT_EQ(done.prompt_tokens, 20 + 9 * i);
    EXPECT_EQ(done.embedding, solo[i]) << "embedding " << i;
  }
  EXPECT_GT(f.engine->stats().preemptions, 0u);
  f.expect_no_blocks_held();
}

TEST(Embedding, SharesStepsWithAGeneration) {
  Fixture f(model_with_pooling(3), 0, 64);
  GenerateParams generate;
  generate.max_tokens = 110;
  generate.ignore_eos = true;
  generate.sampling.temperature = 0;
  // Once the generation decodes, an embedding submitted now runs in its steps (one step: 30 tokens fit the
  // budget beside a decode token) and finishes long before it. The engine thread waits after the generation's
  // first token until the embedding is in, however slowly this thread gets to submit it.
  f.events.hold_after_first_token_of(f.next_id + 1);
  const RequestId generation = f.submit(prompt_of(8, 5), generate);
  while (f.events.events(generation).empty()) std::this_thread::yield();
  const RequestId embedding = f.submit_embedding(prompt_of(30, 6));
  f.events.release();
  ASSERT_EQ(f.events.wait(embedding).kind, EngineEvent::Kind::kFinished);
  ASSERT_EQ(f.events.wait(generation).kind, EngineEvent::Kind::kFinished);
  EXPECT_EQ(f.events.finished_order(), (std::vector<RequestId>{embedding, generation})) << "the embedding waited for the generation to end";
  f.expect_no_blocks_held();
}

TEST(Embedding, AbortFreesItsBlocksAndCarriesNoVector) {
  Fixture f(model_with_pooling(1), 0, 4);
  const RequestId id = f.submit_embedding(prompt_of(120, 7));
  f.engine->cancel(id);
  const EngineEvent done = f.events.wait(id);
  ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished);
  EXPECT_EQ(done.finish_reason, FinishReason::kAbort);
  EXPECT_TRUE(done.embedding.empty());
  f.expect_no_blocks_held();
}

TEST(Embedding, CloseFailsAnEmbeddingInFlight) {
  Fixture f(model_with_pooling(1), 0, 2);
  const RequestId id = f.submit_embedding(prompt_of(120, 8));
  f.engine->close();
  const EngineEvent done = f.events.wait(id);
  ASSERT_EQ(done.kind, EngineEvent::Kind::kFailed);
  EXPECT_EQ(done.error.code(), ErrorCode::kClosed);
}

TEST(Embedding, RequestsThatCannotRunAreRefusedAtSubmit) {
  Fixture f(model_with_pooling(1));
  const auto refused = [&](std::vector<int32_t> prompt, GenerateParams params) {
    return f.engine->submit(GenerateRequest{++f.next_id, std::move(prompt), std::move(params)}).code();
  };
  // The whole context is usable: an embedding generates nothing.
  EXPECT_EQ(f.embed(prompt_of(128, 1)).size(), static_cast<size_t>(kDim));
  EXPECT_EQ(refused(prompt_of(129, 1), Fixture::embed_params(true)), ErrorCode::kContextOverflow);
  GenerateParams two = Fixture::embed_params(true);
  two.n = 2;
  EXPECT_EQ(refused(prompt_of(5, 1), two), ErrorCode::kInvalidArgument);
  GenerateParams logprobs = Fixture::embed_params(true);
  logprobs.logprobs = 1;
  EXPECT_EQ(refused(prompt_of(5, 1), logprobs), ErrorCode::kInvalidArgument);

  Fixture reranker(model_with_pooling(4));
  const Status rank = reranker.engine->submit(GenerateRequest{1, prompt_of(5, 1), Fixture::embed_params(true)});
  EXPECT_EQ(rank.code(), ErrorCode::kUnsupported);
  EXPECT_NE(rank.message().find("rank"), std::string::npos);
}

}  // namespace
}  // namespace pagedlm
