// Constrained decoding through the Engine: on a random-weight model (whose free output is noise) every
// completion under a grammar is a sentence of it, ends where the grammar does, and keeps doing so under n > 1,
// sampling, preemption with recomputation, prefix-cache hits and aborts.
#include <gtest/gtest.h>

#include <random>
#include <regex>
#include <thread>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "support/event_collector.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

std::shared_ptr<const grammar::Grammar> compile(const std::string& gbnf) {
  auto parsed = grammar::parse_gbnf(gbnf);
  EXPECT_TRUE(parsed.is_ok()) << parsed.status().message();
  return parsed.is_ok() ? parsed.take() : nullptr;
}

std::unique_ptr<Engine> make_engine(EventSink* sink, int32_t blocks, int32_t batch_tokens = 64) {
  // Above the 259 specials and byte tokens: multi-byte pieces, so tokens span several grammar terminals.
  static const std::string path = testing::write_synthetic_model({.dim = 64, .layers = 2, .vocab = 600}, "constrained.gguf");
  EngineOptions o;
  o.threads = 2;
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
  for (int i = 1; i < length; ++i) t.push_back(3 + (seed * 53 + i * 7) % 500);
  return t;
}

GenerateParams constrained(const std::shared_ptr<const grammar::Grammar>& g, int max_tokens, bool sample, uint64_t seed) {
  GenerateParams p;
  p.grammar = g;
  p.max_tokens = max_tokens;
  p.sampling.temperature = sample ? 1.0f : 0.0f;
  p.sampling.top_k = 0;  // the whole masked distribution, so rare allowed tokens get drawn too
  p.sampling.top_p = 1.0f;
  p.sampling.min_p = 0.0f;
  p.sampling.seed = seed;
  return p;
}

TEST(ConstrainedDecoding, GreedyFollowsTheGrammarAndStopsWhereItEnds) {
  testing::EventCollector events;
  auto engine = make_engine(&events, 128);
  const auto g = compile(R"(root ::= "id-" [0-9]{2,4} "!")");
  const std::regex sentence("id-[0-9]{2,4}!");
  for (int i = 1; i <= 4; ++i) {
    ASSERT_TRUE(engine->submit({static_cast<RequestId>(i), prompt_of(5 + i * 3, i), constrained(g, 100, false, 0)}).is_ok());
    const EngineEvent done = events.wait(i);
    ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
    EXPECT_TRUE(std::regex_match(done.text, sentence)) << done.text;
    EXPECT_EQ(done.finish_reason, FinishReason::kStop);
    std::string streamed;
    for (const EngineEvent& e : events.events(i)) streamed += e.kind == EngineEvent::Kind::kToken ? e.text : "";
    EXPECT_EQ(streamed, done.text);
  }
}

TEST(ConstrainedDecoding, SampledCompletionsAndMultiByteCharacters) {
  testing::EventCollector events;
  auto engine = make_engine(&events, 128);
  // Byte tokens above 0x7f end mid-character: the matcher must keep the partial character between tokens.
  const auto g = compile(R"(root ::= ("ja" | "nein" | "é" | "東京" | [α-ω]) (" " [a-zäöü]{1,5}){0,3} ".")");
  const std::regex sentence("(ja|nein|é|東京|(\xCE[\xB1-\xBF]|\xCF[\x80-\x89]))( ([a-z]|ä|ö|ü){1,5}){0,3}\\.");
  GenerateParams p = constrained(g, 120, true, 7);
  p.n = 4;
  for (int i = 1; i <= 6; ++i) {
    p.sampling.seed = 7 + i;
    ASSERT_TRUE(engine->submit({static_cast<RequestId>(i), prompt_of(9, i), p}).is_ok());
  }
  for (int i = 1; i <= 6; ++i) {
    for (const EngineEvent& done : events.wait_all(i, 4)) {
      ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
      EXPECT_TRUE(std::regex_match(done.text, sentence)) << done.text;
      EXPECT_EQ(done.finish_reason, FinishReason::kStop);
      }
  }
}

// JSON arrays of small integers, long enough that 16 of them overflow a small pool.
const char* kIntArray = R"(
root ::= "[" ( num ( "," " "? num ){0,24} )? "]"
num  ::= "-"? ( "0" | [1-9] [0-9]{0,3} )
)";

bool is_int_array(const std::string& text) {
  const auto parsed = nlohmann::json::parse(text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_array()) return false;
  for (const auto& v : parsed) {
    if (!v.is_number_integer()) return false;
  }
  return true;
}

