// Cost of NgramProposer::propose at decode: a 4,096-token sequence that grows by one token per call, as a
// decode step grows it, with text that never repeats (nothing to propose) and with text that repeats
// (a draft of max_tokens every call); each with no prefix cache and with one full of cached blocks that
// share no text with the sequence. Also the first call, which indexes the whole prompt. Compare with a
// decode step's time (docs/benchmarks.md): the proposer runs once per speculative sequence and step.
//
// Run: build/bench/cpu/pagedlm_ngram_proposer_bench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kv/kv_cache_manager.h"
#include "speculative/ngram_proposer.h"

namespace pagedlm::speculative {
namespace {

constexpr int32_t kPromptTokens = 4096;
constexpr int32_t kSteps = 4096;
constexpr int32_t kDraftTokens = 8;
constexpr int32_t kBlockSize = 16;
constexpr int32_t kCacheBlocks = 8192;

double elapsed_us(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - since).count();
}

// Fills the cache with random text over tokens [first, first + vocabulary), as other requests would leave it.
void fill_cache(KvCacheManager& kv, std::mt19937& rng, int32_t first, int32_t vocabulary) {
  std::vector<int32_t> tokens(static_cast<size_t>(kBlockSize) * 64);
  for (int32_t request = 0; request < kCacheBlocks / 64; ++request) {
    for (int32_t& t : tokens) t = first + static_cast<int32_t>(rng() % static_cast<uint32_t>(vocabulary));
    std::vector<BlockId> table;
    std::vector<BlockHash> hashes;
    kv.allocate_slots(table, static_cast<int64_t>(tokens.size()));
    kv.cache_full_blocks(tokens, static_cast<int32_t>(tokens.size()), 0, table, hashes);
    kv.free(table);
  }
}

// `next_token(step)` extends the sequence after each call.
// `cache_vocabulary` > 0 fills the prefix cache from tokens [cache_first, cache_first + cache_vocabulary).
template <typename NextToken>
void run(const char* label, int32_t cache_first, int32_t cache_vocabulary, std::vector<int32_t> tokens,
         NextToken next_token) {
  std::mt19937 rng(7);
  KvCacheManager kv(kCacheBlocks, kBlockSize);
  const bool with_cache = cache_vocabulary > 0;
  if (with_cache) fill_cache(kv, rng, cache_first, cache_vocabulary);
  NgramProposer proposer(with_cache ? &kv : nullptr);
  std::vector<DraftRequest> requests = {DraftRequest{1, &tokens, kDraftTokens, 0}};
  std::vector<std::vector<int32_t>> out;
  auto started = std::chrono::steady_clock::now();
  proposer.propose(requests, out);
  const double first_us = elapsed_us(started);
  tokens.reserve(tokens.size() + kSteps);
  size_t drafted = 0;
  started = std::chrono::steady_clock::now();
  for (int32_t step = 0; step < kSteps; ++step) {
    tokens.push_back(next_token(step));
    proposer.propose(requests, out);
    drafted += out[0].size();
  }
  const double per_call_us = elapsed_us(started) / kSteps;
  std::printf("  %-34s first call %8.1f us   per step %6.3f us   drafted %5.2f tokens/step\n", label, first_us,
              per_call_us, static_cast<double>(drafted) / kSteps);
}

int main_impl() {
  std::vector<int32_t> distinct(kPromptTokens + kSteps);
  std::iota(distinct.begin(), distinct.end(), 0);
  std::shuffle(distinct.begin(), distinct.end(), std::mt19937(5));
  const std::vector<int32_t> prompt(distinct.begin(), distinct.begin() + kPromptTokens);
  // The repeating case continues by copying the prompt from its start, as a request quoting it would.
  std::printf("NgramProposer::propose, %d-token prompt, %d decode steps, max_tokens %d\n", kPromptTokens, kSteps,
              kDraftTokens);
  for (int32_t cache_vocabulary : {0, 32000}) {
    std::printf(cache_vocabulary > 0 ? "with a prefix cache of %d cached blocks (%d tokens), no shared text:\n"
                                     : "no prefix cache:\n",
                kCacheBlocks, kCacheBlocks * kBlockSize);
    run("never repeats (no draft)", 1'000'000, cache_vocabulary, prompt,
        [&](int32_t step) { return distinct[kPromptTokens + step]; });
    run("copies the prompt (draft each step)", 1'000'000, cache_vocabulary, prompt,
        [&](int32_t step) { return prompt[step % kPromptTokens]; });
  }
  // The worst case for the cache's chains: every bigram is common, in the sequence and in the cache, so
  // each step walks CachedNgramIndex::kMaxCandidates links.
  std::printf("sequence and prefix cache over one 64-token vocabulary (every bigram common):\n");
  std::mt19937 rng(11);
  std::vector<int32_t> common(kPromptTokens + kSteps);
  for (int32_t& t : common) t = static_cast<int32_t>(rng() % 64);
  run("random text", 0, 64, std::vector<int32_t>(common.begin(), common.begin() + kPromptTokens),
      [&](int32_t step) { return common[kPromptTokens + step]; });
  return 0;
}

}  // namespace
}  // namespace pagedlm::speculative

int main() { return pagedlm::speculative::main_impl(); }
