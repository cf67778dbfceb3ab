#include "speculative/verify.h"

#include <algorithm>

namespace pagedlm::speculative {

int32_t verify_proposal(const std::vector<int32_t>& proposed, const std::function<int32_t(size_t row)>& draw) {
  int32_t kept = 0;
  while (static_cast<size_t>(kept) < proposed.size() && draw(static_cast<size_t>(kept)) == proposed[static_cast<size_t>(kept)]) ++kept;
  if (static_cast<size_t>(kept) == proposed.size()) draw(proposed.size());  // the token after a proposal kept in full
  return kept;
}

int32_t proposal_room(int32_t generated, int32_t max_tokens, int32_t tokens, int32_t context_length) {
  return std::max(0, std::min(max_tokens - generated, context_length - tokens) - 1);
}

int32_t AdaptiveK::next() {
  if (pause_ > 0) {
    --pause_;
    return 0;
  }
  return k_;
}

void AdaptiveK::record(int32_t proposed, int32_t accepted) {
  if (proposed <= 0) return;
  if (accepted > 0) last_pause_ = 0;
  if (accepted == proposed) {
    k_ = std::min(limit_, k_ * 2);
  } else if (accepted == 0 && k_ > 1) {
    k_ /= 2;
  } else if (accepted == 0) {
    last_pause_ = std::min(kMaxPause, std::max(1, last_pause_ * 2));
    pause_ = last_pause_;
  }
}

}  // namespace pagedlm::speculative
