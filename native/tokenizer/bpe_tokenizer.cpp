#include "tokenizer/bpe_tokenizer.h"

#include <climits>

#include "tokenizer/unicode.h"

namespace pagedlm {

namespace {

// A scanner over code points for the hand-written pre-tokenizer rules.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}
  bool done(size_t pos) const { return pos >= text_.size(); }
  uint32_t at(size_t pos, size_t* length) const { return utf8_decode(text_, pos, length); }
  uint32_t at(size_t pos) const {
    size_t n;
    return done(pos) ? 0 : at(pos, &n);
  }
  size_t next(size_t pos) const {
    size_t n;
    at(pos, &n);
    return pos + n;
  }
  template <typename Pred>
  size_t skip(size_t pos, Pred pred, size_t limit = SIZE_MAX) const {
    for (size_t count = 0; !done(pos) && count < limit && pred(at(pos)); ++count) pos = next(pos);
    return pos;
  }

 private:
  std::string_view text_;
};

bool is_space(uint32_t c) { return is_unicode_whitespace(c); }
bool is_letter(uint32_t c) { return is_unicode_letter(c); }
bool is_number(uint32_t c) { return is_unicode_number(c); }
bool is_other(uint32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

// Length of a contraction ('s 't 're 've 'm 'll 'd) at pos, 0 if none.
size_t contraction(std::string_view text, size_t pos, bool ignore_case) {
  if (pos >= text.size() || text[pos] != '\'') return 0;
  static const char* const kSuffixes[] = {"s", "t", "re", "ve", "m", "ll", "d"};
  for (const char* suffix : kSuffixes) {
    const size_t n = std::char_traits<char>::length(suffix);
    if (pos + 1 + n > text.size()) continue;
    bool match = true;
    for (size_t i = 0; i < n; ++i) {
      char c = text[pos + 1 + i];
      if (ignore_case && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      match = match && c == suffix[i];
    }
    if (match) return 1 + n;
  }
  return 0;
}

// \s+(?!\S)|\s+ : a whitespace run, leaving its last space to the next word when a word follows.
size_t whitespace_run(const Scanner& s, size_t pos) {
  size_t end = s.skip(pos, is_space);
  if (s.done(end)) return end;
  size_t last = pos, p = pos;
  while (p < end) {
    last = p;
    p = s.next(p);
  }
  return last > pos ? last : end;
}

size_t gpt2_word(const Scanner& s, std::string_view text, size_t pos) {
  if (size_t n = contraction(text, pos, false)) return pos + n;
  size_t p = pos;
  if (s.at(p) == ' ') p = s.next(p);
  const uint32_t c = s.at(p);
  if (!s.done(p) && is_letter(c)) return s.skip(p, is_letter);
  if (!s.done(p) && is_number(c)) return s.skip(p, is_number);
  if (!s.done(p) && is_other(c)) return s.skip(p, is_other);
  return whitespace_run(s, pos);
}

size_t llama3_word(const Scanner& s, std::string_view text, size_t pos) {
  if (size_t n = contraction(text, pos, true)) return pos + n;
  const uint32_t c = s.at(pos);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  size_t p = pos;
  if (c != '\r' && c != '\n' && !is_letter(c) && !is_number(c)) p = s.next(p);
  if (!s.done(p) && is_letter(s.at(p))) return s.skip(p, is_letter);
  if (is_number(c)) return s.skip(pos, is_number, 3);
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  p = pos;
  if (c == ' ') p = s.next(p);
  if (!s.done(p) && is_other(s.at(p))) {
    p = s.skip(p, is_other);
    return s.skip(p, [](uint32_t x) { return x == '\r' || x == '\n'; });
  }
  // \s*[\r\n]+
  size_t end = s.skip(pos, is_space);
  size_t last_newline = pos;
  for (size_t q = pos; q < end; q = s.next(q)) {
    if (s.at(q) == '\r' || s.at(q) == '\n') last_newline = s.next(q);
  }
  if (last_newline > pos) return last_newline;
  return whitespace_run(s, pos);
}

}  // namespace

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

std::vector<std::string_view> pre_tokenize(std::string_view text, PreTokenizer kind) {
  std::vector<std::string_view> words;
  const Scanner s(text);
  for (size_t pos = 0; pos < text.size();) {
    size_t end = kind == PreTokenizer::kGpt2 ? gpt2_word(s, text, pos) : llama3_word(s, text, pos);
    if (end <= pos) end = s.next(pos);  // never stall on input no rule covers
    words.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return words;
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
  const std::string name = pre.value().value_or("default");
  pre_tokenizer_ = (name == "llama3" || name == "llama-bpe" || name == "smaug-bpe" || name == "qwen2") ? PreTokenizer::kLlama3 : PreTokenizer::kGpt2;
  return Status::ok();
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<std::string> symbols;
  for (unsigned char c : word) symbols.push_back(byte_to_unicode_[c]);
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

void BpeTokenizer::encode_fragment(std::string_view text, bool /*at_start*/, std::vector<int32_t>& out) const {
  for (std::string_view word : pre_tokenize(text, pre_tokenizer_)) encode_word(word, out);
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
