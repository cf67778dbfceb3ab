// Continuous batching under pressure: with a pool far smaller than the load, sequences are preempted and
// recomputed, yet every request streams exactly the tokens it would produce alone, and nothing leaks.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>

#include "engine/engine.h"
#include "support/event_collector.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

std::unique_ptr<Engine> make_engine(EventSink* sink, int32_t blocks, int32_t batch_tokens = 64) {
  static const std::string path = testing::write_synthetic_model({.dim = 64, .layers = 2}, "scheduler.gguf");
  EngineOptions o;
  o.threads = 2;
  o.kv_types = KvTypes::both(KvDtype::kF16);
  o.kv_blocks = blocks;
  o.block_size = 8;
  o.context_length = 256;
  o.max_batch_tokens = batch_tokens;
  return Engine::load(path, o, sink).take();
}

std::vector<int32_t> prompt_of(int length, int seed) {
  std::vector<int32_t> t = {1};
  for (int i = 1; i < length; ++i) t.push_back(3 + (seed * 53 + i * 7) % 300);
  return t;
}

GenerateParams request_params(int max_tokens, bool sample, uint64_t seed) {
  GenerateParams p;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.sampling.temperature = sample ? 0.8f : 0.0f;
  p.sampling.seed = seed;
  return p;
}

TEST(Preemption, EveryRequestMatchesItsSoloRunAndNothingLeaks) {
  struct Spec {
    std::vector<int32_t> prompt;
    GenerateParams params;
  };
  std::vector<Spec> specs;
  std::mt19937 rng(3);
  for (int i = 0; i < 16; ++i) {
    specs.push_back({prompt_of(5 + static_cast<int>(rng() % 40), i), request_params(20 + static_cast<int>(rng() % 60), i % 2 == 1, 100 + i)});
  }
  // Alone, on a roomy pool.
  std::vector<std::vector<int32_t>> solo;
  {
    testing::EventCollector events;
    auto engine = make_engine(&events, 256);
    for (size_t i = 0; i < specs.size(); ++i) {
      ASSERT_TRUE(engine->submit({i + 1, specs[i].prompt, specs[i].params}).is_ok());
      solo.push_back(events.wait(i + 1).tokens);
    }
  }
  // All at once on a pool that holds about two of them.
  testing::EventCollector events;
  auto engine = make_engine(&events, 24, 32);
  for (size_t i = 0; i < specs.size(); ++i) ASSERT_TRUE(engine->submit({i + 1, specs[i].prompt, specs[i].params}).is_ok());
  for (size_t i = 0; i < specs.size(); ++i) {
    const EngineEvent done = events.wait(i + 1);
    ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
    EXPECT_EQ(done.tokens, solo[i]) << "request " << i;
    std::vector<int32_t> streamed;
    for (const EngineEvent& e : events.events(i + 1)) {
      if (e.kind == EngineEvent::Kind::kToken) streamed.push_back(e.token);
    }
    EXPECT_EQ(streamed, done.tokens) << "request " << i << ": duplicated or lost streamed tokens";
  }
  const EngineStats s = engine->stats();
  EXPECT_GT(s.preemptions, 0u);
  EXPECT_EQ(s.in_use_blocks, 0);
  ASSERT_TRUE(engine->check_kv_invariants().is_ok());
}

TEST(Preemption, RandomAbortsUnderPressureKeepInvariants) {
  testing::EventCollector events;
  auto engine = make_engine(&events, 32, 24);
  std::mt19937 rng(9);
  const int total = 60;
  for (int i = 1; i <= total; ++i) {
    GenerateParams p = request_params(10 + static_cast<int>(rng() % 50), true, i);
    p.n = rng() % 5 == 0 ? 2 : 1;
    ASSERT_TRUE(engine->submit({static_cast<RequestId>(i), prompt_of(3 + static_cast<int>(rng() % 30), i % 7), p}).is_ok());
    if (rng() % 3 == 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
      engine->cancel(static_cast<RequestId>(1 + rng() % i));
    }
    if (i % 10 == 0) ASSERT_TRUE(engine->check_kv_invariants().is_ok());
  }
  for (int i = 1; i <= total; ++i) events.wait_all(i, 1);
  // Forked requests end once per completion; wait for the engine to drain.
  for (int tries = 0; tries < 2000 && (engine->stats().running > 0 || engine->stats().waiting > 0); ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const EngineStats s = engine->stats();
  EXPECT_EQ(s.running + s.waiting, 0);
  EXPECT_EQ(s.in_use_blocks, 0);
  ASSERT_TRUE(engine->check_kv_invariants().is_ok());
}

TEST(Scheduling, PrefersAWaitingRequestWithACachedPrefix) {
  testing::EventCollector events;
  auto engine = make_engine(&events, 64, 16);
  const auto shared = prompt_of(40, 1);
  ASSERT_TRUE(engine->submit({1, shared, request_params(2, false, 0)}).is_ok());
  events.wait(1);
  // A long request occupies the engine; then a cold request arrives before a warm one.
  ASSERT_TRUE(engine->submit({2, prompt_of(30, 2), request_params(100, false, 0)}).is_ok());
  ASSERT_TRUE(engine->submit({3, prompt_of(60, 3), request_params(5, false, 0)}).is_ok());
  auto warm = shared;
  warm.push_back(9);
  ASSERT_TRUE(engine->submit({4, warm, request_params(5, false, 0)}).is_ok());
  ASSERT_EQ(events.wait(3).kind, EngineEvent::Kind::kFinished);
  ASSERT_EQ(events.wait(4).kind, EngineEvent::Kind::kFinished);
  // The warm request, behind the cold one in line, is admitted first.
  const auto order = events.first_token_order();
  const auto position = [&](RequestId id) { return std::find(order.begin(), order.end(), id) - order.begin(); };
  EXPECT_LT(position(4), position(3));
}

}  // namespace
}  // namespace pagedlm
