// Pre-tokenizers of byte-level BPE vocabularies: how text is split into words before merging, chosen by the
// GGUF key tokenizer.ggml.pre with the splitting rules llama.cpp applies for that name. Each is a sequence
// of stages; a stage splits every piece the previous one produced (text between matches is a piece too),
// exactly as a sequence of regex splits would. The stages are hand-written matchers over code points that
// follow the regexes of the original tokenizers, with the Unicode classes of tokenizer/unicode.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pagedlm {

class PreTokenizer {
 public:
  // Length in code points of the match at `pos` of a piece spanning [pos, end) of `cps`; 0 when none.
  using Matcher = size_t (*)(const std::vector<uint32_t>& cps, size_t pos, size_t end);

  // The pre-tokenizer llama.cpp uses for a tokenizer.ggml.pre value; nullptr when pagedlm does not know it.
  static const PreTokenizer* find(std::string_view name);
  // Every accepted tokenizer.ggml.pre value, for error messages and documentation tests.
  static std::vector<std::string> names();

  PreTokenizer(std::vector<Matcher> stages, bool ignore_merges) : stages_(std::move(stages)), ignore_merges_(ignore_merges) {}

  // Splits UTF-8 text into words; invalid bytes count as one code point each.
  std::vector<std::string_view> split(std::string_view text) const;
  // Llama 3's ignore_merges: a word that is itself in the vocabulary is emitted whole, without merging.
  bool ignore_merges() const { return ignore_merges_; }

 private:
  std::vector<Matcher> stages_;
  bool ignore_merges_;
};

}  // namespace pagedlm
