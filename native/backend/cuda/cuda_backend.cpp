// The CUDA backend's Backend side: creation on a device, forward() (a step on the stream, or a decode step
// replayed as a CUDA graph), the KV blocks' export, import and copy, and the entry point the engine looks up.
// The overview and the map of the other files: cuda_backend.h.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"

namespace pagedlm::cuda_backend {

namespace {

// The least a batch's sampling needs copied back (Results, in cuda_backend.h).
Results results_needed(const ForwardBatch& batch, int vocab) {
  bool greedy = true, top_k = true;
  for (const BatchSequence& s : batch.sequences) {
    if (!s.want_logits) continue;
    greedy = greedy && s.greedy;
    top_k = top_k && (s.greedy || s.top_k > 0);
  }
  if (batch.num_logit_rows() == 0) return Results::kLogits;
  if (greedy && batch.greedy_tokens != nullptr) return Results::kTokens;
  const int width = batch.top_k_width;
  if (top_k && batch.top_ids != nullptr && width > 0 && width <= cuda::kMaxTopK && width <= vocab) return Results::kCandidates;
  return Results::kLogits;
}

int next_power_of_two(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Empty when a device can be used; else what info().backendReason will say.
std::string why_cuda_is_unusable() {
  int driver = 0, runtime = 0, count = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  if (driver == 0) return "no NVIDIA driver found";
  const auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  if (driver < runtime) return "the NVIDIA driver is too old (it supports CUDA " + version(driver) + ", this build needs " + version(runtime) + ")";
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error == cudaErrorNoDevice || (error == cudaSuccess && count == 0)) return "no CUDA device found";
  if (error != cudaSuccess) return std::string("CUDA is not usable: ") + cudaGetErrorString(error);
  return {};
}

// The model features the CUDA step does not implement, by name; empty when it runs the model as the CPU does.
std::string unsupported_features(const ModelConfig& c) {
  std::vector<std::string> missing;
  if (c.qk_norm) missing.push_back("Q/K norms");
  if (c.post_norms) missing.push_back("post-norms");
  if (c.ffn_activation != FfnActivation::kSilu) missing.push_back("GeGLU");
  if (c.attention_softcap > 0 || c.final_softcap > 0) missing.push_back("soft-capping");
  if (c.embedding_scale != 1.0f) missing.push_back("scaled embeddings");
  // Latent attention scales by the decompressed key's size, which the step passes on as it is.
  if (!c.latent_attention() && c.attention_scale != 1.0f / std::sqrt(static_cast<float>(c.head_dim))) {
    missing.push_back("a query scale other than 1/sqrt(head size)");
  }
  if (!c.rope_long_freq_factors.empty() || c.rope_attention_factor != 1.0f) missing.push_back("LongRoPE");
  const bool one_rope = std::all_of(c.layers.begin(), c.layers.end(), [&](const LayerAttention& l) {
    return l.rope_base == c.rope_base && l.rope_position_scale == c.rope_position_scale && l.rope_scaled;
  });
  if (!one_rope) missing.push_back("per-layer RoPE settings");
  std::string list;
  for (const std::string& m : missing) list += (list.empty() ? "" : ", ") + m;
  return list;
}

}  // namespace

void CudaBackend::create(const CudaBackendRequest& request, CudaBackendReply& reply) {
  const ModelConfig& config = request.model->config();
  if (std::string missing = unsupported_features(config); !missing.empty()) {
    reply.unavailable = true;
    reply.status = Status(ErrorCode::kUnsupported, "the CUDA backend does not run " + config.architecture + " models (" + missing + "): use device 'cpu'");
    return;
  }
  // Latent attention reads V inside the K rows, so both sides are one type (the CPU backend's rule too).
  const KvLayout& kv = request.layout;
  if (kv.v_in_k && kv.k_dtype != kv.v_dtype) {
    reply.unavailable = true;
    reply.status = Status(ErrorCode::kUnsupported, std::string("latent attention keeps V inside the K rows, in one type: K ") + kv_dtype_name(kv.k_dtype) +
                                                       " and V " + kv_dtype_name(kv.v_dtype) + " cannot be stored");
    return;
  }
  const int head_dim = config.head_dim;
  if (!cuda::attention_head_dim_supported(head_dim)) {
    reply.unavailable = true;
    reply.status = Status(ErrorCode::kUnsupported, "the model's head size " + std::to_string(head_dim) +
                                                       " has no CUDA attention kernel (8, 16, 32, 64, 80, 96, 128 and 256 do)");
    return;
  }
  if (std::string why_not = why_cuda_is_unusable(); !why_not.empty()) {
    reply.unavailable = true;
    reply.status = Status(ErrorCode::kUnsupported, why_not);
    return;
  }
  int count = 0;
  cudaGetDeviceCount(&count);
  if (request.device < 0 || request.device >= count) {
    reply.status = Status(ErrorCode::kInvalidArgument, "gpu " + std::to_string(request.device) + " does not exist: this machine has " +
                                                           std::to_string(count) + " CUDA device" + (count == 1 ? "" : "s"));
    return;
  }
  std::unique_ptr<CudaBackend> backend(new CudaBackend(request.model));
  Status status = backend->initialize(request, reply);
  if (!status.is_ok()) {
    reply.status = status;
    return;
  }
  reply.layout = backend->layout_;
  reply.weight_bytes = backend->weight_bytes_;
  reply.backend = std::move(backend);
}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  drop_graphs();
  if (pinned_logits_ != nullptr) cudaFreeHost(pinned_logits_);
  if (pinned_ids_ != nullptr) cudaFreeHost(pinned_ids_);
  if (pinned_top_ids_ != nullptr) cudaFreeHost(pinned_top_ids_);
  if (pinned_top_values_ != nullptr) cudaFreeHost(pinned_top_values_);
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Status CudaBackend::initialize(const CudaBackendRequest& request, CudaBackendReply& reply) {
  PAGEDLM_CUDA_TRY(cudaSetDevice(request.device), "selecting gpu " + std::to_string(request.device));
  cudaDeviceProp prop{};
  PAGEDLM_CUDA_TRY(cudaGetDeviceProperties(&prop, request.device), "reading the device's properties");
  reply.device_name = prop.name;
  sm_count_ = std::max(1, prop.multiProcessorCount);
  PAGEDLM_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a stream");
  if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) return Status(ErrorCode::kCuda, "cuBLAS could not start");
  cublasSetStream(cublas_, stream_);
  const char* graphs = std::getenv("PAGEDLM_CUDA_GRAPHS");
  graphs_enabled_ = graphs == nullptr || std::strcmp(graphs, "0") != 0;
  if (graphs_enabled_) {
    PAGEDLM_CUDA_TRY(cublas_workspace_.allocate(kCublasWorkspaceBytes), "allocating cuBLAS's workspace");
    cublasSetWorkspace(cublas_, cublas_workspace_.get(), cublas_workspace_.bytes());
    PAGEDLM_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&pinned_logits_), sizeof(float) * kMaxGraphBatch * config_.vocab_size),
                     "allocating pinned memory for logits");
    PAGEDLM_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&pinned_ids_), sizeof(int32_t) * kMaxGraphBatch), "allocating pinned memory for tokens");
    const size_t candidates = static_cast<size_t>(kMaxGraphBatch) * cuda::kMaxTopK;
    PAGEDLM_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&pinned_top_ids_), sizeof(int32_t) * candidates), "allocating pinned memory");
    PAGEDLM_CUDA_TRY(cudaMallocHost(reinterpret_cast<void**>(&pinned_top_values_), sizeof(float) * candidates), "allocating pinned memory");
  }
  if (Status s = upload_weights(); !s.is_ok()) return s;
  if (Status s = allocate_activations(std::max(1, request.max_batch_tokens)); !s.is_ok()) return s;
  return allocate_pool(request);
}

