#include "engine/engine.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <future>
#include <map>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_entry.h"
#include "engine/memory_plan.h"
#include "engine/runner.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "kv/kv_cache_manager.h"
#include "speculative/draft_proposer.h"
#include "speculative/ngram_proposer.h"

namespace pagedlm {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
  }
  return "stop";
}

struct Engine::Inbox {
  std::vector<std::unique_ptr<Sequence>> submitted;
  std::vector<RequestId> cancelled;
  std::vector<std::packaged_task<Result<int64_t>()>> commands;  // cache calls, run on the engine thread
  bool empty() const { return submitted.empty() && cancelled.empty() && commands.empty(); }
};

struct Engine::Core {
  Core(Backend& backend, const ModelConfig& model, SchedulerConfig config)
      : kv(backend.kv_layout().num_blocks, backend.kv_layout().block_size, backend.kv_layout().rows_independent()),
        scheduler(kv, config), runner(backend, scheduler, model.vocab_size, model.dim) {}
  std::unique_ptr<OffloadStore> offload;  // before `kv`, whose pool calls it on evictions: destroyed after it
  KvCacheManager kv;
  Scheduler scheduler;
  Runner runner;
  std::map<RequestId, std::vector<BlockId>> pinned;   // pin id -> the prefix blocks it holds
  std::shared_ptr<const grammar::TokenIndex> grammar_tokens;  // built by the first request with a grammar
  // By ProposerKind (kNone's stay empty). Declared after `kv`, which the n-gram proposer observes: destroyed first.
  std::array<std::unique_ptr<speculative::Proposer>, 3> proposers;
  std::array<int32_t, 3> proposer_max_tokens{};  // the most tokens each proposes a step, whatever a request asks
  // propose_drafts' scratch, kept from step to step.
  std::vector<speculative::DraftRequest> draft_requests;
  std::vector<Sequence*> draft_sequences;
  std::vector<std::vector<int32_t>> proposals;
};

namespace {

std::string dominant_type(const LlamaModel& model) {
  std::map<std::string, uint64_t> bytes;
  for (const LayerWeights& l : model.layers()) {
    for (const WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      bytes[tensor_type_name(w->type)] += static_cast<uint64_t>(w->rows) * w->row_bytes;
    }
  }
  return std::max_element(bytes.begin(), bytes.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
}

// Touches every page of the weights so that the first request does not wait on disk, reporting progress.
void prefault(const GgufFile& file, const std::function<void(double)>& progress, double from, double to) {
  uint64_t total = 0, done = 0;
  for (const GgufTensor& t : file.tensors()) total += t.bytes;
  volatile uint8_t sink = 0;
  for (const GgufTensor& t : file.tensors()) {
    for (uint64_t off = 0; off < t.bytes; off += 4096) sink = sink + t.data[off];
    done += t.bytes;
    if (progress && total > 0) progress(from + (to - from) * static_cast<double>(done) / static_cast<double>(total));
  }
}

// Identifies the model file for saved caches without reading all of it: the tensor directory (names,
// shapes, types) and the first and last bytes of every tensor's data.
BlockHash model_fingerprint(const GgufFile& file) {
  std::vector<int32_t> words;
  const auto add_bytes = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) words.push_back(b[i]);
  };
  for (const GgufTensor& t : file.tensors()) {
    add_bytes(t.name.data(), t.name.size());
    for (uint64_t d : t.dims) words.push_back(static_cast<int32_t>(d));
    words.push_back(static_cast<int32_t>(t.type));
    const size_t sample = std::min<uint64_t>(t.bytes, 64);
    add_bytes(t.data, sample);
    add_bytes(t.data + t.bytes - sample, sample);
  }
  return hash_block(root_hash(0xF1A9), words.data(), static_cast<int32_t>(words.size()));
}

// Identifies the RoPE frequency factors keys are rotated with (none: the hash of no values).
BlockHash rope_fingerprint(const std::vector<float>& factors) {
  std::vector<int32_t> words(factors.size());
  if (!factors.empty()) std::memcpy(words.data(), factors.data(), factors.size() * sizeof(float));
  return hash_block(root_hash(0x80BE), words.data(), static_cast<int32_t>(words.size()));
}

