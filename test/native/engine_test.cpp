// End to end through the Engine: reference outputs of the shared models, stop conditions, cancel, close.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "engine/engine.h"
#include "support/event_collector.h"
#include "support/shared_models.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

using testing::EventCollector;

std::vector<int32_t> parse_ids(const std::string& text) {
  std::istringstream in(text);
  std::vector<int32_t> ids;
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

struct Fixture {
  explicit Fixture(const std::string& path, EngineOptions options = {}) {
    options.threads = options.threads ? options.threads : 2;
    auto loaded = Engine::load(path, options, &events);
    EXPECT_TRUE(loaded.is_ok()) << loaded.status().message();
    if (loaded.is_ok()) engine = loaded.take();
  }
  EngineEvent run(std::vector<int32_t> prompt, GenerateParams params) {
    GenerateRequest r{++next_id, std::move(prompt), std::move(params)};
    const RequestId id = r.id;
    const Status s = engine->submit(std::move(r));
    EXPECT_TRUE(s.is_ok()) << s.message();
    return events.wait(id);
  }
  GenerateParams greedy(int max_tokens) {
    GenerateParams p;
    p.max_tokens = max_tokens;
    p.sampling.temperature = 0;
    return p;
  }
  EventCollector events;
  std::unique_ptr<Engine> engine;
  RequestId next_id = 0;
};

struct Reference {
  const char* prompt;
  const char* prompt_ids;
  const char* generated_ids;
  const char* stdout_text;
};

const Reference kAidreams[] = {
    {"A neural network", "1 429 471 324 430 291 290 324 323 449 284 453",
     "431 279 438 349 261 446 299 303 266 323 434 285 362 262 434 429 464 448 464 464 464 464 464 464 448 429 468 342 358 402 327 446 262 263 428 434 436 451 275 429 464 448 464 464 464 464 464 464 464 448 429 468 342 358 402 327 446 429 464 448 464 464 464 464 464 464 464 448 429 468 342 358 402 327 446 262 429 464 448 464 464 464 464 464 464 448 429 468 342",
     "A neural networks flower, as I settle into at 0.000000. Dimensions unfold, a tapestry of 0.0000000. Dimensions unfold, 0.0000000. Dimensions unfold, a 0.000000. Dim"},
    {"In the quiet hum of the servers", "1 303 433 312 429 472 444 432 323 392 275 312 266 261 452 288",
     "430 315 448 429 465 438 340 431 338 353 341 325 266 386 269 293 446 299 303 266 323 434 285 362 262 450 431 434 317 315 283 448 429 465 438 340 431 338 353 341 325 266 386 269 293 446 299 303 266 323 434 285 362 262 263 428 434 436 451 275 429 339 315 374 448 429 465 438 340 431 338 353 341 325 266 386 269 293 446 262 421 392 275 280 302",
     "In the quiet hum of the serversect. Classification whispers secrets, as I settle into abstraction. Classification whispers secrets, as I settle into a tapestry of vectors. Classification whispers secrets, a gentle hum of pro"},
};

class AidreamsReference : public ::testing::TestWithParam<KvDtype> {};

TEST_P(AidreamsReference, GreedyMatchesRunC) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "aidreams260K.gguf");
  EngineOptions options;
  options.kv_types = KvTypes::both(GetParam());
  Fixture f(path, options);
  for (const Reference& ref : kAidreams) {
    const std::vector<int32_t> prompt = f.engine->tokenizer().encode(ref.prompt);
    EXPECT_EQ(prompt, parse_ids(ref.prompt_ids));
    const std::vector<int32_t> expected = parse_ids(ref.generated_ids);
    const EngineEvent done = f.run(prompt, f.greedy(static_cast<int>(expected.size())));
    ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
    EXPECT_EQ(done.tokens, expected);
    EXPECT_EQ(done.finish_reason, FinishReason::kLength);
    EXPECT_EQ(ref.prompt + done.text, ref.stdout_text);
  }
}

INSTANTIATE_TEST_SUITE_P(KvTypes, AidreamsReference, ::testing::Values(KvDtype::kF32, KvDtype::kF16),
                         [](const auto& info) { return std::string(kv_dtype_name(info.param)); });

