// Prefix caching through the whole engine: a hit gives exactly the output of a cold run, generated tokens
// are reused by the next turn, salts separate tenants, and pressure evicts without leaking.
#include <gtest/gtest.h>

#include <thread>

#include "engine/engine.h"
#include "engine/sequence.h"
#include "support/event_collector.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

class PrefixEngine {
 public:
  PrefixEngine(const std::string& path, KvDtype dtype, int32_t blocks = 64) : PrefixEngine(path, KvTypes::both(dtype), blocks) {}
  PrefixEngine(const std::string& path, KvTypes types, int32_t blocks = 64) {
    EngineOptions o;
    o.threads = 2;
    o.kv_types = types;
    o.kv_blocks = blocks;
    o.block_size = 8;
    o.context_length = 256;
    o.max_batch_tokens = 32;
    auto e = Engine::load(path, o, &events_);
    EXPECT_TRUE(e.is_ok()) << e.status().message();
    engine_ = e.take();
  }
  RequestId submit(const std::vector<int32_t>& prompt, GenerateParams p) {
    const RequestId id = ++next_;
    EXPECT_TRUE(engine_->submit({id, prompt, p}).is_ok());
    return id;
  }
  EngineEvent wait(RequestId id) { return events_.wait(id); }
  std::vector<EngineEvent> wait_all(RequestId id, int choices) { return events_.wait_all(id, choices); }
  EngineEvent run(const std::vector<int32_t>& prompt, GenerateParams p) { return wait(submit(prompt, p)); }
  Engine& engine() { return *engine_; }

 private:
  testing::EventCollector events_;
  std::unique_ptr<Engine> engine_;
  RequestId next_ = 0;
};