// The CUDA backend when asked for (or, for "auto", when this machine can run it), else the CPU backend;
// info says which and why. `context`: the context the engine serves (it picks Phi-3's LongRoPE factors).
Result<std::unique_ptr<Backend>> create_backend(const EngineOptions& o, const std::shared_ptr<const LlamaModel>& model, const KvLayout& layout,
                                                int32_t context, EngineInfo& info) {
  if (o.device != "auto" && o.device != "cuda" && o.device != "cpu") {
    return Status(ErrorCode::kInvalidArgument, "device must be 'auto', 'cuda' or 'cpu'");
  }
  info.backend_reason = "asked for";
  if (o.device != "cpu") {
    CudaBackendRequest request{model, layout, o.gpu, std::max(1, o.max_batch_tokens), o.gpu_memory_fraction};
    if (o.kv_blocks == 0 && o.kv_memory == 0) {
      // The planned pool was sized from RAM: on the GPU, the backend sizes it from device memory instead,
      // to the caller's fraction, or to the default share capped at the pool the planned context wants.
      request.layout.num_blocks = 0;
      if (o.gpu_memory_fraction <= 0) {
        request.gpu_memory_fraction = kDefaultKvShare;
        const int32_t wanted_context = o.context_length > 0 ? o.context_length : model->config().context_length;
        request.max_blocks = (wanted_context + layout.block_size - 1) / layout.block_size * kDefaultPoolContexts;
      }
    }
    CudaBackendReply reply;
    open_cuda_backend(request, reply);
    if (reply.backend) {
      info.backend = "cuda";
      info.gpu_name = reply.device_name;
      info.gpu_weight_bytes = reply.weight_bytes;
      if (o.device == "auto") info.backend_reason = "a CUDA device was found";
      return std::move(reply.backend);
    }
    if (o.device == "cuda" || !reply.unavailable) {
      return Status(reply.status.code(), "the CUDA backend could not start: " + reply.status.message());
    }
    info.backend_reason = reply.status.message();
  }
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto cpu = CpuBackend::create(model, layout, threads, context);
  if (!cpu.is_ok()) return cpu.status();
  info.backend = "cpu";
  info.cpu_kernels = cpu.value()->kernels_name();
  info.cpu_weight_bytes = cpu.value()->packed_weight_bytes();
  info.threads = cpu.value()->threads();
  return std::unique_ptr<Backend>(cpu.take());
}

// The draft model of EngineOptions::draft_model, drafting for sequences of up to `context` tokens, in
// blocks and prefill passes the size of the target's, on the target's CPU workers when it has them.
Result<std::unique_ptr<speculative::Proposer>> create_draft_proposer(const EngineOptions& o, int32_t context, const Tokenizer& target,
                                                                     Backend& backend) {
  if (o.draft_tokens < 1 || o.draft_tokens > speculative::kMaxProposedTokens) {
    return Status(ErrorCode::kInvalidArgument, "draft.tokens must be in [1, " + std::to_string(speculative::kMaxProposedTokens) + "]");
  }
  speculative::DraftModelOptions d;
  d.path = o.draft_model;
  d.context_length = context;
  d.block_size = o.block_size;
  d.max_batch_tokens = std::max(1, o.max_batch_tokens);
  d.threads = o.threads;
  d.use_mmap = o.use_mmap;
  std::shared_ptr<ThreadPool> pool;
  if (auto* cpu = dynamic_cast<CpuBackend*>(&backend)) pool = cpu->thread_pool();
  auto draft = speculative::DraftProposer::create(d, target, std::move(pool));
  if (!draft.is_ok()) return draft.status();
  return std::unique_ptr<speculative::Proposer>(draft.take());
}

}  // namespace

