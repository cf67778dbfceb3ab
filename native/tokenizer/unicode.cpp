#include "tokenizer/unicode.h"

#include <algorithm>

namespace pagedlm {

size_t utf8_sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

uint32_t utf8_decode(std::string_view text, size_t pos, size_t* length) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const size_t n = utf8_sequence_length(lead);
  *length = 1;
  if (n == 1) return lead < 0x80 ? lead : 0xFFFD;
  if (pos + n > text.size()) return 0xFFFD;
  uint32_t cp = lead & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) {
    const auto c = static_cast<uint8_t>(text[pos + i]);
    if ((c & 0xC0) != 0x80) return 0xFFFD;
    cp = (cp << 6) | (c & 0x3F);
  }
  static const uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMinimum[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0xFFFD;
  *length = n;
  return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

size_t utf8_incomplete_tail(std::string_view text) {
  // A sequence is at most 4 bytes: look back at most 3 bytes for a lead byte.
  for (size_t back = 1; back <= 3 && back <= text.size(); ++back) {
    const auto c = static_cast<uint8_t>(text[text.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const size_t need = utf8_sequence_length(c);
    return need > back ? back : 0;
  }
  return 0;
}

std::string utf8_sanitize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    size_t length;
    const uint32_t cp = utf8_decode(text, pos, &length);
    if (cp == 0xFFFD && length == 1) {
      utf8_append(out, 0xFFFD);
    } else {
      out.append(text.substr(pos, length));
    }
    pos += length;
  }
  return out;
}

GeneralCategory unicode_category(uint32_t cp) {
  using unicode_tables::kCategoryRunCount;
  using unicode_tables::kCategoryRuns;
  if (cp >= 0x110000) return GeneralCategory::kUnassigned;
  // The last run starting at or before cp.
  const auto* end = kCategoryRuns + kCategoryRunCount;
  const auto* run = std::upper_bound(kCategoryRuns, end, cp, [](uint32_t c, const unicode_tables::CategoryRun& r) { return c < r.first; });
  return (run - 1)->category;
}

const char* unicode_version() { return unicode_tables::kUnicodeVersion; }

bool is_unicode_whitespace(uint32_t cp) {
  using unicode_tables::kWhitespaceRangeCount;
  using unicode_tables::kWhitespaceRanges;
  for (size_t i = 0; i < kWhitespaceRangeCount && kWhitespaceRanges[i].first <= cp; ++i) {
    if (cp <= kWhitespaceRanges[i].last) return true;
  }
  return false;
}

namespace {
bool category_between(uint32_t cp, GeneralCategory first, GeneralCategory last) {
  const GeneralCategory c = unicode_category(cp);
  return c >= first && c <= last;
}
}  // namespace

bool is_unicode_letter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return category_between(cp, GeneralCategory::kUppercaseLetter, GeneralCategory::kOtherLetter);
}

// No mark precedes U+0300 (the first combining diacritic): ASCII text skips the table search.
bool is_unicode_mark(uint32_t cp) { return cp >= 0x300 && category_between(cp, GeneralCategory::kNonspacingMark, GeneralCategory::kEnclosingMark); }

bool is_unicode_number(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return category_between(cp, GeneralCategory::kDecimalNumber, GeneralCategory::kOtherNumber);
}

bool is_unicode_punctuation(uint32_t cp) {
  return category_between(cp, GeneralCategory::kConnectorPunctuation, GeneralCategory::kOtherPunctuation);
}

bool is_unicode_symbol(uint32_t cp) { return category_between(cp, GeneralCategory::kMathSymbol, GeneralCategory::kOtherSymbol); }

}  // namespace pagedlm
