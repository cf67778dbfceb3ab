// TokenIndex (the vocabulary's byte trie) and GrammarMatcher::fill_mask.
//
// A mask walks the trie depth first from the matcher's position, advancing one byte per node and skipping a
// node's whole subtree as soon as no stack survives, so the work follows the tokens that could be allowed.
// The stack sets met on the way are interned into a small automaton built lazily during the walk: most trie
// nodes reach a set already seen (inside a JSON string every ordinary character leads back to the same one),
// so a node usually costs a table lookup or a binary search. A transition on a complete character depends
// only on which stacks take it, so advances are shared by all characters with the same matching stacks.
#include "grammar/token_index.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <unordered_map>

#include "grammar/gbnf.h"
#include "grammar/pda.h"

namespace pagedlm::grammar {

namespace {

std::atomic<uint64_t> next_index_id{1};

// Stack sets interned during one mask computation, each with what its characters lead to, filled in on first
// use. Within one set the code points split into intervals where the same stacks match, so a complete
// character costs a binary search (an ASCII byte or a lead byte one table lookup), and only one advance is
// computed per interval. An incomplete character stays beside the set in the walk's cursor.
class LazyAutomaton {
 public:
  static constexpr int32_t kDead = -1;

  struct Cursor {
    int32_t set;
    PartialChar partial;
  };

  LazyAutomaton(const Grammar& grammar, const Position& start) : grammar_(grammar) {
    start_ = {intern_set(StackSet(start.stacks)), start.partial};
  }

  const Cursor& start() const { return start_; }

  // The cursor after `byte`; false when no stack can take it.
  bool step(const Cursor& from, uint8_t byte, Cursor& to) {
    if (from.partial.empty()) {
      const int32_t next = first_byte(from.set, byte);
      if (next == kDead) return false;
      to.set = next;
      to.partial = PartialChar{};
      uint32_t code_point = 0;
      if (byte >= 0x80) utf8_step(to.partial, byte, code_point);
      return true;
    }
    to.partial = from.partial;
    uint32_t code_point = 0;
    switch (utf8_step(to.partial, byte, code_point)) {
      case Utf8Step::kInvalid:
        return false;
      case Utf8Step::kPartial: {
        const auto [lo, hi] = partial_range(to.partial);
        to.set = from.set;
        return any_live(sets_[static_cast<size_t>(from.set)], lo, hi);
      }
      case Utf8Step::kComplete:
        break;
    }
    to.set = after_char(from.set, code_point);
    return to.set != kDead;
  }

 private:
  static constexpr int32_t kUnknown = -2;
  // Sets past this many get no table row (an automaton as large as the trie must not cost a row per node).
  static constexpr size_t kSetsWithRows = 1u << 14;

  struct SetInfo {
    StackSet stacks;
    std::vector<uint32_t> starts;       // interval i is [starts[i], starts[i + 1]); starts[0] == 0
    std::vector<uint32_t> live_before;  // intervals before i where some stack matches (one more entry)
    std::vector<int32_t> after;         // per interval: the set after one of its characters, kDead, kUnknown
  };

  int32_t intern_set(StackSet&& stacks) {
    std::string key = stacks_key(stacks);
    const auto [it, inserted] = set_ids_.try_emplace(std::move(key), static_cast<int32_t>(sets_.size()));
    if (!inserted) return it->second;
    SetInfo& info = sets_.emplace_back();
    info.stacks = std::move(stacks);
    split_into_intervals(info);
    if (sets_.size() <= kSetsWithRows) rows_.resize(sets_.size() * 256, kUnknown);
    return it->second;
  }