Result<std::unique_ptr<Engine>> Engine::load(const std::string& path, const EngineOptions& o, EventSink* sink) {
  const auto progress = [&](double f) {
    if (o.on_progress) o.on_progress(f);
  };
  if (o.block_size < 1 || o.block_size > 1024) return Status(ErrorCode::kInvalidArgument, "kvCache.blockSize must be in [1, 1024]");
  progress(0.0);
  auto file = GgufFile::open(path, o.use_mmap);
  if (!file.is_ok()) return file.status();
  auto tokenizer = Tokenizer::from_gguf(file.value());
  if (!tokenizer.is_ok()) return Status(tokenizer.status().code(), "'" + path + "': " + tokenizer.status().message());
  auto model = LlamaModel::load(file.take());
  if (!model.is_ok()) return Status(model.status().code(), "'" + path + "': " + model.status().message());
  const ModelConfig& c = model.value()->config();
  if (tokenizer.value()->vocab_size() != c.vocab_size) {
    return Status(ErrorCode::kModelFormat, "'" + path + "': the tokenizer has " + std::to_string(tokenizer.value()->vocab_size()) +
                                               " tokens but token_embd.weight has " + std::to_string(c.vocab_size) + " rows");
  }
  progress(0.05);
  if (o.prefault && o.use_mmap) prefault(model.value()->gguf(), progress, 0.05, 0.9);

  std::unique_ptr<Engine> engine(new Engine());
  engine->model_fingerprint_ = model_fingerprint(model.value()->gguf());
  engine->model_ = model.take();
  engine->tokenizer_ = tokenizer.take();
  engine->sink_ = sink;

  const auto types = pool_kv_types(c, o.kv_types, o.kv_v_type_given);
  if (!types.is_ok()) return types.status();
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, o.block_size, 0, types.value().k, types.value().v};
  layout.v_dim = c.value_dim(), layout.v_in_k = c.latent_attention();
  const ContextRequest wanted{o.context_length, o.kv_blocks, o.kv_memory, kDefaultPoolContexts};
  const ContextPlan plan = plan_context(wanted, c.context_length, layout, engine->model_->weight_bytes(), system_memory_budget());
  layout.num_blocks = plan.num_blocks;
  if (layout.num_blocks < 1) return Status(ErrorCode::kInvalidArgument, "the KV pool must hold at least one block");
  EngineInfo& info = engine->info_;
  auto backend = create_backend(o, engine->model_, layout, plan.context_length, info);
  engine->rope_fingerprint_ = rope_fingerprint(c.rope_factors_for_context(plan.context_length > 0 ? plan.context_length : c.context_length));
  if (!backend.is_ok()) return backend.status();
  engine->backend_ = backend.take();
  layout = engine->backend_->kv_layout();
  int32_t context = plan.context_length;
  info.context_limit = plan.limit;
  if (layout.num_blocks != plan.num_blocks && o.context_length <= 0) {
    // The GPU sized its own pool: the default context is what one sequence of it can hold.
    const int64_t pool_tokens = static_cast<int64_t>(layout.num_blocks) * layout.block_size;
    context = static_cast<int32_t>(std::min<int64_t>(c.context_length, pool_tokens));
    info.context_limit = c.context_length <= pool_tokens ? ContextLimit::kModel : ContextLimit::kMemory;
  }
  progress(0.95);

  info.model = c;
  info.parameters = engine->model_->parameter_count();
  info.weight_bytes = engine->model_->weight_bytes();
  info.model_heap_bytes = engine->model_->gguf().heap_bytes();
  const WeightMatrix& embedding = engine->model_->token_embedding();
  const uint64_t unread_rows = c.tied_output ? 0 : static_cast<uint64_t>(embedding.rows - 1) * embedding.row_bytes;
  info.decode_weight_bytes = info.weight_bytes - unread_rows;
  info.tensor_type = dominant_type(*engine->model_);
  info.context_length = context;
  info.kv = layout;
  info.tokenizer = engine->tokenizer_->kind() == TokenizerKind::kSentencePiece ? "llama" : "gpt2";
  info.tokenizer_pre = engine->tokenizer_->pre_tokenizer_name();
  info.bos_id = engine->tokenizer_->bos_id();
  info.eos_id = engine->tokenizer_->eos_id();
  if (info.bos_id >= 0) info.bos_text = engine->tokenizer_->piece(info.bos_id);
  if (info.eos_id >= 0) info.eos_text = engine->tokenizer_->piece(info.eos_id);
  auto chat_template = engine->model_->gguf().get_string("tokenizer.chat_template");
  if (chat_template.is_ok() && chat_template.value()) info.chat_template = *chat_template.value();

  SchedulerConfig sc;
  sc.context_length = context;
  sc.max_batch_tokens = std::max(1, o.max_batch_tokens);
  if (c.all_windowed()) {
    sc.sliding_window = std::min_element(c.layers.begin(), c.layers.end(), [](const auto& a, const auto& b) { return a.window < b.window; })->window;
  }
  engine->core_ = std::make_unique<Core>(*engine->backend_, c, sc);
  if (o.offload.enabled()) {
    auto store = OffloadStore::open(o.offload, *engine->backend_, engine->cache_identity());
    if (!store.is_ok()) return store.status();
    engine->core_->offload = store.take();
    engine->core_->kv.set_offload(engine->core_->offload.get());
  }
  // Speculative decoding's proposers, installed before the engine thread starts: n-gram lookup always (it
  // costs nothing until a request asks for it), a draft model when one is given.
  engine->install_proposer(speculative::ProposerKind::kNgram, std::make_unique<speculative::NgramProposer>(&engine->core_->kv),
                           speculative::kMaxProposedTokens);
  if (!o.draft_model.empty()) {
    auto draft = create_draft_proposer(o, context, *engine->tokenizer_, *engine->backend_);
    if (!draft.is_ok()) return draft.status();
    engine->install_proposer(speculative::ProposerKind::kDraft, draft.take(), o.draft_tokens);
  }
  engine->inbox_ = std::make_unique<Inbox>();
  engine->publish_stats();
  engine->thread_ = std::thread([e = engine.get()] { e->run(); });
  progress(1.0);
  return engine;
}

