// SentencePiece-style tokenizer: spaces become U+2581, a space is prepended to the text, and adjacent
// pieces merge by highest vocabulary score; characters outside the vocabulary fall back to <0xNN> bytes.
#pragma once

#include "tokenizer/tokenizer.h"

namespace pagedlm {

class SpmTokenizer final : public Tokenizer {
 protected:
  Status init(const GgufFile& file) override;
  void encode_fragment(std::string_view text, bool follows_special, std::vector<int32_t>& out) const override;
  std::string piece_bytes(int32_t id) const override;

 private:
  void append_with_byte_fallback(std::string_view symbol, std::vector<int32_t>& out) const;
  int32_t byte_ids_[256];
};

}  // namespace pagedlm
