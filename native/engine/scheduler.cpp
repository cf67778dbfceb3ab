#include "engine/scheduler.h"

#include <algorithm>

namespace pagedlm {

namespace {
constexpr size_t kAdmissionLookahead = 8;  // waiting sequences compared for the longest cached prefix
}  // namespace

Scheduler::Scheduler(KvCacheManager& kv, SchedulerConfig config)
    : kv_(kv), config_(config), watermark_blocks_(std::max(1, kv.pool().num_blocks() / 100)) {}

int32_t Scheduler::blocks_needed(int64_t prompt_length, const GenerateParams& params) const {
  const int32_t own = kv_.blocks_for_tokens(std::min<int64_t>(prompt_length + params.max_tokens, config_.context_length));
  if (params.n <= 1) {
    if (config_.sliding_window <= 0) return own;
    // Released as the window moves (release_passed_blocks), a sequence holds at most the window behind its
    // next step, that step's tokens, and a block of misalignment.
    return std::min(own, kv_.blocks_for_tokens(int64_t{config_.sliding_window} + config_.max_batch_tokens) + 1);
  }
  const int32_t shared = static_cast<int32_t>(prompt_length / kv_.block_size());  // full prompt blocks
  return own + 1 + (params.n - 1) * (own - shared + 1);
}

Status Scheduler::check_fits(int64_t prompt_length, const GenerateParams& params) const {
  if (!params.embed && prompt_length >= config_.context_length) {
    return Status(ErrorCode::kContextOverflow, "prompt has " + std::to_string(prompt_length) + " tokens but the context holds " +
                                                   std::to_string(config_.context_length) + " (prompt plus at least one generated token): shorten the prompt or load with a larger contextLength");
  }
  if (params.embed && prompt_length > config_.context_length) {
    return Status(ErrorCode::kContextOverflow, "input has " + std::to_string(prompt_length) + " tokens but the context holds " +
                                                   std::to_string(config_.context_length) + ": shorten it or load with a larger contextLength");
  }
  const int32_t blocks = blocks_needed(prompt_length, params);
  if (blocks > kv_.pool().num_blocks()) {
    return Status(ErrorCode::kPoolTooSmall, "request needs " + std::to_string(blocks) + " KV blocks but the pool has " +
                                                std::to_string(kv_.pool().num_blocks()) + ": lower maxTokens or n, or load with a larger kvCache");
  }
  return Status::ok();
}

void Scheduler::add(std::unique_ptr<Sequence> sequence) { waiting_.push_back(std::move(sequence)); }

bool Scheduler::allocate(Sequence& seq, int32_t num_tokens, StepPlan& plan) {
  const size_t block = static_cast<size_t>(seq.num_computed_tokens / kv_.block_size());
  // Only a partly filled block can be shared and written: full blocks lie before num_computed_tokens.
  const bool copy = block < seq.block_table.size() && kv_.pool().ref_count(seq.block_table[block]) > 1;
  const int32_t grow = kv_.blocks_for_tokens(seq.num_computed_tokens + num_tokens) - static_cast<int32_t>(seq.block_table.size());
  if (std::max(grow, 0) + (copy ? 1 : 0) > kv_.pool().num_free()) return false;
  if (copy) {
    std::vector<BlockId> fresh;
    kv_.allocate_slots(fresh, 1);
    plan.copies.push_back({seq.block_table[block], fresh[0]});
    std::vector<BlockId> shared = {seq.block_table[block]};
    kv_.free(shared);  // the other holders keep it
    seq.block_table[block] = fresh[0];
  }
  kv_.allocate_slots(seq.block_table, seq.num_computed_tokens + num_tokens);
  return true;
}

bool Scheduler::reserve_draft(Sequence& seq, int32_t budget, size_t later, StepPlan& plan) {
  if (seq.num_uncomputed() != 1 || seq.embedding) seq.draft.clear();
  if (static_cast<int32_t>(seq.draft.size()) > budget - 1) seq.draft.resize(static_cast<size_t>(std::max(0, budget - 1)));
  if (seq.draft.empty()) return false;
  const auto proposed = static_cast<int32_t>(seq.draft.size());
  const int32_t plain_blocks = std::max(kv_.blocks_for_tokens(seq.num_computed_tokens + 1), static_cast<int32_t>(seq.block_table.size()));
  const int32_t extra = kv_.blocks_for_tokens(seq.num_computed_tokens + 1 + proposed) - plain_blocks;
  // The sequences after it may each need a block for their own next token.
  if (extra > 0 && extra > kv_.pool().num_free() - static_cast<int32_t>(later) - watermark_blocks_) {
    seq.draft.clear();
    return false;
  }
  if (!allocate(seq, 1 + proposed, plan)) {
    seq.draft.clear();
    return false;
  }
  return true;
}

void Scheduler::preempt(Sequence& victim) {
  victim.draft.clear();
  kv_.free(victim.block_table);
  victim.block_hashes.clear();
  victim.num_computed_tokens = 0;
  victim.preempted = true;
  ++preemptions_;
  preempted_since_.push_back(&victim);
  const auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& s) { return s.get() == &victim; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  int32_t budget = config_.max_batch_tokens;
  bool preempted = false;
  // Running sequences in admission order; victims come from the back, so none is already planned.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& seq = *running_[i];
    const int32_t uncomputed = seq.num_uncomputed();
    if (reserve_draft(seq, budget, running_.size() - i - 1, plan)) {
      const auto proposed = static_cast<int32_t>(seq.draft.size());
      plan.entries.push_back({&seq, 1 + proposed, true, proposed});
      budget -= 1 + proposed;
      continue;
    }
    const int32_t n = uncomputed == 1 ? 1 : std::min(uncomputed, budget);
    bool scheduled = true;
    while (!allocate(seq, n, plan)) {
      preempted = true;
      Sequence& victim = *running_.back();
      preempt(victim);
      if (&victim == &seq) {
        scheduled = false;
        break;
      }
    }
    if (!scheduled) break;  // it was the last running sequence
    plan.entries.push_back({&seq, n, n == uncomputed});
    budget -= n;
  }
  // Admitting now would only preempt again.
  if (!preempted) admit(budget, plan);
  return plan;
}

