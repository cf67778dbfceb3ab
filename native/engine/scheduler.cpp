#include "engine/scheduler.h"

#include <algorithm>

namespace pagedlm {

int64_t Scheduler::reserved_tokens(int64_t prompt_length, int64_t max_tokens) const {
  return std::min<int64_t>(prompt_length + max_tokens, config_.context_length);
}

int32_t Scheduler::blocks_needed(int64_t prompt_length, const GenerateParams& params) const {
  const int32_t own = kv_.blocks_for_tokens(reserved_tokens(prompt_length, params.max_tokens));
  if (params.n <= 1) return own;
  const int32_t shared = static_cast<int32_t>(prompt_length / kv_.block_size());  // full prompt blocks
  return own + 1 + (params.n - 1) * (own - shared + 1);
}

Status Scheduler::check_fits(int64_t prompt_length, const GenerateParams& params) const {
  if (prompt_length >= config_.context_length) {
    return Status(ErrorCode::kContextOverflow, "prompt has " + std::to_string(prompt_length) + " tokens but the context holds " +
                                                   std::to_string(config_.context_length) + " (prompt plus at least one generated token): shorten the prompt or load with a larger contextLength");
  }
  const int32_t blocks = blocks_needed(prompt_length, params);
  if (blocks > kv_.pool().num_blocks()) {
    return Status(ErrorCode::kPoolTooSmall, "request needs " + std::to_string(blocks) + " KV blocks but the pool has " +
                                                std::to_string(kv_.pool().num_blocks()) + ": lower maxTokens or n, or load with a larger kvCache");
  }
  return Status::ok();
}

void Scheduler::add(std::unique_ptr<Sequence> sequence) { waiting_.push_back(std::move(sequence)); }

void Scheduler::admit() {
  while (!waiting_.empty() && static_cast<int32_t>(running_.size()) < config_.max_running) {
    Sequence& next = *waiting_.front();
    const PrefixMatch match = kv_.match_prefix(next.tokens, next.params.cache_salt);
    const int32_t blocks = blocks_needed(next.prompt_length, next.params);
    const int32_t new_blocks = blocks - static_cast<int32_t>(match.blocks.size());
    const int32_t available = kv_.pool().num_free() - match.idle_blocks - promised_blocks_;
    if (new_blocks > available) return;  // first come, first served
    kv_.take_prefix(match, next.prompt_length, next.block_table);
    next.block_hashes = match.hashes;
    next.num_computed_tokens = match.num_tokens;
    next.cached_prompt_tokens = match.num_tokens;
    next.blocks_to_allocate = new_blocks;
    next.status = SequenceStatus::kRunning;
    promised_blocks_ += new_blocks;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

void Scheduler::cache_computed_blocks(Sequence& seq) {
  kv_.cache_full_blocks(seq.tokens, seq.num_computed_tokens, seq.params.cache_salt, seq.block_table, seq.block_hashes);
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
    copy_on_write(seq, plan);
    // Cannot fail: admission promised these blocks.
    const int32_t taken = kv_.allocate_slots(seq.block_table, seq.num_computed_tokens + entry.num_tokens);
    seq.blocks_to_allocate -= taken;
    promised_blocks_ -= taken;
  }
  return plan;
}

void Scheduler::copy_on_write(Sequence& seq, StepPlan& plan) {
  const size_t block = static_cast<size_t>(seq.num_computed_tokens / kv_.block_size());
  if (block >= seq.block_table.size() || kv_.pool().ref_count(seq.block_table[block]) == 1) return;
  // Only a partly filled block can be shared and written: full blocks lie before num_computed_tokens.
  std::vector<BlockId> copy;
  const int32_t taken = kv_.allocate_slots(copy, 1);  // cannot fail: counted in blocks_needed
  (void)taken;
  plan.copies.push_back({seq.block_table[block], copy[0]});
  std::vector<BlockId> old = {seq.block_table[block]};
  kv_.free(old);  // others still hold it
  seq.block_table[block] = copy[0];
  seq.blocks_to_allocate -= 1;
  promised_blocks_ -= 1;
}

std::vector<Sequence*> Scheduler::fork(Sequence& parent) {
  parent.fork_pending = false;
  std::vector<Sequence*> children;
  // Blocks promised to the family at admission: the parent keeps its own share plus its copy block.
  const int32_t own = kv_.blocks_for_tokens(reserved_tokens(parent.prompt_length, parent.params.max_tokens));
  const int32_t child_blocks = own - static_cast<int32_t>(parent.prompt_length / kv_.block_size()) + 1;
  for (int32_t choice = 1; choice < parent.params.n; ++choice) {
    auto child = std::make_unique<Sequence>(parent, choice);
    child->block_table = parent.block_table;
    kv_.retain(child->block_table);
    child->blocks_to_allocate = child_blocks;
    parent.blocks_to_allocate -= child_blocks;
    children.push_back(child.get());
    running_.push_back(std::move(child));
  }
  return children;
}

void Scheduler::remove(Sequence* sequence) {
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if (it->get() != sequence) continue;
    kv_.free(sequence->block_table);
    promised_blocks_ -= sequence->blocks_to_allocate;
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

std::vector<Sequence*> Scheduler::all() const {
  std::vector<Sequence*> all;
  for (const auto& seq : running_) all.push_back(seq.get());
  for (const auto& seq : waiting_) all.push_back(seq.get());
  return all;
}

}  // namespace pagedlm
