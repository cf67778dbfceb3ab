// GBNF parser (llama.cpp's grammar syntax, read as a superset): rules may span lines, since a rule ends only
// where the next `name ::=` begins; repetitions become right-recursive helper rules so that the matcher's
// stacks stay flat on long repeats. After parsing: every referenced rule must be defined, the root must
// exist, and no rule may reach itself through a prefix that can match empty text (left recursion never
// terminates in a top-down matcher).
#include "grammar/gbnf.h"

#include <algorithm>
#include <cstring>
#include <optional>

namespace pagedlm::grammar {

namespace {

constexpr size_t kNoPosition = static_cast<size_t>(-1);
constexpr size_t kMaskCacheBytes = 32u << 20;
constexpr uint32_t kSurrogateLo = 0xD800;
constexpr uint32_t kSurrogateHi = 0xDFFF;

enum class RuleOrigin { kNamed, kGroup, kRepetition };

struct RuleDraft {
  std::string name;
  RuleOrigin origin = RuleOrigin::kNamed;
  std::vector<std::vector<Element>> alternatives;
  bool defined = false;
  size_t defined_at = kNoPosition;  // the name of a named rule, the `(` or operator of a helper
  size_t first_use = kNoPosition;
};

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Sorts and merges ranges, takes the complement when negated, and drops the surrogates (no UTF-8 text
// contains them, and a class that could match only them would be a dead end).
std::vector<CodeRange> normalize_class(std::vector<CodeRange> ranges, bool negated) {
  std::sort(ranges.begin(), ranges.end(), [](CodeRange a, CodeRange b) { return a.lo < b.lo; });
  std::vector<CodeRange> merged;
  for (CodeRange r : ranges) {
    if (!merged.empty() && r.lo <= merged.back().hi + 1) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }
  if (negated) {
    std::vector<CodeRange> complement;
    uint32_t next = 0;
    for (CodeRange r : merged) {
      if (r.lo > next) complement.push_back({next, r.lo - 1});
      next = r.hi + 1;
    }
    if (next <= kMaxCodePoint) complement.push_back({next, kMaxCodePoint});
    merged = std::move(complement);
  }
  std::vector<CodeRange> result;
  for (CodeRange r : merged) {
    if (r.hi < kSurrogateLo || r.lo > kSurrogateHi) {
      result.push_back(r);
      continue;
    }
    if (r.lo < kSurrogateLo) result.push_back({r.lo, kSurrogateLo - 1});
    if (r.hi > kSurrogateHi) result.push_back({kSurrogateHi + 1, r.hi});
  }
  return result;
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Result<std::shared_ptr<const Grammar>> parse(std::string_view root);

 private:
  bool fail(size_t at, const std::string& message);
  std::string line_column(size_t at) const;
  std::string location(size_t at) const { return "grammar: " + line_column(at) + ": "; }

  std::string describe(size_t at) const;
  bool at_end() const { return pos_ >= text_.size(); }
  char peek(size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }
  void skip_space(bool newlines);
  size_t name_end(size_t from) const;
  bool at_rule_start() const;

  bool parse_rule();
  bool parse_alternatives(std::vector<std::vector<Element>>& alternatives, int depth);
  bool parse_sequence(std::vector<Element>& sequence, int depth);
  bool parse_element(std::vector<Element>& sequence, int depth);
  bool parse_literal(std::vector<Element>& sequence);
  bool parse_class(std::vector<Element>& sequence);
  bool parse_group(std::vector<Element>& sequence, int depth);
  bool parse_char(uint32_t& code_point, bool in_class);
  bool parse_escape(uint32_t& code_point);
  bool parse_postfix(std::vector<Element>& sequence, size_t span_start);
  bool parse_bounds(uint32_t& min, std::optional<uint32_t>& max);
  bool repeat(std::vector<Element>& sequence, size_t span_start, uint32_t min, std::optional<uint32_t> max,
              size_t op_at);

  bool add_class(std::vector<CodeRange> ranges, size_t at, std::vector<Element>& sequence);
  bool new_rule(RuleOrigin origin, size_t at, std::vector<std::vector<Element>> alternatives, uint32_t& rule);
  uint32_t rule_named(std::string_view name, size_t used_at);
  bool count_elements(size_t count, size_t at);

  bool check_references(std::string_view root, uint32_t& root_rule);
  std::vector<bool> nullable_rules() const;
  bool check_left_recursion();
  bool report_cycle(const std::vector<uint32_t>& cycle);
  std::shared_ptr<const Grammar> build(uint32_t root_rule) const;

  std::string_view text_;
  size_t pos_ = 0;
  Status status_;
  std::vector<RuleDraft> rules_;
  std::unordered_map<std::string, uint32_t> rule_ids_;
  std::vector<CodeRange> ranges_;
  std::vector<std::pair<uint32_t, uint32_t>> classes_;
  size_t element_count_ = 0;
};

std::string Parser::line_column(size_t at) const {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < at && i < text_.size(); ++i) {
    const auto c = static_cast<unsigned char>(text_[i]);
    if (c == '\n') {
      ++line;
      column = 1;
    } else if ((c & 0xC0) != 0x80) {
      ++column;  // columns count characters, not bytes
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

bool Parser::fail(size_t at, const std::string& message) {
  if (status_.is_ok()) status_ = Status(ErrorCode::kInvalidArgument, location(at) + message);
  return false;
}

// The character at `at` for a message: quoted when printable ASCII, else its byte value, so that a message
// is valid UTF-8 whatever the input.
std::string Parser::describe(size_t at) const {
  if (at >= text_.size()) return "the end of the text";
  const auto c = static_cast<unsigned char>(text_[at]);
  if (c >= 0x20 && c < 0x7F) return "'" + std::string(1, static_cast<char>(c)) + "'";
  const char* digits = "0123456789ABCDEF";
  return std::string("byte 0x") + digits[c >> 4] + digits[c & 15];
}

void Parser::skip_space(bool newlines) {
  while (!at_end()) {
    const char c = peek();
    if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
      ++pos_;
    } else if (c == '#') {
      while (!at_end() && peek() != '\n') ++pos_;
    } else {
      return;
    }
  }
}

size_t Parser::name_end(size_t from) const {
  size_t end = from;
  while (end < text_.size() && is_name_char(text_[end])) ++end;
  return end;
}

bool Parser::at_rule_start() const {
  size_t p = name_end(pos_);
  if (p == pos_) return false;
  while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t')) ++p;
  return text_.substr(p, 3) == "::=";
}

Result<std::shared_ptr<const Grammar>> Parser::parse(std::string_view root) {
  if (text_.size() > kMaxTextBytes) {
    return Status(ErrorCode::kInvalidArgument, "grammar: the text is longer than " +
                                                   std::to_string(kMaxTextBytes) + " bytes");
  }
  skip_space(true);
  while (!at_end()) {
    if (!parse_rule()) return status_;
    skip_space(true);
  }
  uint32_t root_rule = 0;
  if (!check_references(root, root_rule) || !check_left_recursion()) return status_;
  return build(root_rule);
}

bool Parser::parse_rule() {
  const size_t start = pos_;
  const size_t end = name_end(pos_);
  if (end == pos_) return fail(pos_, "expected a rule name, found " + describe(pos_));
  const std::string name(text_.substr(start, end - start));
  pos_ = end;
  skip_space(false);
  if (text_.substr(pos_, 3) != "::=") return fail(pos_, "expected '::=' after the rule name '" + name + "'");
  pos_ += 3;
  const uint32_t rule = rule_named(name, kNoPosition);
  if (rules_[rule].defined) {
    return fail(start, "rule '" + name + "' is defined twice (first at " +
                           line_column(rules_[rule].defined_at) + ")");
  }
  rules_[rule].defined = true;
  rules_[rule].defined_at = start;
  std::vector<std::vector<Element>> alternatives;
  if (!parse_alternatives(alternatives, 0)) return false;
  if (!at_end() && !at_rule_start()) {
    return fail(pos_, "unexpected " + describe(pos_));
  }
  rules_[rule].alternatives = std::move(alternatives);
  return true;
}

bool Parser::parse_alternatives(std::vector<std::vector<Element>>& alternatives, int depth) {
  while (true) {
    alternatives.emplace_back();
    if (!parse_sequence(alternatives.back(), depth)) return false;
    if (peek() != '|') return true;
    ++pos_;
  }
}

bool Parser::parse_sequence(std::vector<Element>& sequence, int depth) {
  while (true) {
    skip_space(true);
    if (at_end() || peek() == '|' || peek() == ')' || at_rule_start()) return true;
    if (!parse_element(sequence, depth)) return false;
  }
}

bool Parser::parse_element(std::vector<Element>& sequence, int depth) {
  const size_t span_start = sequence.size();
  const char c = peek();
  bool ok = true;
  if (c == '"') {
    ok = parse_literal(sequence);
  } else if (c == '[') {
    ok = parse_class(sequence);
  } else if (c == '.') {
    ++pos_;
    ok = add_class({{0, kMaxCodePoint}}, pos_ - 1, sequence);
  } else if (c == '(') {
    ok = parse_group(sequence, depth);
  } else if (is_name_char(c)) {
    const size_t end = name_end(pos_);
    sequence.push_back({ElementKind::kRule, rule_named(text_.substr(pos_, end - pos_), pos_)});
    pos_ = end;
    ok = count_elements(1, pos_);
  } else if (c == '*' || c == '+' || c == '?' || c == '{') {
    return fail(pos_, std::string("nothing to repeat before '") + c + "'");
  } else {
    return fail(pos_, "unexpected " + describe(pos_));
  }
  return ok && parse_postfix(sequence, span_start);
}

bool Parser::parse_literal(std::vector<Element>& sequence) {
  const size_t open = pos_++;
  while (true) {
    if (at_end() || peek() == '\n' || peek() == '\r') {
      return fail(open, "unterminated string (a line break inside a literal is written \\n)");
    }
    if (peek() == '"') break;
    const size_t at = pos_;
    uint32_t code_point = 0;
    if (!parse_char(code_point, false)) return false;
    if (code_point >= kSurrogateLo && code_point <= kSurrogateHi) {
      return fail(at, "a surrogate code point is not a character");
    }
    if (!add_class({{code_point, code_point}}, at, sequence)) return false;
  }
  ++pos_;
  return true;
}

bool Parser::parse_class(std::vector<Element>& sequence) {
  const size_t open = pos_++;
  const bool negated = peek() == '^';
  if (negated) ++pos_;
  std::vector<CodeRange> ranges;
  while (true) {
    if (at_end() || peek() == '\n' || peek() == '\r') return fail(open, "unterminated character class");
    if (peek() == ']') break;
    const size_t at = pos_;
    uint32_t lo = 0;
    if (!parse_char(lo, true)) return false;
    uint32_t hi = lo;
    if (peek() == '-' && peek(1) != ']' && pos_ + 1 < text_.size()) {
      ++pos_;
      if (!parse_char(hi, true)) return false;
      if (hi < lo) return fail(at, "character range is backwards");
    }
    ranges.push_back({lo, hi});
  }
  ++pos_;
  ranges = normalize_class(std::move(ranges), negated);
  if (ranges.empty()) return fail(open, "empty character class (it matches no character)");
  return add_class(std::move(ranges), open, sequence);
}

bool Parser::parse_group(std::vector<Element>& sequence, int depth) {
  const size_t open = pos_++;
  if (depth + 1 > kMaxNesting) {
    return fail(open, "groups nested deeper than " + std::to_string(kMaxNesting));
  }
  std::vector<std::vector<Element>> alternatives;
  if (!parse_alternatives(alternatives, depth + 1)) return false;
  if (peek() != ')') return fail(open, "missing ')' for this '('");
  ++pos_;
  skip_space(false);
  const char next = peek();
  const bool repeated = next == '*' || next == '+' || next == '?' || next == '{';
  if (alternatives.size() == 1 && !repeated) {
    // A plain group is only precedence: its elements join the sequence.
    sequence.insert(sequence.end(), alternatives[0].begin(), alternatives[0].end());
    return true;
  }
  uint32_t rule = 0;
  if (!new_rule(RuleOrigin::kGroup, open, std::move(alternatives), rule)) return false;
  sequence.push_back({ElementKind::kRule, rule});
  return count_elements(1, open);
}

bool Parser::parse_char(uint32_t& code_point, bool in_class) {
  const auto c = static_cast<unsigned char>(peek());
  if (c == '\\') return parse_escape(code_point);
  int length = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (length == 0 || pos_ + length > text_.size()) return fail(pos_, "invalid UTF-8");
  code_point = length == 1 ? c : length == 2 ? c & 0x1F : length == 3 ? c & 0x0F : c & 0x07;
  for (int i = 1; i < length; ++i) {
    const auto b = static_cast<unsigned char>(text_[pos_ + i]);
    if ((b & 0xC0) != 0x80) return fail(pos_, "invalid UTF-8");
    code_point = (code_point << 6) | (b & 0x3F);
  }
  const uint32_t shortest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < shortest[length] || code_point > kMaxCodePoint ||
      (code_point >= kSurrogateLo && code_point <= kSurrogateHi)) {
    return fail(pos_, "invalid UTF-8");
  }
  pos_ += length;
  return true;
}

bool Parser::parse_escape(uint32_t& code_point) {
  const size_t at = pos_;
  const char c = peek(1);
  int digits = 0;
  switch (c) {
    case 'n': code_point = '\n'; break;
    case 't': code_point = '\t'; break;
    case 'r': code_point = '\r'; break;
    case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/':
      code_point = static_cast<unsigned char>(c);
      break;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default:
      if (at + 1 >= text_.size()) return fail(at, "unterminated escape");
      if (c > 0x20 && c < 0x7F) return fail(at, std::string("unknown escape '\\") + c + "'");
      return fail(at, "unknown escape: a backslash before " + describe(at + 1));
  }
  pos_ += 2;
  if (digits == 0) return true;
  uint64_t value = 0;
  for (int i = 0; i < digits; ++i) {
    const int v = hex_value(peek());
    if (v < 0) {
      return fail(at, std::string("'\\") + c + "' needs " + std::to_string(digits) + " hexadecimal digits");
    }
    value = value * 16 + static_cast<uint64_t>(v);
    ++pos_;
  }
  if (value > kMaxCodePoint) return fail(at, "escape is past U+10FFFF, the last code point");
  code_point = static_cast<uint32_t>(value);
  return true;
}

bool Parser::parse_postfix(std::vector<Element>& sequence, size_t span_start) {
  while (true) {
    skip_space(false);
    const size_t op_at = pos_;
    const char c = peek();
    uint32_t min = 0;
    std::optional<uint32_t> max;
    if (c == '*') {
      ++pos_;
    } else if (c == '+') {
      ++pos_;
      min = 1;
    } else if (c == '?') {
      ++pos_;
      max = 1;
    } else if (c == '{') {
      if (!parse_bounds(min, max)) return false;
    } else {
      return true;
    }
    if (!repeat(sequence, span_start, min, max, op_at)) return false;
  }
}

bool Parser::parse_bounds(uint32_t& min, std::optional<uint32_t>& max) {
  const size_t open = pos_++;
  auto number = [&](std::optional<uint32_t>& out) {
    skip_space(false);
    uint64_t value = 0;
    bool any = false;
    while (peek() >= '0' && peek() <= '9') {
      value = std::min<uint64_t>(value * 10 + static_cast<uint64_t>(peek() - '0'), uint64_t{1} << 40);
      ++pos_;
      any = true;
    }
    skip_space(false);
    if (!any) return true;
    if (value > kMaxRepeat) {
      return fail(open, "repetition bound " + std::to_string(value) + " is larger than " +
                            std::to_string(kMaxRepeat));
    }
    out = static_cast<uint32_t>(value);
    return true;
  };
  std::optional<uint32_t> low;
  if (!number(low)) return false;
  if (peek() == '}') {
    if (!low) return fail(open, "expected a number in '{}'");
    ++pos_;
    min = *low;
    max = *low;
    return true;
  }
  if (peek() != ',') return fail(open, "expected {m}, {m,}, {m,n} or {,n}");
  ++pos_;
  std::optional<uint32_t> high;
  if (!number(high)) return false;
  if (peek() != '}') return fail(open, "expected {m}, {m,}, {m,n} or {,n}");
  ++pos_;
  min = low.value_or(0);
  max = high;
  if (max && *max < min) return fail(open, "repetition bounds are backwards");
  return true;
}

// Rewrites the span [span_start, end) of `sequence` as its repetition: x{m,n} is m copies of x followed by
// n - m nested options (x (x (x)?)?)?, which match each count one way only; x{m,} ends in R ::= x R | "".
bool Parser::repeat(std::vector<Element>& sequence, size_t span_start, uint32_t min, std::optional<uint32_t> max,
                    size_t op_at) {
  if (span_start == sequence.size()) return fail(op_at, "nothing to repeat (the expression matches empty text)");
  std::vector<Element> span(sequence.begin() + static_cast<ptrdiff_t>(span_start), sequence.end());
  sequence.resize(span_start);
  Element item = span[0];
  if (span.size() > 1) {
    uint32_t rule = 0;
    if (!new_rule(RuleOrigin::kRepetition, op_at, {span}, rule)) return false;
    item = {ElementKind::kRule, rule};
  }
  const size_t optional_count = max ? *max - min : 1;
  if (!count_elements(min + 2 * optional_count + 1, op_at)) return false;
  sequence.insert(sequence.end(), min, item);
  if (!max) {
    uint32_t star = 0;
    if (!new_rule(RuleOrigin::kRepetition, op_at, {{item}, {}}, star)) return false;
    rules_[star].alternatives[0].push_back({ElementKind::kRule, star});
    sequence.push_back({ElementKind::kRule, star});
    return true;
  }
  std::optional<uint32_t> inner;
  for (uint32_t i = min; i < *max; ++i) {
    std::vector<Element> present{item};
    if (inner) present.push_back({ElementKind::kRule, *inner});
    uint32_t option = 0;
    if (!new_rule(RuleOrigin::kRepetition, op_at, {present, {}}, option)) return false;
    inner = option;
  }
  if (inner) sequence.push_back({ElementKind::kRule, *inner});
  return true;
}

bool Parser::add_class(std::vector<CodeRange> ranges, size_t at, std::vector<Element>& sequence) {
  if (!count_elements(1, at)) return false;
  const auto first = static_cast<uint32_t>(ranges_.size());
  ranges_.insert(ranges_.end(), ranges.begin(), ranges.end());
  classes_.emplace_back(first, static_cast<uint32_t>(ranges.size()));
  sequence.push_back({ElementKind::kChars, static_cast<uint32_t>(classes_.size() - 1)});
  return true;
}

bool Parser::new_rule(RuleOrigin origin, size_t at, std::vector<std::vector<Element>> alternatives, uint32_t& rule) {
  if (rules_.size() >= kMaxRules) {
    return fail(at, "more than " + std::to_string(kMaxRules) + " rules after expanding groups and repetitions");
  }
  rule = static_cast<uint32_t>(rules_.size());
  RuleDraft& draft = rules_.emplace_back();
  draft.origin = origin;
  draft.name = origin == RuleOrigin::kGroup ? "(group)" : "(repetition)";
  draft.alternatives = std::move(alternatives);
  draft.defined = true;
  draft.defined_at = at;
  return true;
}

uint32_t Parser::rule_named(std::string_view name, size_t used_at) {
  const auto [it, inserted] = rule_ids_.try_emplace(std::string(name), static_cast<uint32_t>(rules_.size()));
  if (inserted) rules_.emplace_back().name = std::string(name);
  RuleDraft& draft = rules_[it->second];
  if (used_at != kNoPosition && draft.first_use == kNoPosition) draft.first_use = used_at;
  return it->second;
}

bool Parser::count_elements(size_t count, size_t at) {
  element_count_ += count;
  if (element_count_ + rules_.size() > kMaxElements) {
    return fail(at, "more than " + std::to_string(kMaxElements) + " elements after expanding repetitions");
  }
  return true;
}

bool Parser::check_references(std::string_view root, uint32_t& root_rule) {
  if (rules_.size() > kMaxRules) {
    return fail(text_.size(), "more than " + std::to_string(kMaxRules) + " rules");
  }
  for (const RuleDraft& rule : rules_) {
    if (!rule.defined) return fail(rule.first_use, "undefined rule '" + rule.name + "'");
  }
  const auto it = rule_ids_.find(std::string(root));
  if (it == rule_ids_.end()) return fail(0, "no rule named '" + std::string(root) + "' (the start rule)");
  root_rule = it->second;
  return true;
}

// Linear-time nullability: a rule matches empty text when one of its alternatives consists only of
// references to such rules.
std::vector<bool> Parser::nullable_rules() const {
  std::vector<bool> nullable(rules_.size(), false);
  std::vector<std::pair<uint32_t, uint32_t>> alternative_owner;  // (rule, non-nullable elements left)
  std::vector<std::vector<uint32_t>> used_in(rules_.size());
  std::vector<uint32_t> ready;
  for (uint32_t r = 0; r < rules_.size(); ++r) {
    for (const auto& alternative : rules_[r].alternatives) {
      const bool has_chars = std::any_of(alternative.begin(), alternative.end(),
                                         [](const Element& e) { return e.kind == ElementKind::kChars; });
      if (has_chars) continue;
      const auto index = static_cast<uint32_t>(alternative_owner.size());
      alternative_owner.emplace_back(r, static_cast<uint32_t>(alternative.size()));
      for (const Element& e : alternative) used_in[e.value].push_back(index);
      if (alternative.empty() && !nullable[r]) {
        nullable[r] = true;
        ready.push_back(r);
      }
    }
  }
  while (!ready.empty()) {
    const uint32_t rule = ready.back();
    ready.pop_back();
    for (uint32_t index : used_in[rule]) {
      auto& [owner, left] = alternative_owner[index];
      if (--left == 0 && !nullable[owner]) {
        nullable[owner] = true;
        ready.push_back(owner);
      }
    }
  }
  return nullable;
}

bool Parser::check_left_recursion() {
  const std::vector<bool> nullable = nullable_rules();
  // Edges r -> s: s can be the first rule entered while matching r.
  std::vector<std::vector<uint32_t>> leftmost(rules_.size());
  for (uint32_t r = 0; r < rules_.size(); ++r) {
    for (const auto& alternative : rules_[r].alternatives) {
      for (const Element& e : alternative) {
        if (e.kind != ElementKind::kRule) break;
        leftmost[r].push_back(e.value);
        if (!nullable[e.value]) break;
      }
    }
  }
  enum : uint8_t { kUnvisited, kOnPath, kDone };
  std::vector<uint8_t> mark(rules_.size(), kUnvisited);
  std::vector<std::pair<uint32_t, size_t>> path;  // iterative depth-first search: (rule, next edge)
  for (uint32_t start = 0; start < rules_.size(); ++start) {
    if (mark[start] != kUnvisited) continue;
    path.emplace_back(start, 0);
    mark[start] = kOnPath;
    while (!path.empty()) {
      auto& [rule, edge] = path.back();
      if (edge == leftmost[rule].size()) {
        mark[rule] = kDone;
        path.pop_back();
        continue;
      }
      const uint32_t next = leftmost[rule][edge++];
      if (mark[next] == kOnPath) {
        std::vector<uint32_t> cycle;
        auto from = std::find_if(path.begin(), path.end(), [&](const auto& p) { return p.first == next; });
        for (; from != path.end(); ++from) cycle.push_back(from->first);
        return report_cycle(cycle);
      }
      if (mark[next] == kUnvisited) {
        mark[next] = kOnPath;
        path.emplace_back(next, 0);
      }
    }
  }
  return true;
}

bool Parser::report_cycle(const std::vector<uint32_t>& cycle) {
  for (uint32_t rule : cycle) {
    if (rules_[rule].origin == RuleOrigin::kRepetition) {
      return fail(rules_[rule].defined_at,
                  "this repetition repeats an expression that can match empty text, so it could loop forever");
    }
  }
  std::string names;
  for (uint32_t rule : cycle) {
    if (rules_[rule].origin == RuleOrigin::kNamed) names += rules_[rule].name + " -> ";
  }
  for (uint32_t rule : cycle) {
    if (rules_[rule].origin != RuleOrigin::kNamed) continue;
    return fail(rules_[rule].defined_at,
                "rule '" + rules_[rule].name + "' is left-recursive (" + names + rules_[rule].name +
                    "); write the recursion on the right, e.g. list ::= item (\",\" item)*");
  }
  return fail(rules_[cycle[0]].defined_at, "this group is left-recursive");
}

std::shared_ptr<const Grammar> Parser::build(uint32_t root_rule) const {
  std::vector<Element> elements;
  elements.reserve(element_count_ + rules_.size() * 2);
  std::vector<std::vector<uint32_t>> alternatives(rules_.size());
  for (uint32_t r = 0; r < rules_.size(); ++r) {
    for (const auto& alternative : rules_[r].alternatives) {
      alternatives[r].push_back(static_cast<uint32_t>(elements.size()));
      elements.insert(elements.end(), alternative.begin(), alternative.end());
      elements.push_back({ElementKind::kEnd, 0});
    }
  }
  return std::make_shared<const Grammar>(std::move(elements), std::move(alternatives), ranges_, classes_, root_rule);
}

}  // namespace

Grammar::Grammar(std::vector<Element> elements, std::vector<std::vector<uint32_t>> alternatives,
                 std::vector<CodeRange> ranges, std::vector<std::pair<uint32_t, uint32_t>> classes, uint32_t root)
    : elements_(std::move(elements)),
      alternatives_(std::move(alternatives)),
      ranges_(std::move(ranges)),
      classes_(std::move(classes)),
      root_(root),
      mask_cache_(kMaskCacheBytes) {}

std::span<const CodeRange> Grammar::class_ranges(uint32_t char_class) const {
  const auto [first, count] = classes_[char_class];
  return {ranges_.data() + first, count};
}

bool Grammar::class_contains(uint32_t char_class, uint32_t code_point) const {
  return class_intersects(char_class, code_point, code_point);
}

bool Grammar::class_intersects(uint32_t char_class, uint32_t lo, uint32_t hi) const {
  const auto ranges = class_ranges(char_class);
  // The first range that ends at or after lo; it intersects when it starts at or before hi.
  const auto it = std::lower_bound(ranges.begin(), ranges.end(), lo,
                                   [](const CodeRange& r, uint32_t value) { return r.hi < value; });
  return it != ranges.end() && it->lo <= hi;
}

std::string MaskCache::full_key(uint64_t index_id, const std::string& state_key) {
  std::string key(sizeof index_id, '\0');
  std::memcpy(key.data(), &index_id, sizeof index_id);
  return key + state_key;
}

std::shared_ptr<const TokenMask> MaskCache::find(uint64_t index_id, const std::string& state_key) {
  const std::string key = full_key(index_id, state_key);
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  recent_.splice(recent_.begin(), recent_, it->second);
  return it->second->mask;
}

void MaskCache::insert(uint64_t index_id, const std::string& state_key, std::shared_ptr<const TokenMask> mask) {
  std::string key = full_key(index_id, state_key);
  const size_t bytes = key.size() + mask->size() * sizeof(uint64_t);
  if (bytes > max_bytes_) return;
  std::lock_guard lock(mutex_);
  if (entries_.count(key) != 0) return;
  recent_.push_front({key, std::move(mask)});
  entries_.emplace(std::move(key), recent_.begin());
  bytes_ += bytes;
  while (bytes_ > max_bytes_) {
    const Entry& oldest = recent_.back();
    bytes_ -= oldest.key.size() + oldest.mask->size() * sizeof(uint64_t);
    entries_.erase(oldest.key);
    recent_.pop_back();
  }
}

size_t MaskCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

Result<std::shared_ptr<const Grammar>> parse_gbnf(std::string_view text, std::string_view root) {
  return Parser(text).parse(root);
}

}  // namespace pagedlm::grammar