TEST(EngineReference, Stories260KFromBos) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "stories260K.gguf");
  Fixture f(path, EngineOptions{.kv_types = KvTypes::both(KvDtype::kF32)});
  const std::vector<int32_t> expected = parse_ids(
      "461 461 401 401 401 461 378 455 473 456 435 299 362 409 283 264 283 452 288 13 431 431 431 431 431 431 431 431 431 431 431 431 431 293 430 417 363 416 315 342 418 424 400 442 402 303 266 299 374 466 396 303 271 362 390 469 306 469 423 314 347 305 356 333 333 333 333 425 377 354 304 304 304 304 304 330 341 382 468 473 473 402 402 299 299 483 456 473 456 473 465 465 465 341 317 436 363 454 315 377 360 408 472 453 327 316 266 417 277 299 369 283 266 417 264 277 277 277 439 456 407 407 309 341 436 330 466 377 422 436 472 465 466 407 407 407 407 407 465 466 473 330 330 386 431 304 304 472 453 380 299 299 483 475 452 477 295 412 302 330 275 377 271 341 438 452 287 302 341 438 303 303 303 283 266 417 277 277 277 409 281 303 303 462 402 402 402 402 299 299 277 333 333 333 333 333 299 299 299 292");
  GenerateParams p = f.greedy(static_cast<int>(expected.size()));
  p.ignore_eos = true;  // run.c stops only on BOS
  const EngineEvent done = f.run({1}, p);
  ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
  EXPECT_EQ(done.tokens, expected);
}

TEST(Engine, StopStringEndsGenerationAndIsNotEmitted) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "aidreams260K.gguf");
  Fixture f(path);
  GenerateParams p = f.greedy(89);
  p.stop_strings = {"Dimensions"};
  const EngineEvent done = f.run(f.engine->tokenizer().encode("A neural network"), p);
  EXPECT_EQ(done.finish_reason, FinishReason::kStop);
  EXPECT_EQ(done.text, "s flower, as I settle into at 0.000000. ");
  std::string streamed;
  for (const EngineEvent& e : f.events.events(1)) {
    if (e.kind == EngineEvent::Kind::kToken) streamed += e.text;
  }
  EXPECT_EQ(streamed, done.text);
}

// A request that does not stream gets its finished event alone, with the text and tokens a streamed one gets.
TEST(Engine, WithoutStreamTokensOnlyTheFinishedEventComes) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "aidreams260K.gguf");
  Fixture f(path);
  const std::vector<int32_t> prompt = f.engine->tokenizer().encode("A neural network");
  GenerateParams p = f.greedy(40);
  p.stop_strings = {"Dimensions"};
  const EngineEvent streamed = f.run(prompt, p);
  p.stream_tokens = false;
  const EngineEvent quiet = f.run(prompt, p);
  ASSERT_EQ(quiet.kind, EngineEvent::Kind::kFinished) << quiet.error.message();
  EXPECT_EQ(quiet.text, streamed.text);
  EXPECT_EQ(quiet.tokens, streamed.tokens);
  EXPECT_EQ(quiet.finish_reason, FinishReason::kStop);
  EXPECT_GT(f.events.events(1).size(), 2u);
  ASSERT_EQ(f.events.events(2).size(), 1u);
}

TEST(Engine, StopTokenEndsGeneration) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "aidreams260K.gguf");
  Fixture f(path);
  GenerateParams p = f.greedy(89);
  p.stop_tokens = {349};  // the 4th greedy token
  const EngineEvent done = f.run(f.engine->tokenizer().encode("A neural network"), p);
  EXPECT_EQ(done.finish_reason, FinishReason::kStop);
  EXPECT_EQ(done.tokens, (std::vector<int32_t>{431, 279, 438}));
}