void CudaBackend::drop_graphs() {
  for (auto& [key, graph] : graphs_) {
    if (graph.exec != nullptr) cudaGraphExecDestroy(graph.exec);
  }
  graphs_.clear();
}

// Queues the copy of a graph's results into the pinned buffers, for `rows` rows.
Status CudaBackend::enqueue_graph_copy(const ForwardBatch& batch, Results results, int rows) {
  if (Status s = enqueue_selection(batch, results, rows); !s.is_ok()) return s;
  cudaError_t copy;
  if (results == Results::kTokens) {
    copy = cudaMemcpyAsync(pinned_ids_, greedy_ids_.get(), rows * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_);
  } else if (results == Results::kCandidates) {
    const size_t candidates = static_cast<size_t>(rows) * batch.top_k_width;
    copy = cudaMemcpyAsync(pinned_top_ids_, top_ids_.get(), candidates * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_);
    if (copy == cudaSuccess) copy = cudaMemcpyAsync(pinned_top_values_, top_values_.get(), candidates * sizeof(float), cudaMemcpyDeviceToHost, stream_);
  } else {
    copy = cudaMemcpyAsync(pinned_logits_, logits_.get(), static_cast<size_t>(rows) * config_.vocab_size * sizeof(float), cudaMemcpyDeviceToHost, stream_);
  }
  return copy == cudaSuccess ? Status::ok() : cuda_status(copy, "capturing the step's results");
}