Engine::~Engine() { close(); }

Status Engine::submit(GenerateRequest request) {
  if (request.prompt.empty()) return Status(ErrorCode::kInvalidArgument, "the prompt is empty: pass text or at least one token id");
  for (int32_t id : request.prompt) {
    if (id < 0 || id >= tokenizer_->vocab_size()) {
      return Status(ErrorCode::kInvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(tokenizer_->vocab_size()) + ")");
    }
  }
  // check_fits reads only sizes fixed at load, so it is safe off the engine thread.
  if (request.params.n < 1) return Status(ErrorCode::kInvalidArgument, "n must be at least 1");
  std::optional<Pooling> pooling;
  if (request.params.embed) {
    auto checked = check_embedding_request(request.params);
    if (!checked.is_ok()) return checked.status();
    pooling = checked.value();
  }
  if (Status s = check_speculative(request.params); !s.is_ok()) return s;
  if (Status s = core_->scheduler.check_fits(static_cast<int64_t>(request.prompt.size()), request.params); !s.is_ok()) return s;
  auto seq = std::make_unique<Sequence>(std::move(request));
  if (pooling) seq->embedding.emplace(*pooling, info_.model.dim);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closing_) return Status(ErrorCode::kClosed, "the engine is closed");
    inbox_->submitted.push_back(std::move(seq));
  }
  wake_.notify_one();
  return Status::ok();
}

namespace {
const char* proposer_name(speculative::ProposerKind kind) {
  switch (kind) {
    case speculative::ProposerKind::kNgram: return "ngram";
    case speculative::ProposerKind::kDraft: return "draft";
    case speculative::ProposerKind::kNone: break;
  }
  return "none";
}
}  // namespace

Status Engine::check_speculative(GenerateParams& params) const {
  speculative::SpeculativeParams& spec = params.speculative;
  if (spec.proposer == speculative::ProposerKind::kNone) return Status::ok();
  if (spec.max_tokens < 1 || spec.max_tokens > speculative::kMaxProposedTokens) {
    return Status(ErrorCode::kInvalidArgument, "speculative tokens must be in [1, " + std::to_string(speculative::kMaxProposedTokens) + "], got " +
                                                   std::to_string(spec.max_tokens));
  }
  if ((proposer_kinds_.load() & (1u << static_cast<uint32_t>(spec.proposer))) == 0) {
    const std::string how = spec.proposer == speculative::ProposerKind::kDraft ? ": load the engine with a draft model" : "";
    return Status(ErrorCode::kUnsupported, std::string("this engine has no '") + proposer_name(spec.proposer) + "' proposer for speculative decoding" + how);
  }
  // A rejected guess's K row would stay in its block's int4 channel scales: the output would drift from
  // plain decoding's.
  if (!params.embed && !info_.kv.rows_independent()) {
    return Status(ErrorCode::kUnsupported, "speculative decoding needs kvCache.kType other than int4 (int4 K scales each channel over its block, "
                                           "so a rejected guess would change the kept tokens' K)");
  }
  if (params.embed) spec = {};  // an embedding generates nothing
  return Status::ok();
}

Status Engine::set_proposer(speculative::ProposerKind kind, std::unique_ptr<speculative::Proposer> proposer) {
  if (kind == speculative::ProposerKind::kNone || !proposer) return Status(ErrorCode::kInvalidArgument, "set_proposer needs a proposer and its kind");
  auto held = std::make_shared<std::unique_ptr<speculative::Proposer>>(std::move(proposer));
  auto done = run_on_engine_thread([this, kind, held]() -> Result<int64_t> {
    install_proposer(kind, std::move(*held), speculative::kMaxProposedTokens);
    return 0;
  });
  return done.is_ok() ? Status::ok() : done.status();
}

void Engine::install_proposer(speculative::ProposerKind kind, std::unique_ptr<speculative::Proposer> proposer, int32_t max_tokens) {
  core_->proposers[static_cast<size_t>(kind)] = std::move(proposer);
  core_->proposer_max_tokens[static_cast<size_t>(kind)] = max_tokens;
  proposer_kinds_.fetch_or(1u << static_cast<uint32_t>(kind));
}

