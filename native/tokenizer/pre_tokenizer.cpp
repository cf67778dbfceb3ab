#include "tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "tokenizer/unicode.h"

namespace pagedlm {

namespace {

// Reads code points of one piece; positions at or past its end read as kNone, which is in no class.
constexpr uint32_t kNone = 0xFFFFFFFF;

class Piece {
 public:
  Piece(const std::vector<uint32_t>& cps, size_t end) : cps_(cps), end_(end) {}
  uint32_t operator[](size_t pos) const { return pos < end_ ? cps_[pos] : kNone; }
  size_t end() const { return end_; }
  template <typename Pred>
  size_t run(size_t pos, Pred pred, size_t limit = SIZE_MAX) const {
    size_t n = 0;
    while (n < limit && pred((*this)[pos + n])) ++n;
    return n;
  }

 private:
  const std::vector<uint32_t>& cps_;
  size_t end_;
};

bool is_space(uint32_t c) { return c != kNone && is_unicode_whitespace(c); }
bool is_letter(uint32_t c) { return c != kNone && is_unicode_letter(c); }
bool is_number(uint32_t c) { return c != kNone && is_unicode_number(c); }
bool is_newline(uint32_t c) { return c == '\r' || c == '\n'; }
// [^\s\p{L}\p{N}]
bool is_other(uint32_t c) { return c != kNone && !is_unicode_whitespace(c) && !is_unicode_letter(c) && !is_unicode_number(c); }
// [^\r\n\p{L}\p{N}]: the optional lead character before a run of letters.
bool is_letter_lead(uint32_t c) { return c != kNone && !is_newline(c) && !is_unicode_letter(c) && !is_unicode_number(c); }
uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

// 's 't 're 've 'm 'll 'd at pos (ASCII letters; in either case when `any_case`): its length, or 0.
size_t contraction(const Piece& p, size_t pos, bool any_case) {
  if (p[pos] != '\'') return 0;
  const auto fold = [&](uint32_t c) { return any_case ? ascii_lower(c) : c; };
  const uint32_t a = fold(p[pos + 1]);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const uint32_t b = fold(p[pos + 2]);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// \s*[\r\n]+ (when `newline_rule`) | \s+(?!\S) | \s+ : a whitespace run ending in a line break takes
// everything up to its last break; otherwise the run leaves its last character to a word that follows.
size_t whitespace(const Piece& p, size_t pos, bool newline_rule) {
  const size_t n = p.run(pos, is_space);
  if (n == 0) return 0;
  if (newline_rule) {
    for (size_t back = n; back > 0; --back) {
      if (is_newline(p[pos + back - 1])) return back;
    }
  }
  if (n > 1 && pos + n < p.end()) return n - 1;
  return n;
}

// ` ?X+` where a leading ASCII space joins a run of class X.
template <typename Pred>
size_t space_then_run(const Piece& p, size_t pos, Pred pred) {
  const size_t lead = p[pos] == ' ' ? 1 : 0;
  const size_t n = p.run(pos + lead, pred);
  return n > 0 ? lead + n : 0;
}

// ---- GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ --------------

size_t gpt2(const std::vector<uint32_t>& cps, size_t pos, size_t end) {
  const Piece p(cps, end);
  if (size_t n = contraction(p, pos, false)) return n;
  if (size_t n = space_then_run(p, pos, is_letter)) return n;
  if (size_t n = space_then_run(p, pos, is_number)) return n;
  if (size_t n = space_then_run(p, pos, is_other)) return n;
  return whitespace(p, pos, false);
}

// ---- Llama 3 and Qwen 2 -------------------------------------------------------------------------------
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
// \s+(?!\S)|\s+   with D = 3 (Llama 3) or 1 (Qwen 2: digits one by one).

template <size_t kDigits>
size_t llama3_family(const std::vector<uint32_t>& cps, size_t pos, size_t end) {
  const Piece p(cps, end);
  if (size_t n = contraction(p, pos, true)) return n;
  const size_t lead = is_letter_lead(p[pos]) ? 1 : 0;
  if (size_t n = p.run(pos + lead, is_letter)) return lead + n;
  if (size_t n = p.run(pos, is_number, kDigits)) return n;
  if (size_t n = space_then_run(p, pos, is_other)) return n + p.run(pos + n, is_newline);
  return whitespace(p, pos, true);
}

// ---- GPT-4o and Tekken --------------------------------------------------------------------------------
// [^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+C?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+
// ((?=[\p{L}])([^A-Z]))*C?|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
// as llama.cpp writes them: "upper" is a letter other than a-z and "lower" a letter other than A-Z, so a
// non-ASCII letter is both. C is an optional contraction (GPT-4o only); D = 3 (GPT-4o) or 1 (Tekken).

bool is_upper_like(uint32_t c) { return is_letter(c) && !(c >= 'a' && c <= 'z'); }
bool is_lower_like(uint32_t c) { return is_letter(c) && !(c >= 'A' && c <= 'Z'); }

// upper*lower+ | upper+lower* at pos, with the backtracking a regex engine does; 0 when neither matches.
size_t cased_word(const Piece& p, size_t pos) {
  const size_t upper = p.run(pos, is_upper_like);
  for (size_t u = upper + 1; u-- > 0;) {
    if (is_lower_like(p[pos + u])) return u + p.run(pos + u, is_lower_like);
  }
  return upper;
}

template <bool kContractions, size_t kDigits>
size_t gpt4o_family(const std::vector<uint32_t>& cps, size_t pos, size_t end) {
  const Piece p(cps, end);
  const size_t lead = is_letter_lead(p[pos]) ? 1 : 0;
  if (size_t n = cased_word(p, pos + lead)) {
    n += lead;
    return kContractions ? n + contraction(p, pos + n, true) : n;
  }
  if (size_t n = p.run(pos, is_number, kDigits)) return n;
  if (size_t n = space_then_run(p, pos, is_other)) return n + p.run(pos + n, [](uint32_t c) { return is_newline(c) || c == '/'; });
  return whitespace(p, pos, true);
}

// ---- single-class stages --------------------------------------------------------------------------------

size_t one_number(const std::vector<uint32_t>& cps, size_t pos, size_t end) { return is_number(Piece(cps, end)[pos]) ? 1 : 0; }

size_t number_run(const std::vector<uint32_t>& cps, size_t pos, size_t end) { return Piece(cps, end).run(pos, is_number); }

// [\p{P}\$\+<=>\^~\|]+ : punctuation and the ASCII symbols it names (not the backtick).
size_t punctuation_run(const std::vector<uint32_t>& cps, size_t pos, size_t end) {
  return Piece(cps, end).run(pos, [](uint32_t c) {
    if (c == kNone) return false;
    if (c < 0x80 && is_unicode_symbol(c)) return c != '`';
    return is_unicode_punctuation(c);
  });
}

// [0-9][0-9][0-9]
size_t three_ascii_digits(const std::vector<uint32_t>& cps, size_t pos, size_t end) {
  const size_t n = Piece(cps, end).run(pos, [](uint32_t c) { return c >= '0' && c <= '9'; }, 3);
  return n == 3 ? 3 : 0;
}

// ---- DeepSeek LLM: [\r\n] | \s?[cased letters]+ | \s?[ASCII and fullwidth punctuation]+ | \s+$ |
// [CJK, Hangul]+ | \p{N}+, each a stage of its own, with the character sets of DeepSeek LLM's tokenizer.json.

struct Range {
  uint32_t first, last;
};

bool in_ranges(uint32_t c, const Range* ranges, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (c >= ranges[i].first && c <= ranges[i].last) return true;
  }
  return false;
}

// Cased letters (upper, lower and title case, with U+00B5) of the scripts that have case.
constexpr Range kDeepseekCasedLetters[] = {
    {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},       {0xD8, 0xF6},       {0xF8, 0x1BA},
    {0x1BC, 0x1BF},     {0x1C4, 0x293},     {0x295, 0x2AF},     {0x370, 0x373},     {0x376, 0x377},     {0x37B, 0x37D},
    {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},     {0x38E, 0x3A1},     {0x3A3, 0x3F5},
    {0x3F7, 0x481},     {0x48A, 0x52F},     {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},   {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},   {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},   {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},
    {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},   {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},   {0x2119, 0x211D},   {0x2124, 0x2124},
    {0x2126, 0x2126},   {0x2128, 0x2128},   {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},   {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},   {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},   {0xFF41, 0xFF5A},   {0x10400, 0x1044F},
    {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
// ASCII punctuation and symbols (with the letters between them), fullwidth forms, quotation marks, CJK
// punctuation.
constexpr Range kDeepseekPunctuation[] = {{0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002}};
constexpr Range kDeepseekCjk[] = {{0x4E00, 0x9FA5}, {0x800, 0x4E00}, {0xAC00, 0xD7FF}};

// llama.cpp matches these sets with non-ASCII whitespace replaced by U+000B, so U+3000 (in the punctuation
// set) and the spaces inside the CJK ranges never match them.
bool is_wide_whitespace(uint32_t c) { return c >= 0x80 && is_unicode_whitespace(c); }

// \s?[set]+
template <const Range* kSet, size_t kCount>
size_t space_then_set(const std::vector<uint32_t>& cps, size_t pos, size_t end) {
  const Piece p(cps, end);
  const auto in_set = [](uint32_t c) { return c != kNone && !is_wide_whitespace(c) && in_ranges(c, kSet, kCount); };
  const size_t lead = is_space(p[pos]) && in_set(p[pos + 1]) ? 1 : 0;
  const size_t n = p.run(pos + lead, in_set);
  return n > 0 ? lead + n : 0;
}

size_t one_newline(const std::vector<uint32_t>& cps, size_t pos, size_t end) { return is_newline(Piece(cps, end)[pos]) ? 1 : 0; }

// \s+$ : whitespace reaching the end of the piece.
size_t trailing_whitespace(const std::vector<uint32_t>& cps, size_t pos, size_t end) {
  const size_t n = Piece(cps, end).run(pos, is_space);
  return n > 0 && pos + n == end ? n : 0;
}

size_t cjk_run(const std::vector<uint32_t>& cps, size_t pos, size_t end) {
  return Piece(cps, end).run(pos, [](uint32_t c) { return c != kNone && !is_wide_whitespace(c) && in_ranges(c, kDeepseekCjk, std::size(kDeepseekCjk)); });
}

// ---- the registry ----------------------------------------------------------------------------------------

struct Entry {
  std::vector<std::string> names;
  PreTokenizer pre_tokenizer;
};

const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries = [] {
    const PreTokenizer::Matcher cased = space_then_set<kDeepseekCasedLetters, std::size(kDeepseekCasedLetters)>;
    const PreTokenizer::Matcher punct = space_then_set<kDeepseekPunctuation, std::size(kDeepseekPunctuation)>;
    std::vector<Entry> e;
    // llama.cpp's choice for "default" and for files without the key.
    e.push_back({{"default"}, PreTokenizer({punctuation_run, gpt2, number_run, three_ascii_digits}, false)});
    e.push_back({{"gpt-2", "phi-2", "mpt", "olmo", "jais", "roberta-bpe", "exaone4", "trillion"}, PreTokenizer({gpt2}, false)});
    e.push_back({{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"},
                 PreTokenizer({llama3_family<3>}, true)});
    e.push_back({{"dbrx", "smaug-bpe", "chatglm-bpe", "glm4"}, PreTokenizer({llama3_family<3>}, false)});
    e.push_back({{"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"}, PreTokenizer({llama3_family<1>}, false)});
    e.push_back({{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"}, PreTokenizer({one_number, gpt2}, false)});
    e.push_back({{"gpt-4o", "llama4", "minimax-m2"}, PreTokenizer({gpt4o_family<true, 3>}, false)});
    e.push_back({{"tekken"}, PreTokenizer({gpt4o_family<false, 1>}, true)});
    e.push_back({{"deepseek-llm"}, PreTokenizer({one_newline, cased, punct, trailing_whitespace, cjk_run, number_run}, false)});
    return e;
  }();
  return entries;
}

}  // namespace

const PreTokenizer* PreTokenizer::find(std::string_view name) {
  for (const Entry& entry : registry()) {
    if (std::find(entry.names.begin(), entry.names.end(), name) != entry.names.end()) return &entry.pre_tokenizer;
  }
  return nullptr;
}

std::vector<std::string> PreTokenizer::names() {
  std::vector<std::string> out;
  for (const Entry& entry : registry()) out.insert(out.end(), entry.names.begin(), entry.names.end());
  return out;
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<uint32_t> cps;
  std::vector<size_t> byte_at;  // byte offset of each code point, and the text's length last
  for (size_t pos = 0; pos < text.size();) {
    size_t length;
    cps.push_back(utf8_decode(text, pos, &length));
    byte_at.push_back(pos);
    pos += length;
  }
  byte_at.push_back(text.size());

  // Pieces as [begin, end) code point ranges; each stage splits every piece further.
  std::vector<std::pair<size_t, size_t>> pieces = {{0, cps.size()}};
  std::vector<std::pair<size_t, size_t>> next;
  for (Matcher match : stages_) {
    next.clear();
    for (auto [begin, end] : pieces) {
      size_t unmatched = begin;
      for (size_t pos = begin; pos < end;) {
        const size_t n = match(cps, pos, end);
        if (n == 0) {
          ++pos;
          continue;
        }
        if (unmatched < pos) next.emplace_back(unmatched, pos);
        next.emplace_back(pos, pos + n);
        pos += n;
        unmatched = pos;
      }
      if (unmatched < end) next.emplace_back(unmatched, end);
    }
    pieces.swap(next);
  }

  std::vector<std::string_view> words;
  words.reserve(pieces.size());
  for (auto [begin, end] : pieces) {
    if (begin < end) words.push_back(text.substr(byte_at[begin], byte_at[end] - byte_at[begin]));
  }
  return words;
}

}  // namespace pagedlm
