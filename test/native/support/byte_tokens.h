// A vocabulary of one token per byte value, then an end token (id 256): text goes through a grammar matcher
// byte by byte. Header-only, so the libFuzzer targets (which link only the engine) share it. Test-only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "grammar/grammar.h"

namespace pagedlm::testing {

inline std::shared_ptr<const grammar::TokenIndex> byte_tokens() {
  static const auto tokens = [] {
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.emplace_back(1, static_cast<char>(b));
    bytes.emplace_back("</s>");
    std::vector<bool> is_text(257, true);
    is_text[256] = false;
    return std::make_shared<const grammar::TokenIndex>(bytes, is_text, std::vector<int32_t>{256});
  }();
  return tokens;
}

}  // namespace pagedlm::testing