TEST(ConstrainedDecoding, PreemptionAndPrefixHitsChangeNothing) {
  const auto g = compile(kIntArray);
  // Half share one long prefix (prefix-cache hits), half sample.
  const std::vector<int32_t> shared = prompt_of(33, 99);
  std::vector<std::pair<std::vector<int32_t>, GenerateParams>> specs;
  for (int i = 0; i < 16; ++i) {
    std::vector<int32_t> prompt = i % 2 == 0 ? shared : prompt_of(20 + i * 2, i);
    if (i % 2 == 0) prompt.push_back(3 + i);
    specs.emplace_back(prompt, constrained(g, 120, i % 4 >= 2, 300 + i));
  }
  std::vector<std::string> solo;
  {
    testing::EventCollector events;
    auto engine = make_engine(&events, 256);
    for (size_t i = 0; i < specs.size(); ++i) {
      ASSERT_TRUE(engine->submit({i + 1, specs[i].first, specs[i].second}).is_ok());
      const EngineEvent done = events.wait(i + 1);
      ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
      EXPECT_TRUE(is_int_array(done.text)) << done.text;
        solo.push_back(done.text);
    }
  }
  testing::EventCollector events;
  auto engine = make_engine(&events, 24, 32);
  for (size_t i = 0; i < specs.size(); ++i) ASSERT_TRUE(engine->submit({i + 1, specs[i].first, specs[i].second}).is_ok());
  for (size_t i = 0; i < specs.size(); ++i) {
    const EngineEvent done = events.wait(i + 1);
    ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
    EXPECT_EQ(done.text, solo[i]) << "request " << i;
  }
  const EngineStats s = engine->stats();
  EXPECT_GT(s.preemptions, 0u);
  EXPECT_GT(s.prefix.hit_tokens, 0u);
  EXPECT_EQ(s.in_use_blocks, 0);
  ASSERT_TRUE(engine->check_kv_invariants().is_ok());
}

TEST(ConstrainedDecoding, AbortsAndCloseLeakNothing) {
  testing::EventCollector events;
  auto engine = make_engine(&events, 64, 16);
  const auto g = compile(R"(root ::= [a-z ]{10,400} ".")");
  std::mt19937 rng(5);
  for (RequestId id = 1; id <= 12; ++id) {
    GenerateParams p = constrained(g, 200, id % 2 == 0, id);
    p.n = id % 3 == 0 ? 2 : 1;
    ASSERT_TRUE(engine->submit({id, prompt_of(6 + static_cast<int>(rng() % 30), static_cast<int>(id)), p}).is_ok());
    if (rng() % 2 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 20));
    engine->cancel(id);
  }
  // A request aborted before its completions fork ends once, not once per completion.
  for (RequestId id = 1; id <= 12; ++id) {
    const EngineEvent done = events.wait(id);
    ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
    // Aborted mid-sentence, or (when the abort came late) the whole sentence: a prefix of the grammar either way.
    EXPECT_TRUE(std::regex_match(done.text, std::regex("[a-z ]*\\.?"))) << done.text;
  }
  for (int tries = 0; tries < 2000 && (engine->stats().running > 0 || engine->stats().waiting > 0); ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(engine->stats().in_use_blocks, 0);
  ASSERT_TRUE(engine->check_kv_invariants().is_ok());
}

TEST(ConstrainedDecoding, EndTokensOnlyWhereTheGrammarMayEnd) {
  testing::EventCollector events;
  auto engine = make_engine(&events, 128);
  // "a" then optionally more: complete after every "a", so an end token may come at any point after it.
  const auto g = compile(R"(root ::= "a"+)");
  for (RequestId id = 1; id <= 8; ++id) {
    GenerateParams p = constrained(g, 40, true, id);
    p.ignore_eos = id % 2 == 0;  // under a grammar an end token still ends the text
    ASSERT_TRUE(engine->submit({id, prompt_of(7, static_cast<int>(id)), p}).is_ok());
    const EngineEvent done = events.wait(id);
    ASSERT_EQ(done.kind, EngineEvent::Kind::kFinished) << done.error.message();
    EXPECT_TRUE(std::regex_match(done.text, std::regex("a+"))) << done.text;
    for (int32_t t : done.tokens) EXPECT_FALSE(engine->tokenizer().is_end_of_generation(t));
  }
}

}  // namespace
}  // namespace pagedlm