void Scheduler::copies_done(StepPlan& plan) {
  for (const BlockCopy& copy : plan.held_sources) kv_.release_copy_source(copy);
  plan.held_sources.clear();
}

size_t Scheduler::pick_waiting() const {
  if (waiting_.front()->preempted) return 0;  // resume before starting anything new
  size_t best = 0;
  int32_t best_hit = 0;
  for (size_t i = 0; i < waiting_.size() && i < kAdmissionLookahead; ++i) {
    const int32_t hit = kv_.match_prefix(waiting_[i]->tokens, waiting_[i]->params.cache_salt).num_tokens;
    if (hit > best_hit) {
      best = i;
      best_hit = hit;
    }
  }
  return best;
}

void Scheduler::admit(int32_t& budget, StepPlan& plan) {
  while (budget > 0 && !waiting_.empty() && static_cast<int32_t>(running_.size()) < config_.max_running) {
    const size_t index = pick_waiting();
    Sequence& next = *waiting_[index];
    // An embedding needs the hidden states of its every token, which cached blocks do not keep.
    PrefixMatch match = next.embedding ? PrefixMatch{} : kv_.match_prefix(next.tokens, next.params.cache_salt);
    int32_t uncomputed = static_cast<int32_t>(next.tokens.size()) - match.num_tokens;
    int32_t n = std::min(uncomputed, budget);
    // Offloaded blocks are restored into fresh blocks: they count as new.
    const int32_t new_blocks = kv_.blocks_for_tokens(match.num_tokens + n) - match.resident_blocks();
    if (new_blocks > kv_.pool().num_free() - match.idle_blocks - watermark_blocks_) return;
    const BlockCopy partial = next.embedding ? BlockCopy{} : kv_.take_prefix(match, next.preempted ? 0 : next.prompt_length, next.block_table);
    // A failed restore shortened the match: more to compute, and maybe more blocks than were counted.
    uncomputed = static_cast<int32_t>(next.tokens.size()) - match.num_tokens;
    n = std::min(uncomputed, budget);
    if (kv_.allocate_slots(next.block_table, match.num_tokens + n) < 0) {
      if (partial.from != kNoBlock) kv_.release_copy_source(partial);
      kv_.free(next.block_table);  // it waits, and matches again without the lost block
      return;
    }
    if (partial.from != kNoBlock) {
      plan.copies.push_back({partial.from, partial.to});
      plan.held_sources.push_back(partial);
    }
    next.block_hashes = match.hashes;
    next.num_computed_tokens = match.num_tokens;
    if (!next.preempted) next.cached_prompt_tokens = match.num_tokens;
    plan.entries.push_back({&next, n, n == uncomputed});
    budget -= n;
    running_.push_back(std::move(waiting_[index]));
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(index));
  }
}