// A decode step of up to kMaxGraphBatch sequences: padded to `seqs` sequences and a `context`-token table
// stride, captured on first use, replayed after.
Status CudaBackend::forward_with_graph(const ForwardBatch& batch, float* logits, int seqs, int context, Results results) {
  pack_batch(batch, seqs, context / layout_.block_size);
  const auto key = std::make_tuple(seqs, context, results, results == Results::kCandidates ? batch.top_k_width : 0);
  DecodeGraph& graph = graphs_[key];
  const size_t meta_bytes = meta_host_.size() * sizeof(int32_t);
  if (graph.exec == nullptr) {
    PAGEDLM_CUDA_TRY(graph.meta.allocate(meta_bytes), "allocating a graph's metadata");
    meta_base_ = graph.meta.get<int32_t>();
    PAGEDLM_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "capturing a decode step");
    Status status = enqueue_step();
    if (status.is_ok()) status = enqueue_graph_copy(batch, results, seqs);
    cudaGraph_t captured = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream_, &captured);
    if (status.is_ok() && end != cudaSuccess) status = cuda_status(end, "capturing a decode step");
    if (status.is_ok()) {
      const cudaError_t made = cudaGraphInstantiate(&graph.exec, captured, 0);
      if (made != cudaSuccess) status = cuda_status(made, "instantiating a decode graph");
    }
    if (captured != nullptr) cudaGraphDestroy(captured);
    if (!status.is_ok()) {
      graphs_.erase(key);
      return status;
    }
  }
  PAGEDLM_CUDA_TRY(cudaMemcpyAsync(graph.meta.get(), meta_host_.data(), meta_bytes, cudaMemcpyHostToDevice, stream_), "copying the step's metadata");
  PAGEDLM_CUDA_TRY(cudaGraphLaunch(graph.exec, stream_), "replaying a decode step");
  PAGEDLM_CUDA_TRY(cudaStreamSynchronize(stream_), "finishing the step");
  const size_t rows = batch.sequences.size();
  if (results == Results::kTokens) {
    std::memcpy(batch.greedy_tokens, pinned_ids_, rows * sizeof(int32_t));
  } else if (results == Results::kCandidates) {
    std::memcpy(batch.top_ids, pinned_top_ids_, rows * batch.top_k_width * sizeof(int32_t));
    std::memcpy(batch.top_values, pinned_top_values_, rows * batch.top_k_width * sizeof(float));
  } else {
    std::memcpy(logits, pinned_logits_, rows * static_cast<size_t>(config_.vocab_size) * sizeof(float));
  }
  return Status::ok();
}

Status CudaBackend::forward(const ForwardBatch& batch, float* logits) {
  const int n = static_cast<int>(batch.tokens.size());
  if (n == 0) return Status::ok();
  if (n > capacity_tokens_) {
    PAGEDLM_CUDA_TRY(cudaStreamSynchronize(stream_), "waiting for the previous step");
    drop_graphs();  // they hold the old buffers' addresses
    if (Status s = allocate_activations(n); !s.is_ok()) return s;
  }
  const Results results = results_needed(batch, config_.vocab_size);
  const int seqs = next_power_of_two(static_cast<int>(batch.sequences.size()));
  const bool graph_shape = std::all_of(batch.sequences.begin(), batch.sequences.end(), [](const BatchSequence& s) { return s.num_tokens == 1 && s.want_logits && s.logit_rows == 1 && !s.want_hidden; });
  if (graphs_enabled_ && graph_shape && seqs <= kMaxGraphBatch && seqs <= capacity_tokens_) {
    int context = 0;
    for (const BatchSequence& s : batch.sequences) context = std::max(context, s.start_position + 1);
    context = std::max(next_power_of_two(context), next_power_of_two(layout_.block_size));
    return forward_with_graph(batch, logits, seqs, (context + layout_.block_size - 1) / layout_.block_size * layout_.block_size, results);
  }
  if (Status s = upload_batch(batch); !s.is_ok()) return s;
  if (Status s = enqueue_step(); !s.is_ok()) return s;
  if (Status s = copy_hidden_rows(batch); !s.is_ok()) return s;
  return copy_results(batch, logits, results);
}

