// TokenIndex (the vocabulary's byte trie) and GrammarMatcher::fill_mask.
//
// A mask walks the trie depth first from the matcher's position, advancing one byte per node and skipping a
// node's whole subtree as soon as no stack survives, so the work follows the tokens that could be allowed.
// The positions met on the way are interned into a small automaton built lazily during the walk: most trie
// nodes reach a position already seen (inside a JSON string every ordinary character leads back to the same
// one), so a node usually costs one table lookup. A transition on a complete character depends only on
// which stacks take the character, so advances are shared by all characters with the same matching stacks.
#include "grammar/token_index.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>
#include <unordered_map>

#include "grammar/gbnf.h"
#include "grammar/pda.h"

namespace pagedlm::grammar {

namespace {

std::atomic<uint64_t> next_index_id{1};

// Positions interned during one mask computation, with their transitions filled in on first use.
class LazyAutomaton {
 public:
  static constexpr int32_t kDead = -1;

  LazyAutomaton(const Grammar& grammar, const Position& start) : grammar_(grammar) {
    intern_state(intern_set(StackSet(start.stacks)), start.partial);
  }

  int32_t next(int32_t state, uint8_t byte) {
    if (static_cast<size_t>(state) < kDenseStates) {
      const size_t slot = static_cast<size_t>(state) * 256 + byte;
      int32_t target = dense_[slot];
      if (target == kUnknown) {
        target = transition(state, byte);
        dense_[slot] = target;
      }
      return target;
    }
    const uint64_t key = static_cast<uint64_t>(state) << 8 | byte;
    const auto it = sparse_.find(key);
    if (it != sparse_.end()) return it->second;
    const int32_t target = transition(state, byte);
    sparse_.emplace(key, target);
    return target;
  }

 private:
  static constexpr int32_t kUnknown = -2;
  // Past this many positions (a table row each), transitions go to a hash map: an automaton as large as the
  // trie must not cost a table row per node.
  static constexpr size_t kDenseStates = 1u << 14;

  struct State {
    int32_t set;
    PartialChar partial;
  };

  int32_t intern_set(StackSet&& stacks) {
    std::string key = stacks_key(stacks);
    const auto [it, inserted] = set_ids_.try_emplace(std::move(key), static_cast<int32_t>(sets_.size()));
    if (inserted) sets_.push_back(std::move(stacks));
    return it->second;
  }

  int32_t intern_state(int32_t set, const PartialChar& partial) {
    uint64_t key = static_cast<uint64_t>(static_cast<uint32_t>(set)) << 32 | uint64_t{partial.length} << 24;
    for (int i = 0; i < partial.length; ++i) key |= uint64_t{partial.bytes[i]} << (8 * i);
    const auto [it, inserted] = state_ids_.try_emplace(key, static_cast<int32_t>(states_.size()));
    if (inserted) {
      states_.push_back({set, partial});
      if (states_.size() <= kDenseStates) dense_.resize(states_.size() * 256, kUnknown);
    }
    return it->second;
  }

  int32_t transition(int32_t state, uint8_t byte) {
    const int32_t set = states_[static_cast<size_t>(state)].set;
    PartialChar partial = states_[static_cast<size_t>(state)].partial;
    uint32_t code_point = 0;
    switch (utf8_step(partial, byte, code_point)) {
      case Utf8Step::kInvalid:
        return kDead;
      case Utf8Step::kPartial: {
        const auto [lo, hi] = partial_range(partial);
        if (!any_stack_accepts(grammar_, sets_[static_cast<size_t>(set)], lo, hi)) return kDead;
        return intern_state(set, partial);
      }
      case Utf8Step::kComplete:
        break;
    }
    matching_stacks(grammar_, sets_[static_cast<size_t>(set)], code_point, matching_);
    if (matching_.empty()) return kDead;
    std::string key(reinterpret_cast<const char*>(&set), sizeof set);
    key.append(reinterpret_cast<const char*>(matching_.data()), matching_.size() * sizeof(uint32_t));
    auto it = advances_.find(key);
    if (it == advances_.end()) {
      StackSet next = advance_stacks(grammar_, sets_[static_cast<size_t>(set)], matching_);
      const int32_t next_set = next.empty() ? kDead : intern_set(std::move(next));
      it = advances_.emplace(std::move(key), next_set).first;
    }
    return it->second == kDead ? kDead : intern_state(it->second, PartialChar{});
  }

