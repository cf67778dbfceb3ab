// The decisions of verifying proposed tokens, apart from the engine that applies them: which proposed
// tokens a step keeps, and how many a sequence proposes next. Engine thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace pagedlm::speculative {

// Walks the logit rows of a step that verified `proposed`: row i holds the target model's distribution after
// the proposed tokens before i, and `draw(i)` picks that row's token exactly as plain decoding would (same
// penalties over the same history, same random draw). The walk keeps proposed[i] while the draw equals it,
// and ends with the first token that differs, or, when all were kept, with row proposed.size()'s token.
// Returns how many proposed tokens were kept; draw was called that many times plus one, and those draws,
// in order, are the step's tokens.
//
// Why this is exact under sampling too: a draw t ~ p that keeps x only when t == x keeps it with probability
// p(x), and on a refusal t is distributed as p without x, renormalized: the rejection rule (accept with
// min(1, p/q), else resample from max(0, p - q) normalized) for a proposer whose q is a point mass on x,
// and it is exact whatever chose x. Each emitted token costs one draw, as in plain decoding, so a seeded
// request gives the same tokens with speculation as without.
int32_t verify_proposal(const std::vector<int32_t>& proposed, const std::function<int32_t(size_t row)>& draw);

// Tokens a sequence may propose this step so that a fully accepted proposal (proposed + 1 tokens) stays
// within max_tokens and the context; 0 when there is no room.
int32_t proposal_room(int32_t generated, int32_t max_tokens, int32_t tokens, int32_t context_length);

// How many tokens a sequence proposes next, from how its recent proposals fared: k doubles (up to the
// request's limit) after a proposal accepted in full and halves after one rejected in full; a full
// rejection at k = 1 pauses proposing for a number of steps that doubles with each such rejection in a row
// (up to kMaxPause), so text the proposer cannot guess costs next to nothing.
class AdaptiveK {
 public:
  static constexpr int32_t kMaxPause = 64;

  explicit AdaptiveK(int32_t limit) : limit_(limit), k_(limit) {}
  // The tokens to propose this step; 0 while paused (each call counts down one step of a pause).
  int32_t next();
  void record(int32_t proposed, int32_t accepted);
  int32_t k() const { return k_; }

 private:
  int32_t limit_;
  int32_t k_;
  int32_t pause_ = 0;         // steps left without proposing
  int32_t last_pause_ = 0;    // length of the latest pause, 0 once a proposal is accepted
};

}  // namespace pagedlm::speculative
