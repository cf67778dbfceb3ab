#include "engine/runner.h"

#include <algorithm>
#include <cmath>
#include <new>

#include "engine/sequence.h"

namespace pagedlm {

void Runner::assemble(const StepPlan& plan) {
  batch_.tokens.clear();
  batch_.sequences.clear();
  batch_.top_k_width = 0;
  for (const StepPlan::Entry& e : plan.entries) {
    const Sequence& seq = *e.sequence;
    BatchSequence bs;
    bs.first_token = static_cast<int32_t>(batch_.tokens.size());
    bs.num_tokens = e.num_tokens;
    bs.start_position = seq.num_computed_tokens;
    bs.block_table = seq.block_table.data();
    const bool samples = e.sample && !seq.embedding;  // an embedding wants hidden rows, never logits
    bs.want_logits = samples;
    bs.want_hidden = seq.embedding.has_value();
    // Log-probabilities and grammar masks need the whole row: no backend shortcut for such a request.
    const bool full_row = seq.params.logprobs.has_value() || seq.grammar.has_value();
    bs.greedy = samples && !full_row && seq.sampler.is_plain_greedy();
    bs.top_k = samples && !full_row ? seq.sampler.top_k_needed(vocab_) : 0;
    bs.logit_rows = samples ? 1 + e.proposed : 1;
    const auto first = seq.tokens.begin() + seq.num_computed_tokens;
    batch_.tokens.insert(batch_.tokens.end(), first, first + (e.num_tokens - e.proposed));
    batch_.tokens.insert(batch_.tokens.end(), seq.draft.begin(), seq.draft.begin() + e.proposed);
    batch_.sequences.push_back(bs);
    batch_.top_k_width = std::max(batch_.top_k_width, bs.top_k);
  }
  const size_t rows = static_cast<size_t>(batch_.num_logit_rows());
  logits_.resize(rows * static_cast<size_t>(vocab_));
  greedy_tokens_.assign(rows, -1);
  top_ids_.assign(rows * static_cast<size_t>(batch_.top_k_width), -1);
  top_values_.resize(top_ids_.size());
  batch_.greedy_tokens = greedy_tokens_.data();
  batch_.top_ids = top_ids_.data();
  batch_.top_values = top_values_.data();
  hidden_.resize(static_cast<size_t>(batch_.num_hidden_rows()) * static_cast<size_t>(hidden_width_));
  batch_.hidden = hidden_.data();
}

Status Runner::run_forward(StepPlan& plan) {
  Status status;
  try {
    assemble(plan);
    for (const BlockCopy& copy : plan.copies) {
      if (status = backend_.copy_block(copy.from, copy.to); !status.is_ok()) break;
    }
    if (status.is_ok()) status = backend_.forward(batch_, logits_.data());
  } catch (const std::bad_alloc&) {
    status = Status(ErrorCode::kOutOfMemory, "out of memory in a forward pass: lower maxBatchTokens or the load on this engine");
  } catch (const std::exception& e) {
    status = Status(ErrorCode::kInternal, std::string("forward pass failed: ") + e.what());
  }
  scheduler_.copies_done(plan);  // whether or not they ran: the sources' holds end with the step
  return status;
}

void Runner::sample_row(Sequence& seq, size_t row, std::vector<SampledToken>& out) {
  const float* logits = logits_.data() + row * static_cast<size_t>(vocab_);
  // n completions: the prompt was computed once; every completion samples its first token from it.
  std::vector<Sequence*> completions = {&seq};
  if (seq.fork_pending) {
    const std::vector<Sequence*> children = scheduler_.fork(seq);
    completions.insert(completions.end(), children.begin(), children.end());
  }
  for (Sequence* s : completions) {
    if (s->grammar) {
      out.push_back(sample_constrained(*s, *s->grammar, logits, s->tokens));
      continue;
    }
    const int32_t token = draw(*s, row, s->tokens);
    SampledToken sampled{s, token, std::nullopt, Status::ok()};
    if (s->params.logprobs) sampled.logprobs = compute_logprobs(logits, vocab_, token, *s->params.logprobs);
    out.push_back(std::move(sampled));
  }
}

int32_t Runner::draw(Sequence& seq, size_t row, const std::vector<int32_t>& history) {
  if (greedy_tokens_[row] >= 0) return greedy_tokens_[row];
  const size_t top = row * static_cast<size_t>(batch_.top_k_width);
  if (batch_.top_k_width > 0 && top_ids_[top] >= 0) return seq.sampler.sample_top_k(&top_ids_[top], &top_values_[top], batch_.top_k_width);
  return seq.sampler.sample(logits_.data() + row * static_cast<size_t>(vocab_), vocab_, history);
}

void Runner::verify_row_run(Sequence& seq, size_t first_row, int32_t proposed, std::vector<SampledToken>& out) {
  history_ = seq.tokens;  // penalties see the accepted tokens as plain decoding would
  // The grammar's state after the tokens drawn so far (the sequence's own advances as the engine takes them).
  std::optional<grammar::GrammarMatcher> matcher;
  if (seq.grammar) matcher.emplace(*seq.grammar);
  const std::vector<int32_t> draft(seq.draft.begin(), seq.draft.begin() + proposed);
  const int32_t accepted = speculative::verify_proposal(draft, [&](size_t i) -> int32_t {
    const size_t row = first_row + i;
    const float* logits = logits_.data() + row * static_cast<size_t>(vocab_);
    SampledToken sampled{&seq, -1, std::nullopt, Status::ok(), true};
    if (matcher) {
      sampled = sample_constrained(seq, *matcher, logits, history_);
      sampled.verified = true;
    } else {
      sampled.token = draw(seq, row, history_);
      if (seq.params.logprobs) sampled.logprobs = compute_logprobs(logits, vocab_, sampled.token, *seq.params.logprobs);
    }
    const int32_t token = sampled.token;
    out.push_back(std::move(sampled));
    history_.push_back(token);
    // The walk ends at a token after which the grammar admits nothing more (an end token, a complete
    // sentence), or none could be drawn: the engine ends the sequence there.
    if (matcher && (token < 0 || !matcher->accept(token).is_ok() || matcher->must_end())) return -1;
    return token;
  });
  seq.draft.clear();
  if (seq.proposal_size) seq.proposal_size->record(proposed, accepted);
  for (speculative::SpeculationCounters* c : {&seq.speculation, &step_speculation_}) {
    c->proposed += static_cast<uint64_t>(proposed);
    c->accepted += static_cast<uint64_t>(accepted);
    c->verify_steps += 1;
    c->generated_tokens += static_cast<uint64_t>(accepted) + 1;
  }
}

SampledToken Runner::sample_constrained(Sequence& seq, grammar::GrammarMatcher& matcher, const float* logits,
                                        const std::vector<int32_t>& history) {
  SampledToken sampled{&seq, -1, std::nullopt, Status::ok()};
  // Greedy: the row's best token is the masked row's best whenever the grammar allows it, which it mostly
  // does once the text is inside a literal or a string; only a refusal pays for the whole mask.
  if (seq.sampler.is_plain_greedy()) {
    const int32_t best = seq.sampler.sample(logits, vocab_, history);
    if (matcher.allows(best)) sampled.token = best;
  }
  if (sampled.token < 0) {
    matcher.fill_mask(mask_);
    masked_logits_.assign(logits, logits + vocab_);
    bool any = false;
    for (int32_t t = 0; t < vocab_; ++t) {
      if (grammar::mask_allows(mask_, t)) any = true;
      else masked_logits_[static_cast<size_t>(t)] = -INFINITY;
    }
    if (!any) {
      sampled.error = Status(ErrorCode::kInvalidArgument, "grammar: no token of the vocabulary can continue the text here");
      return sampled;
    }
    sampled.token = seq.sampler.sample(masked_logits_.data(), vocab_, history);
    // Every allowed logit -inf (or NaN): the sampler's pick may be any token; take an allowed one.
    if (!grammar::mask_allows(mask_, sampled.token)) {
      for (int32_t t = 0; t < vocab_; ++t) {
        if (grammar::mask_allows(mask_, t)) {
          sampled.token = t;
          break;
        }
      }
    }
  }
  if (seq.params.logprobs) sampled.logprobs = compute_logprobs(logits, vocab_, sampled.token, *seq.params.logprobs);
  return sampled;
}

Result<std::vector<SampledToken>> Runner::execute(StepPlan& plan) {
  step_speculation_ = {};
  if (Status s = run_forward(plan); !s.is_ok()) return s;
  std::vector<SampledToken> sampled;
  size_t row = 0;
  size_t hidden_row = 0;
  for (const StepPlan::Entry& e : plan.entries) {
    Sequence& seq = *e.sequence;
    if (seq.embedding) {
      const float* rows = hidden_.data() + hidden_row * static_cast<size_t>(hidden_width_);
      seq.embedding->add(rows, seq.num_computed_tokens, e.num_tokens, seq.prompt_length);
      hidden_row += static_cast<size_t>(e.num_tokens);
    }
    seq.num_computed_tokens += e.num_tokens - e.proposed;
    scheduler_.cache_computed_blocks(seq);
    scheduler_.release_passed_blocks(seq);
    if (e.sample && !seq.embedding && e.proposed > 0) {
      verify_row_run(seq, row, e.proposed, sampled);
      row += static_cast<size_t>(1 + e.proposed);
    } else if (e.sample && !seq.embedding) {
      sample_row(seq, row++, sampled);
    }
  }
  return sampled;
}

}  // namespace pagedlm
