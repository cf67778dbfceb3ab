// Cost of a grammar mask (GrammarMatcher::fill_mask) for a JSON grammar on real vocabularies: uncached (a
// grammar position met for the first time: fresh Grammar, so an empty mask cache) and cached (the same
// position again, as at every step inside a JSON string), at the positions that allow the most tokens.
// Compare with a decode step's time (docs/benchmarks.md); the mask is computed once per sequence and step.
//
// Run: build/bench/cpu/pagedlm_grammar_mask_bench [vocab.gguf ...]
// Without arguments: the shared models' Llama-2 vocabulary (32K) and, when present, a Llama 3 vocabulary
// (128K) at /tmp/pagedlm-llama3-vocab.gguf, written by
//   node -e "require('./test/support/tokenizer-gguf').writeVocabularyModel('/tmp/pagedlm-llama3-vocab.gguf', 'llama3')"
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "grammar/gbnf.h"
#include "grammar/grammar.h"
#include "grammar/token_index.h"
#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

namespace pagedlm::grammar {
namespace {

const char* kJsonGrammar = R"GBNF(
root   ::= ws value ws
value  ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( member ( ws "," ws member )* ws )? "}"
member ::= string ws ":" ws value
array  ::= "[" ws ( value ( ws "," ws value )* ws )? "]"
string ::= "\"" char* "\""
char   ::= [^"\\\x00-\x1f] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )
number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
ws     ::= [ \t\n]{0,20}
)GBNF";

struct Vocabulary {
  std::string name;
  std::shared_ptr<const TokenIndex> index;
  std::map<char, int32_t> single_byte;  // a text token per ASCII character, to drive the matcher
};

bool load(const std::string& path, Vocabulary& out) {
  auto file = GgufFile::open(path);
  if (!file.is_ok()) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), file.status().message().c_str());
    return false;
  }
  auto tokenizer = Tokenizer::from_gguf(file.value());
  if (!tokenizer.is_ok()) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), tokenizer.status().message().c_str());
    return false;
  }
  const Tokenizer& tok = *tokenizer.value();
  std::vector<std::string> bytes(static_cast<size_t>(tok.vocab_size()));
  std::vector<bool> is_text(bytes.size());
  std::vector<int32_t> end_tokens;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const TokenType type = tok.type(id);
    bytes[static_cast<size_t>(id)] = tok.token_bytes(id);
    is_text[static_cast<size_t>(id)] =
        type == TokenType::kNormal || type == TokenType::kUserDefined || type == TokenType::kByte;
    if (tok.is_end_of_generation(id)) end_tokens.push_back(id);
    const std::string& b = bytes[static_cast<size_t>(id)];
    if (is_text[static_cast<size_t>(id)] && b.size() == 1 && out.single_byte.count(b[0]) == 0) {
      out.single_byte[b[0]] = id;
    }
  }
  const auto started = std::chrono::steady_clock::now();
  out.index = std::make_shared<const TokenIndex>(bytes, is_text, end_tokens);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  out.name = std::filesystem::path(path).filename().string() + " (" + std::to_string(tok.vocab_size()) + " tokens)";
  std::printf("%s: token index of %zu trie nodes built in %.1f ms\n", out.name.c_str(),
              out.index->impl().nodes.size(), ms);
  return true;
}

double elapsed_us(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - since).count();
}

size_t count_allowed(const TokenMask& mask) {
  size_t n = 0;
  for (uint64_t word : mask) n += static_cast<size_t>(__builtin_popcountll(word));
  return n;
}

// The matcher after `prefix`, fed one ASCII character per token.
bool drive(GrammarMatcher& matcher, const Vocabulary& vocabulary, const std::string& prefix) {
  for (char c : prefix) {
    const auto it = vocabulary.single_byte.find(c);
    if (it == vocabulary.single_byte.end() || !matcher.accept(it->second).is_ok()) return false;
  }
  return true;
}

void measure(const Vocabulary& vocabulary, const char* label, const std::string& prefix) {
  constexpr int kUncachedRuns = 15;
  constexpr int kCachedRuns = 2000;
  std::vector<double> uncached;
  TokenMask mask;
  for (int run = 0; run < kUncachedRuns; ++run) {
    auto grammar = parse_gbnf(kJsonGrammar);
    if (!grammar.is_ok()) {
      std::fprintf(stderr, "%s\n", grammar.status().message().c_str());
      return;
    }
    GrammarMatcher matcher(grammar.value(), vocabulary.index);
    if (!drive(matcher, vocabulary, prefix)) {
      std::printf("  %-28s (the vocabulary cannot spell the prefix)\n", label);
      return;
    }
    const auto started = std::chrono::steady_clock::now();
    matcher.fill_mask(mask);
    uncached.push_back(elapsed_us(started));
  }
  std::sort(uncached.begin(), uncached.end());
  auto grammar = parse_gbnf(kJsonGrammar);
  GrammarMatcher matcher(grammar.value(), vocabulary.index);
  drive(matcher, vocabulary, prefix);
  matcher.fill_mask(mask);
  const auto started = std::chrono::steady_clock::now();
  for (int run = 0; run < kCachedRuns; ++run) matcher.fill_mask(mask);
  const double cached = elapsed_us(started) / kCachedRuns;
  std::printf("  %-28s allowed %6zu   uncached median %8.1f us (min %8.1f)   cached %6.1f us\n", label,
              count_allowed(mask), uncached[uncached.size() / 2], uncached.front(), cached);
}

int run(int argc, char** argv) {
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) paths.emplace_back(argv[i]);
  if (paths.empty()) {
    paths.push_back(std::string(PAGEDLM_SHARED_MODELS_DIR) + "/synth-tiny-f16.gguf");
    const std::string llama3 = "/tmp/pagedlm-llama3-vocab.gguf";
    if (std::filesystem::exists(llama3)) {
      paths.push_back(llama3);
    } else {
      std::printf("(no %s: see the comment at the top of grammar_mask_bench.cpp for the 128K vocabulary)\n",
                  llama3.c_str());
    }
  }
  const std::vector<std::pair<const char*, std::string>> positions = {
      {"value start", ""},
      {"inside a string value", "{\"name\": \"abc"},
      {"inside a key", "{\"a\": 1, \"ke"},
      {"after a member", "{\"a\": 1"},
      {"inside a number", "[12"},
      {"array, after a comma", "[1, "},
  };
  for (const std::string& path : paths) {
    Vocabulary vocabulary;
    if (!load(path, vocabulary)) return 1;
    for (const auto& [label, prefix] : positions) measure(vocabulary, label, prefix);
  }
  return 0;
}

}  // namespace
}  // namespace pagedlm::grammar

int main(int argc, char** argv) { return pagedlm::grammar::run(argc, argv); }
