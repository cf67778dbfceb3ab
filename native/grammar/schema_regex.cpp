#include "grammar/schema_regex.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "tokenizer/unicode.h"

namespace pagedlm::grammar::schema {
namespace {

constexpr uint32_t kMaxCodepoint = 0x10FFFF;
constexpr uint32_t kSurrogateLo = 0xD800;
constexpr uint32_t kSurrogateHi = 0xDFFF;
constexpr size_t kUnbounded = std::numeric_limits<size_t>::max();
// Groups nested deeper than this are refused: the translator recurses once per group.
constexpr int kMaxGroupDepth = 32;

bool contains(const CodepointSet& set, uint32_t cp) {
  auto it = std::upper_bound(set.begin(), set.end(), cp, [](uint32_t v, const CodepointRange& r) { return v < r.lo; });
  return it != set.begin() && std::prev(it)->hi >= cp;
}

void append_hex_escape(std::string& out, uint32_t byte) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02X", byte);
  out += buf;
}

// One code point inside a GBNF class. Class syntax characters and controls are hex escapes, which every
// GBNF reader takes the same way.
void append_class_char(std::string& out, uint32_t cp) {
  if (cp == '\\') {
    out += "\\\\";
  } else if (cp < 0x20 || cp == 0x7F || cp == '[' || cp == ']' || cp == '^' || cp == '-') {
    append_hex_escape(out, cp);
  } else {
    utf8_append(out, cp);
  }
}

// The canonical JSON escape of a character JSON does not allow raw in a string.
std::string json_escape(uint32_t cp) {
  switch (cp) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\b': return "\\b";
    case '\f': return "\\f";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default: {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      return buf;
    }
  }
}

const CodepointSet& json_raw_chars() {
  static const CodepointSet set = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, kSurrogateLo - 1}, {kSurrogateHi + 1, kMaxCodepoint}};
  return set;
}

CodepointSet single(uint32_t cp) { return {{cp, cp}}; }

CodepointSet digit_set() { return {{'0', '9'}}; }
CodepointSet word_set() { return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}; }
CodepointSet space_set() {
  return normalized({{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A}, {0x2028, 0x2029},
                     {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}});
}
CodepointSet dot_set() { return complement({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}); }

size_t saturating_mul(size_t a, size_t b) {
  if (a != 0 && b > std::numeric_limits<size_t>::max() / a) return std::numeric_limits<size_t>::max();
  return a * b;
}
size_t saturating_add(size_t a, size_t b) {
  return b > std::numeric_limits<size_t>::max() - a ? std::numeric_limits<size_t>::max() : a + b;
}

// A translated piece of pattern: `text` is one GBNF primary (literal, class, group) or empty when the piece
// matches only the empty string; `weight` approximates its size with repetitions expanded.
struct Piece {
  std::string text;
  size_t weight = 0;
  bool nullable = true;  // matches the empty string
};

class PatternTranslator {
 public:
  PatternTranslator(std::u32string pattern, const std::string& any_char_rule, size_t max_repeat, size_t max_weight)
      : pattern_(std::move(pattern)), any_char_(any_char_rule), max_repeat_(max_repeat), max_weight_(max_weight) {}

  std::string translate() {
    Piece whole = alternation(0);
    if (pos_ < pattern_.size()) fail("unmatched ')'");
    return whole.text;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw PatternError(pos_, what); }
  bool at_end() const { return pos_ >= pattern_.size(); }
  char32_t peek(size_t ahead = 0) const { return pos_ + ahead < pattern_.size() ? pattern_[pos_ + ahead] : 0; }
  char32_t next() {
    if (at_end()) fail("unexpected end of pattern");
    return pattern_[pos_++];
  }

  void check_weight(size_t weight) const {
    if (weight > max_weight_) fail("pattern is too large once its repetitions are expanded");
  }

  Piece alternation(int depth) {
    std::vector<Piece> branches{sequence(depth)};
    while (peek() == '|' && !at_end()) {
      ++pos_;
      branches.push_back(sequence(depth));
    }
    if (branches.size() == 1) return branches[0];
    Piece out;
    bool has_empty = false;
    std::string joined;
    out.nullable = false;
    for (const Piece& branch : branches) {
      out.weight = saturating_add(out.weight, branch.weight);
      out.nullable = out.nullable || branch.nullable;
      if (branch.text.empty()) {
        has_empty = true;
        continue;
      }
      joined += joined.empty() ? branch.text : " | " + branch.text;
    }
    check_weight(out.weight);
    if (!joined.empty()) out.text = "( " + joined + " )" + (has_empty ? "?" : "");
    return out;
  }