std::vector<int32_t> tokens_from(int32_t start, int count) {
  std::vector<int32_t> t;
  for (int i = 0; i < count; ++i) t.push_back(3 + (start + i * 13) % 300);
  return t;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

GenerateParams params(bool sample) {
  GenerateParams p;
  p.max_tokens = 20;
  p.ignore_eos = true;
  p.sampling.temperature = sample ? 0.9f : 0.0f;
  p.sampling.seed = 77;
  return p;
}

const std::string& model_path() {
  static const std::string path = testing::write_synthetic_model({.dim = 64, .layers = 2, .heads = 4, .kv_heads = 2}, "prefix.gguf");
  return path;
}

class PrefixHit : public ::testing::TestWithParam<std::tuple<KvDtype, KvDtype, bool>> {};

// Every pair of K and V types. int4 K matches whole blocks only (KvLayout::rows_independent): the sixth
// block's first token is computed again.
TEST_P(PrefixHit, EqualsColdRun) {
  const auto [k_type, v_type, sample] = GetParam();
  const KvTypes dtype{k_type, v_type};
  const std::vector<int32_t> system = concat({1}, tokens_from(0, 40));
  const std::vector<int32_t> question = concat(system, tokens_from(500, 7));

  PrefixEngine cold(model_path(), dtype);
  const EngineEvent cold_answer = cold.run(question, params(sample));
  EXPECT_EQ(cold.engine().stats().prefix.hit_tokens, 0u);

  PrefixEngine warm(model_path(), dtype);
  warm.run(concat(system, tokens_from(900, 5)), params(sample));  // computes and caches the system prompt
  const EngineEvent warm_answer = warm.run(question, params(sample));
  const EngineStats s = warm.engine().stats();
  // 41 shared tokens = 5 full blocks of 8 and a copy of the sixth's first
  EXPECT_EQ(s.prefix.hit_tokens, k_type == KvDtype::kInt4 ? 40u : 41u);
  EXPECT_EQ(s.prefix.hits, 1u);
  EXPECT_EQ(warm_answer.tokens, cold_answer.tokens);
  EXPECT_EQ(s.in_use_blocks, 0);
  EXPECT_GT(s.cached_blocks, 0);
}

constexpr KvDtype kAllKvTypes[] = {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3, KvDtype::kInt4};

INSTANTIATE_TEST_SUITE_P(Dtypes, PrefixHit, ::testing::Combine(::testing::ValuesIn(kAllKvTypes), ::testing::ValuesIn(kAllKvTypes), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string("K_") + kv_dtype_name(std::get<0>(info.param)) + "_V_" + kv_dtype_name(std::get<1>(info.param)) +
                                  (std::get<2>(info.param) ? "_sampled" : "_greedy");
                         });

// A model windowed on every layer (Mistral-style) releases the blocks its window has passed; the registered
// ones stay cached, so a prompt sharing the prefix still hits, and the hit equals a cold run: the window
// reads the same positions either way (docs/architecture.md, "Sliding windows").
const std::string& windowed_model_path() {
  static const std::string path = testing::write_synthetic_model({.architecture = "mistral", .sliding_window = 10}, "prefix_windowed.gguf");
  return path;
}

class WindowedPrefixHit : public ::testing::TestWithParam<KvDtype> {};

TEST_P(WindowedPrefixHit, EqualsColdRun) {
  const std::vector<int32_t> system = concat({1}, tokens_from(0, 40));
  const std::vector<int32_t> question = concat(system, tokens_from(500, 7));
  PrefixEngine cold(windowed_model_path(), GetParam());
  const EngineEvent cold_answer = cold.run(question, params(false));

  PrefixEngine warm(windowed_model_path(), GetParam());
  warm.run(concat(system, tokens_from(900, 5)), params(false));
  const EngineEvent warm_answer = warm.run(question, params(false));
  EXPECT_EQ(warm.engine().stats().prefix.hit_tokens, GetParam() == KvDtype::kInt4 ? 40u : 41u);  // int4 K: whole blocks only
  EXPECT_EQ(warm_answer.tokens, cold_answer.tokens);
  EXPECT_TRUE(warm.engine().check_kv_invariants().is_ok());
  EXPECT_EQ(warm.engine().stats().in_use_blocks, 0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, WindowedPrefixHit, ::testing::Values(KvDtype::kF32, KvDtype::kInt8, KvDtype::kInt4),
                         [](const auto& info) { return std::string(kv_dtype_name(info.param)); });

// Releasing passed blocks bounds what a sequence holds by its window: a pool of 8 blocks of 8 (64 tokens)
// runs a 41-token prompt to 141 tokens, with the tokens of a run in a pool that holds it all.
TEST(WindowedPrefixCache, GenerationOutrunsAPoolThatHoldsItsWindow) {
  const std::vector<int32_t> prompt = concat({1}, tokens_from(3, 40));
  GenerateParams p = params(false);
  p.max_tokens = 100;
  PrefixEngine roomy(windowed_model_path(), KvDtype::kF32);
  const EngineEvent expected = roomy.run(prompt, p);
  PrefixEngine small(windowed_model_path(), KvDtype::kF32, 8);
  const EngineEvent done = small.run(prompt, p);
  ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
  EXPECT_EQ(done.tokens, expected.tokens);
  EXPECT_EQ(small.engine().stats().in_use_blocks, 0);
}

TEST(PrefixCache, NextTurnReusesGeneratedTokens) {
  PrefixEngine e(model_path(), KvDtype::kF32);
  const std::vector<int32_t> turn1 = concat({1}, tokens_from(0, 20));
  const EngineEvent a1 = e.run(turn1, params(false));
  const std::vector<int32_t> turn2 = concat(concat(turn1, a1.tokens), tokens_from(700, 6));
  const uint64_t before = e.engine().stats().prefix.hit_tokens;
  const EngineEvent a2 = e.run(turn2, params(false));
  // turn1 + answer = 41 tokens; 40 of them were computed (the last answer token never was): 5 blocks.
  EXPECT_EQ(e.engine().stats().prefix.hit_tokens - before, 40u);
  PrefixEngine cold(model_path(), KvDtype::kF32);
  EXPECT_EQ(cold.run(turn2, params(false)).tokens, a2.tokens);
}

TEST(PrefixCache, SaltsNeverShare) {
  PrefixEngine e(model_path(), KvDtype::kF32);
  const std::vector<int32_t> prompt = concat({1}, tokens_from(3, 30));
  GenerateParams alice = params(false), bob = params(false);
  alice.cache_salt = 1;
  bob.cache_salt = 2;
  e.run(prompt, alice);
  e.run(prompt, bob);
  EXPECT_EQ(e.engine().stats().prefix.hit_tokens, 0u);
  e.run(prompt, alice);
  EXPECT_EQ(e.engine().stats().prefix.hit_tokens, 30u);  // all but the last of its 31 tokens
}

TEST(PrefixCache, PressureEvictsAndClearForgets) {
  PrefixEngine e(model_path(), KvDtype::kF16, 12);  // 12 blocks of 8: room for two requests at a time
  for (int i = 0; i < 10; ++i) e.run(concat({1}, tokens_from(i * 31, 25)), params(false));
  EngineStats s = e.engine().stats();
  EXPECT_GT(s.evictions, 0u);
  EXPECT_EQ(s.in_use_blocks, 0);
  ASSERT_GT(s.cached_blocks, 0);
  const auto cleared = e.engine().clear_cache();
  ASSERT_TRUE(cleared.is_ok());
  EXPECT_EQ(cleared.value(), s.cached_blocks);
  EXPECT_EQ(e.engine().stats().cached_blocks, 0);
}

TEST(PrefixCache, ConcurrentIdenticalPromptsAgree) {
  PrefixEngine e(model_path(), KvDtype::kF32);
  const std::vector<int32_t> prompt = concat({1}, tokens_from(9, 33));
  const EngineEvent alone = e.run(prompt, params(false));
  std::vector<RequestId> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(e.submit(prompt, params(false)));
  for (RequestId id : ids) EXPECT_EQ(e.wait(id).tokens, alone.tokens);
  EXPECT_GE(e.engine().stats().prefix.hits, 3u);
}

}  // namespace
}  // namespace pagedlm

