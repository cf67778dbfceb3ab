// The engine: loads a model, owns the engine thread and everything it drives (scheduler, KV cache manager,
// backend, sequences). Clients talk to it only through submit/cancel/close, which post to an inbox; results
// come back as EngineEvents through the EventSink, on the engine thread.
//
// Thread rules: load/submit/cancel/close/info/stats/tokenizer are callable from any thread. Everything else
// lives on the engine thread. The engine thread sleeps on a condition variable when it has no work.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "engine/pooling.h"
#include "engine/request.h"
#include "kv/cache_file.h"
#include "kv/kv_cache_manager.h"
#include "kv/offload_store.h"
#include "engine/memory_plan.h"
#include "kv/kv_layout.h"
#include "model/llama_model.h"
#include "speculative/proposer.h"
#include "tokenizer/tokenizer.h"

namespace pagedlm {

struct Sequence;
struct SampledToken;

struct EngineOptions {
  int32_t threads = 0;            // compute threads; 0 = one per core
  int32_t context_length = 0;     // 0 = the model's, capped by what fits (memory_plan.h)
  int32_t block_size = 16;        // tokens per KV block
  int32_t kv_blocks = 0;          // pool size in blocks; 0 = from kv_memory, else room for 4 full contexts within the memory budget
  uint64_t kv_memory = 0;         // pool size in bytes (used when kv_blocks is 0)
  KvTypes kv_types;                // element types of K and V in the pool (kv_dtype.h)
  bool kv_v_type_given = false;    // kv_types.v was asked for, not defaulted (pool_kv_types)
  OffloadOptions offload;         // where evicted cached blocks go (kv/offload_store.h); none by default
  int32_t max_batch_tokens = 512; // tokens per forward pass (prefill chunk size)
  bool prefault = true;           // read the weights once at load, so the first request does not page-fault
  bool use_mmap = true;           // false: copy the file into memory (safe if it changes on disk after load)
  std::string device = "auto";    // "auto" (CUDA when built with it and a device is present, else CPU), "cuda" or "cpu"
  int32_t gpu = 0;                // CUDA device index
  double gpu_memory_fraction = 0; // > 0 (and no kv_blocks / kv_memory): the KV pool takes this fraction of free GPU memory
  // Speculative decoding with a draft model (speculative/draft_proposer.h): a smaller GGUF with the same
  // vocabulary, run on the CPU beside the target; empty = none.
  std::string draft_model;
  int32_t draft_tokens = 4;       // k: most tokens the draft proposes per step (1..speculative::kMaxProposedTokens)
  std::function<void(double)> on_progress;  // load progress in [0, 1], on the loading thread
};

constexpr int32_t kDefaultPoolContexts = 4;

struct EngineInfo {
  ModelConfig model;
  uint64_t parameters = 0;
  uint64_t weight_bytes = 0;
  uint64_t decode_weight_bytes = 0;  // weights one decode step reads: all but the unread embedding rows
  std::string tensor_type;        // type of most matmul weights
  int32_t context_length = 0;     // as loaded
  ContextLimit context_limit = ContextLimit::kModel;  // what set it
  KvLayout kv;
  std::string backend;            // "cpu" or "cuda"
  std::string backend_reason;     // why this backend: "asked for", or why CUDA was not used
  std::string gpu_name;           // the CUDA device, when backend is "cuda"
  uint64_t gpu_weight_bytes = 0;  // device memory the weights take
  uint64_t cpu_weight_bytes = 0;  // RAM the CPU backend's packed copy of the weights takes
  uint64_t model_heap_bytes = 0;  // RAM the model file takes when loaded into the heap (mmap: false)
  std::string cpu_kernels;
  int32_t threads = 0;
  std::string tokenizer;
  std::string tokenizer_pre;   // byte-level BPE's pre-tokenizer (tokenizer.ggml.pre); empty for SentencePiece
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  std::string bos_text;        // the tokens' text, for chat templates
  std::string eos_text;
  std::string chat_template;   // tokenizer.chat_template (Jinja); empty when the file has none
};

struct EngineStats {
  int32_t total_blocks = 0;
  // total = free + cached + in use.
  int32_t free_blocks = 0;    // unused: no sequence holds them and they carry no cached prefix
  int32_t cached_blocks = 0;  // no sequence holds them; they carry a cached prefix (evictable)
  int32_t in_use_blocks = 0;  // referenced by running sequences or pins
  int64_t unused_slots = 0;   // token slots in running sequences' blocks not yet written (fragmentation)
  int32_t pinned_blocks = 0;  // held by pins (counted in in_use_blocks)
  uint64_t evictions = 0;
  PrefixCacheCounters prefix;
  bool offload = false;           // the engine has offload tiers
  OffloadStats offload_tiers;
  int32_t running = 0;
  int32_t waiting = 0;
  uint64_t steps = 0;
  uint64_t preemptions = 0;
  uint64_t generated_tokens = 0;  // sampled tokens, all requests
  uint64_t computed_tokens = 0;   // tokens run through the model (prefill and decode)
  double busy_seconds = 0;        // time spent in steps
  speculative::SpeculationCounters speculation;  // summed over every request's verifying steps
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> load(const std::string& path, const EngineOptions& options, EventSink* sink);
  ~Engine();  // closes

