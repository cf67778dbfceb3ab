// The scheduler's decisions, step by step, without a model: a Scheduler over a small block pool drives the
// real Runner on a TokenKvBackend (token ids as KV). Every step checks the pool's invariants; outputs are
// compared with each request decoded alone, which any wrong block would change.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <map>

#include "engine/runner.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "kv/kv_cache_manager.h"
#include "support/token_kv_backend.h"

namespace pagedlm {
namespace {

constexpr int32_t kVocab = 500;
constexpr int32_t kHiddenWidth = 1;  // no embedding requests run here: the backend computes no hidden states

class SchedulerBench {
 public:
  SchedulerBench(int32_t blocks, int32_t block_size, int32_t batch_tokens, int32_t context = 256)
      : backend_(blocks, block_size, kVocab), kv_(blocks, block_size), scheduler_(kv_, config(batch_tokens, context)), runner_(backend_, scheduler_, kVocab, kHiddenWidth) {}

  static SchedulerConfig config(int32_t batch_tokens, int32_t context) {
    SchedulerConfig c;
    c.max_batch_tokens = batch_tokens;
    c.context_length = context;
    return c;
  }

  // Set: before each step, every running sequence past its prompt verifies the tokens it returns
  // (speculative decoding), cut to what fits before its max_tokens.
  std::function<std::vector<int32_t>(const Sequence&)> proposer;

  Sequence* add(RequestId id, std::vector<int32_t> prompt, int32_t max_tokens, int32_t n = 1, uint64_t salt = 0) {
    GenerateRequest r;
    r.id = id;
    r.prompt = std::move(prompt);
    r.params.max_tokens = max_tokens;
    r.params.n = n;
    r.params.cache_salt = salt;
    r.params.sampling.temperature = 0;
    if (proposer) r.params.speculative = {speculative::ProposerKind::kNgram, speculative::kMaxProposedTokens};
    auto seq = std::make_unique<Sequence>(std::move(r));
    Sequence* raw = seq.get();
    scheduler_.add(std::move(seq));
    return raw;
  }

  // One engine step: schedule, run, append each sampled token, retire sequences at max_tokens.
  StepPlan step() {
    if (proposer) propose();
    StepPlan plan = scheduler_.schedule();
    if (plan.empty()) return plan;
    auto sampled = runner_.execute(plan);
    EXPECT_TRUE(sampled.is_ok()) << sampled.status().message();
    const std::vector<SampledToken>& tokens = sampled.value();
    const Sequence* ended = nullptr;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const SampledToken& s = tokens[i];
      Sequence& seq = *s.sequence;
      if (&seq == ended) continue;
      seq.tokens.push_back(s.token);
      if (s.logprobs) logprobs_[{seq.id, seq.choice}].push_back(*s.logprobs);
      if (seq.num_generated() >= seq.params.max_tokens) {
        outputs_[{seq.id, seq.choice}] = std::vector<int32_t>(seq.tokens.begin() + seq.prompt_length, seq.tokens.end());
        scheduler_.remove(&seq);
        ended = &seq;
        continue;
      }
      if (s.verified && (i + 1 == tokens.size() || tokens[i + 1].sequence != &seq)) scheduler_.commit_verified(seq);
    }
    kv_.check_invariants(scheduler_.block_tables());
    if (proposer) {
      // Rejected proposed tokens leave no blocks behind: a table covers the computed tokens, no more.
      for (const Sequence* seq : scheduler_.running()) {
        EXPECT_EQ(static_cast<int32_t>(seq->block_table.size()), kv_.blocks_for_tokens(seq->num_computed_tokens)) << "request " << seq->id;
      }
    }
    return plan;
  }

  void run_to_end(int max_steps = 10000) {
    for (int i = 0; i < max_steps && scheduler_.has_work(); ++i) step();
    ASSERT_FALSE(scheduler_.has_work()) << "still working after " << max_steps << " steps";
  }

  // What greedy decoding of `prompt` alone produces.
  std::vector<int32_t> alone(std::vector<int32_t> prompt, int32_t max_tokens) const {
    std::vector<int32_t> out;
    for (int i = 0; i < max_tokens; ++i) {
      out.push_back(backend_.next_token(prompt));
      prompt.push_back(out.back());
    }
    return out;
  }

  void propose() {
    for (Sequence* seq : scheduler_.running()) {
      seq->draft.clear();
      if (seq->num_uncomputed() != 1 || seq->fork_pending) continue;
      seq->draft = proposer(*seq);
      const int32_t room = speculative::proposal_room(seq->num_generated(), seq->params.max_tokens, static_cast<int32_t>(seq->tokens.size()), 1 << 30);
      if (static_cast<int32_t>(seq->draft.size()) > room) seq->draft.resize(static_cast<size_t>(room));
    }
  }

