#include "engine/scheduler.h"

#include <algorithm>

namespace pagedlm {

int64_t Scheduler::reserved_tokens(int64_t prompt_length, int64_t max_tokens) const {
  return std::min<int64_t>(prompt_length + max_tokens, config_.context_length);
}

Status Scheduler::check_fits(int64_t prompt_length, int64_t max_tokens) const {
  if (prompt_length >= config_.context_length) {
    return Status(ErrorCode::kContextOverflow, "prompt has " + std::to_string(prompt_length) + " tokens but the context holds " +
                                                   std::to_string(config_.context_length) + " (prompt plus at least one generated token): shorten the prompt or load with a larger contextLength");
  }
  const int32_t blocks = kv_.blocks_for_tokens(reserved_tokens(prompt_length, max_tokens));
  if (blocks > kv_.pool().num_blocks()) {
    return Status(ErrorCode::kPoolTooSmall, "request needs " + std::to_string(blocks) + " KV blocks but the pool has " +
                                                std::to_string(kv_.pool().num_blocks()) + ": lower maxTokens or load with a larger kvCache");
  }
  return Status::ok();
}

void Scheduler::add(std::unique_ptr<Sequence> sequence) { waiting_.push_back(std::move(sequence)); }

void Scheduler::admit() {
  while (!waiting_.empty() && static_cast<int32_t>(running_.size()) < config_.max_running) {
    Sequence& next = *waiting_.front();
    const int32_t blocks = kv_.blocks_for_tokens(reserved_tokens(next.prompt_length, next.params.max_tokens));
    if (reserved_blocks_ + blocks > kv_.pool().num_blocks()) return;  // first come, first served
    next.reserved_blocks = blocks;
    next.status = SequenceStatus::kRunning;
    reserved_blocks_ += blocks;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

StepPlan Scheduler::schedule() {
  admit();
  StepPlan plan;
  int32_t budget = config_.max_batch_tokens;
  // Decode tokens first: they are cheap and keep streams flowing.
  for (auto& seq : running_) {
    if (seq->num_uncomputed() == 1 && budget > 0) {
      plan.entries.push_back({seq.get(), 1, true});
      --budget;
    }
  }
  for (auto& seq : running_) {
    const int32_t remaining = seq->num_uncomputed();
    if (remaining <= 1 || budget <= 0) continue;
    const int32_t chunk = std::min(remaining, budget);
    plan.entries.push_back({seq.get(), chunk, chunk == remaining});
    budget -= chunk;
  }
  for (const auto& entry : plan.entries) {
    Sequence& seq = *entry.sequence;
    // Cannot fail: admission reserved these blocks.
    const bool ok = kv_.allocate_slots(seq.block_table, seq.num_computed_tokens + entry.num_tokens);
    (void)ok;
  }
  return plan;
}

std::unique_ptr<Sequence> Scheduler::remove(RequestId id) {
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if ((*it)->id != id) continue;
    std::unique_ptr<Sequence> seq = std::move(*it);
    running_.erase(it);
    kv_.free(seq->block_table);
    reserved_blocks_ -= seq->reserved_blocks;
    seq->status = SequenceStatus::kFinished;
    return seq;
  }
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id != id) continue;
    std::unique_ptr<Sequence> seq = std::move(*it);
    waiting_.erase(it);
    seq->status = SequenceStatus::kFinished;
    return seq;
  }
  return nullptr;
}

Sequence* Scheduler::find(RequestId id) {
  for (auto& seq : running_) {
    if (seq->id == id) return seq.get();
  }
  for (auto& seq : waiting_) {
    if (seq->id == id) return seq.get();
  }
  return nullptr;
}

std::vector<RequestId> Scheduler::all_ids() const {
  std::vector<RequestId> ids;
  for (const auto& seq : running_) ids.push_back(seq->id);
  for (const auto& seq : waiting_) ids.push_back(seq->id);
  return ids;
}

}  // namespace pagedlm
