// libFuzzer: arbitrary GBNF text, then (when it parses) token choices driven by the bytes after the first
// NUL. Parsing must end in a grammar or an error; the matcher must never crash, and its mask, allows() and
// accept() must agree on every token of a small vocabulary with split characters and multi-byte tokens.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/grammar.h"

namespace {

using namespace pagedlm::grammar;

std::shared_ptr<const TokenIndex> vocabulary() {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
  for (const char* piece : {"ab", "abc", "{\"", "\":", "true", "\xc3\xa9", "\xc3", "\xa9x", "\xe2\x82", "\xac",
                            "\xf0\x9f\x98", "\x80", "\xed\xa0\x80", "  ", "12", "\n\n"}) {
    bytes.emplace_back(piece);
  }
  bytes.emplace_back("</s>");
  std::vector<bool> is_text(bytes.size(), true);
  is_text.back() = false;
  return std::make_shared<const TokenIndex>(bytes, is_text, std::vector<int32_t>{static_cast<int32_t>(bytes.size() - 1)});
}

// Single-byte tokens are most of the vocabulary: each input checks an eighth of them (which eighth depends on
// the input), and every longer token, so that a run stays fast and a campaign still covers them all.
void check_agreement(GrammarMatcher& matcher, int32_t vocab, uint32_t sample) {
  TokenMask mask;
  matcher.fill_mask(mask);
  for (int32_t t = 0; t < vocab; ++t) {
    if (t < 256 && (static_cast<uint32_t>(t) + sample) % 8 != 0) continue;
    GrammarMatcher copy(matcher);
    const bool accepted = copy.accept(t).is_ok();
    if (accepted != mask_allows(mask, t) || accepted != matcher.allows(t)) std::abort();
  }
  if (matcher.must_end() && !matcher.can_end()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::shared_ptr<const TokenIndex> tokens = vocabulary();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string_view text = input.substr(0, split);
  auto grammar = parse_gbnf(text);
  if (!grammar.is_ok()) {
    if (grammar.status().message().rfind("grammar: ", 0) != 0) std::abort();
    return 0;
  }
  GrammarMatcher matcher(grammar.value(), tokens);
  const std::string_view choices = split == std::string_view::npos ? std::string_view{} : input.substr(split + 1);
  const int32_t vocab = tokens->vocab_size();
  const auto sample = static_cast<uint32_t>(size);
  for (size_t step = 0; step < choices.size() && step < 16; ++step) {
    // Each byte picks a token: itself when allowed, else the first allowed token at or after it.
    TokenMask mask;
    matcher.fill_mask(mask);
    int32_t token = -1;
    for (int32_t i = 0; i < vocab && token < 0; ++i) {
      const int32_t candidate = (static_cast<uint8_t>(choices[step]) * 7 + i) % vocab;
      if (mask_allows(mask, candidate)) token = candidate;
    }
    if (token < 0) break;
    if (!matcher.accept(token).is_ok()) std::abort();
  }
  check_agreement(matcher, vocab, sample);
  return 0;
}
