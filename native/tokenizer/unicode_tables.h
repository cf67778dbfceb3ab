// Tables generated from the Unicode Character Database by scripts/gen-unicode-tables.js
// (unicode_tables.cpp); read them through tokenizer/unicode.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pagedlm {

// Unicode general categories (UCD property General_Category).
enum class GeneralCategory : uint8_t {
  kUnassigned,  // Cn
  kUppercaseLetter,
  kLowercaseLetter,
  kTitlecaseLetter,
  kModifierLetter,
  kOtherLetter,
  kNonspacingMark,
  kSpacingMark,
  kEnclosingMark,
  kDecimalNumber,
  kLetterNumber,
  kOtherNumber,
  kConnectorPunctuation,
  kDashPunctuation,
  kOpenPunctuation,
  kClosePunctuation,
  kInitialPunctuation,
  kFinalPunctuation,
  kOtherPunctuation,
  kMathSymbol,
  kCurrencySymbol,
  kModifierSymbol,
  kOtherSymbol,
  kSpaceSeparator,
  kLineSeparator,
  kParagraphSeparator,
  kControl,
  kFormat,
  kSurrogate,
  kPrivateUse,
};

namespace unicode_tables {

struct CategoryRun {
  uint32_t first;
  GeneralCategory category;
};
struct CodePointRange {
  uint32_t first;
  uint32_t last;
};

extern const char kUnicodeVersion[];
extern const CategoryRun kCategoryRuns[];
extern const size_t kCategoryRunCount;
extern const CodePointRange kWhitespaceRanges[];
extern const size_t kWhitespaceRangeCount;

}  // namespace unicode_tables
}  // namespace pagedlm