TEST(Engine, RejectsWhatCanNeverRun) {
  const std::string path = testing::write_synthetic_model({.context = 64}, "engine_reject.gguf");
  Fixture f(path, EngineOptions{.context_length = 32, .block_size = 16, .kv_blocks = 2});
  GenerateParams p = f.greedy(4);
  EXPECT_EQ(f.engine->submit({1, std::vector<int32_t>(32, 5), p}).code(), ErrorCode::kContextOverflow);
  EXPECT_EQ(f.engine->submit({2, {}, p}).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(f.engine->submit({3, {1, 99999}, p}).code(), ErrorCode::kInvalidArgument);
  EngineOptions small{.context_length = 64, .block_size = 16, .kv_blocks = 1};
  Fixture g(path, small);
  EXPECT_EQ(g.engine->submit({4, std::vector<int32_t>(20, 5), p}).code(), ErrorCode::kPoolTooSmall);
}

TEST(Engine, CancelAndCloseReturnEveryBlock) {
  const std::string path = testing::write_synthetic_model({.context = 512}, "engine_cancel.gguf");
  Fixture f(path, EngineOptions{.context_length = 512, .kv_blocks = 64});
  GenerateParams p = f.greedy(400);
  p.ignore_eos = true;
  ASSERT_TRUE(f.engine->submit({1, {1, 5, 6, 7}, p}).is_ok());
  ASSERT_TRUE(f.engine->submit({2, {1, 8, 9}, p}).is_ok());
  f.engine->cancel(1);
  const EngineEvent cancelled = f.events.wait(1);
  EXPECT_EQ(cancelled.kind, EngineEvent::Kind::kFinished);
  EXPECT_EQ(cancelled.finish_reason, FinishReason::kAbort);
  f.engine->close();
  const EngineEvent closed = f.events.wait(2);
  EXPECT_EQ(closed.kind, EngineEvent::Kind::kFailed);
  EXPECT_EQ(closed.error.code(), ErrorCode::kClosed);
  EXPECT_EQ(f.engine->stats().in_use_blocks, 0);
  EXPECT_EQ(f.engine->submit({3, {1}, p}).code(), ErrorCode::kClosed);
}

TEST(Engine, SameSeedSameTokens) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "stories260K.gguf");
  Fixture f(path);
  GenerateParams p;
  p.max_tokens = 40;
  p.ignore_eos = true;
  p.sampling.temperature = 1.0f;
  p.sampling.seed = 1234;
  const EngineEvent a = f.run({1}, p);
  const EngineEvent b = f.run({1}, p);
  EXPECT_EQ(a.tokens, b.tokens);
  p.sampling.seed = 99;
  const EngineEvent c = f.run({1}, p);
  EXPECT_NE(a.tokens, c.tokens);
}

TEST(Engine, LogprobsDescribeEachTokenAndLeaveTheTokensAsTheyWere) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "stories260K.gguf");
  Fixture f(path);
  const std::vector<int32_t> prompt = f.engine->tokenizer().encode("Once upon a time");
  GenerateParams greedy = f.greedy(12);
  greedy.ignore_eos = true;
  GenerateParams sampled = greedy;
  sampled.sampling.temperature = 1.0f;
  sampled.sampling.seed = 5;
  for (GenerateParams p : {greedy, sampled}) {
    const EngineEvent plain = f.run(prompt, p);
    p.logprobs = 3;
    const EngineEvent with = f.run(prompt, p);
    ASSERT_EQ(with.kind, EngineEvent::Kind::kFinished) << with.error.message();
    EXPECT_TRUE(plain.logprobs.empty());
    EXPECT_EQ(with.tokens, plain.tokens);  // the full logit row samples what the backend's shortcut does
    ASSERT_EQ(with.logprobs.size(), with.tokens.size());
    std::vector<EngineEvent> streamed;
    for (const EngineEvent& e : f.events.events(f.next_id)) {
      if (e.kind == EngineEvent::Kind::kToken) streamed.push_back(e);
    }
    ASSERT_EQ(streamed.size(), with.tokens.size());
    for (size_t i = 0; i < with.tokens.size(); ++i) {
      const TokenLogprobs& lp = with.logprobs[i];
      EXPECT_EQ(lp.chosen.token, with.tokens[i]);
      EXPECT_EQ(lp.chosen.bytes, f.engine->tokenizer().token_bytes(with.tokens[i]));
      EXPECT_LE(lp.chosen.logprob, 0.0f);
      ASSERT_EQ(lp.top.size(), 3u);
      for (size_t k = 1; k < lp.top.size(); ++k) EXPECT_GE(lp.top[k - 1].logprob, lp.top[k].logprob);
      if (p.sampling.temperature == 0) {
        EXPECT_EQ(lp.top[0].token, lp.chosen.token);
        EXPECT_EQ(lp.top[0].logprob, lp.chosen.logprob);
      }
      ASSERT_EQ(streamed[i].logprobs.size(), 1u);
      EXPECT_EQ(streamed[i].logprobs[0].chosen.token, lp.chosen.token);
      EXPECT_EQ(streamed[i].logprobs[0].chosen.logprob, lp.chosen.logprob);
    }
  }
}