  // Queues a request. Errors that no waiting can cure (empty prompt, ids outside the vocabulary, longer
  // than the context, larger than the pool, engine closed; an embedding the model or backend cannot
  // compute) are returned at once. An embedding request (params.embed) finishes with its vector in
  // EngineEvent::embedding.
  Status submit(GenerateRequest request);
  // Aborts a request: it finishes with FinishReason::kAbort by the next step. Unknown ids are ignored.
  void cancel(RequestId id);
  // Fails every queued and running request with kClosed, stops the engine thread and joins it. Idempotent:
  // only the first call acts. With persist_offload, cached blocks the offload disk tier lacks are written to it
  // before it returns (seconds for a large pool: the addon's finalizer passes false, since it runs on the JS
  // thread).
  void close(bool persist_offload = true);
  // Cache calls. Each waits for the engine thread, so call them off the JS thread.
  // Forgets every cached prefix block not in use; returns how many.
  Result<int64_t> clear_cache();
  // Releases the blocks pinned by request `pin` (submitted with params.pin); returns how many (0: unknown id).
  Result<int64_t> unpin(RequestId pin);
  // Writes every cached block to `path`; returns how many.
  Result<int64_t> save_cache(const std::string& path);
  // Checks the KV bookkeeping (each block's reference count equals the tables and pins holding it, and
  // the pool's own invariants); aborts the process on a violation. For tests and soaks.
  Result<int64_t> check_kv_invariants();
  // Adds the blocks of a file written by save_cache (same model file, KV dtype and layout) to the prefix
  // cache; returns how many were new. A file that fails any check changes nothing.
  Result<int64_t> load_cache(const std::string& path);
  // Waits until the offload tier's queued disk writes are on disk; returns how many blocks the disk tier
  // holds. For tests and benchmarks.
  Result<int64_t> flush_offload();

  // Speculative decoding: plugs in the proposer that requests naming `kind` in GenerateParams::speculative
  // use, replacing the one Engine::load installed (the n-gram proposer always; the draft model of
  // EngineOptions::draft_model when given). Callable at any time from any thread but the engine thread (a
  // proposer must not call it): it waits for the engine thread, which alone calls the proposer: propose
  // once a step for all its decoding sequences, forget when one finishes, fails, is aborted or is
  // preempted. A request whose kind has no proposer is refused at submit (kUnsupported). The proposer only
  // guesses: whatever it returns, the output is what plain decoding gives.
  Status set_proposer(speculative::ProposerKind kind, std::unique_ptr<speculative::Proposer> proposer);

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const EngineInfo& info() const { return info_; }
  EngineStats stats() const;

 private:
  Engine() = default;
  struct Inbox;
  void run();
  void step(std::vector<EngineEvent>& events);
  void drain_inbox(std::vector<EngineEvent>& events);
  // False when the token ended the sequence (it is gone).
  bool handle_token(const SampledToken& sampled, std::vector<EngineEvent>& events);
  void finish(Sequence& seq, FinishReason reason, std::vector<EngineEvent>& events);
  void fail_all(const Status& status, std::vector<EngineEvent>& events);
  void fail(Sequence& seq, const Status& status, std::vector<EngineEvent>& events);
  // Starts a submitted sequence's grammar state (building the vocabulary's token index on first use).
  void start_grammar(Sequence& seq);
  // Plugs in a proposer (engine thread, or before it starts) that proposes at most max_tokens a step.
  void install_proposer(speculative::ProposerKind kind, std::unique_ptr<speculative::Proposer> proposer, int32_t max_tokens);
  // Before scheduling: asks each proposer, in one call, for the next tokens of its decoding sequences.
  void propose_drafts();
  // Checks a request's speculative settings; drops them where speculation does not apply.
  Status check_speculative(GenerateParams& params) const;
  // The proposer may drop what it kept for a sequence that ends.
  void forget_proposals(const Sequence& seq);
  // Handles the tokens of a step in order; a sequence's tokens after the one that ended it are dropped, and
  // sequences that verified proposed tokens commit the ones they kept.
  void handle_tokens(const std::vector<SampledToken>& sampled, std::vector<EngineEvent>& events);
  int32_t pin_prefix(Sequence& seq);
  // The pooling of an embedding request, or why it cannot run; fixes the params an embedding implies.
  Result<Pooling> check_embedding_request(GenerateParams& params) const;
  Result<int64_t> run_on_engine_thread(std::function<Result<int64_t>()> command);
  CacheFileIdentity cache_identity() const;
  void publish_stats();

  std::shared_ptr<const LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Backend> backend_;
  EngineInfo info_;
  BlockHash model_fingerprint_;
  BlockHash rope_fingerprint_;  // of the RoPE frequency factors the backend rotates keys with (CacheFileIdentity::rope)
  EventSink* sink_ = nullptr;

  // Engine thread only.
  struct Core;
  std::unique_ptr<Core> core_;

  // Shared with client threads, guarded by mutex_.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::unique_ptr<Inbox> inbox_;
  bool closing_ = false;
  std::atomic<uint32_t> proposer_kinds_{0};  // bit (1 << kind) set for each kind with a proposer

  std::mutex close_mutex_;  // serializes close()
  bool closed_ = false;     // under close_mutex_
  std::thread thread_;

  mutable std::mutex stats_mutex_;
  EngineStats stats_;  // guarded by stats_mutex_; a snapshot published after every step
};

}  // namespace pagedlm
