#include "tokenizer/bpe_tokenizer.h"

#include <climits>
#include <cstdint>

#include "tokenizer/unicode.h"

namespace pagedlm {

const std::string& bpe_byte_symbol(uint8_t byte) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t next_extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      utf8_append(t[b], printable ? b : next_extra++);
    }
    return t;
  }();
  return table[byte];
}

Status BpeTokenizer::init(const GgufFile& file) {
  kind_ = TokenizerKind::kBytePairEncoding;
  add_space_prefix_ = false;
  for (int b = 0; b < 256; ++b) {
    byte_to_unicode_[b] = bpe_byte_symbol(static_cast<uint8_t>(b));
    size_t length;
    unicode_to_byte_[utf8_decode(byte_to_unicode_[b], 0, &length)] = static_cast<uint8_t>(b);
  }
  auto merges = file.get_string_array("tokenizer.ggml.merges");
  if (!merges.is_ok()) return merges.status();
  int32_t rank = 0;
  for (std::string_view merge : merges.value()) {
    const size_t space = merge.find(' ', 1);
    if (space == std::string_view::npos) {
      return Status(ErrorCode::kModelFormat, "tokenizer.ggml.merges entry " + std::to_string(rank) + " has no space separator");
    }
    merge_ranks_.emplace(std::pair{std::string(merge.substr(0, space)), std::string(merge.substr(space + 1))}, rank++);
  }
  auto pre = file.get_string("tokenizer.ggml.pre");
  if (!pre.is_ok()) return pre.status();
  // A file without the key gets llama.cpp's "default" rules, as llama.cpp does (docs/tokenizers.md).
  const std::string name = pre.value().value_or("default");
  pre_tokenizer_ = PreTokenizer::find(name);
  if (pre_tokenizer_ == nullptr) {
    std::string known;
    for (const std::string& n : PreTokenizer::names()) known += (known.empty() ? "" : ", ") + n;
    return Status(ErrorCode::kUnsupported, "unsupported pre-tokenizer tokenizer.ggml.pre = '" + name + "' (pagedlm knows " + known + ")");
  }
  return Status::ok();
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<std::string> symbols;
  for (unsigned char c : word) symbols.push_back(byte_to_unicode_[c]);
  if (pre_tokenizer_->ignore_merges()) {
    std::string whole;
    for (const std::string& symbol : symbols) whole += symbol;
    if (const int32_t id = lookup(whole); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  for (;;) {
    int32_t best_rank = INT32_MAX;
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const auto it = merge_ranks_.find({symbols[i], symbols[i + 1]});
      if (it != merge_ranks_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == INT32_MAX) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  for (const std::string& symbol : symbols) {
    const int32_t id = lookup(symbol);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // A symbol missing from the vocabulary: fall back to its single bytes.
    size_t pos = 0;
    while (pos < symbol.size()) {
      const size_t n = utf8_sequence_length(static_cast<uint8_t>(symbol[pos]));
      const int32_t byte_id = lookup(symbol.substr(pos, n));
      if (byte_id >= 0) {
        out.push_back(byte_id);
      } else if (unk_id_ >= 0) {
        out.push_back(unk_id_);
      }
      pos += n;
    }
  }
}

void BpeTokenizer::encode_fragment(std::string_view text, bool /*follows_special*/, std::vector<int32_t>& out) const {
  for (std::string_view word : pre_tokenizer_->split(text)) encode_word(word, out);
}

std::string BpeTokenizer::piece_bytes(int32_t id) const {
  const std::string& piece = pieces_[id];
  if (types_[id] == TokenType::kUserDefined) return piece;
  std::string out;
  for (size_t pos = 0; pos < piece.size();) {
    size_t n;
    const uint32_t cp = utf8_decode(piece, pos, &n);
    const auto it = unicode_to_byte_.find(cp);
    if (it != unicode_to_byte_.end()) {
      out += static_cast<char>(it->second);
    } else {
      out.append(piece, pos, n);
    }
    pos += n;
  }
  return out;
}

}  // namespace pagedlm