  // One branch. At the top level (depth 0) ^ may open it and $ may close it; elsewhere anchors are refused.
  Piece sequence(int depth) {
    bool anchored_start = false;
    bool anchored_end = false;
    if (depth == 0 && peek() == '^' && !at_end()) {
      ++pos_;
      anchored_start = true;
    }
    Piece out;
    while (!at_end() && peek() != '|' && peek() != ')') {
      if (peek() == '^') fail("'^' is supported only at the start of the pattern or of a top-level alternative");
      if (peek() == '$') {
        ++pos_;
        if (depth == 0 && (at_end() || peek() == '|')) {
          anchored_end = true;
          break;
        }
        fail("'$' is supported only at the end of the pattern or of a top-level alternative");
      }
      Piece piece = quantified(atom(depth));
      out.weight = saturating_add(out.weight, piece.weight);
      out.nullable = out.nullable && piece.nullable;
      check_weight(out.weight);
      if (!piece.text.empty()) out.text += out.text.empty() ? piece.text : " " + piece.text;
    }
    if (depth == 0) open_ends(out, anchored_start, anchored_end);
    return out;
  }

  // JSON Schema's pattern searches the string: an end without an anchor admits any text beyond the match.
  void open_ends(Piece& piece, bool anchored_start, bool anchored_end) const {
    const std::string any = any_char_ + "*";
    if (piece.text.empty()) {
      if (!anchored_start || !anchored_end) piece.text = "( " + any + " )";
      return;
    }
    if (!anchored_start) piece.text = any + " " + piece.text;
    if (!anchored_end) piece.text += " " + any;
    piece.text = "( " + piece.text + " )";
  }

  Piece atom(int depth) {
    char32_t c = next();
    switch (c) {
      case '(': return group(depth);
      case '[': return from_set(class_set());
      case '.': return from_set(dot_set());
      case '\\': return from_set(escape(false));
      case '*':
      case '+':
      case '?': --pos_; fail("nothing to repeat");
      case '{': --pos_; fail("'{' must be escaped (\\{) where it is not a quantifier");
      case '}': --pos_; fail("'}' must be escaped (\\})");
      case ']': --pos_; fail("']' must be escaped (\\])");
      default: return from_set(single(c));
    }
  }

  Piece group(int depth) {
    if (depth + 1 > kMaxGroupDepth) fail("groups are nested too deeply");
    if (peek() == '?') {
      if (peek(1) == ':') {
        pos_ += 2;
      } else if (peek(1) == '=' || peek(1) == '!' || (peek(1) == '<' && (peek(2) == '=' || peek(2) == '!'))) {
        fail("lookahead and lookbehind assertions are not supported");
      } else if (peek(1) == '<') {
        pos_ += 2;
        while (!at_end() && peek() != '>') ++pos_;
        if (at_end()) fail("unterminated group name");
        ++pos_;
      } else {
        fail("unknown group syntax '(?'");
      }
    }
    Piece inner = alternation(depth + 1);
    if (at_end() || peek() != ')') fail("missing ')'");
    ++pos_;
    if (!inner.text.empty()) inner.text = "( " + inner.text + " )";
    return inner;
  }

  Piece from_set(const CodepointSet& set) const {
    if (set.empty()) fail("the character class matches no character");
    return {json_char_gbnf(set), 1, false};
  }

