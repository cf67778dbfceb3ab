// libFuzzer: arbitrary bytes as JSON Schema text. The compiler either refuses with a "schema: " message or
// returns GBNF that parse_gbnf accepts; the grammar then admits a walk of allowed bytes that never reaches a
// position where nothing is allowed and the grammar cannot end (every rule admits a value).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "grammar/grammar.h"
#include "../native/support/byte_tokens.h"

namespace {

using pagedlm::testing::byte_tokens;

[[noreturn]] void report(const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s\n%s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagedlm::grammar;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto gbnf = json_schema_to_gbnf(text, "f-");
  if (!gbnf.is_ok()) {
    if (gbnf.status().message().rfind("schema: ", 0) != 0) report("error without the schema: prefix", gbnf.status().message());
    return 0;
  }
  auto grammar = parse_gbnf(gbnf.value(), "f-root");
  if (!grammar.is_ok()) report(grammar.status().message().c_str(), gbnf.value());
  GrammarMatcher matcher(grammar.value(), byte_tokens());
  TokenMask mask;
  uint32_t choice = 2166136261u;
  for (uint8_t b : text) choice = (choice ^ b) * 16777619u;
  for (int step = 0; step < 24 && !matcher.must_end(); ++step) {
    matcher.fill_mask(mask);
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < 256; ++t) {
      if (mask_allows(mask, t)) allowed.push_back(t);
    }
    if (allowed.empty()) {
      if (!matcher.can_end()) report("dead end: no byte allowed and the grammar cannot end", gbnf.value());
      break;
    }
    choice = choice * 1103515245u + 12345u;
    if (!matcher.accept(allowed[(choice >> 8) % allowed.size()]).is_ok()) report("a byte the mask allowed was refused", gbnf.value());
  }
  return 0;
}