  const std::vector<int32_t>& output(RequestId id, int32_t choice = 0) { return outputs_.at({id, choice}); }
  // The logprobs the runner returned with each token of a request that asked for them.
  const std::vector<TokenLogprobs>& logprobs(RequestId id, int32_t choice = 0) { return logprobs_[{id, choice}]; }
  Scheduler& scheduler() { return scheduler_; }
  KvCacheManager& kv() { return kv_; }
  testing::TokenKvBackend& backend() { return backend_; }

 private:
  testing::TokenKvBackend backend_;
  KvCacheManager kv_;
  Scheduler scheduler_;
  Runner runner_;
  std::map<std::pair<RequestId, int32_t>, std::vector<int32_t>> outputs_;
  std::map<std::pair<RequestId, int32_t>, std::vector<TokenLogprobs>> logprobs_;
};

std::vector<int32_t> prompt_of(int length, int seed) {
  std::vector<int32_t> t;
  for (int i = 0; i < length; ++i) t.push_back(1 + (seed * 131 + i * 17) % (kVocab - 1));
  return t;
}

bool planned(const StepPlan& plan, const Sequence* seq) {
  for (const StepPlan::Entry& e : plan.entries) {
    if (e.sequence == seq) return true;
  }
  return false;
}

TEST(SchedulerAdmission, WaitsForBlocksThenRunsWhenTheyFree) {
  // 8 blocks of 4 tokens: the first request takes 6 (20 prompt + 4 generated), leaving too few for the
  // second's 5 plus the one-block watermark.
  SchedulerBench bench(8, 4, 64);
  Sequence* first = bench.add(1, prompt_of(20, 1), 4);
  Sequence* second = bench.add(2, prompt_of(16, 2), 4);
  const StepPlan plan = bench.step();
  EXPECT_TRUE(planned(plan, first));
  EXPECT_FALSE(planned(plan, second));
  EXPECT_EQ(bench.scheduler().num_waiting(), 1u);
  bench.run_to_end();
  EXPECT_EQ(bench.output(1), bench.alone(prompt_of(20, 1), 4));
  EXPECT_EQ(bench.output(2), bench.alone(prompt_of(16, 2), 4));
  EXPECT_EQ(bench.scheduler().preemptions(), 0u);
  EXPECT_EQ(bench.kv().pool().num_in_use(), 0);
}

TEST(SchedulerBudget, ChunksPrefillAndPutsRunningDecodesFirst) {
  SchedulerBench bench(64, 4, 16);
  bench.add(1, prompt_of(3, 1), 8);
  bench.step();  // prefill of the short prompt: it decodes from here on
  bench.add(2, prompt_of(40, 2), 2);
  std::vector<std::vector<testing::TokenKvBackend::Row>> expected = {
      {{3, 1, true}, {0, 15, false}},  // one decode token first, then the rest of the budget
      {{4, 1, true}, {15, 15, false}},
      {{5, 1, true}, {30, 10, true}},  // the last chunk reaches the prompt's end: it samples
  };
  for (const auto& rows : expected) {
    const StepPlan plan = bench.step();
    int32_t tokens = 0;
    for (const StepPlan::Entry& e : plan.entries) tokens += e.num_tokens;
    EXPECT_LE(tokens, 16);
    const auto& pass = bench.backend().passes().back();
    ASSERT_EQ(pass.size(), rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(pass[i].start_position, rows[i].start_position) << "row " << i;
      EXPECT_EQ(pass[i].num_tokens, rows[i].num_tokens) << "row " << i;
      EXPECT_EQ(pass[i].want_logits, rows[i].want_logits) << "row " << i;
    }
  }
  bench.run_to_end();
  EXPECT_EQ(bench.output(1), bench.alone(prompt_of(3, 1), 8));
  EXPECT_EQ(bench.output(2), bench.alone(prompt_of(40, 2), 2));
}

TEST(SchedulerPreemption, TakesTheNewestRunningSequenceAndResumesItFirst) {
  // Three sequences admitted together outgrow a 12-block pool as they decode.
  SchedulerBench bench(12, 4, 64);
  Sequence* oldest = bench.add(1, prompt_of(8, 1), 12);
  Sequence* middle = bench.add(2, prompt_of(8, 2), 12);
  Sequence* newest = bench.add(3, prompt_of(8, 3), 12);
  bench.step();
  ASSERT_EQ(bench.scheduler().num_running(), 3u);
  while (bench.scheduler().preemptions() == 0) {
    ASSERT_TRUE(bench.scheduler().has_work());
    bench.step();
  }
  // The newest went back to the front of the waiting queue; the older two kept running.
  EXPECT_TRUE(newest->preempted);
  EXPECT_FALSE(oldest->preempted);
  EXPECT_FALSE(middle->preempted);
  EXPECT_EQ(newest->num_computed_tokens, 0);
  EXPECT_TRUE(newest->block_table.empty());
  // A request arriving now waits behind the preempted one.
  Sequence* late = bench.add(4, prompt_of(4, 4), 2);
  bool newest_back = false;
  while (bench.scheduler().has_work()) {
    const StepPlan plan = bench.step();
    if (planned(plan, newest)) newest_back = true;
    if (planned(plan, late)) {
      EXPECT_TRUE(newest_back) << "a new request was admitted before the preempted one resumed";
      break;
    }
  }
  bench.run_to_end();
  for (int id = 1; id <= 3; ++id) EXPECT_EQ(bench.output(id), bench.alone(prompt_of(8, id), 12)) << "request " << id;
  EXPECT_EQ(bench.output(4), bench.alone(prompt_of(4, 4), 2));
  EXPECT_EQ(bench.kv().pool().num_in_use(), 0);
}

TEST(SchedulerPrefixCache, AdmitsTheWaitingRequestWithACachedPrefixFirst) {
  SchedulerBench bench(64, 4, 64);
  const std::vector<int32_t> system = prompt_of(16, 7);
  std::vector<int32_t> with_system = system;
  with_system.push_back(42);
  bench.add(1, system, 1);
  bench.run_to_end();
  // Queued behind a request with nothing cached, the one whose first 16 tokens are cached goes first.
  // Two tokens each, so that both are still running (and readable) after the step that admits them.
  Sequence* cold = bench.add(2, prompt_of(30, 8), 2);
  Sequence* warm = bench.add(3, with_system, 2);
  const StepPlan plan = bench.step();
  ASSERT_FALSE(plan.entries.empty());
  EXPECT_EQ(plan.entries.front().sequence, warm);
  EXPECT_EQ(warm->cached_prompt_tokens, 16);
  EXPECT_EQ(plan.entries.front().num_tokens, 1);  // only the token after the cached prefix is computed
  EXPECT_EQ(cold->cached_prompt_tokens, 0);
  bench.run_to_end();
  EXPECT_EQ(bench.output(3), bench.alone(with_system, 2));
  EXPECT_EQ(bench.output(2), bench.alone(prompt_of(30, 8), 2));
}

TEST(SchedulerPrefixCache, SaltsKeepRequestsFromSharingBlocks) {
  SchedulerBench bench(64, 4, 64);
  bench.add(1, prompt_of(16, 3), 1, 1, /*salt=*/1);
  bench.run_to_end();
  Sequence* other_salt = bench.add(2, prompt_of(17, 3), 2, 1, /*salt=*/2);
  bench.step();
  EXPECT_EQ(other_salt->cached_prompt_tokens, 0);
  Sequence* same_salt = bench.add(3, prompt_of(17, 3), 2, 1, /*salt=*/1);
  bench.step();
  EXPECT_EQ(same_salt->cached_prompt_tokens, 16);
}

TEST(SchedulerFork, CompletionsShareThePromptAndCopyItsPartialBlock) {
  SchedulerBench bench(64, 4, 64);
  bench.add(1, prompt_of(10, 5), 6, /*n=*/3);
  bench.run_to_end();
  // Greedy completions of one prompt agree; the shared, partly filled third block was copied for each
  // completion that wrote to it.
  for (int choice = 0; choice < 3; ++choice) EXPECT_EQ(bench.output(1, choice), bench.alone(prompt_of(10, 5), 6)) << "choice " << choice;
  EXPECT_GE(bench.backend().copies(), 2);
  EXPECT_EQ(bench.kv().pool().num_in_use(), 0);
}

TEST(SchedulerCancellation, RemovingARunningOrWaitingSequenceFreesItsBlocks) {
  SchedulerBench bench(8, 4, 64);
  Sequence* running = bench.add(1, prompt_of(20, 1), 8);
  Sequence* waiting = bench.add(2, prompt_of(16, 2), 4);
  bench.step();
  ASSERT_GT(bench.kv().pool().num_in_use(), 0);
  EXPECT_EQ(bench.scheduler().find(2), std::vector<Sequence*>{waiting});
  bench.scheduler().remove(waiting);
  EXPECT_EQ(bench.scheduler().num_waiting(), 0u);
  bench.scheduler().remove(running);
  EXPECT_EQ(bench.scheduler().num_running(), 0u);
  EXPECT_FALSE(bench.scheduler().has_work());
  EXPECT_EQ(bench.kv().pool().num_in_use(), 0);
  bench.kv().check_invariants({});
  // The blocks it computed stay cached for the next request with the same prompt.
  Sequence* again = bench.add(3, prompt_of(20, 1), 2);
  bench.step();
  EXPECT_EQ(again->cached_prompt_tokens, 19);  // all but the last prompt token, which must run for logits
}

TEST(RunnerLogprobs, EachRowsLogprobsComeWithItsTokenThroughBatchingAndPreemption) {
  // The backend's logits are one-hot (1 for the next token, 0 elsewhere), so every logprob is known exactly.
  SchedulerBench bench(12, 4, 64);
  Sequence* with_top = bench.add(1, prompt_of(8, 1), 12);
  bench.add(2, prompt_of(8, 2), 12);
  Sequence* preempted = bench.add(3, prompt_of(8, 3), 12);
  with_top->params.logprobs = 2;
  preempted->params.logprobs = 0;
  // Request 3 is freed when it finishes: whether it was preempted is read while it still runs.
  bool preemption_seen = false;
  for (int i = 0; i < 10000 && bench.scheduler().has_work(); ++i) {
    bench.step();
    for (const Sequence* s : bench.scheduler().find(3)) preemption_seen |= s->preempted;
  }
  ASSERT_FALSE(bench.scheduler().has_work());
  EXPECT_TRUE(preemption_seen);
  const double log_total = std::log(std::exp(1.0) + (kVocab - 1));
  for (RequestId id : {1, 3}) {
    const std::vector<TokenLogprobs>& logprobs = bench.logprobs(id);
    ASSERT_EQ(logprobs.size(), bench.output(id).size()) << "request " << id;  // one per token, none recomputed twice
    for (size_t i = 0; i < logprobs.size(); ++i) {
      const TokenLogprobs& lp = logprobs[i];
      EXPECT_EQ(lp.chosen.token, bench.output(id)[i]);
      EXPECT_NEAR(lp.chosen.logprob, 1.0 - log_total, 1e-6);
      if (id == 3) {
        EXPECT_TRUE(lp.top.empty());
        continue;
      }
      ASSERT_EQ(lp.top.size(), 2u);
      EXPECT_EQ(lp.top[0].token, lp.chosen.token);
      EXPECT_EQ(lp.top[1].token, lp.chosen.token == 0 ? 1 : 0);  // the ties after it: the lowest id
      EXPECT_NEAR(lp.top[1].logprob, -log_total, 1e-6);
    }
  }
  EXPECT_TRUE(bench.logprobs(2).empty());
  for (int id = 1; id <= 3; ++id) EXPECT_EQ(bench.output(id), bench.alone(prompt_of(8, id), 12)) << "request " << id;
}

}  // namespace
}  // namespace pagedlm