  // Reads a quantifier after `piece`, if any.
  Piece quantified(Piece piece) {
    if (at_end()) return piece;
    size_t min = 0;
    size_t max = 0;
    std::string suffix;
    const char32_t c = peek();
    if (c == '*') {
      min = 0, max = kUnbounded, suffix = "*";
      ++pos_;
    } else if (c == '+') {
      min = 1, max = kUnbounded, suffix = "+";
      ++pos_;
    } else if (c == '?') {
      min = 0, max = 1, suffix = "?";
      ++pos_;
    } else if (c == '{') {
      if (!braces(min, max)) fail("'{' must be escaped (\\{) where it is not a quantifier");
      suffix = "{";
      suffix += std::to_string(min);
      if (max != min) suffix += ",";
      if (max != min && max != kUnbounded) suffix += std::to_string(max);
      suffix += "}";
    } else {
      return piece;
    }
    if (peek() == '?' && !at_end()) ++pos_;  // lazy: the same language
    if (!at_end() && (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{')) fail("nothing to repeat");
    if (max != kUnbounded && min > max) fail("quantifier range out of order");
    if ((max != kUnbounded && max > max_repeat_) || min > max_repeat_) {
      fail("repetition count above " + std::to_string(max_repeat_) + " is not supported");
    }
    if (max == 0 || piece.text.empty()) return {"", 0, true};
    if (min == 1 && max == 1) return piece;
    // A grammar may not repeat what matches empty text (it could loop without consuming).
    if (piece.nullable) fail("a quantifier on a group that can match the empty string is not supported");
    piece.nullable = min == 0;
    piece.weight = saturating_mul(piece.weight, std::max<size_t>(1, max == kUnbounded ? min : max));
    check_weight(piece.weight);
    piece.text += suffix;
    return piece;
  }

  // {m}, {m,} or {m,n}; false (position unchanged) when the brace does not start one.
  bool braces(size_t& min, size_t& max) {
    size_t p = pos_ + 1;
    auto number = [&](size_t& value) {
      size_t start = p;
      value = 0;
      while (p < pattern_.size() && pattern_[p] >= '0' && pattern_[p] <= '9') {
        value = std::min<size_t>(value * 10 + (pattern_[p] - '0'), 1u << 30);
        ++p;
      }
      return p > start;
    };
    if (!number(min)) return false;
    max = min;
    if (p < pattern_.size() && pattern_[p] == ',') {
      ++p;
      if (!number(max)) max = kUnbounded;
    }
    if (p >= pattern_.size() || pattern_[p] != '}') return false;
    pos_ = p + 1;
    return true;
  }

  uint32_t hex_digits(size_t count) {
    uint32_t value = 0;
    for (size_t i = 0; i < count; ++i) {
      char32_t h = next();
      int digit = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
      if (digit < 0) fail("invalid hexadecimal escape");
      value = value * 16 + static_cast<uint32_t>(digit);
    }
    return value;
  }

  uint32_t unicode_escape() {
    uint32_t cp = 0;
    if (peek() == '{') {
      ++pos_;
      size_t digits = 0;
      while (peek() != '}') {
        cp = cp * 16 + hex_digits(1);
        if (++digits > 6 || cp > kMaxCodepoint) fail("\\u{...} escape out of range");
      }
      ++pos_;
      if (digits == 0) fail("empty \\u{} escape");
    } else {
      cp = hex_digits(4);
    }
    if (cp >= kSurrogateLo && cp <= kSurrogateHi) fail("surrogate code points are not supported in patterns");
    return cp;
  }

  // After a backslash: the set the escape stands for. `in_class`: \b is backspace there, a word boundary
  // outside.
  CodepointSet escape(bool in_class) {
    char32_t c = next();
    switch (c) {
      case 'd': return digit_set();
      case 'D': return complement(digit_set());
      case 'w': return word_set();
      case 'W': return complement(word_set());
      case 's': return space_set();
      case 'S': return complement(space_set());
      case 'n': return single('\n');
      case 'r': return single('\r');
      case 't': return single('\t');
      case 'f': return single('\f');
      case 'v': return single('\v');
      case 'x': return single(hex_digits(2));
      case 'u': return single(unicode_escape());
      case '0':
        if (peek() >= '0' && peek() <= '9') fail("octal escapes are not supported");
        return single(0);
      case 'c': {
        char32_t letter = next();
        if (!((letter >= 'a' && letter <= 'z') || (letter >= 'A' && letter <= 'Z'))) fail("invalid \\c escape");
        return single(letter % 32);
      }
      case 'b':
        if (in_class) return single('\b');
        fail("word boundaries (\\b) are not supported");
      case 'B': fail("word boundaries (\\B) are not supported");
      case 'k': fail("backreferences are not supported");
      case 'p':
      case 'P': fail("Unicode property escapes (\\p) are not supported");
      default: break;
    }
    if (c >= '1' && c <= '9') fail("backreferences are not supported");
    if (std::u32string_view(U"^$\\.*+?()[]{}|/-").find(c) != std::u32string_view::npos) return single(c);
    --pos_;
    fail("unknown escape");
  }

  CodepointSet class_set() {
    bool negated = false;
    if (peek() == '^' && !at_end()) {
      ++pos_;
      negated = true;
    }
    CodepointSet set;
    while (true) {
      if (at_end()) fail("unterminated character class");
      if (peek() == ']') {
        ++pos_;
        break;
      }
      CodepointSet first = class_atom();
      if (peek() == '-' && peek(1) != ']' && pos_ + 1 < pattern_.size()) {
        ++pos_;
        CodepointSet last = class_atom();
        if (first.size() != 1 || first[0].lo != first[0].hi || last.size() != 1 || last[0].lo != last[0].hi) {
          fail("a class escape cannot bound a range");
        }
        if (last[0].lo < first[0].lo) fail("character range out of order");
        set.push_back({first[0].lo, last[0].lo});
      } else {
        set.insert(set.end(), first.begin(), first.end());
      }
    }
    return negated ? complement(normalized(std::move(set))) : normalized(std::move(set));
  }

  CodepointSet class_atom() {
    char32_t c = next();
    if (c == '\\') return escape(true);
    return single(c);
  }

  std::u32string pattern_;
  const std::string& any_char_;
  size_t max_repeat_;
  size_t max_weight_;
  size_t pos_ = 0;
};

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  for (size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    const size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > text.size()) throw PatternError(out.size(), "the pattern is not valid UTF-8");
    uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t k = 1; k < len; ++k) {
      const auto cont = static_cast<unsigned char>(text[i + k]);
      if ((cont >> 6) != 2) throw PatternError(out.size(), "the pattern is not valid UTF-8");
      cp = (cp << 6) | (cont & 0x3F);
    }
    out += static_cast<char32_t>(cp);
    i += len;
  }
  return out;
}

}  // namespace

