// Speculative decoding: a proposer guesses the next few tokens of a sequence; the engine verifies them all
// in one forward pass (the weights are read once for k + 1 positions) and keeps the longest prefix the
// target model agrees with, so the output is exactly what plain decoding gives (greedy) or draws from the
// same distribution (sampling). Proposers see only token ids; they never touch the engine's KV pool.
// Engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace pagedlm::speculative {

// Which proposer a request uses.
enum class ProposerKind : uint8_t {
  kNone,   // plain decoding
  kNgram,  // n-gram lookup in the sequence itself and in the prefix cache's cached blocks
  kDraft,  // a smaller draft model loaded beside the target (EngineOptions::draft_model)
};

// A request's speculation settings (GenerateParams::speculative).
struct SpeculativeParams {
  ProposerKind proposer = ProposerKind::kNone;
  int32_t max_tokens = 4;  // k: most tokens proposed per step (1..kMaxProposedTokens)
};

constexpr int32_t kMaxProposedTokens = 16;

// Counters, per request (EngineEvent::speculation) and summed over all requests (EngineStats::speculation).
struct SpeculationCounters {
  uint64_t proposed = 0;           // tokens proposed
  uint64_t accepted = 0;           // of those, tokens the target model agreed with
  uint64_t verify_steps = 0;       // steps that verified at least one proposed token
  uint64_t generated_tokens = 0;   // tokens those steps produced (accepted + one from the target each)
};

// One sequence's question to a proposer.
struct DraftRequest {
  uint64_t key = 0;                            // identifies the sequence while it lives (request id, choice)
  const std::vector<int32_t>* tokens = nullptr;  // prompt and accepted generated tokens, in order
  int32_t max_tokens = 0;                      // propose at most this many (>= 1)
  // The request's prefix-cache salt (GenerateParams::cache_salt): a proposer that drafts from cached text
  // reads only text cached under the same salt, so that decode speed reveals nothing across tenants.
  uint64_t cache_salt = 0;
};

class Proposer {
 public:
  virtual ~Proposer() = default;
  // One proposal per request, in order: each at most its max_tokens long, possibly empty (nothing worth
  // verifying). `out` is resized to requests.size().
  virtual void propose(const std::vector<DraftRequest>& requests, std::vector<std::vector<int32_t>>& out) = 0;
  // The sequence `key` ended (finished, aborted, preempted): drop any state kept for it.
  virtual void forget(uint64_t key) { (void)key; }
};

}  // namespace pagedlm::speculative
