// One request's state while the engine works on it. Owned by the engine thread.
#pragma once

#include <chrono>
#include <optional>
#include <vector>

#include "engine/pooling.h"
#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/text_stream.h"
#include "kv/block_hash.h"
#include "kv/block_pool.h"
#include "speculative/proposer.h"
#include "speculative/verify.h"

namespace pagedlm {

using Clock = std::chrono::steady_clock;

struct Sequence {
  explicit Sequence(GenerateRequest request)
      : id(request.id), tokens(std::move(request.prompt)), prompt_length(static_cast<int32_t>(tokens.size())),
        params(std::move(request.params)), sampler(params.sampling), text(params.stop_strings), submitted(Clock::now()) {
    fork_pending = params.n > 1;
    start_speculation();
  }

  // Completion `choice` of the same request, sharing everything computed so far (the caller shares the
  // blocks). Its sampler is seeded apart so that sampled completions differ.
  Sequence(const Sequence& parent, int32_t choice_index)
      : id(parent.id), choice(choice_index), tokens(parent.tokens), prompt_length(parent.prompt_length),
        num_computed_tokens(parent.num_computed_tokens), block_hashes(parent.block_hashes),
        cached_prompt_tokens(parent.cached_prompt_tokens), params(parent.params),
        sampler(seeded_for_choice(parent.params.sampling, choice_index)), grammar(parent.grammar), text(parent.params.stop_strings),
        submitted(parent.submitted) {
    start_speculation();
  }

  static SamplingParams seeded_for_choice(SamplingParams s, int32_t choice_index) {
    if (s.seed) s.seed = *s.seed + static_cast<uint64_t>(choice_index) * 0x9E3779B97F4A7C15ull;
    return s;
  }

  // Each completion adapts its own proposal size.
  void start_speculation() {
    if (params.speculative.proposer != speculative::ProposerKind::kNone) proposal_size.emplace(params.speculative.max_tokens);
  }
  // Identifies the sequence to its proposer (DraftRequest::key).
  uint64_t speculation_key() const { return id * 65536 + static_cast<uint64_t>(choice); }

  int32_t num_generated() const { return static_cast<int32_t>(tokens.size()) - prompt_length; }
  int32_t num_uncomputed() const { return static_cast<int32_t>(tokens.size()) - num_computed_tokens; }

  RequestId id;
  int32_t choice = 0;               // completion index within its request (params.n > 1)
  bool fork_pending = false;        // params.n > 1 and the n completions have not been forked yet
  std::vector<int32_t> tokens;      // prompt then generated ids
  int32_t prompt_length;
  int32_t num_computed_tokens = 0;  // tokens whose K/V are in the pool
  std::vector<BlockId> block_table; // grows while running; cut back only past rejected proposed tokens
  std::vector<BlockHash> block_hashes;  // hashes of its full blocks registered in the prefix cache
  int32_t cached_prompt_tokens = 0; // prompt tokens reused from the prefix cache at admission
  bool preempted = false;           // gave its blocks back at least once; recomputed on readmission
  GenerateParams params;
  Sampler sampler;
  std::optional<grammar::GrammarMatcher> grammar;  // params.grammar's state after the generated tokens
  TextStream text;
  std::string generated_text;
  std::vector<TokenLogprobs> logprobs;  // params.logprobs set: one per generated token
  Clock::time_point submitted;
  Clock::time_point first_token;
  // Speculative decoding (params.speculative): the proposed tokens this step verifies, held apart from
  // `tokens` until accepted; how many to propose next; what its proposals came to.
  std::vector<int32_t> draft;
  std::optional<speculative::AdaptiveK> proposal_size;
  speculative::SpeculationCounters speculation;
  std::optional<EmbeddingPool> embedding;  // params.embed: pools its hidden rows (set by Engine::submit)
};

}  // namespace pagedlm
