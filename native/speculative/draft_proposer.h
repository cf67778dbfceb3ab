// The draft-model proposer: a second, smaller model with the target's vocabulary guesses each sequence's
// next tokens by greedy decoding. It keeps its own small KV pool, one block table per sequence key, so a
// sequence's draft K/V carries over from step to step: each call keeps what still matches the sequence's
// tokens, truncates what the target rejected, prefills what is new, then decodes all requests together,
// one forward pass per drafted position. It runs on the CPU backend, on the target's workers when the
// target runs on the CPU too. Engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "common/status.h"
#include "kv/kv_cache_manager.h"
#include "kv/kv_dtype.h"
#include "speculative/proposer.h"
#include "tokenizer/tokenizer.h"

namespace pagedlm::speculative {

// The draft pool holds this many full contexts when DraftModelOptions::kv_blocks is 0.
constexpr int32_t kDefaultDraftContexts = 4;
// Drafting a sequence stops at a token the draft model gives less than this probability: verifying a
// guess the draft itself doubts mostly wastes the draft step that made it.
constexpr float kDefaultDraftMinProbability = 0.3f;

struct DraftModelOptions {
  std::string path;                 // the draft model's GGUF
  int32_t context_length = 0;       // longest sequence drafted for (the target's context); 0 = the draft model's own
  int32_t kv_blocks = 0;            // draft pool size in blocks; 0 = kDefaultDraftContexts contexts of context_length
  int32_t block_size = 16;          // tokens per draft KV block
  KvDtype kv_dtype = KvDtype::kF16;
  int32_t max_batch_tokens = 512;   // tokens per catch-up (prefill) pass
  float min_probability = kDefaultDraftMinProbability;  // 0: always draft max_tokens tokens
  int32_t threads = 0;              // workers when no pool is shared; 0 = one per core
  bool use_mmap = true;
};

// OK when `draft` has exactly the target's vocabulary: the same size, BOS and EOS ids, and every token's
// text and type; otherwise a kInvalidArgument naming the first difference.
Status check_same_vocabulary(const Tokenizer& target, const Tokenizer& draft);

class DraftProposer final : public Proposer {
 public:
  // Loads the draft model and checks its vocabulary against the target's tokenizer. `pool`: the target's
  // CPU workers (CpuBackend::thread_pool()) to run on; null: a pool of its own (options.threads).
  static Result<std::unique_ptr<DraftProposer>> create(const DraftModelOptions& options, const Tokenizer& target, std::shared_ptr<ThreadPool> pool);

  // Keys must be distinct within one call. A request the draft pool has no room for (or longer than
  // context_length) gets an empty proposal; a failed draft pass gives every request an empty one.
  void propose(const std::vector<DraftRequest>& requests, std::vector<std::vector<int32_t>>& out) override;
  void forget(uint64_t key) override;

  // For each request of the last propose(), in order, the draft model's probability of each proposed
  // token: the softmax of its logits at temperature 1. The tokens themselves are the draft's argmax, so the
  // distribution they are drawn from is a point mass: exact rejection sampling takes q = 1 (accept with
  // probability p, resample from p without the rejected token); these values measure the draft's
  // confidence, and are what early stopping (min_probability) compares.
  const std::vector<std::vector<float>>& last_probabilities() const { return probabilities_; }

  int32_t total_blocks() const { return kv_.pool().num_blocks(); }
  int32_t free_blocks() const { return kv_.pool().num_free(); }
  int32_t context_length() const { return context_length_; }
  const ModelConfig& model_config() const { return model_->config(); }

 private:
  // What the draft pool holds for one sequence key.
  struct DraftSequence {
    std::vector<int32_t> computed;     // tokens whose K/V are in the draft pool, in order
    std::vector<BlockId> block_table;
  };
  // One request being drafted in the current call.
  struct Drafting {
    size_t request;                    // index into the call's requests
    DraftSequence* sequence;
    const std::vector<int32_t>* tokens;
    int32_t max_tokens;                // after what the pool and context allow
    bool done = false;
  };

  DraftProposer(const DraftModelOptions& options, std::shared_ptr<const LlamaModel> model, std::unique_ptr<Tokenizer> tokenizer,
                std::unique_ptr<CpuBackend> backend);

  // Drops the sequence's K/V past its first `keep` tokens, releasing the blocks that held only those.
  void truncate(DraftSequence& sequence, size_t keep);
  // Blocks for the sequence's tokens plus up to `wanted` - 1 drafted ones (the last drafted token is never
  // computed); returns how many tokens it may draft, 0 when not even the tokens fit.
  int32_t reserve(DraftSequence& sequence, int64_t num_tokens, int32_t wanted);
  // Prefills every drafting sequence's uncomputed tokens in passes of at most max_batch_tokens; the pass
  // that completes a sequence gives its first drafted token.
  Status catch_up(std::vector<Drafting>& drafting, std::vector<std::vector<int32_t>>& out);
  // One forward pass per drafted position, all unfinished sequences together.
  Status decode(std::vector<Drafting>& drafting, std::vector<std::vector<int32_t>>& out);
  // Runs batch_, filling logits_ with its logit rows.
  Status forward();
  // Takes the argmax of logit row `row` as the next drafted token of `d`, unless it is below
  // min_probability; marks `d` done when it has drafted enough.
  void take_token(Drafting& d, size_t row, std::vector<std::vector<int32_t>>& out);

  DraftModelOptions options_;
  std::shared_ptr<const LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<CpuBackend> backend_;
  KvCacheManager kv_;
  int32_t context_length_;
  std::unordered_map<uint64_t, DraftSequence> sequences_;
  std::vector<std::vector<float>> probabilities_;
  ForwardBatch batch_;
  std::vector<float> logits_;
};

}  // namespace pagedlm::speculative
