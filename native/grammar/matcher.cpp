// GrammarMatcher: a pushdown matcher over the parse stacks of pda.h, advanced byte by byte.
#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "grammar/gbnf.h"
#include "grammar/grammar.h"
#include "grammar/pda.h"
#include "grammar/token_index.h"

namespace pagedlm::grammar {

namespace {

// Valid second bytes after each lead byte (the first byte alone cannot rule out overlong forms, surrogates
// or code points past U+10FFFF); later bytes are 80..BF.
std::pair<uint8_t, uint8_t> second_byte_range(uint8_t lead) {
  switch (lead) {
    case 0xE0: return {0xA0, 0xBF};
    case 0xED: return {0x80, 0x9F};
    case 0xF0: return {0x90, 0xBF};
    case 0xF4: return {0x80, 0x8F};
    default: return {0x80, 0xBF};
  }
}

uint32_t decode(const uint8_t* bytes, int length) {
  uint32_t cp = length == 1 ? bytes[0] : length == 2 ? bytes[0] & 0x1F : length == 3 ? bytes[0] & 0x0F : bytes[0] & 0x07;
  for (int i = 1; i < length; ++i) cp = (cp << 6) | (bytes[i] & 0x3F);
  return cp;
}

uint32_t complete_with(const PartialChar& partial, bool largest) {
  uint8_t bytes[4];
  std::memcpy(bytes, partial.bytes, partial.length);
  for (int i = partial.length; i < partial.needed; ++i) {
    const auto [lo, hi] = i == 1 ? second_byte_range(bytes[0]) : std::pair<uint8_t, uint8_t>{0x80, 0xBF};
    bytes[i] = largest ? hi : lo;
  }
  return decode(bytes, partial.needed);
}

struct StackHash {
  size_t operator()(const Stack& stack) const {
    uint64_t h = 0xcbf29ce484222325ull;
    for (uint32_t v : stack) h = (h ^ v) * 0x100000001b3ull;
    return static_cast<size_t>(h ^ stack.size());
  }
};

// Expands rule references at the tops of stacks until every resulting stack ends at a character class (or
// is empty). A stack met twice (ambiguous grammars reach the same one by several paths) is expanded once.
// Iterative: deep chains of rules cannot overflow the call stack. Stops once it has written `budget` stack
// entries, keeping what it has.
class Expander {
 public:
  Expander(const Grammar& grammar, int64_t budget) : grammar_(grammar), budget_(budget) {}

  bool exhausted() const { return budget_ < 0; }

  void expand(Stack stack) {
    push(std::move(stack));
    while (!work_.empty() && !exhausted()) {
      Stack current = std::move(work_.back());
      work_.pop_back();
      if (current.empty() || grammar_.element(current.back()).kind == ElementKind::kChars) {
        out_.push_back(std::move(current));
        continue;
      }
      const uint32_t position = current.back();
      const Element element = grammar_.element(position);
      current.pop_back();
      if (element.kind == ElementKind::kEnd) {  // an empty alternative
        push(std::move(current));
        continue;
      }
      // Only what follows the reference stays: a reference in tail position leaves nothing behind, so
      // right recursion (repetitions) does not deepen the stack.
      if (grammar_.element(position + 1).kind != ElementKind::kEnd) current.push_back(position + 1);
      const auto alternatives = grammar_.alternatives(element.value);
      for (auto it = alternatives.rbegin(); it != alternatives.rend(); ++it) {
        Stack next = current;
        next.push_back(*it);
        push(std::move(next));
      }
    }
  }

  StackSet take() { return std::move(out_); }

 private:
  void push(Stack stack) {
    budget_ -= static_cast<int64_t>(stack.size() + 1);
    if (exhausted() || !seen_.insert(stack).second) return;
    work_.push_back(std::move(stack));
  }