Result<Pooling> Engine::check_embedding_request(GenerateParams& params) const {
  if (!backend_->computes_hidden_states()) {
    return Status(ErrorCode::kUnsupported, "the " + info_.backend + " backend does not compute embeddings: load the model with device 'cpu'");
  }
  if (params.n != 1) return Status(ErrorCode::kInvalidArgument, "n must be 1 for an embedding request");
  if (params.logprobs) return Status(ErrorCode::kInvalidArgument, "logprobs are not computed for an embedding request");
  params.max_tokens = 0;
  params.pin = false;
  if (params.embed->pooling) return *params.embed->pooling;
  return pooling_for_type(info_.model.pooling_type);
}

void Engine::cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    inbox_->cancelled.push_back(id);
  }
  wake_.notify_one();
}

void Engine::close(bool persist_offload) {
  std::lock_guard<std::mutex> close_lock(close_mutex_);
  if (closed_) return;
  closed_ = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
  // The engine thread is gone: the tiers and the pool are this thread's now. What is cached goes to the disk
  // tier, complete when close returns, so that the next engine on the same folder finds it.
  if (persist_offload && core_ && core_->offload) core_->offload->persist(core_->kv.pool());
}

Result<int64_t> Engine::run_on_engine_thread(std::function<Result<int64_t>()> command) {
  std::future<Result<int64_t>> done;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closing_) return Status(ErrorCode::kClosed, "the engine is closed");
    // Stats are published before the caller wakes, so that it sees what its command changed.
    inbox_->commands.emplace_back([this, command = std::move(command)] {
      Result<int64_t> result = command();
      publish_stats();
      return result;
    });
    done = inbox_->commands.back().get_future();
  }
  wake_.notify_one();
  return done.get();
}

Result<int64_t> Engine::clear_cache() {
  return run_on_engine_thread([this]() -> Result<int64_t> { return core_->kv.clear_cache(); });
}

Result<int64_t> Engine::unpin(RequestId pin) {
  return run_on_engine_thread([this, pin]() -> Result<int64_t> {
    const auto it = core_->pinned.find(pin);
    if (it == core_->pinned.end()) return 0;
    const auto blocks = static_cast<int64_t>(it->second.size());
    core_->kv.free(it->second);
    core_->pinned.erase(it);
    return blocks;
  });
}

Result<int64_t> Engine::check_kv_invariants() {
  return run_on_engine_thread([this]() -> Result<int64_t> {
    auto tables = core_->scheduler.block_tables();
    for (const auto& [id, blocks] : core_->pinned) tables.push_back(&blocks);
    core_->kv.check_invariants(tables);
    return static_cast<int64_t>(tables.size());
  });
}

CacheFileIdentity Engine::cache_identity() const {
  return CacheFileIdentity::of(model_fingerprint_, info_.kv, backend_->block_bytes(), rope_fingerprint_);
}

Result<int64_t> Engine::save_cache(const std::string& path) {
  // Copy the blocks on the engine thread (a consistent snapshot), write them from the caller's thread.
  std::vector<CachedBlockRecord> records;
  auto copied = run_on_engine_thread([this, &records]() -> Result<int64_t> {
    const BlockPool& pool = core_->kv.pool();
    for (BlockId id : pool.registered_blocks()) {
      CachedBlockRecord r{pool.hash_of(id), pool.parent_of(id), {pool.tokens_of(id), pool.tokens_of(id) + pool.block_size()}, {}};
      r.kv.resize(backend_->block_bytes());
      if (Status s = backend_->export_block(id, r.kv.data()); !s.is_ok()) return s;
      records.push_back(std::move(r));
    }
    return static_cast<int64_t>(records.size());
  });
  if (!copied.is_ok()) return copied;
  if (Status s = write_cache_file(path, cache_identity(), records); !s.is_ok()) return s;
  return copied;
}

Result<int64_t> Engine::load_cache(const std::string& path) {
  // Read and validate off the engine thread; only a file that passed every check reaches the pool.
  auto records = read_cache_file(path, cache_identity());
  if (!records.is_ok()) return records.status();
  return run_on_engine_thread([this, &records]() -> Result<int64_t> {
    KvCacheManager& kv = core_->kv;
    // Imported blocks land at ref 0, so the free count and the scheduler's promises are unchanged; at most
    // the free blocks present are filled, evicting older cached blocks first.
    const int32_t room = kv.pool().num_free();
    int64_t adopted = 0, used = 0;
    for (const CachedBlockRecord& r : records.value()) {
      if (used == room) break;
      if (kv.pool().find_cached(r.hash, r.parent, r.tokens.data()) != kNoBlock) continue;
      const BlockId id = kv.take_block_for_import();
      if (Status s = backend_->import_block(id, r.kv.data()); !s.is_ok()) {
        kv.discard_import(id);
        return s;
      }
      adopted += kv.adopt_imported(id, r.hash, r.parent, r.tokens.data());
      ++used;
    }
    return adopted;
  });
}

