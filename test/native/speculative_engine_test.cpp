// Speculative decoding through the Engine on a synthetic model: whatever a proposer guesses (the right
// tokens, partly wrong ones, garbage), every request gives exactly the tokens and text of plain decoding,
// under batching, preemption, prefix hits, stop conditions inside an accepted run, n > 1, penalties and
// aborts, and the KV bookkeeping stays intact.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "engine/engine.h"
#include "grammar/grammar.h"
#include "support/event_collector.h"
#include "support/shared_models.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

using speculative::DraftRequest;
using speculative::ProposerKind;

constexpr int kVocab = 320;

const std::string& model_path() {
  static const std::string path = testing::write_synthetic_model({.dim = 64, .layers = 2, .vocab = kVocab}, "speculative.gguf");
  return path;
}

std::unique_ptr<Engine> make_engine(EventSink* sink, int32_t blocks = 256, int32_t batch_tokens = 64, const std::string& path = model_path(),
                                    KvDtype kv_dtype = KvDtype::kF32) {
  EngineOptions o;
  o.threads = 2;
  o.kv_types = KvTypes::both(kv_dtype);
  o.kv_blocks = blocks;
  o.block_size = 8;
  o.context_length = 256;
  o.max_batch_tokens = batch_tokens;
  auto engine = Engine::load(path, o, sink);
  EXPECT_TRUE(engine.is_ok()) << engine.status().message();
  return engine.take();
}

std::vector<int32_t> prompt_of(int length, int seed) {
  std::vector<int32_t> t = {1};
  for (int i = 1; i < length; ++i) t.push_back(3 + (seed * 53 + i * 7) % 300);
  return t;
}

// Guesses from known continuations: the sequence's tokens so far are looked up among `references` (prompt
// plus the plain run's output) and the reference's next tokens proposed. Every `wrong_every`-th position
// (0: none) gets a wrong token instead; with `garbage`, every guess is a random token.
class TestProposer : public speculative::Proposer {
 public:
  struct Options {
    int wrong_every = 0;
    bool garbage = false;
  };
  TestProposer(std::vector<std::vector<int32_t>> references, Options options) : references_(std::move(references)), options_(options) {}

  void propose(const std::vector<DraftRequest>& requests, std::vector<std::vector<int32_t>>& out) override {
    ++calls;
    out.assign(requests.size(), {});
    for (size_t r = 0; r < requests.size(); ++r) {
      EXPECT_GE(requests[r].max_tokens, 1);
      const std::vector<int32_t>& tokens = *requests[r].tokens;
      for (int32_t i = 0; i < requests[r].max_tokens; ++i) {
        const size_t position = tokens.size() + static_cast<size_t>(i);
        const int32_t known = options_.garbage ? -1 : continuation(tokens, position);
        if (known < 0 && !options_.garbage) break;
        int32_t guess = options_.garbage ? static_cast<int32_t>(rng_() % kVocab) : known;
        if (options_.wrong_every > 0 && position % static_cast<size_t>(options_.wrong_every) == 0) guess = (guess + 1) % kVocab;
        out[r].push_back(guess);
      }
    }
  }
  void forget(uint64_t key) override {
    (void)key;
    ++forgotten;
  }

  std::atomic<int> calls{0};
  std::atomic<int> forgotten{0};

 private:
  // The token at `position` of a reference that starts with `tokens`, or -1.
  int32_t continuation(const std::vector<int32_t>& tokens, size_t position) const {
    for (const auto& ref : references_) {
      if (ref.size() > position && std::equal(tokens.begin(), tokens.end(), ref.begin())) return ref[position];
    }
    return -1;
  }

  std::vector<std::vector<int32_t>> references_;
  Options options_;
  std::mt19937 rng_{7};
};

struct Request {
  std::vector<int32_t> prompt;
  GenerateParams params;
};

GenerateParams greedy(int max_tokens) {
  GenerateParams p;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.sampling.temperature = 0;
  return p;
}

GenerateParams sampled(int max_tokens, uint64_t seed) {
  GenerateParams p = greedy(max_tokens);
  p.sampling.temperature = 0.9f;
  p.sampling.top_k = 0;
  p.sampling.top_p = 1.0f;
  p.sampling.min_p = 0.0f;
  p.sampling.seed = seed;
  return p;
}

