// Decides, each step, which sequences run and how many of their tokens, within a token budget that mixes
// chunked prefill with decoding. Running sequences go first, in admission order; when one needs a block and
// the pool has none, the most recently admitted running sequence is preempted: it gives its blocks back and
// returns to the front of the waiting queue, keeping its tokens, to be recomputed later (mostly from the
// prefix cache). Waiting sequences are admitted while blocks remain, preempted ones first, then preferring
// a cached prefix among the first few in line. A decoding sequence with proposed tokens (speculative
// decoding) runs them too when the budget and the pool allow, else plainly. Never includes a backend header: it hands the runner a
// StepPlan. Engine thread only.
#pragma once

#include <deque>
#include <utility>
#include <memory>
#include <vector>

#include "common/status.h"
#include "engine/sequence.h"
#include "kv/kv_cache_manager.h"

namespace pagedlm {

struct SchedulerConfig {
  int32_t max_batch_tokens = 512;  // tokens per forward pass
  int32_t max_running = 64;
  int32_t context_length = 2048;
  // > 0 when every layer of the model attends to a sliding window this wide: the blocks a sequence's window
  // has passed are released as it moves on.
  int32_t sliding_window = 0;
};

struct StepPlan {
  struct Entry {
    Sequence* sequence;
    int32_t num_tokens;  // tokens[num_computed_tokens, num_computed_tokens + num_tokens) run this step
    bool sample;         // the chunk reaches the last token: sample the next one
    // Of num_tokens, the proposed ones at its end (sequence->draft's first `proposed`), which this step
    // verifies: they get logit rows of their own and K/V slots that stay only if they are accepted.
    int32_t proposed = 0;
  };
  std::vector<BlockCopy> copies;  // copy-on-write and partial prefix hits: run before the forward pass
  // Partial prefix hits' copies, whose sources are held until the copies ran (Scheduler::copies_done).
  std::vector<BlockCopy> held_sources;
  std::vector<Entry> entries;
  bool empty() const { return entries.empty(); }
};

class Scheduler {
 public:
  Scheduler(KvCacheManager& kv, SchedulerConfig config);

  // Blocks a request needs to run alone to its end: prompt + max tokens (cut at the context), plus, for n
  // completions, each other completion's own blocks and a copied block each.
  int32_t blocks_needed(int64_t prompt_length, const GenerateParams& params) const;
  // Why a request could never run (context or pool too small); ok when it can wait its turn. Reads only
  // sizes fixed at construction: any thread.
  Status check_fits(int64_t prompt_length, const GenerateParams& params) const;

  void add(std::unique_ptr<Sequence> sequence);
  StepPlan schedule();
  // Call once the plan's copies ran (or failed): lets go of the blocks they copied from.
  void copies_done(StepPlan& plan);
  // Splits a sequence whose prompt is computed into params.n completions sharing its blocks; returns
  // the new ones (choices 1..n-1). The shared, partly filled block is copied before anyone writes to it.
  std::vector<Sequence*> fork(Sequence& parent);
  // Removes a sequence (finished, aborted or failed) from either queue, freeing its blocks.
  void remove(Sequence* sequence);
  // Every sequence of a request (several after a fork).
  std::vector<Sequence*> find(RequestId id);

  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  // After the tokens of a step that verified proposed tokens were appended (and the sequence still runs):
  // every token but the newest has its K/V in the pool, the rejected ones' slots are dead and the blocks
  // wholly past the kept tokens go back; the accepted tokens' full blocks join the prefix cache.
  void commit_verified(Sequence& seq);
  // After a step: registers the blocks its tokens filled in the prefix cache.
  void cache_computed_blocks(Sequence& seq);
  // Then: releases the blocks below the window of its next token, when every layer is windowed.
  void release_passed_blocks(Sequence& seq);
  // Token slots held by running sequences but not yet written: under one block per sequence.
  int64_t unused_slots() const;
  // Block tables of every running sequence (for invariant checks).
  std::vector<const std::vector<BlockId>*> block_tables() const;
  std::vector<Sequence*> all() const;
  std::vector<Sequence*> running() const;
  // The sequences preempted since the last call (now waiting), for whoever keeps state per sequence.
  std::vector<Sequence*> take_preempted() { return std::exchange(preempted_since_, {}); }
  size_t num_running() const { return running_.size(); }
  size_t num_waiting() const { return waiting_.size(); }
  uint64_t preemptions() const { return preemptions_; }

 private:
  // Gives `seq` blocks for `num_tokens` more tokens, copying a shared block it is about to write; false
  // (nothing taken) when the pool lacks them.
  bool allocate(Sequence& seq, int32_t num_tokens, StepPlan& plan);
  // Allocates the blocks of a decode step that also verifies seq.draft (cut to the budget); false, with the
  // draft dropped and nothing taken, when they would leave too few free blocks for the `later` running
  // sequences' own tokens: a proposal never costs anyone a preemption.
  bool reserve_draft(Sequence& seq, int32_t budget, size_t later, StepPlan& plan);
  // Frees a running sequence's blocks and puts it at the front of the waiting queue.
  void preempt(Sequence& victim);
  void admit(int32_t& budget, StepPlan& plan);
  // Index in waiting_ of the next sequence to admit.
  size_t pick_waiting() const;

  KvCacheManager& kv_;
  SchedulerConfig config_;
  int32_t watermark_blocks_;  // kept free at admission so running sequences can grow without preempting
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // admission order
  uint64_t preemptions_ = 0;
  std::vector<Sequence*> preempted_since_;  // take_preempted's
};

}  // namespace pagedlm