Result<int64_t> Engine::flush_offload() {
  return run_on_engine_thread([this]() -> Result<int64_t> {
    if (!core_->offload) return 0;
    core_->offload->flush();
    return static_cast<int64_t>(core_->offload->stats().disk_blocks);
  });
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  return stats_;
}

void Engine::publish_stats() {
  const BlockPool& pool = core_->kv.pool();
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats_.total_blocks = pool.num_blocks();
  stats_.free_blocks = pool.num_free() - pool.num_cached();
  stats_.cached_blocks = pool.num_cached();
  stats_.in_use_blocks = pool.num_in_use();
  stats_.unused_slots = core_->scheduler.unused_slots();
  stats_.pinned_blocks = 0;
  for (const auto& [id, blocks] : core_->pinned) stats_.pinned_blocks += static_cast<int32_t>(blocks.size());
  stats_.evictions = pool.evictions();
  stats_.prefix = core_->kv.counters();
  stats_.offload = core_->offload != nullptr;
  if (core_->offload) stats_.offload_tiers = core_->offload->stats();
  stats_.preemptions = core_->scheduler.preemptions();
  stats_.running = static_cast<int32_t>(core_->scheduler.num_running());
  stats_.waiting = static_cast<int32_t>(core_->scheduler.num_waiting());
}

void Engine::run() {
  for (;;) {
    std::vector<EngineEvent> events;
    bool closing;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] {
        return closing_ || !inbox_->empty() || core_->scheduler.has_work();
      });
      closing = closing_;
    }
    drain_inbox(events);
    if (closing) {
      fail_all(Status(ErrorCode::kClosed, "the engine was closed while this request was in flight"), events);
    } else {
      step(events);
    }
    // Stats first, so that a client woken by these events sees the blocks they released.
    publish_stats();
    if (!events.empty()) sink_->deliver(std::move(events));
    if (closing) return;
  }
}

void Engine::drain_inbox(std::vector<EngineEvent>& events) {
  Inbox taken;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::swap(taken, *inbox_);
  }
  for (auto& seq : taken.submitted) {
    if (seq->params.grammar) start_grammar(*seq);
    core_->scheduler.add(std::move(seq));
  }
  for (RequestId id : taken.cancelled) {
    for (Sequence* seq : core_->scheduler.find(id)) finish(*seq, FinishReason::kAbort, events);
  }
  for (auto& command : taken.commands) command();  // the caller waits on its future
}

void Engine::start_grammar(Sequence& seq) {
  if (!core_->grammar_tokens) {
    const int32_t vocab = tokenizer_->vocab_size();
    std::vector<std::string> bytes(static_cast<size_t>(vocab));
    std::vector<bool> is_text(static_cast<size_t>(vocab));
    std::vector<int32_t> end_tokens;
    for (int32_t id = 0; id < vocab; ++id) {
      bytes[id] = tokenizer_->token_bytes(id);
      const TokenType type = tokenizer_->type(id);
      // Control and unused tokens print nothing the grammar could check; an unknown token prints a stand-in.
      is_text[id] = !bytes[id].empty() && type != TokenType::kControl && type != TokenType::kUnused && type != TokenType::kUnknown;
      if (tokenizer_->is_end_of_generation(id)) end_tokens.push_back(id);
    }
    core_->grammar_tokens = std::make_shared<grammar::TokenIndex>(bytes, is_text, std::move(end_tokens));
  }
  seq.grammar.emplace(seq.params.grammar, core_->grammar_tokens);
}

