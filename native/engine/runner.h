// Turns a StepPlan (which sequences, how many tokens each) into one forward pass and the tokens it samples.
// Owns the step's batch metadata and result buffers (logits, backend-picked tokens and candidates), so the
// engine thread reuses them from step to step. It never allocates KV blocks itself: block copies come in
// the plan, and the only block work it asks of the scheduler is what a finished pass implies (register
// computed blocks in the prefix cache, fork n completions that share the prompt's blocks). Engine thread only.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "backend/backend.h"
#include "common/status.h"
#include "engine/scheduler.h"

namespace pagedlm {

struct SampledToken {
  Sequence* sequence;
  int32_t token;
  std::optional<TokenLogprobs> logprobs;  // when the request asked for them
  Status error;  // not ok: no token could be drawn (a grammar no token of the vocabulary can continue)
  bool verified = false;  // drawn by a step that verified proposed tokens (Scheduler::commit_verified follows)
};

class Runner {
 public:
  Runner(Backend& backend, Scheduler& scheduler, int32_t vocab_size, int32_t hidden_width)
      : backend_(backend), scheduler_(scheduler), vocab_(vocab_size), hidden_width_(hidden_width) {}

  // Runs the plan's block copies and its forward pass, then, for each entry, advances its computed tokens,
  // caches the blocks they filled and, where the entry samples, forks its pending completions and draws
  // one token for each; an embedding entry pools its hidden rows instead. Returns those tokens in plan order (a sequence's completions after it), or the
  // error that failed the pass (no exception escapes; nothing advanced).
  // An entry that verifies proposed tokens returns the tokens plain decoding would have drawn from its
  // rows: the accepted proposed tokens, then one from the target model (speculative/verify.h); it
  // advances its computed tokens past the last token it had before the step only (the engine commits the
  // accepted ones with Scheduler::commit_verified once they are appended).
  Result<std::vector<SampledToken>> execute(StepPlan& plan);
  // What the last execute's verifying entries came to, summed.
  const speculative::SpeculationCounters& step_speculation() const { return step_speculation_; }

 private:
  // Fills batch_ from the plan and sizes the result buffers for its logit rows.
  void assemble(const StepPlan& plan);
  Status run_forward(StepPlan& plan);
  // Draws each completion's token from logit row `row` (or what the backend picked for it).
  void sample_row(Sequence& seq, size_t row, std::vector<SampledToken>& out);
  // The token plain decoding draws for `seq` from logit row `row`, after `history`.
  int32_t draw(Sequence& seq, size_t row, const std::vector<int32_t>& history);
  // Draws from the rows of an entry that verifies `proposed` tokens, keeping the proposed tokens the draws
  // agree with; one SampledToken per token drawn.
  void verify_row_run(Sequence& seq, size_t first_row, int32_t proposed, std::vector<SampledToken>& out);
  // A draw for `seq` restricted to the tokens `matcher` (its grammar's state after `history`) allows next.
  SampledToken sample_constrained(Sequence& seq, grammar::GrammarMatcher& matcher, const float* logits, const std::vector<int32_t>& history);

  Backend& backend_;
  Scheduler& scheduler_;
  int32_t vocab_;
  int32_t hidden_width_;
  ForwardBatch batch_;
  std::vector<float> logits_;          // [rows, vocab]
  std::vector<int32_t> greedy_tokens_; // [rows]: tokens the backend picked itself, else -1
  std::vector<int32_t> top_ids_;       // [rows, top_k_width]: candidates the backend picked, else -1
  std::vector<float> top_values_;
  grammar::TokenMask mask_;            // sample_constrained's scratch: allowed tokens
  std::vector<float> masked_logits_;   // and the row with every other token at -inf
  std::vector<float> hidden_;          // [hidden rows, hidden_width]: embedding sequences' final-norm rows
  std::vector<int32_t> history_;       // verify_row_run's scratch: the tokens before the row it draws from
  speculative::SpeculationCounters step_speculation_;
};

}  // namespace pagedlm