  void split_into_intervals(SetInfo& info) const {
    std::vector<CodeRange> covered;
    std::vector<uint32_t> bounds{0};
    for (const Stack& stack : info.stacks) {
      if (stack.empty()) continue;
      for (const CodeRange& r : grammar_.class_ranges(grammar_.element(stack.back()).value)) {
        covered.push_back(r);
        bounds.push_back(r.lo);
        if (r.hi < kMaxCodePoint) bounds.push_back(r.hi + 1);
      }
    }
    std::sort(bounds.begin(), bounds.end());
    bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
    std::sort(covered.begin(), covered.end(), [](CodeRange a, CodeRange b) { return a.lo < b.lo; });
    info.starts = std::move(bounds);
    info.after.assign(info.starts.size(), kUnknown);
    info.live_before.assign(info.starts.size() + 1, 0);
    // Sweep: an interval is live when its first code point lies in some stack's class.
    size_t next_range = 0;
    uint32_t covered_until = 0;  // one past the largest hi seen among ranges starting at or before here
    bool any_covered = false;
    for (size_t i = 0; i < info.starts.size(); ++i) {
      const uint32_t cp = info.starts[i];
      for (; next_range < covered.size() && covered[next_range].lo <= cp; ++next_range) {
        covered_until = std::max(covered_until, covered[next_range].hi + 1);
        any_covered = true;
      }
      const bool live = any_covered && cp < covered_until;
      if (!live) info.after[i] = kDead;
      info.live_before[i + 1] = info.live_before[i] + (live ? 1 : 0);
    }
  }

  static size_t interval_of(const SetInfo& info, uint32_t code_point) {
    return static_cast<size_t>(std::upper_bound(info.starts.begin(), info.starts.end(), code_point) -
                               info.starts.begin()) - 1;
  }

  static bool any_live(const SetInfo& info, uint32_t lo, uint32_t hi) {
    return info.live_before[interval_of(info, hi) + 1] > info.live_before[interval_of(info, lo)];
  }

  // An ASCII byte: the set after it. A lead byte: the same set when some character it starts can follow.
  int32_t first_byte(int32_t set, uint8_t byte) {
    const bool has_row = static_cast<size_t>(set) < kSetsWithRows;
    const size_t slot = static_cast<size_t>(set) * 256 + byte;
    if (has_row && rows_[slot] != kUnknown) return rows_[slot];
    int32_t next = kDead;
    if (byte < 0x80) {
      next = after_char(set, byte);
    } else {
      PartialChar partial;
      uint32_t code_point = 0;
      if (utf8_step(partial, byte, code_point) == Utf8Step::kPartial) {
        const auto [lo, hi] = partial_range(partial);
        if (any_live(sets_[static_cast<size_t>(set)], lo, hi)) next = set;
      }
    }
    if (has_row) rows_[slot] = next;
    return next;
  }

  int32_t after_char(int32_t set, uint32_t code_point) {
    const size_t interval = interval_of(sets_[static_cast<size_t>(set)], code_point);
    int32_t next = sets_[static_cast<size_t>(set)].after[interval];
    if (next != kUnknown) return next;
    matching_stacks(grammar_, sets_[static_cast<size_t>(set)].stacks, code_point, matching_);
    std::string key(reinterpret_cast<const char*>(&set), sizeof set);
    key.append(reinterpret_cast<const char*>(matching_.data()), matching_.size() * sizeof(uint32_t));
    const auto it = advances_.find(key);
    if (it != advances_.end()) {
      next = it->second;
    } else {
      StackSet stacks = advance_stacks(grammar_, sets_[static_cast<size_t>(set)].stacks, matching_);
      next = stacks.empty() ? kDead : intern_set(std::move(stacks));
      advances_.emplace(std::move(key), next);
    }
    sets_[static_cast<size_t>(set)].after[interval] = next;  // sets_ may have grown: index again
    return next;
  }

  const Grammar& grammar_;
  Cursor start_{};
  std::vector<SetInfo> sets_;
  std::unordered_map<std::string, int32_t> set_ids_;
  // (set, matching stacks) -> set after the character: intervals with the same matching stacks share it.
  std::unordered_map<std::string, int32_t> advances_;
  std::vector<int32_t> rows_;
  std::vector<uint32_t> matching_;
};

void set_bit(TokenMask& mask, int32_t token) {
  mask[static_cast<size_t>(token) >> 6] |= uint64_t{1} << (token & 63);
}

void fill_text_tokens(const Grammar& grammar, const TokenIndex::Impl& index, const Position& position,
                      TokenMask& mask) {
  LazyAutomaton automaton(grammar, position);
  std::vector<LazyAutomaton::Cursor> at_depth(index.max_depth + 1);
  at_depth[0] = automaton.start();
  const std::vector<TrieNode>& nodes = index.nodes;
  size_t i = 0;
  while (i < nodes.size()) {
    const TrieNode& node = nodes[i];
    if (!automaton.step(at_depth[node.depth - 1], node.byte, at_depth[node.depth])) {
      i = node.subtree_end;
      continue;
    }
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
