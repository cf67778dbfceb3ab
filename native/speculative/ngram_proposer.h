// The n-gram lookup proposer: drafts a sequence's next tokens by finding its last few tokens earlier in
// text the engine already holds and proposing what followed them there. Two sources:
//   - the sequence itself (prompt and generated tokens): an agent loop, code that repeats an identifier, a
//     chat quoting earlier text. For each gram length n in [min_match, max_match] a hash table maps every
//     n-gram to the position after its most recent occurrence; each call adds only the grams the tokens
//     appended since the previous call complete, so a step costs O(new tokens + max_tokens).
//   - the prefix cache's registered blocks, across requests (CachedNgramIndex), under the request's salt.
// The longer match wins, up to max_match tokens; a tie goes to the sequence itself (its own text predicts
// its continuation better than another request's). Within a source the most recent occurrence wins.
// A proposal is what followed the match, at most max_tokens long, ending where the known text ends: the
// end of the sequence, or the last cached block of the chain. One exception (repeat_at_end): when the
// continuation runs into the sequence's own end, the text is periodic there and the draft repeats the
// period, so a sequence stuck in a loop is drafted max_tokens at a time.
// Engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "kv/kv_cache_manager.h"
#include "speculative/cached_ngram_index.h"
#include "speculative/proposer.h"

namespace pagedlm::speculative {

struct NgramOptions {
  // Gram lengths tried, longest first. Two tokens is the shortest match that predicts better than chance
  // (a single token recurs everywhere); past four, longer matches are rare and barely more accurate, while
  // each length costs a table entry per token. min_match must not exceed the KV block size.
  int32_t min_match = 2;
  int32_t max_match = 4;
  bool repeat_at_end = true;
};

class NgramProposer : public Proposer {
 public:
  // `prefix_cache`: the engine's KV cache manager, drafted from across requests: the proposer attaches its
  // CachedNgramIndex as the cache's block observer (indexing what is already cached) and detaches it when
  // destroyed, so it must not outlive the manager. nullptr drafts from each sequence's own tokens only.
  explicit NgramProposer(KvCacheManager* prefix_cache, NgramOptions options = {});
  ~NgramProposer() override;
  NgramProposer(const NgramProposer&) = delete;
  NgramProposer& operator=(const NgramProposer&) = delete;

  void propose(const std::vector<DraftRequest>& requests, std::vector<std::vector<int32_t>>& out) override;
  void forget(uint64_t key) override;

  size_t tracked_sequences() const { return sequences_.size(); }
  const CachedNgramIndex* cached_index() const { return cached_.get(); }

 private:
  // One sequence's grams: open addressing over (gram hash tag, position after the gram's newest occurrence).
  struct Slot {
    uint32_t tag = 0;
    int32_t next = 0;  // 0: empty (a gram ends at position 1 or later, so its continuation starts after 0)
  };
  struct Sequence {
    std::vector<Slot> slots;   // power-of-two size
    int32_t used = 0;
    int32_t covered = 0;       // every gram followed by one of tokens[0, covered) is in the table
    int32_t last_token = 0;    // tokens[covered - 1], to notice a rewritten sequence
  };

  Sequence& sequence_for(const DraftRequest& request);
  void catch_up(Sequence& seq, const std::vector<int32_t>& tokens) const;
  void insert(Sequence& seq, const std::vector<int32_t>& tokens, int32_t n, int32_t next) const;
  void grow(Sequence& seq) const;
  // The position after the most recent earlier occurrence of the last n tokens, or 0.
  int32_t find(const Sequence& seq, const std::vector<int32_t>& tokens, int32_t n) const;
  void copy_continuation(const std::vector<int32_t>& tokens, int32_t next, int32_t max_tokens,
                         std::vector<int32_t>& draft) const;
  void propose_one(const DraftRequest& request, std::vector<int32_t>& draft);

  NgramOptions options_;
  KvCacheManager* prefix_cache_;
  std::unique_ptr<CachedNgramIndex> cached_;
  std::unordered_map<uint64_t, Sequence> sequences_;
};

}  // namespace pagedlm::speculative