// Every completion's kFinished (or kFailed) event, by request then choice.
using Outcome = std::vector<std::vector<EngineEvent>>;

Outcome run_all(Engine& engine, testing::EventCollector& events, const std::vector<Request>& requests, RequestId first_id = 1) {
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_TRUE(engine.submit({first_id + i, requests[i].prompt, requests[i].params}).is_ok());
  }
  Outcome out;
  for (size_t i = 0; i < requests.size(); ++i) out.push_back(events.wait_all(first_id + i, requests[i].params.n));
  return out;
}

Outcome plain_run(const std::vector<Request>& requests) {
  testing::EventCollector events;
  auto engine = make_engine(&events);
  return run_all(*engine, events, requests);
}

std::vector<std::vector<int32_t>> references_of(const std::vector<Request>& requests, const Outcome& plain) {
  std::vector<std::vector<int32_t>> refs;
  for (size_t i = 0; i < requests.size(); ++i) {
    for (const EngineEvent& e : plain[i]) {
      std::vector<int32_t> ref = requests[i].prompt;
      ref.insert(ref.end(), e.tokens.begin(), e.tokens.end());
      refs.push_back(std::move(ref));
    }
  }
  return refs;
}

std::vector<Request> with_speculation(std::vector<Request> requests, int k) {
  for (Request& r : requests) r.params.speculative = {ProposerKind::kNgram, k};
  return requests;
}

// Same tokens, text and finish reason as plain decoding, and the streamed tokens are the final ones.
void expect_same(const Outcome& plain, const Outcome& speculative, testing::EventCollector& events, RequestId first_id = 1) {
  ASSERT_EQ(plain.size(), speculative.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    for (size_t c = 0; c < plain[i].size(); ++c) {
      const EngineEvent& want = plain[i][c];
      const EngineEvent& got = speculative[i][c];
      ASSERT_EQ(got.kind, EngineEvent::Kind::kFinished) << "request " << i << ": " << got.error.message();
      EXPECT_EQ(got.tokens, want.tokens) << "request " << i << " choice " << c;
      EXPECT_EQ(got.text, want.text) << "request " << i << " choice " << c;
      EXPECT_EQ(got.finish_reason, want.finish_reason) << "request " << i << " choice " << c;
      ASSERT_TRUE(got.speculation.has_value());
      EXPECT_LE(got.speculation->accepted, got.speculation->proposed);
    }
    std::map<int32_t, std::vector<int32_t>> streamed;
    for (const EngineEvent& e : events.events(first_id + i)) {
      if (e.kind == EngineEvent::Kind::kToken) streamed[e.choice].push_back(e.token);
    }
    for (size_t c = 0; c < plain[i].size(); ++c) {
      EXPECT_EQ(streamed[static_cast<int32_t>(c)], speculative[i][c].tokens) << "request " << i << ": streamed tokens differ";
    }
  }
}

// Requests of different lengths submitted together: prefill chunks of some beside verifying decodes of others.
std::vector<Request> mixed_requests() {
  std::vector<Request> r;
  for (int i = 0; i < 6; ++i) r.push_back({prompt_of(5 + 13 * i, i), greedy(24 + 5 * i)});
  r.push_back({prompt_of(40, 9), sampled(30, 42)});
  return r;
}

struct SpeculativeRun {
  testing::EventCollector events;
  std::unique_ptr<Engine> engine;
  TestProposer* proposer = nullptr;

  SpeculativeRun(std::vector<std::vector<int32_t>> references, TestProposer::Options options, int32_t blocks = 256, int32_t batch_tokens = 64) {
    engine = make_engine(&events, blocks, batch_tokens);
    auto owned = std::make_unique<TestProposer>(std::move(references), options);
    proposer = owned.get();
    EXPECT_TRUE(engine->set_proposer(ProposerKind::kNgram, std::move(owned)).is_ok());
  }
};

