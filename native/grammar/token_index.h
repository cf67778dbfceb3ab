// TokenIndex's data: each token's bytes and kind, and a byte trie of the text tokens laid out in depth-first
// order, so that a mask is one forward scan that jumps over a refused node's subtree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "grammar/grammar.h"

namespace pagedlm::grammar {

struct TrieNode {
  uint32_t subtree_end;  // index of the first node after this node's subtree
  uint32_t token_begin;  // tokens whose bytes end here: node_tokens[token_begin, token_end)
  uint32_t token_end;
  uint32_t depth;        // bytes from the root; the root itself is not stored
  uint8_t byte;
};

struct TokenIndex::Impl {
  enum class Kind : uint8_t { kNone, kText, kEnd };

  uint64_t id = 0;  // unique per TokenIndex for the life of the process: the mask cache's key
  int32_t vocab_size = 0;
  std::vector<std::string> token_bytes;
  std::vector<Kind> kinds;
  std::vector<int32_t> end_tokens;
  std::vector<TrieNode> nodes;  // depth-first (preorder)
  std::vector<int32_t> node_tokens;
  uint32_t max_depth = 0;

  bool is_end(int32_t token) const { return kinds[static_cast<size_t>(token)] == Kind::kEnd; }
  bool is_text(int32_t token) const { return kinds[static_cast<size_t>(token)] == Kind::kText; }
  const std::string& bytes(int32_t token) const { return token_bytes[static_cast<size_t>(token)]; }
};

}  // namespace pagedlm::grammar