CodepointSet normalized(CodepointSet set) {
  std::sort(set.begin(), set.end(), [](const CodepointRange& a, const CodepointRange& b) { return a.lo < b.lo; });
  CodepointSet out;
  for (const CodepointRange& r : set) {
    if (!out.empty() && r.lo <= out.back().hi + 1) {
      out.back().hi = std::max(out.back().hi, r.hi);
    } else {
      out.push_back(r);
    }
  }
  return out;
}

CodepointSet complement(const CodepointSet& set) {
  CodepointSet out;
  uint32_t next = 0;
  for (const CodepointRange& r : normalized(set)) {
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= kMaxCodepoint) out.push_back({next, kMaxCodepoint});
  return intersection(out, {{0, kSurrogateLo - 1}, {kSurrogateHi + 1, kMaxCodepoint}});
}

CodepointSet intersection(const CodepointSet& a, const CodepointSet& b) {
  CodepointSet out;
  for (const CodepointRange& x : a) {
    for (const CodepointRange& y : b) {
      const uint32_t lo = std::max(x.lo, y.lo);
      const uint32_t hi = std::min(x.hi, y.hi);
      if (lo <= hi) out.push_back({lo, hi});
    }
  }
  return normalized(std::move(out));
}

std::string gbnf_literal(std::string_view utf8) {
  std::string out = "\"";
  for (char ch : utf8) {
    const auto b = static_cast<unsigned char>(ch);
    if (b == '"' || b == '\\') {
      out += '\\';
      out += ch;
    } else if (b == '\n') {
      out += "\\n";
    } else if (b == '\r') {
      out += "\\r";
    } else if (b == '\t') {
      out += "\\t";
    } else if (b < 0x20 || b == 0x7F) {
      append_hex_escape(out, b);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string gbnf_class(const CodepointSet& set) {
  std::string out = "[";
  for (const CodepointRange& r : set) {
    append_class_char(out, r.lo);
    if (r.hi != r.lo) {
      out += '-';
      append_class_char(out, r.hi);
    }
  }
  return out + "]";
}

std::string json_char_gbnf(const CodepointSet& set) {
  std::vector<std::string> alternatives;
  const CodepointSet raw = intersection(set, json_raw_chars());
  if (raw.size() == 1 && raw[0].lo == raw[0].hi) {
    std::string one;
    utf8_append(one, raw[0].lo);
    alternatives.push_back(gbnf_literal(one));
  } else if (!raw.empty()) {
    alternatives.push_back(gbnf_class(raw));
  }
  std::vector<uint32_t> escaped;
  for (uint32_t cp = 0; cp < 0x20; ++cp) {
    if (contains(set, cp)) escaped.push_back(cp);
  }
  for (uint32_t cp : {uint32_t{'"'}, uint32_t{'\\'}}) {
    if (contains(set, cp)) escaped.push_back(cp);
  }
  // JSON may also escape the solidus; serializers that guard against "</script>" do.
  if (contains(set, '/')) alternatives.push_back(gbnf_literal("\\/"));
  if (escaped.size() == 0x20 + 2) {
    alternatives.push_back("\"\\\\\" ( [\"\\\\bfnrt] | \"u00\" [01] [0-9a-fA-F] )");
  } else {
    for (uint32_t cp : escaped) alternatives.push_back(gbnf_literal(json_escape(cp)));
  }
  if (alternatives.size() == 1) return alternatives[0];
  std::string out = "(";
  for (size_t i = 0; i < alternatives.size(); ++i) out += (i == 0 ? " " : " | ") + alternatives[i];
  return out + " )";
}

std::string pattern_to_gbnf(std::string_view pattern, const std::string& any_char_rule, size_t max_repeat,
                            size_t max_weight) {
  return PatternTranslator(decode_utf8(pattern), any_char_rule, max_repeat, max_weight).translate();
}

}  // namespace pagedlm::grammar::schema