TEST(SpeculativeEngine, RightGuessesGiveThePlainOutputInFewerSteps) {
  const auto requests = mixed_requests();
  const Outcome plain = plain_run(requests);
  SpeculativeRun run(references_of(requests, plain), {});
  const Outcome got = run_all(*run.engine, run.events, with_speculation(requests, 4));
  expect_same(plain, got, run.events);
  const EngineStats s = run.engine->stats();
  EXPECT_GT(s.speculation.proposed, 0u);
  EXPECT_EQ(s.speculation.accepted, s.speculation.proposed) << "every guess was the plain output";
  EXPECT_EQ(s.speculation.generated_tokens, s.speculation.accepted + s.speculation.verify_steps);
  uint64_t proposed = 0, accepted = 0, generated = 0;
  for (const auto& request : got) {
    for (const EngineEvent& e : request) {
      proposed += e.speculation->proposed;
      accepted += e.speculation->accepted;
      generated += e.tokens.size();
    }
  }
  EXPECT_EQ(proposed, s.speculation.proposed);
  EXPECT_EQ(accepted, s.speculation.accepted);
  EXPECT_EQ(s.generated_tokens, generated);
  EXPECT_GT(s.speculation.generated_tokens, 2 * s.speculation.verify_steps) << "k = 4, all accepted: well over two tokens a step";
  EXPECT_EQ(s.in_use_blocks, 0);
  EXPECT_EQ(run.proposer->forgotten.load(), static_cast<int>(requests.size()));
  ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
}

TEST(SpeculativeEngine, PartlyWrongGuessesGiveThePlainOutput) {
  const auto requests = mixed_requests();
  const Outcome plain = plain_run(requests);
  SpeculativeRun run(references_of(requests, plain), {.wrong_every = 3});
  const Outcome got = run_all(*run.engine, run.events, with_speculation(requests, 6));
  expect_same(plain, got, run.events);
  const EngineStats s = run.engine->stats();
  EXPECT_GT(s.speculation.accepted, 0u);
  EXPECT_LT(s.speculation.accepted, s.speculation.proposed);
  EXPECT_EQ(s.in_use_blocks, 0);
  ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
}

TEST(SpeculativeEngine, GarbageGuessesGiveThePlainOutputAndBackOff) {
  const auto requests = mixed_requests();
  const Outcome plain = plain_run(requests);
  SpeculativeRun run({}, {.garbage = true});
  const Outcome got = run_all(*run.engine, run.events, with_speculation(requests, 8));
  expect_same(plain, got, run.events);
  const EngineStats s = run.engine->stats();
  uint64_t generated = 0;
  for (const auto& request : got) generated += request[0].tokens.size();
  EXPECT_GT(s.speculation.verify_steps, 0u);
  EXPECT_LT(s.speculation.verify_steps * 2, generated) << "rejected proposals must make a sequence propose less";
  ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
}

TEST(SpeculativeEngine, PreemptionUnderASmallPoolKeepsThePlainOutput) {
  std::vector<Request> requests;
  std::mt19937 rng(5);
  for (int i = 0; i < 12; ++i) requests.push_back({prompt_of(5 + static_cast<int>(rng() % 40), i), i % 3 == 2 ? sampled(40, 7 + i) : greedy(30 + static_cast<int>(rng() % 30))});
  const Outcome plain = plain_run(requests);
  SpeculativeRun run(references_of(requests, plain), {.wrong_every = 5}, 24, 32);
  const Outcome got = run_all(*run.engine, run.events, with_speculation(requests, 4));
  expect_same(plain, got, run.events);
  const EngineStats s = run.engine->stats();
  EXPECT_GT(s.preemptions, 0u);
  EXPECT_GT(s.speculation.accepted, 0u);
  EXPECT_EQ(s.in_use_blocks, 0);
  ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
}

TEST(SpeculativeEngine, PrefixHitsReuseOnlyAcceptedTokens) {
  // The first request's blocks (prompt and accepted output) are cached; the second request's prompt is the
  // first's prompt and output, so it hits them. Wrong guesses wrote K/V past the accepted tokens: a block
  // holding any would give the second request different logits.
  const std::vector<Request> first = {{prompt_of(21, 3), greedy(40)}};
  const Outcome first_plain = plain_run(first);
  std::vector<int32_t> longer = first[0].prompt;
  longer.insert(longer.end(), first_plain[0][0].tokens.begin(), first_plain[0][0].tokens.end());
  const std::vector<Request> second = {{longer, greedy(20)}};
  const Outcome second_plain = plain_run(second);
  auto refs = references_of(first, first_plain);
  for (const auto& r : references_of(second, second_plain)) refs.push_back(r);
  SpeculativeRun run(refs, {.wrong_every = 4});
  expect_same(first_plain, run_all(*run.engine, run.events, with_speculation(first, 5), 1), run.events, 1);
  expect_same(second_plain, run_all(*run.engine, run.events, with_speculation(second, 5), 2), run.events, 2);
  const EngineStats s = run.engine->stats();
  EXPECT_GE(s.prefix.hit_tokens, 56u);
  ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
}