namespace pagedlm {
namespace {

// n completions of one prompt share its blocks; the partly filled last block is copied before it is
// written, so each completion equals a run of its own.
class Fork : public ::testing::TestWithParam<int> {};

TEST_P(Fork, CompletionsEqualSeparateRunsAndShareThePrompt) {
  const int prompt_length = GetParam();  // 21: a partly filled last block (copy-on-write); 24: block-aligned
  const std::vector<int32_t> prompt = concat({1}, tokens_from(11, prompt_length - 1));
  PrefixEngine e(model_path(), KvDtype::kF32);

  GenerateParams p = params(true);  // sampled: completions differ, each seeded from the request's seed
  p.n = 3;
  const std::vector<EngineEvent> choices = e.wait_all(e.submit(prompt, p), 3);
  const EngineStats after_fork = e.engine().stats();
  EXPECT_EQ(after_fork.in_use_blocks, 0);

  // Each choice equals a single completion sampled with that choice's seed.
  for (int c = 0; c < 3; ++c) {
    ASSERT_EQ(choices[c].kind, EngineEvent::Kind::kFinished) << choices[c].error.message();
    GenerateParams single = params(true);
    single.sampling = Sequence::seeded_for_choice(single.sampling, c);
    single.cache_salt = 99;  // a cold run: no blocks shared with the fork
    EXPECT_EQ(e.run(prompt, single).tokens, choices[c].tokens) << "choice " << c;
  }
  EXPECT_NE(choices[0].tokens, choices[1].tokens);
}

INSTANTIATE_TEST_SUITE_P(PromptLengths, Fork, ::testing::Values(21, 24));

TEST(ForkLimits, FamilyLargerThanThePoolIsRejected) {
  PrefixEngine e(model_path(), KvDtype::kF16, 8);
  Engine* engine = &e.engine();
  GenerateParams p = params(false);
  p.max_tokens = 30;
  EXPECT_TRUE(engine->submit({1, tokens_from(0, 10), p}).is_ok());  // 5 blocks
  p.n = 4;
  EXPECT_EQ(engine->submit({2, tokens_from(0, 10), p}).code(), ErrorCode::kPoolTooSmall);
  p.n = 0;
  EXPECT_EQ(engine->submit({3, tokens_from(0, 10), p}).code(), ErrorCode::kInvalidArgument);
}

TEST(ForkAbort, CancellingAForkedRequestEndsEveryCompletion) {
  PrefixEngine e(model_path(), KvDtype::kF16, 128);
  GenerateParams p = params(true);
  p.n = 4;
  p.max_tokens = 100;
  const RequestId id = e.submit(tokens_from(0, 13), p);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  e.engine().cancel(id);
  for (const EngineEvent& end : e.wait_all(id, 4)) {
    EXPECT_EQ(end.kind, EngineEvent::Kind::kFinished);
  }
  EXPECT_EQ(e.engine().stats().in_use_blocks, 0);
}

}  // namespace
}  // namespace pagedlm
