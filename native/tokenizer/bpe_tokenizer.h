// Byte-level BPE (tokenizer.ggml.model = "gpt2"): text is split into words by a pre-tokenizer, each word's
// bytes are mapped to printable code points, then merged pairwise by merge rank.
#pragma once

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace pagedlm {

// The printable code point (as UTF-8) that stands for a byte in byte-level BPE vocabularies: printable
// Latin-1 bytes stand for themselves, the rest for code points from U+0100 upward.
const std::string& bpe_byte_symbol(uint8_t byte);

class BpeTokenizer final : public Tokenizer {
 public:
  const std::string& pre_tokenizer_name() const override { return pre_tokenizer_name_; }

 protected:
  Status init(const GgufFile& file) override;
  void encode_fragment(std::string_view text, bool follows_special, std::vector<int32_t>& out) const override;
  std::string piece_bytes(int32_t id) const override;

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  const PreTokenizer* pre_tokenizer_ = nullptr;
  std::string pre_tokenizer_name_;
  // Byte-level symbols are valid UTF-8, so a byte that never occurs in UTF-8 separates the two sides.
  static constexpr char kMergeSeparator = '\xFF';
  static std::string merge_key(std::string_view left, std::string_view right);

  std::unordered_map<std::string, int32_t> merge_ranks_;  // merge_key(left, right) -> rank
  std::string byte_to_unicode_[256];  // UTF-8 of the printable code point standing for each byte
  std::unordered_map<uint32_t, uint8_t> unicode_to_byte_;
};

}  // namespace pagedlm