TEST(SpeculativeEngine, StopStringsAndMaxTokensInsideAnAcceptedRunEndThere) {
  std::vector<Request> probe = {{prompt_of(12, 4), greedy(30)}};
  const Outcome long_plain = plain_run(probe);
  const std::string& text = long_plain[0][0].text;
  ASSERT_GT(text.size(), 12u);
  std::vector<Request> requests;
  for (int max_tokens : {1, 2, 3, 5, 7}) requests.push_back({probe[0].prompt, greedy(max_tokens)});
  Request stopping{probe[0].prompt, greedy(30)};
  // A piece of the text well inside it ("tokNNN" pieces of the synthetic vocabulary print as themselves).
  const size_t at = text.find("tok", text.size() / 3);
  ASSERT_NE(at, std::string::npos) << text;
  stopping.params.stop_strings = {text.substr(at, 5)};
  requests.push_back(stopping);
  Request stop_token{probe[0].prompt, greedy(30)};
  stop_token.params.stop_tokens = {long_plain[0][0].tokens[9]};
  requests.push_back(stop_token);
  const Outcome plain = plain_run(requests);
  SpeculativeRun run(references_of(probe, long_plain), {});
  const Outcome got = run_all(*run.engine, run.events, with_speculation(requests, 8));
  expect_same(plain, got, run.events);
  EXPECT_EQ(got[2][0].tokens.size(), 3u);
  EXPECT_EQ(got[5][0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(got[6][0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(run.engine->stats().in_use_blocks, 0);
  ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
}

TEST(SpeculativeEngine, CompletionsAndPenaltiesKeepThePlainOutput) {
  std::vector<Request> requests;
  Request several{prompt_of(17, 8), sampled(25, 99)};
  several.params.n = 3;
  requests.push_back(several);
  Request penalized{prompt_of(9, 2), greedy(40)};
  penalized.params.sampling.repetition_penalty = 1.3f;
  penalized.params.sampling.frequency_penalty = 0.5f;
  penalized.params.sampling.presence_penalty = 0.2f;
  penalized.params.sampling.penalty_last_n = 16;
  requests.push_back(penalized);
  Request penalized_sampling = {prompt_of(30, 6), sampled(30, 5)};
  penalized_sampling.params.sampling.repetition_penalty = 1.2f;
  penalized_sampling.params.logprobs = 2;
  requests.push_back(penalized_sampling);
  const Outcome plain = plain_run(requests);
  SpeculativeRun run(references_of(requests, plain), {.wrong_every = 4});
  const Outcome got = run_all(*run.engine, run.events, with_speculation(requests, 4));
  expect_same(plain, got, run.events);
  for (size_t c = 0; c < got[0].size(); ++c) EXPECT_GT(got[0][c].speculation->accepted, 0u) << "choice " << c;
  ASSERT_EQ(got[2][0].logprobs.size(), plain[2][0].logprobs.size());
  for (size_t t = 0; t < got[2][0].logprobs.size(); ++t) {
    EXPECT_EQ(got[2][0].logprobs[t].chosen.token, plain[2][0].logprobs[t].chosen.token);
    EXPECT_NEAR(got[2][0].logprobs[t].chosen.logprob, plain[2][0].logprobs[t].chosen.logprob, 1e-4);
  }
  ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
}

// Proposed tokens are drawn under the grammar's mask as plain decoding draws them (a copy of the matcher
// follows the run), so constrained requests keep their output, and the sentence ends where plain decoding ends it.
TEST(SpeculativeEngine, GrammarRequestsKeepThePlainOutput) {
  auto parsed = grammar::parse_gbnf(R"(root ::= [a-z ]{10,40} "." | "id-" [0-9]{2,30} "!")");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  const std::shared_ptr<const grammar::Grammar> g = parsed.take();
  std::vector<Request> requests;
  for (int i = 0; i < 6; ++i) {
    Request r{prompt_of(6 + 5 * i, i), i % 2 == 0 ? greedy(80) : sampled(80, 30 + i)};
    r.params.grammar = g;
    requests.push_back(r);
  }
  const Outcome plain = plain_run(requests);
  for (const auto& request : plain) ASSERT_EQ(request[0].finish_reason, FinishReason::kStop) << request[0].text;
  SpeculativeRun run(references_of(requests, plain), {.wrong_every = 4});
  const Outcome got = run_all(*run.engine, run.events, with_speculation(requests, 6));
  expect_same(plain, got, run.events);
  const EngineStats s = run.engine->stats();
  EXPECT_GT(s.speculation.accepted, 0u);
  EXPECT_EQ(s.in_use_blocks, 0);
  ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
}

// A verifying step computes a decode token's logits in a pass of several rows: with quantized weights
// (int8 activations) and a half-precision pool, each row must still come out as the one-row decode's, bit
// for bit, or greedy near-ties would flip.
TEST(SpeculativeEngine, QuantizedWeightsAndHalfKvKeepThePlainOutput) {
  for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kF16}) {
    const std::string path = testing::write_synthetic_model({.dim = 64, .layers = 2, .vocab = kVocab, .weight_type = type},
                                                            std::string("speculative_") + tensor_type_name(type) + ".gguf");
    std::vector<Request> requests;
    for (int i = 0; i < 4; ++i) requests.push_back({prompt_of(7 + 9 * i, 20 + i), i == 3 ? sampled(40, 3) : greedy(40)});
    Outcome plain;
    {
      testing::EventCollector events;
      auto engine = make_engine(&events, 256, 64, path, KvDtype::kF16);
      plain = run_all(*engine, events, requests);
    }
    testing::EventCollector events;
    auto engine = make_engine(&events, 256, 64, path, KvDtype::kF16);
    ASSERT_TRUE(engine->set_proposer(ProposerKind::kNgram, std::make_unique<TestProposer>(references_of(requests, plain), TestProposer::Options{.wrong_every = 5})).is_ok());
    const Outcome got = run_all(*engine, events, with_speculation(requests, 6));
    SCOPED_TRACE(tensor_type_name(type));
    expect_same(plain, got, events);
    EXPECT_GT(engine->stats().speculation.accepted, 0u);
  }
}

TEST(SpeculativeEngine, AbortsWhileVerifyingLeaveNothingBehind) {
  std::vector<Request> requests;
  for (int i = 0; i < 8; ++i) requests.push_back({prompt_of(10 + 3 * i, i), greedy(200)});
  const Outcome plain = plain_run(requests);
  SpeculativeRun run(references_of(requests, plain), {.wrong_every = 3}, 64, 32);
  for (size_t i = 0; i < requests.size(); ++i) {
    Request r = with_speculation({requests[i]}, 5)[0];
    ASSERT_TRUE(run.engine->submit({i + 1, r.prompt, r.params}).is_ok());
  }
  std::mt19937 rng(1);
  for (size_t i = 0; i < requests.size(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 20));
    run.engine->cancel(i + 1);
    ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    const EngineEvent done = run.events.wait(i + 1);
    ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished);
    // Whatever came before the abort is the plain output's start.
    ASSERT_LE(done.tokens.size(), plain[i][0].tokens.size());
    EXPECT_TRUE(std::equal(done.tokens.begin(), done.tokens.end(), plain[i][0].tokens.begin())) << "request " << i;
  }
  EXPECT_EQ(run.engine->stats().in_use_blocks, 0);
  ASSERT_TRUE(run.engine->check_kv_invariants().is_ok());
}