void Scheduler::cache_computed_blocks(Sequence& seq) {
  // An embedding's text stays out of the cache: it carries no salt of its own, and no one asked to reuse it.
  if (seq.embedding) return;
  kv_.cache_full_blocks(seq.tokens, seq.num_computed_tokens, seq.params.cache_salt, seq.block_table, seq.block_hashes);
}

void Scheduler::commit_verified(Sequence& seq) {
  seq.num_computed_tokens = static_cast<int32_t>(seq.tokens.size()) - 1;
  kv_.truncate(seq.block_table, seq.num_computed_tokens);
  cache_computed_blocks(seq);
  release_passed_blocks(seq);
}

void Scheduler::release_passed_blocks(Sequence& seq) {
  // The next token, at position num_computed_tokens, reads positions (num_computed_tokens - window, ...].
  if (config_.sliding_window > 0) kv_.release_below(seq.block_table, int64_t{seq.num_computed_tokens} - config_.sliding_window + 1);
}

int64_t Scheduler::unused_slots() const {
  int64_t unused = 0;
  for (const auto& seq : running_) unused += static_cast<int64_t>(seq->block_table.size()) * kv_.block_size() - seq->num_computed_tokens;
  return unused;
}

std::vector<const std::vector<BlockId>*> Scheduler::block_tables() const {
  std::vector<const std::vector<BlockId>*> tables;
  for (const auto& seq : running_) tables.push_back(&seq->block_table);
  return tables;
}

std::vector<Sequence*> Scheduler::fork(Sequence& parent) {
  parent.fork_pending = false;
  std::vector<Sequence*> children;
  for (int32_t choice = 1; choice < parent.params.n; ++choice) {
    auto child = std::make_unique<Sequence>(parent, choice);
    child->block_table = parent.block_table;
    kv_.retain(child->block_table);
    children.push_back(child.get());
    running_.push_back(std::move(child));
  }
  return children;
}

void Scheduler::remove(Sequence* sequence) {
  std::erase(preempted_since_, sequence);
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->get() != sequence) continue;
    kv_.free(sequence->block_table);
    running_.erase(it);
    return;
  }
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (it->get() != sequence) continue;
    waiting_.erase(it);
    return;
  }
}

std::vector<Sequence*> Scheduler::find(RequestId id) {
  std::vector<Sequence*> found;
  for (auto& seq : running_) {
    if (seq->id == id) found.push_back(seq.get());
  }
  for (auto& seq : waiting_) {
    if (seq->id == id) found.push_back(seq.get());
  }
  return found;
}

std::vector<Sequence*> Scheduler::running() const {
  std::vector<Sequence*> running;
  for (const auto& seq : running_) running.push_back(seq.get());
  return running;
}

std::vector<Sequence*> Scheduler::all() const {
  std::vector<Sequence*> all;
  for (const auto& seq : running_) all.push_back(seq.get());
  for (const auto& seq : waiting_) all.push_back(seq.get());
  return all;
}

}  // namespace pagedlm