// The CPU backend's order and bytes (per layer: K rows, V rows, then K's scales, V's scales, each over the
// block's heads), so exported blocks, saved caches and the offload tier read back on either backend.
template <typename Visit>
void CudaBackend::for_each_block_piece(BlockId block, Visit visit) const {
  const size_t heads = static_cast<size_t>(layout_.num_kv_heads);
  const auto rows = [&](KvRole role) { return (role == KvRole::kKey ? k_pool_ : v_pool_).get<uint8_t>(); };
  const auto scales = [&](KvRole role) { return (role == KvRole::kKey ? k_scales_ : v_scales_).get<uint8_t>(); };
  for (int32_t layer = 0; layer < layout_.num_layers; ++layer) {
    const size_t first = layout_.piece_index(layer, block, 0);
    for (KvRole role : {KvRole::kKey, KvRole::kValue}) {
      if (layout_.piece_bytes(role) > 0) visit(rows(role) + first * layout_.piece_bytes(role), heads * layout_.piece_bytes(role));
    }
    for (KvRole role : {KvRole::kKey, KvRole::kValue}) {
      const size_t n = layout_.piece_scale_bytes(role);
      if (n > 0) visit(scales(role) + first * n, heads * n);
    }
  }
}

size_t CudaBackend::block_bytes() const {
  size_t total = 0;
  for_each_block_piece(0, [&](uint8_t*, size_t n) { total += n; });
  return total;
}

// On the stream, after the steps that wrote the block; the host waits because `out` and `in` are the
// caller's (pageable) memory, free to reuse once these return.
Status CudaBackend::export_block(BlockId block, uint8_t* out) const {
  Status status;
  for_each_block_piece(block, [&](uint8_t* piece, size_t n) {
    if (status.is_ok()) status = to_status(cudaMemcpyAsync(out, piece, n, cudaMemcpyDeviceToHost, stream_), "exporting a KV block");
    out += n;
  });
  const cudaError_t finished = cudaStreamSynchronize(stream_);
  return status.is_ok() ? to_status(finished, "exporting a KV block") : status;
}

Status CudaBackend::import_block(BlockId block, const uint8_t* in) {
  Status status;
  for_each_block_piece(block, [&](uint8_t* piece, size_t n) {
    if (status.is_ok()) status = to_status(cudaMemcpyAsync(piece, in, n, cudaMemcpyHostToDevice, stream_), "importing a KV block");
    in += n;
  });
  const cudaError_t finished = cudaStreamSynchronize(stream_);
  return status.is_ok() ? to_status(finished, "importing a KV block") : status;
}

Status CudaBackend::copy_block(BlockId from, BlockId to) {
  std::vector<uint8_t*> targets;
  for_each_block_piece(to, [&](uint8_t* piece, size_t) { targets.push_back(piece); });
  size_t i = 0;
  Status status;
  for_each_block_piece(from, [&](uint8_t* piece, size_t n) {
    if (status.is_ok()) status = to_status(cudaMemcpyAsync(targets[i], piece, n, cudaMemcpyDeviceToDevice, stream_), "copying a KV block");
    ++i;
  });
  return status;
}

std::shared_ptr<uint8_t> CudaBackend::allocate_host_blocks(size_t bytes) {
  void* memory = nullptr;
  if (cudaMallocHost(&memory, std::max<size_t>(bytes, 1)) != cudaSuccess) return nullptr;
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(memory), [](uint8_t* p) { cudaFreeHost(p); });
}

// On the stream, so the copies are ordered before the next step's kernels (which may overwrite an exported
// block or read an imported one) without the host waiting for them.
Status CudaBackend::export_block_async(BlockId block, uint8_t* out) {
  Status status;
  for_each_block_piece(block, [&](uint8_t* piece, size_t n) {
    if (status.is_ok()) status = to_status(cudaMemcpyAsync(out, piece, n, cudaMemcpyDeviceToHost, stream_), "offloading a KV block");
    out += n;
  });
  return status;
}

Status CudaBackend::import_block_async(BlockId block, const uint8_t* in) {
  Status status;
  for_each_block_piece(block, [&](uint8_t* piece, size_t n) {
    if (status.is_ok()) status = to_status(cudaMemcpyAsync(piece, in, n, cudaMemcpyHostToDevice, stream_), "restoring an offloaded KV block");
    in += n;
  });
  return status;
}

Status CudaBackend::finish_host_copies() {
  PAGEDLM_CUDA_TRY(cudaStreamSynchronize(stream_), "waiting for KV block copies");
  return Status::ok();
}

}  // namespace pagedlm::cuda_backend

PAGEDLM_CUDA_ENTRY_POINT void pagedlm_create_cuda_backend(const pagedlm::CudaBackendRequest& request,
                                                                                     pagedlm::CudaBackendReply& reply) {
  pagedlm::cuda_backend::CudaBackend::create(request, reply);
}