TEST(SpeculativeEngine, SubmitRefusesAProposerItLacksAndBadSizes) {
  testing::EventCollector events;
  auto engine = make_engine(&events);
  GenerateParams p = greedy(4);
  p.speculative = {ProposerKind::kDraft, 4};
  Status s = engine->submit({1, prompt_of(5, 1), p});
  EXPECT_EQ(s.code(), ErrorCode::kUnsupported);
  EXPECT_NE(s.message().find("draft model"), std::string::npos) << s.message();
  ASSERT_TRUE(engine->set_proposer(ProposerKind::kNgram, std::make_unique<TestProposer>(std::vector<std::vector<int32_t>>{}, TestProposer::Options{})).is_ok());
  for (int32_t k : {0, speculative::kMaxProposedTokens + 1}) {
    p.speculative = {ProposerKind::kNgram, k};
    EXPECT_EQ(engine->submit({3, prompt_of(5, 1), p}).code(), ErrorCode::kInvalidArgument) << k;
  }
  EXPECT_EQ(engine->set_proposer(ProposerKind::kNone, std::make_unique<TestProposer>(std::vector<std::vector<int32_t>>{}, TestProposer::Options{})).code(),
            ErrorCode::kInvalidArgument);
  p.speculative = {ProposerKind::kNgram, speculative::kMaxProposedTokens};
  ASSERT_TRUE(engine->submit({4, prompt_of(5, 1), p}).is_ok());
  const EngineEvent done = events.wait(4);
  EXPECT_EQ(done.kind, EngineEvent::Kind::kFinished);
  ASSERT_TRUE(done.speculation.has_value());
  EXPECT_EQ(done.speculation->proposed, 0u) << "the proposer knew nothing";
}