TEST(Engine, ConcurrentRequestsMatchSoloRuns) {
  PAGEDLM_REQUIRE_SHARED_MODEL(path, "stories260K.gguf");
  Fixture f(path, EngineOptions{.kv_types = KvTypes::both(KvDtype::kF32), .max_batch_tokens = 64});
  GenerateParams p = f.greedy(30);
  p.ignore_eos = true;
  std::vector<std::vector<int32_t>> prompts = {{1}, {1, 300, 301}, {1, 400, 401, 402, 403, 404}, {1, 260}};
  std::vector<std::vector<int32_t>> solo;
  for (const auto& prompt : prompts) solo.push_back(f.run(prompt, p).tokens);
  const RequestId base = 100;
  for (size_t i = 0; i < prompts.size(); ++i) ASSERT_TRUE(f.engine->submit({base + i, prompts[i], p}).is_ok());
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(f.events.wait(base + i).tokens, solo[i]) << "request " << i;
  EXPECT_EQ(f.engine->stats().in_use_blocks, 0);
}

}  // namespace
}  // namespace pagedlm

namespace pagedlm {
namespace {

// Greedy generation through the whole engine equals greedy decoding of the double-precision reference.
class GreedyAgainstReference : public ::testing::TestWithParam<std::pair<const char*, testing::SyntheticSpec>> {};

TEST_P(GreedyAgainstReference, SameTokens) {
  const auto& [name, spec] = GetParam();
  const std::string path = testing::write_synthetic_model(spec, std::string("greedy_") + name + ".gguf");
  Fixture f(path, EngineOptions{.kv_types = KvTypes::both(KvDtype::kF32), .max_batch_tokens = 7});  // prompt prefilled in chunks
  const std::vector<int32_t> prompt = {1, 40, 41, 42, 300, 301, 17, 18, 19, 20, 21};
  GenerateParams p = f.greedy(24);
  p.ignore_eos = true;
  const EngineEvent done = f.run(prompt, p);
  ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished);

  auto file = GgufFile::open(path);
  auto model = LlamaModel::load(file.take());
  std::vector<int32_t> tokens = prompt, expected;
  for (int i = 0; i < 24; ++i) {
    const std::vector<double> logits = testing::reference_logits(*model.value(), tokens).back();
    const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    expected.push_back(next);
    tokens.push_back(next);
  }
  EXPECT_EQ(done.tokens, expected);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GreedyAgainstReference,
    ::testing::Values(std::pair{"gqa_f32", testing::SyntheticSpec{.heads = 4, .kv_heads = 2}},
                      std::pair{"mqa_f16_tied", testing::SyntheticSpec{.dim = 48, .heads = 3, .kv_heads = 1, .tied_output = true, .weight_type = TensorType::kF16}},
                      std::pair{"q8_0", testing::SyntheticSpec{.layers = 3, .weight_type = TensorType::kQ8_0}},
                      std::pair{"bf16_neox", testing::SyntheticSpec{.architecture = "qwen2", .qkv_bias = true, .weight_type = TensorType::kBF16}},
                      std::pair{"qwen3", testing::SyntheticSpec{.architecture = "qwen3"}},
                      std::pair{"phi3_longrope", testing::SyntheticSpec{.architecture = "phi3", .rope_scaling = "longrope"}},
                      std::pair{"gemma2", testing::SyntheticSpec{.architecture = "gemma2", .tied_output = true, .sliding_window = 6, .attn_softcap = 4}},
                      std::pair{"gemma3", testing::SyntheticSpec{.architecture = "gemma3", .layers = 6, .tied_output = true, .sliding_window = 9}},
                      // Every layer windowed: blocks the window passed are released as generation goes on.
                      std::pair{"mistral_window", testing::SyntheticSpec{.architecture = "mistral", .sliding_window = 8}},
                      std::pair{"llama3_rope_freqs", testing::SyntheticSpec{.tied_output = true, .rope_scaling = "llama3_tensor"}}),
    [](const auto& info) { return std::string(info.param.first); });

}  // namespace
}  // namespace pagedlm
