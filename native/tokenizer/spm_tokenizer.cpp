#include "tokenizer/spm_tokenizer.h"

#include <cstdio>
#include <queue>

#include "tokenizer/unicode.h"

namespace pagedlm {

namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581

struct Symbol {
  size_t begin;
  size_t length;  // 0 once merged into its left neighbour
  int prev;
  int next;
};

struct Bigram {
  float score;
  int left;
  size_t length;  // combined length when queued; stale entries no longer match
  bool operator<(const Bigram& other) const {
    // Highest score first; on ties the leftmost pair.
    return score < other.score || (score == other.score && left > other.left);
  }
};

}  // namespace

Status SpmTokenizer::init(const GgufFile& /*file*/) {
  kind_ = TokenizerKind::kSentencePiece;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = lookup(name);
  }
  return Status::ok();
}

void SpmTokenizer::append_with_byte_fallback(std::string_view symbol, std::vector<int32_t>& out) const {
  const int32_t id = lookup(symbol);
  if (id >= 0) {
    out.push_back(id);
    return;
  }
  for (unsigned char c : symbol) {
    const int32_t byte_id = byte_ids_[c];
    if (byte_id >= 0) {
      out.push_back(byte_id);
    } else if (unk_id_ >= 0) {
      out.push_back(unk_id_);
    }
  }
}

void SpmTokenizer::encode_fragment(std::string_view raw, bool follows_special, std::vector<int32_t>& out) const {
  std::string text;
  if (follows_special && add_space_prefix_) text += kSpaceMarker;
  for (char c : raw) {
    if (c == ' ') {
      text += kSpaceMarker;
    } else {
      text += c;
    }
  }

  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = std::min(utf8_sequence_length(static_cast<uint8_t>(text[pos])), text.size() - pos);
    symbols.push_back({pos, n, static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1});
    pos += n;
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::priority_queue<Bigram> queue;
  auto try_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t length = symbols[left].length + symbols[right].length;
    const int32_t id = lookup(std::string_view(text).substr(symbols[left].begin, length));
    if (id >= 0) queue.push({scores_[id], left, length});
  };
  for (size_t i = 1; i < symbols.size(); ++i) try_pair(static_cast<int>(i) - 1, static_cast<int>(i));

  while (!queue.empty()) {
    const Bigram top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    if (left.length == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (left.length + right.length != top.length) continue;  // one side changed since it was queued
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.left;
    try_pair(left.prev, top.left);
    try_pair(top.left, left.next);
  }

  for (int i = 0; i >= 0; i = symbols[i].next) {
    append_with_byte_fallback(std::string_view(text).substr(symbols[i].begin, symbols[i].length), out);
  }
}

std::string SpmTokenizer::piece_bytes(int32_t id) const {
  const std::string& p = pieces_[id];
  unsigned byte = 0;
  if (types_[id] == TokenType::kByte && p.size() == 6 && std::sscanf(p.c_str(), "<0x%2X>", &byte) == 1) {
    return std::string(1, static_cast<char>(byte));
  }
  std::string out;
  out.reserve(p.size());
  for (size_t pos = 0; pos < p.size();) {
    if (p.compare(pos, kSpaceMarker.size(), kSpaceMarker) == 0) {
      out += ' ';
      pos += kSpaceMarker.size();
    } else {
      out += p[pos++];
    }
  }
  return out;
}

}  // namespace pagedlm