  const Grammar& grammar_;
  int64_t budget_;
  std::vector<Stack> work_;
  std::unordered_set<Stack, StackHash> seen_;
  StackSet out_;
};

void canonicalize(StackSet& stacks) {
  std::sort(stacks.begin(), stacks.end());  // already free of duplicates (Expander)
  if (stacks.size() > kMaxStacks) stacks.resize(kMaxStacks);
}

void append_u32(std::string& out, uint32_t value) {
  char bytes[4];
  std::memcpy(bytes, &value, 4);
  out.append(bytes, 4);
}

}  // namespace

Utf8Step utf8_step(PartialChar& partial, uint8_t byte, uint32_t& code_point) {
  if (partial.empty()) {
    if (byte < 0x80) {
      code_point = byte;
      return Utf8Step::kComplete;
    }
    const uint8_t needed = byte >= 0xC2 && byte <= 0xDF ? 2 : byte >= 0xE0 && byte <= 0xEF ? 3 : byte >= 0xF0 && byte <= 0xF4 ? 4 : 0;
    if (needed == 0) return Utf8Step::kInvalid;
    partial.bytes[0] = byte;
    partial.length = 1;
    partial.needed = needed;
    return Utf8Step::kPartial;
  }
  const auto [lo, hi] = partial.length == 1 ? second_byte_range(partial.bytes[0]) : std::pair<uint8_t, uint8_t>{0x80, 0xBF};
  if (byte < lo || byte > hi) return Utf8Step::kInvalid;
  partial.bytes[partial.length++] = byte;
  if (partial.length < partial.needed) return Utf8Step::kPartial;
  code_point = decode(partial.bytes, partial.needed);
  partial = PartialChar{};
  return Utf8Step::kComplete;
}

std::pair<uint32_t, uint32_t> partial_range(const PartialChar& partial) {
  return {complete_with(partial, false), complete_with(partial, true)};
}

StackSet initial_stacks(const Grammar& grammar) {
  Expander expander(grammar, kMaxAdvanceWork);
  for (uint32_t start : grammar.alternatives(grammar.root())) expander.expand(Stack{start});
  StackSet stacks = expander.take();
  canonicalize(stacks);
  return stacks;
}

void matching_stacks(const Grammar& grammar, const StackSet& stacks, uint32_t code_point,
                     std::vector<uint32_t>& matching) {
  matching.clear();
  for (uint32_t i = 0; i < stacks.size(); ++i) {
    const Stack& stack = stacks[i];
    if (!stack.empty() && grammar.class_contains(grammar.element(stack.back()).value, code_point)) {
      matching.push_back(i);
    }
  }
}

StackSet advance_stacks(const Grammar& grammar, const StackSet& stacks, const std::vector<uint32_t>& matching) {
  Expander expander(grammar, kMaxAdvanceWork);
  for (uint32_t i : matching) {
    if (expander.exhausted()) break;
    Stack stack = stacks[i];
    const uint32_t position = stack.back();
    stack.pop_back();
    if (grammar.element(position + 1).kind != ElementKind::kEnd) stack.push_back(position + 1);
    expander.expand(std::move(stack));
  }
  StackSet next = expander.take();
  canonicalize(next);
  return next;
}

bool any_stack_accepts(const Grammar& grammar, const StackSet& stacks, uint32_t lo, uint32_t hi) {
  return std::any_of(stacks.begin(), stacks.end(), [&](const Stack& stack) {
    return !stack.empty() && grammar.class_intersects(grammar.element(stack.back()).value, lo, hi);
  });
}

bool advance_byte(const Grammar& grammar, Position& position, uint8_t byte) {
  uint32_t code_point = 0;
  switch (utf8_step(position.partial, byte, code_point)) {
    case Utf8Step::kInvalid:
      return false;
    case Utf8Step::kPartial: {
      const auto [lo, hi] = partial_range(position.partial);
      return any_stack_accepts(grammar, position.stacks, lo, hi);
    }
    case Utf8Step::kComplete: {
      std::vector<uint32_t> matching;
      matching_stacks(grammar, position.stacks, code_point, matching);
      if (matching.empty()) return false;
      position.stacks = advance_stacks(grammar, position.stacks, matching);
      return !position.stacks.empty();
    }
  }
  return false;
}

bool can_end(const Position& position) {
  // Canonical order puts the empty stack first.
  return position.partial.empty() && !position.stacks.empty() && position.stacks.front().empty();
}

std::string stacks_key(const StackSet& stacks) {
  std::string key;
  for (const Stack& stack : stacks) {
    append_u32(key, static_cast<uint32_t>(stack.size()));
    for (uint32_t element : stack) append_u32(key, element);
  }
  return key;
}

std::string position_key(const Position& position) {
  std::string key(1, static_cast<char>(position.partial.length));
  key.append(reinterpret_cast<const char*>(position.partial.bytes), position.partial.length);
  return key + stacks_key(position.stacks);
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenIndex> tokens)
    : grammar_(std::move(grammar)), tokens_(std::move(tokens)), state_(std::make_unique<State>()) {
  state_->position.stacks = initial_stacks(*grammar_);
}

GrammarMatcher::GrammarMatcher(const GrammarMatcher& other)
    : grammar_(other.grammar_), tokens_(other.tokens_), state_(std::make_unique<State>(*other.state_)) {}

GrammarMatcher& GrammarMatcher::operator=(const GrammarMatcher& other) {
  if (this != &other) {
    grammar_ = other.grammar_;
    tokens_ = other.tokens_;
    state_ = std::make_unique<State>(*other.state_);
  }
  return *this;
}

GrammarMatcher::~GrammarMatcher() = default;

bool GrammarMatcher::allows(int32_t token) const {
  const TokenIndex::Impl& index = tokens_->impl();
  if (token < 0 || token >= index.vocab_size) return false;
  if (index.is_end(token)) return can_end();
  if (!index.is_text(token)) return false;
  Position position = state_->position;
  for (char byte : index.bytes(token)) {
    if (!advance_byte(*grammar_, position, static_cast<uint8_t>(byte))) return false;
  }
  return true;
}

Status GrammarMatcher::accept(int32_t token) {
  const TokenIndex::Impl& index = tokens_->impl();
  const auto refused = [&] {
    return Status(ErrorCode::kInvalidArgument, "grammar: token " + std::to_string(token) + " is not allowed here");
  };
  if (token < 0 || token >= index.vocab_size) return refused();
  if (index.is_end(token)) {
    if (!can_end()) return refused();
    state_->position.stacks = {Stack{}};  // complete: nothing but another end may follow
    return Status::ok();
  }
  if (!index.is_text(token)) return refused();
  Position position = state_->position;
  for (char byte : index.bytes(token)) {
    if (!advance_byte(*grammar_, position, static_cast<uint8_t>(byte))) return refused();
  }
  state_->position = std::move(position);
  return Status::ok();
}

bool GrammarMatcher::can_end() const { return grammar::can_end(state_->position); }

bool GrammarMatcher::must_end() const {
  // Every non-empty stack ends at a non-empty character class, so any such stack could continue.
  const StackSet& stacks = state_->position.stacks;
  return can_end() && stacks.size() == 1;
}

}  // namespace pagedlm::grammar
