// The matcher's position in a grammar, shared by matcher.cpp (allows, accept) and token_index.cpp (masks), so
// that a token the mask allows is exactly a token accept() takes.
//
// A position is a set of parse stacks plus the bytes of an incomplete UTF-8 character. A stack lists element
// positions, the innermost (the next element to match) last; it always ends at a character class, or is
// empty: the text so far is a complete sentence. The set is canonical (sorted, without duplicates), so two
// equal positions have equal keys.
//
// Ambiguous grammars can multiply stacks. Past kMaxStacks the set keeps its first kMaxStacks stacks in
// canonical order, and an advance stops expanding rules after kMaxAdvanceWork: every text the matcher allows
// then still matches the grammar, but some valid continuations may be refused. Grammars within the usual
// shapes (JSON, enums of a few thousand words, arithmetic) stay far below both.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "grammar/gbnf.h"

namespace pagedlm::grammar {

using Stack = std::vector<uint32_t>;
using StackSet = std::vector<Stack>;

// The bytes so far of a UTF-8 character, and how many it has in all.
struct PartialChar {
  uint8_t bytes[4] = {0, 0, 0, 0};
  uint8_t length = 0;
  uint8_t needed = 0;
  bool empty() const { return length == 0; }
};

enum class Utf8Step { kInvalid, kPartial, kComplete };

// Adds a byte to `partial`. kComplete sets `code_point` and empties `partial`. Overlong forms, surrogates
// and code points past U+10FFFF are kInvalid at the first byte that shows it.
Utf8Step utf8_step(PartialChar& partial, uint8_t byte, uint32_t& code_point);

// The smallest and largest code point a non-empty partial character can still become (a contiguous range:
// UTF-8 orders like the code points it encodes).
std::pair<uint32_t, uint32_t> partial_range(const PartialChar& partial);

StackSet initial_stacks(const Grammar& grammar);

// Indices of the stacks whose next character class contains `code_point`.
void matching_stacks(const Grammar& grammar, const StackSet& stacks, uint32_t code_point,
                     std::vector<uint32_t>& matching);

// The stacks after the `matching` ones consume their character (canonical).
StackSet advance_stacks(const Grammar& grammar, const StackSet& stacks, const std::vector<uint32_t>& matching);

// Some stack's next character class meets [lo, hi].
bool any_stack_accepts(const Grammar& grammar, const StackSet& stacks, uint32_t lo, uint32_t hi);

struct Position {
  StackSet stacks;
  PartialChar partial;
};

// Advances by one byte; false (position unspecified) when no stack can take it.
bool advance_byte(const Grammar& grammar, Position& position, uint8_t byte);

bool can_end(const Position& position);

// The canonical stacks as bytes (interning key), and the whole position so (the mask cache's key).
std::string stacks_key(const StackSet& stacks);
std::string position_key(const Position& position);

struct GrammarMatcher::State {
  Position position;
};

}  // namespace pagedlm::grammar
