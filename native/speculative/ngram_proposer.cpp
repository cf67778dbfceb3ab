#include "speculative/ngram_proposer.h"

#include <algorithm>
#include <cassert>

#include "kv/block_hash.h"
#include "speculative/ngram_hash.h"

namespace pagedlm::speculative {

namespace {
constexpr size_t kInitialSlots = 64;

uint32_t tag_of(const int32_t* gram, int32_t n) { return static_cast<uint32_t>(ngram_hash(gram, n) >> 32); }
}  // namespace

NgramProposer::NgramProposer(KvCacheManager* prefix_cache, NgramOptions options)
    : options_(options), prefix_cache_(prefix_cache) {
  assert(options_.min_match >= 1 && options_.max_match >= options_.min_match);
  if (prefix_cache_ == nullptr) return;
  const BlockPool& pool = prefix_cache_->pool();
  const int32_t key_tokens = std::min(options_.min_match, pool.block_size());
  cached_ = std::make_unique<CachedNgramIndex>(pool, key_tokens, options_.max_match);
  cached_->index_registered_blocks();
  prefix_cache_->set_block_observer(cached_.get());
}

NgramProposer::~NgramProposer() {
  if (prefix_cache_ != nullptr) prefix_cache_->set_block_observer(nullptr);
}

void NgramProposer::forget(uint64_t key) { sequences_.erase(key); }

NgramProposer::Sequence& NgramProposer::sequence_for(const DraftRequest& request) {
  Sequence& seq = sequences_[request.key];
  const std::vector<int32_t>& tokens = *request.tokens;
  const bool rewritten = static_cast<size_t>(seq.covered) > tokens.size() ||
                         (seq.covered > 0 && tokens[static_cast<size_t>(seq.covered) - 1] != seq.last_token);
  if (seq.slots.empty() || rewritten) seq = Sequence{std::vector<Slot>(kInitialSlots), 0, 0, 0};
  return seq;
}

void NgramProposer::grow(Sequence& seq) const {
  std::vector<Slot> old = std::move(seq.slots);
  seq.slots.assign(old.size() * 2, Slot{});
  const size_t mask = seq.slots.size() - 1;
  for (const Slot& slot : old) {
    if (slot.next == 0) continue;
    size_t i = slot.tag & mask;
    while (seq.slots[i].next != 0) i = (i + 1) & mask;
    seq.slots[i] = slot;
  }
}

void NgramProposer::insert(Sequence& seq, const std::vector<int32_t>& tokens, int32_t n, int32_t next) const {
  const int32_t* gram = tokens.data() + next - n;
  const uint32_t tag = tag_of(gram, n);
  const size_t mask = seq.slots.size() - 1;
  for (size_t i = tag & mask;; i = (i + 1) & mask) {
    Slot& slot = seq.slots[i];
    if (slot.next == 0) {
      slot = Slot{tag, next};
      if (++seq.used * 4 >= static_cast<int32_t>(seq.slots.size()) * 3) grow(seq);
      return;
    }
    if (slot.tag == tag && slot.next >= n && std::equal(gram, gram + n, tokens.data() + slot.next - n)) {
      slot.next = next;  // a newer occurrence of the same gram
      return;
    }
  }
}

void NgramProposer::catch_up(Sequence& seq, const std::vector<int32_t>& tokens) const {
  const int32_t length = static_cast<int32_t>(tokens.size());
  // A gram enters the table once a token follows it, so the sequence's own last gram never matches itself.
  for (int32_t next = seq.covered; next < length; ++next) {
    for (int32_t n = options_.min_match; n <= options_.max_match && n <= next; ++n) insert(seq, tokens, n, next);
  }
  seq.covered = length;
  if (length > 0) seq.last_token = tokens.back();
}

int32_t NgramProposer::find(const Sequence& seq, const std::vector<int32_t>& tokens, int32_t n) const {
  const int32_t* gram = tokens.data() + tokens.size() - n;
  const uint32_t tag = tag_of(gram, n);
  const size_t mask = seq.slots.size() - 1;
  for (size_t i = tag & mask; seq.slots[i].next != 0; i = (i + 1) & mask) {
    const Slot& slot = seq.slots[i];
    if (slot.tag == tag && slot.next >= n && std::equal(gram, gram + n, tokens.data() + slot.next - n)) {
      return slot.next;
    }
  }
  return 0;
}

void NgramProposer::copy_continuation(const std::vector<int32_t>& tokens, int32_t next, int32_t max_tokens,
                                      std::vector<int32_t>& draft) const {
  const int32_t length = static_cast<int32_t>(tokens.size());
  for (int32_t i = 0; i < max_tokens; ++i) {
    const int32_t position = next + i;
    if (position < length) {
      draft.push_back(tokens[position]);
    } else if (options_.repeat_at_end) {
      draft.push_back(draft[position - length]);  // the text repeats with period length - next
    } else {
      break;
    }
  }
}

void NgramProposer::propose_one(const DraftRequest& request, std::vector<int32_t>& draft) {
  draft.clear();
  if (request.tokens == nullptr || request.max_tokens <= 0) return;
  const std::vector<int32_t>& tokens = *request.tokens;
  Sequence& seq = sequence_for(request);
  catch_up(seq, tokens);
  int32_t own_length = 0, own_next = 0;
  const int32_t longest = std::min<int32_t>(options_.max_match, static_cast<int32_t>(tokens.size()) - 1);
  for (int32_t n = longest; n >= options_.min_match; --n) {
    own_next = find(seq, tokens, n);
    if (own_next != 0) {
      own_length = n;
      break;
    }
  }
  if (cached_ != nullptr && own_length < options_.max_match) {
    const int32_t cached_length =
        cached_->lookup(tokens.data(), tokens.size(), root_hash(request.cache_salt), request.max_tokens, draft);
    if (cached_length > own_length) return;
    draft.clear();
  }
  if (own_length > 0) copy_continuation(tokens, own_next, request.max_tokens, draft);
}

void NgramProposer::propose(const std::vector<DraftRequest>& requests, std::vector<std::vector<int32_t>>& out) {
  out.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) propose_one(requests[i], out[i]);
}

}  // namespace pagedlm::speculative