// Engine::load installs the n-gram proposer, and a draft model when one is given: here the target itself
// (aidreams260K, whose greedy tokens it is confident of), so greedy guesses all hold.
TEST(SpeculativeEngine, LoadInstallsTheNgramAndDraftProposers) {
  const std::string path = testing::shared_model("aidreams260K.gguf");
  if (path.empty()) GTEST_SKIP() << "shared test model aidreams260K.gguf not found";
  EngineOptions o;
  o.threads = 2;
  o.kv_blocks = 128;
  o.block_size = 8;
  o.context_length = 128;
  o.max_batch_tokens = 64;
  const auto load = [&](EngineOptions options, testing::EventCollector& events) {
    auto loaded = Engine::load(path, options, &events);
    EXPECT_TRUE(loaded.is_ok()) << loaded.status().message();
    return loaded.take();
  };
  std::vector<Request> requests;
  std::vector<int32_t> repeating = {1, 403, 407, 261, 378, 290, 315};
  for (int i = 0; i < 3; ++i) repeating.insert(repeating.end(), repeating.begin() + 1, repeating.begin() + 7);
  requests.push_back({repeating, greedy(40)});
  requests.push_back({{1, 403, 407, 261, 378}, greedy(40)});
  requests.push_back({{1, 403, 407}, sampled(40, 4)});
  Outcome plain;
  {
    testing::EventCollector events;
    auto engine = load(o, events);
    plain = run_all(*engine, events, requests);
  }
  o.draft_model = path;
  o.draft_tokens = 3;
  testing::EventCollector events;
  auto engine = load(o, events);
  for (ProposerKind kind : {ProposerKind::kNgram, ProposerKind::kDraft}) {
    std::vector<Request> speculative = requests;
    for (Request& r : speculative) r.params.speculative = {kind, 8};
    const RequestId first = kind == ProposerKind::kNgram ? 1 : 100;
    const EngineStats before = engine->stats();
    const Outcome got = run_all(*engine, events, speculative, first);
    SCOPED_TRACE(kind == ProposerKind::kNgram ? "ngram" : "draft");
    expect_same(plain, got, events, first);
    EXPECT_GT(engine->stats().speculation.accepted, before.speculation.accepted);
    if (kind == ProposerKind::kDraft) {
      for (size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(got[i][0].speculation->accepted, got[i][0].speculation->proposed) << "the draft is the target: greedy guesses all hold";
        EXPECT_LE(got[i][0].speculation->generated_tokens, 4 * got[i][0].speculation->verify_steps) << "draft.tokens caps a step's proposal";
      }
    }
  }
  EXPECT_EQ(engine->stats().in_use_blocks, 0);
  ASSERT_TRUE(engine->check_kv_invariants().is_ok());
}

TEST(SpeculativeEngine, RequestsWithoutSpeculationReportNoCounters) {
  testing::EventCollector events;
  auto engine = make_engine(&events);
  ASSERT_TRUE(engine->submit({1, prompt_of(5, 1), greedy(3)}).is_ok());
  const EngineEvent done = events.wait(1);
  EXPECT_FALSE(done.speculation.has_value());
  EXPECT_EQ(engine->stats().speculation.proposed, 0u);
}

}  // namespace
}  // namespace pagedlm
