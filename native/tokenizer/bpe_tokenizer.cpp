#include "tokenizer/bpe_tokenizer.h"

#include <cstdint>
#include <queue>

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
    merge_ranks_.emplace(merge_key(merge.substr(0, space), merge.substr(space + 1)), rank++);
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
  pre_tokenizer_name_ = name;
  return Status::ok();
}

namespace {

// A symbol of a word being merged: a span of the word's byte-level text, linked to its neighbours.
struct Symbol {
  size_t begin;
  size_t length;  // 0 once merged into its left neighbour
  int prev;
  int next;
};

// A pair of adjacent symbols that a merge rule joins; stale once either side has changed.
struct Candidate {
  int32_t rank;
  int left;
  int right;
  size_t left_length;
  size_t right_length;
  // The queue's top is the lowest rank, leftmost first among equal ranks.
  bool operator<(const Candidate& other) const { return rank > other.rank || (rank == other.rank && left > other.left); }
};

}  // namespace

std::string BpeTokenizer::merge_key(std::string_view left, std::string_view right) {
  std::string key;
  key.reserve(left.size() + 1 + right.size());
  key.append(left);
  key += kMergeSeparator;
  key.append(right);
  return key;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  std::string text;  // the word's bytes as byte-level symbols
  std::vector<Symbol> symbols;
  for (unsigned char c : word) {
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({text.size(), byte_to_unicode_[c].size(), index - 1, index + 1});
    text += byte_to_unicode_[c];
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;
  if (pre_tokenizer_->ignore_merges()) {
    if (const int32_t id = lookup(text); id >= 0) {
      out.push_back(id);
      return;
    }
  }

  std::priority_queue<Candidate> queue;
  const std::string_view view(text);
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    const auto it = merge_ranks_.find(merge_key(view.substr(l.begin, l.length), view.substr(r.begin, r.length)));
    if (it != merge_ranks_.end()) queue.push({it->second, left, right, l.length, r.length});
  };
  for (size_t i = 1; i < symbols.size(); ++i) consider(static_cast<int>(i) - 1, static_cast<int>(i));
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = symbols[c.left];
    Symbol& r = symbols[c.right];
    if (l.next != c.right || l.length != c.left_length || r.length != c.right_length) continue;
    l.length += r.length;
    r.length = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = c.left;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }

  for (int i = 0; i >= 0; i = symbols[i].next) {
    const std::string_view symbol = view.substr(symbols[i].begin, symbols[i].length);
    const int32_t id = lookup(symbol);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // A symbol missing from the vocabulary: fall back to its single bytes.
    for (size_t pos = 0; pos < symbol.size();) {
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