  const Grammar& grammar_;
  std::vector<StackSet> sets_;
  std::unordered_map<std::string, int32_t> set_ids_;
  std::vector<State> states_;
  std::unordered_map<uint64_t, int32_t> state_ids_;
  std::unordered_map<std::string, int32_t> advances_;  // (set, matching stacks) -> set after the character
  std::vector<int32_t> dense_;
  std::unordered_map<uint64_t, int32_t> sparse_;
  std::vector<uint32_t> matching_;
};

void set_bit(TokenMask& mask, int32_t token) {
  mask[static_cast<size_t>(token) >> 6] |= uint64_t{1} << (token & 63);
}

void fill_text_tokens(const Grammar& grammar, const TokenIndex::Impl& index, const Position& position,
                      TokenMask& mask) {
  LazyAutomaton automaton(grammar, position);
  std::vector<int32_t> state_at_depth(index.max_depth + 1, 0);
  const std::vector<TrieNode>& nodes = index.nodes;
  size_t i = 0;
  while (i < nodes.size()) {
    const TrieNode& node = nodes[i];
    const int32_t state = automaton.next(state_at_depth[node.depth - 1], node.byte);
    if (state == LazyAutomaton::kDead) {
      i = node.subtree_end;
      continue;
    }
    state_at_depth[node.depth] = state;
    for (uint32_t t = node.token_begin; t < node.token_end; ++t) set_bit(mask, index.node_tokens[t]);
    ++i;
  }
}

void build_trie(TokenIndex::Impl& index) {
  std::vector<int32_t> order;
  for (int32_t t = 0; t < index.vocab_size; ++t) {
    if (index.is_text(t)) order.push_back(t);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return index.bytes(a) < index.bytes(b); });
  std::vector<uint32_t> path;  // path[d]: the node at depth d + 1 on the current branch
  std::string_view previous;
  for (int32_t token : order) {
    const std::string& bytes = index.bytes(token);
    const size_t limit = std::min(bytes.size(), previous.size());
    size_t common = 0;
    while (common < limit && bytes[common] == previous[common]) ++common;
    for (; path.size() > common; path.pop_back()) {
      index.nodes[path.back()].subtree_end = static_cast<uint32_t>(index.nodes.size());
    }
    const auto first_token = static_cast<uint32_t>(index.node_tokens.size());
    for (size_t d = common; d < bytes.size(); ++d) {
      path.push_back(static_cast<uint32_t>(index.nodes.size()));
      index.nodes.push_back({0, first_token, first_token, static_cast<uint32_t>(d + 1),
                             static_cast<uint8_t>(bytes[d])});
    }
    index.node_tokens.push_back(token);
    index.nodes[path.back()].token_end = static_cast<uint32_t>(index.node_tokens.size());
    index.max_depth = std::max(index.max_depth, static_cast<uint32_t>(bytes.size()));
    previous = bytes;
  }
  for (; !path.empty(); path.pop_back()) {
    index.nodes[path.back()].subtree_end = static_cast<uint32_t>(index.nodes.size());
  }
}

}  // namespace

TokenIndex::TokenIndex(const std::vector<std::string>& token_bytes, const std::vector<bool>& is_text,
                       std::vector<int32_t> end_tokens)
    : impl_(std::make_unique<Impl>()) {
  Impl& index = *impl_;
  index.id = next_index_id.fetch_add(1);
  index.vocab_size = static_cast<int32_t>(token_bytes.size());
  index.token_bytes = token_bytes;
  index.kinds.assign(token_bytes.size(), Impl::Kind::kNone);
  for (size_t t = 0; t < token_bytes.size(); ++t) {
    if (t < is_text.size() && is_text[t] && !token_bytes[t].empty()) index.kinds[t] = Impl::Kind::kText;
  }
  for (int32_t token : end_tokens) {
    if (token < 0 || token >= index.vocab_size) continue;
    index.kinds[static_cast<size_t>(token)] = Impl::Kind::kEnd;
    index.end_tokens.push_back(token);
  }
  build_trie(index);
}

TokenIndex::~TokenIndex() = default;

int32_t TokenIndex::vocab_size() const { return impl_->vocab_size; }

void GrammarMatcher::fill_mask(TokenMask& mask) {
  const TokenIndex::Impl& index = tokens_->impl();
  const Position& position = state_->position;
  const std::string key = position_key(position);
  MaskCache& cache = grammar_->mask_cache();
  if (auto cached = cache.find(index.id, key)) {
    mask = *cached;
    return;
  }
  mask.assign((static_cast<size_t>(index.vocab_size) + 63) / 64, 0);
  fill_text_tokens(*grammar_, index, position, mask);
  if (grammar::can_end(position)) {
    for (int32_t token : index.end_tokens) set_bit(mask, token);
  }
  cache.insert(index.id, key, std::make_shared<const TokenMask>(mask));
}

}  // namespace pagedlm::grammar