void Engine::propose_drafts() {
  Core& core = *core_;
  const std::vector<Sequence*> running = core.scheduler.running();
  for (Sequence* seq : running) seq->draft.clear();
  for (size_t kind = 1; kind < core.proposers.size(); ++kind) {
    speculative::Proposer* proposer = core.proposers[kind].get();
    if (proposer == nullptr) continue;
    core.draft_requests.clear();
    core.draft_sequences.clear();
    for (Sequence* seq : running) {
      if (!seq->proposal_size || static_cast<size_t>(seq->params.speculative.proposer) != kind) continue;
      if (seq->num_uncomputed() != 1 || seq->fork_pending) continue;  // still in its prompt
      const int32_t room = speculative::proposal_room(seq->num_generated(), seq->params.max_tokens, static_cast<int32_t>(seq->tokens.size()),
                                                      info_.context_length);
      if (room == 0) continue;
      const int32_t k = std::min({room, seq->proposal_size->next(), core.proposer_max_tokens[kind]});
      if (k == 0) continue;
      core.draft_requests.push_back({seq->speculation_key(), &seq->tokens, k, seq->params.cache_salt});
      core.draft_sequences.push_back(seq);
    }
    if (core.draft_requests.empty()) continue;
    proposer->propose(core.draft_requests, core.proposals);
    const size_t answered = std::min(core.proposals.size(), core.draft_sequences.size());
    for (size_t i = 0; i < answered; ++i) {
      std::vector<int32_t>& draft = core.draft_sequences[i]->draft;
      const std::vector<int32_t>& proposal = core.proposals[i];
      // A guess outside the vocabulary could not be embedded: the proposal ends before it.
      for (size_t t = 0; t < proposal.size() && static_cast<int32_t>(t) < core.draft_requests[i].max_tokens; ++t) {
        if (proposal[t] < 0 || proposal[t] >= info_.model.vocab_size) break;
        draft.push_back(proposal[t]);
      }
    }
  }
}

void Engine::forget_proposals(const Sequence& seq) {
  if (!seq.proposal_size) return;
  if (speculative::Proposer* proposer = core_->proposers[static_cast<size_t>(seq.params.speculative.proposer)].get()) proposer->forget(seq.speculation_key());
}

void Engine::handle_tokens(const std::vector<SampledToken>& sampled, std::vector<EngineEvent>& events) {
  // A sequence's tokens are adjacent: the step's tokens after the one that ended it are dropped, and after
  // the last of a verifying sequence's tokens it keeps the K/V of those it accepted.
  const Sequence* ended = nullptr;
  for (size_t i = 0; i < sampled.size(); ++i) {
    Sequence* seq = sampled[i].sequence;
    if (seq == ended) continue;
    if (!handle_token(sampled[i], events)) {
      ended = seq;
      continue;
    }
    const bool last_of_sequence = i + 1 == sampled.size() || sampled[i + 1].sequence != seq;
    if (last_of_sequence && sampled[i].verified) core_->scheduler.commit_verified(*seq);
  }
}

void Engine::step(std::vector<EngineEvent>& events) {
  const auto started = Clock::now();
  propose_drafts();
  StepPlan plan = core_->scheduler.schedule();
  for (Sequence* seq : core_->scheduler.take_preempted()) forget_proposals(*seq);
  if (plan.empty()) return;
  auto sampled = core_->runner.execute(plan);
  if (!sampled.is_ok()) {
    fail_all(sampled.status(), events);
    return;
  }
  // An embedding entry that reached its last token is done: its vector is pooled.
  for (const StepPlan::Entry& e : plan.entries) {
    if (e.sample && e.sequence->embedding) finish(*e.sequence, FinishReason::kStop, events);
  }
  handle_tokens(sampled.value(), events);
  uint64_t computed = 0;
  for (const StepPlan::Entry& e : plan.entries) computed += static_cast<uint64_t>(e.num_tokens);
  std::lock_guard<std::mutex> lock(stats_mutex_);
  ++stats_.steps;
  stats_.generated_tokens += sampled.value().size();
  stats_.computed_tokens += computed;
  stats_.busy_seconds += std::chrono::duration<double>(Clock::now() - started).count();
  const speculative::SpeculationCounters& verified = core_->runner.step_speculation();
  stats_.speculation.proposed += verified.proposed;
  stats_.speculation.accepted += verified.accepted;
  stats_.speculation.verify_steps += verified.verify_steps;
  stats_.speculation.generated_tokens += verified.generated_tokens;
}

