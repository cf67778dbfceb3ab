// Constrained decoding: a grammar (GBNF text, or compiled from a JSON Schema) restricts which tokens a
// sequence may sample next. Three pieces, each with one owner:
//   Grammar      — parsed rules, immutable once built; shared by every sequence that uses it (n > 1).
//   TokenIndex   — the vocabulary's token bytes in a byte trie, built once per engine, immutable.
//   GrammarMatcher — one sequence's position in the grammar; copied when a sequence forks. Engine thread.
// Grammars work on Unicode code points (GBNF's character classes are code points); a token may end in the
// middle of a UTF-8 character, and the matcher keeps the partial character until the next token ends it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace pagedlm::grammar {

class Grammar;  // defined in grammar/gbnf.h

// Parses GBNF (llama.cpp's grammar syntax: `name ::= alternatives`, "literals", [classes], [^negated],
// ( groups ), * + ? {m} {m,} {m,n}, comments with #). `root` names the start rule. Errors are
// kInvalidArgument with a message naming line and column, e.g. "grammar: line 3, column 7: undefined rule
// 'valu'". Left recursion and grammars past the size limits are refused the same way.
Result<std::shared_ptr<const Grammar>> parse_gbnf(std::string_view text, std::string_view root = "root");

// The bytes each token contributes to the output, indexed for the mask computation. Tokens that are not
// text (control tokens, empty pieces) are never allowed under a grammar; `end_tokens` (EOS, end of turn) are
// allowed exactly when the grammar may end.
class TokenIndex {
 public:
  TokenIndex(const std::vector<std::string>& token_bytes, const std::vector<bool>& is_text,
             std::vector<int32_t> end_tokens);
  ~TokenIndex();
  int32_t vocab_size() const;
  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Which tokens may come next: bit t of word t / 64.
using TokenMask = std::vector<uint64_t>;
inline bool mask_allows(const TokenMask& mask, int32_t token) {
  return (mask[static_cast<size_t>(token) >> 6] >> (token & 63)) & 1u;
}

class GrammarMatcher {
 public:
  GrammarMatcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenIndex> tokens);
  GrammarMatcher(const GrammarMatcher&);
  GrammarMatcher& operator=(const GrammarMatcher&);
  ~GrammarMatcher();

  // The tokens allowed next (size: ceil(vocab / 64) words). May reuse masks computed for the same grammar
  // position earlier (by this or another matcher of the same Grammar).
  void fill_mask(TokenMask& mask);
  // Whether `token` is allowed next, without computing the whole mask (the sampler's fast path: check the
  // sampled token first and mask only when it is refused).
  bool allows(int32_t token) const;
  // Advances past `token`. kInvalidArgument if the token is not allowed (the state is then unchanged).
  Status accept(int32_t token);
  // The text so far is a complete sentence of the grammar (an end token is allowed).
  bool can_end() const;
  // Nothing may follow: the grammar is complete and admits no longer text. Generation stops here.
  bool must_end() const;

  struct State;

 private:
  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const TokenIndex> tokens_;
  std::unique_ptr<State> state_;
};

// JSON Schema (as JSON text) to GBNF whose root rule matches exactly the JSON texts valid against it
// (compact JSON with bounded optional whitespace). Errors are kInvalidArgument naming the JSON pointer of the
// offending keyword, e.g. "schema: /properties/age/type: unknown type 'int'". Unsupported keywords that
// would change validity are refused, not ignored. Every rule name it defines starts with `rule_prefix` and its
// start rule is `<rule_prefix>root`, so that several schemas can be combined in one grammar (tool calls).
Result<std::string> json_schema_to_gbnf(std::string_view schema_json, std::string_view rule_prefix = "");
// GBNF for any JSON value (the `json: true` option and response_format json_object: an object).
std::string json_value_gbnf(bool object_only);

}  // namespace pagedlm::grammar