namespace pagedlm {
namespace {

// Speculative steps under pressure: random proposals (some the right tokens, some wrong) for sequences that
// run beside prefills, get preempted, fork and hit cached prefixes; every step checks the pool's invariants
// (in step()), and every output is what the sequence decodes alone.
TEST(SchedulerSpeculation, RandomProposalsKeepOutputsAndInvariants) {
  SchedulerBench bench(/*blocks=*/28, /*block_size=*/4, /*batch_tokens=*/24);
  std::mt19937 rng(17);
  bench.proposer = [&](const Sequence& seq) {
    std::vector<int32_t> draft;
    std::vector<int32_t> context = seq.tokens;
    const int length = static_cast<int>(rng() % 7);
    for (int i = 0; i < length; ++i) {
      const int32_t right = bench.backend().next_token(context);
      draft.push_back(rng() % 4 == 0 ? (right + 1) % kVocab : right);
      context.push_back(draft.back());
    }
    return draft;
  };
  std::map<RequestId, std::pair<std::vector<int32_t>, int32_t>> requests;
  for (RequestId id = 1; id <= 24; ++id) {
    // A few shared prompt families, so later requests hit blocks earlier ones cached.
    std::vector<int32_t> prompt = prompt_of(4 + static_cast<int>(rng() % 12), static_cast<int>(id % 3));
    prompt.push_back(static_cast<int32_t>(1 + rng() % 50));
    const int32_t max_tokens = 3 + static_cast<int32_t>(rng() % 30);
    requests[id] = {prompt, max_tokens};
    bench.add(id, prompt, max_tokens, id % 7 == 0 ? 2 : 1);
    if (id % 4 == 0) {
      for (int i = 0; i < 3; ++i) bench.step();
    }
  }
  bench.run_to_end();
  for (const auto& [id, request] : requests) {
    EXPECT_EQ(bench.output(id), bench.alone(request.first, request.second)) << "request " << id;
    if (id % 7 == 0) EXPECT_EQ(bench.output(id, 1), bench.alone(request.first, request.second)) << "request " << id << " choice 1";
  }
  EXPECT_GT(bench.scheduler().preemptions(), 0u);
  EXPECT_GT(bench.kv().counters().hit_tokens, 0u);
  bench.kv().check_invariants({});
  EXPECT_EQ(bench.kv().pool().num_free(), 28);
}

}  // namespace
}  // namespace pagedlm
