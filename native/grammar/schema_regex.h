// The pieces of JSON Schema compilation that deal in characters: sets of code points, their GBNF spelling,
// their spelling inside a JSON string, and JSON Schema's `pattern` (an ECMA-262 regular expression with the
// `u` flag, as validators compile it) translated to GBNF over the JSON-encoded string contents.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pagedlm::grammar::schema {

struct CodepointRange {
  uint32_t lo;
  uint32_t hi;  // inclusive
};
// Sorted, disjoint and non-adjacent once normalized.
using CodepointSet = std::vector<CodepointRange>;

CodepointSet normalized(CodepointSet set);
// Every Unicode scalar value (surrogates excluded: they have no UTF-8 spelling) not in `set`.
CodepointSet complement(const CodepointSet& set);
CodepointSet intersection(const CodepointSet& a, const CodepointSet& b);

// A GBNF string literal spelling `utf8` exactly: "...".
std::string gbnf_literal(std::string_view utf8);
// A GBNF character class spelling `set` (which must not be empty): [...].
std::string gbnf_class(const CodepointSet& set);
// GBNF for one character of `set` as it appears inside a JSON string: raw where JSON allows the raw
// character, the canonical escape (\" \\ \n \u001f ...) otherwise.
std::string json_char_gbnf(const CodepointSet& set);

// A `pattern` the translator refuses; `offset` counts code points into the pattern.
struct PatternError : std::runtime_error {
  PatternError(size_t offset, const std::string& what) : std::runtime_error(what), offset(offset) {}
  size_t offset;
};

// GBNF for the JSON string contents (without the quotes) whose decoded text the regular expression finds a
// match in: an end without ^ or $ is open, spelled `any_char_rule*`. `max_weight` bounds the size of the
// expansion of its repetitions. Throws PatternError for what it does not translate (backreferences,
// lookarounds, word boundaries, anchors inside groups, Unicode property escapes).
std::string pattern_to_gbnf(std::string_view pattern, const std::string& any_char_rule, size_t max_repeat,
                            size_t max_weight);

}  // namespace pagedlm::grammar::schema