bool Engine::handle_token(const SampledToken& sampled, std::vector<EngineEvent>& events) {
  Sequence& seq = *sampled.sequence;
  if (!sampled.error.is_ok()) {
    fail(seq, sampled.error, events);
    return false;
  }
  const int32_t token = sampled.token;
  if (seq.num_generated() == 0) seq.first_token = Clock::now();
  const auto& stops = seq.params.stop_tokens;
  const bool stop_token = std::find(stops.begin(), stops.end(), token) != stops.end();
  // Under a grammar an end token is sampled only where the text is complete: it ends even with ignore_eos.
  const bool ends = (!seq.params.ignore_eos || seq.grammar) && tokenizer_->is_end_of_generation(token);
  if (stop_token || ends) {
    finish(seq, FinishReason::kStop, events);
    return false;
  }
  if (seq.grammar) {
    if (Status s = seq.grammar->accept(token); !s.is_ok()) {
      fail(seq, Status(ErrorCode::kInternal, "sampled a token the grammar refuses: " + s.message()), events);
      return false;
    }
  }
  seq.tokens.push_back(token);
  bool stopped = false;
  EngineEvent ev;
  ev.kind = EngineEvent::Kind::kToken;
  ev.request = seq.id;
  ev.choice = seq.choice;
  ev.token = token;
  ev.text = seq.text.push(tokenizer_->token_bytes(token), &stopped);
  const bool at_length = seq.num_generated() >= seq.params.max_tokens || static_cast<int32_t>(seq.tokens.size()) >= info_.context_length;
  const bool grammar_complete = seq.grammar && seq.grammar->must_end();
  // The last token carries whatever was held back.
  if ((at_length || grammar_complete) && !stopped) ev.text += seq.text.finish();
  seq.generated_text += ev.text;
  if (sampled.logprobs) {
    TokenLogprobs logprobs = *sampled.logprobs;
    logprobs.chosen.bytes = tokenizer_->token_bytes(logprobs.chosen.token);
    for (LogprobEntry& alternative : logprobs.top) alternative.bytes = tokenizer_->token_bytes(alternative.token);
    if (seq.params.stream_tokens) ev.logprobs.push_back(logprobs);
    seq.logprobs.push_back(std::move(logprobs));
  }
  if (seq.params.stream_tokens) events.push_back(std::move(ev));
  if (stopped || grammar_complete) {
    finish(seq, FinishReason::kStop, events);
    return false;
  }
  if (at_length) {
    finish(seq, FinishReason::kLength, events);
    return false;
  }
  return true;
}

void Engine::finish(Sequence& seq, FinishReason reason, std::vector<EngineEvent>& events) {
  const auto end = Clock::now();
  seq.generated_text += seq.text.finish();  // empty after a stop string: it drops what it held
  EngineEvent ev;
  ev.kind = EngineEvent::Kind::kFinished;
  ev.request = seq.id;
  ev.choice = seq.choice;
  ev.finish_reason = reason;
  ev.text = std::move(seq.generated_text);
  ev.tokens.assign(seq.tokens.begin() + seq.prompt_length, seq.tokens.end());
  ev.logprobs = std::move(seq.logprobs);
  ev.prompt_tokens = seq.prompt_length;
  if (seq.embedding && reason != FinishReason::kAbort) ev.embedding = seq.embedding->result(seq.params.embed->normalize);
  if (seq.params.pin && reason != FinishReason::kAbort) ev.pinned_tokens = pin_prefix(seq);
  if (seq.proposal_size) ev.speculation = seq.speculation;
  forget_proposals(seq);
  const int32_t generated = seq.num_generated();
  if (generated > 0) {
    ev.ttft_ms = std::chrono::duration<double, std::milli>(seq.first_token - seq.submitted).count();
    const double decode_s = std::chrono::duration<double>(end - seq.first_token).count();
    ev.tokens_per_second = generated > 1 && decode_s > 0 ? (generated - 1) / decode_s : 0;
  }
  events.push_back(std::move(ev));
  core_->scheduler.remove(&seq);  // frees its blocks; `seq` is gone after this line
}

int32_t Engine::pin_prefix(Sequence& seq) {
  // The full blocks of the prompt, all registered in the prefix cache by now; the pin holds its own
  // reference, so they outlive the request and are never evicted.
  // A model windowed on every layer releases a sequence's blocks from the head on (KvCacheManager::
  // release_below): once it has, there is no prefix left to pin.
  size_t full = static_cast<size_t>(std::min(seq.prompt_length, seq.num_computed_tokens) / info_.kv.block_size);
  if (full > 0 && seq.block_table[0] == kNoBlock) full = 0;
  std::vector<BlockId> blocks(seq.block_table.begin(), seq.block_table.begin() + static_cast<std::ptrdiff_t>(full));
  core_->kv.retain(blocks);
  core_->pinned[seq.id] = std::move(blocks);
  return static_cast<int32_t>(full) * info_.kv.block_size;
}

void Engine::fail(Sequence& seq, const Status& status, std::vector<EngineEvent>& events) {
  EngineEvent ev;
  ev.kind = EngineEvent::Kind::kFailed;
  ev.request = seq.id;
  ev.choice = seq.choice;
  ev.error = status;
  events.push_back(std::move(ev));
  forget_proposals(seq);
  core_->scheduler.remove(&seq);
}

void Engine::fail_all(const Status& status, std::vector<EngineEvent>& events) {
  for (Sequence* seq : core_->scheduler.all()) fail(*seq, status, events);
}

}  // namespace pagedlm
