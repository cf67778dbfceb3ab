// The CUDA backend: the forward pass of CpuBackend on one GPU. Weights are uploaded once (F32, F16, BF16 as
// stored; Q8_0 split into int8 rows + scales; Q4_0/Q4_K/Q6_K expanded to F16), the paged KV pool lives in device
// memory with the CPU's layout, GEMMs go through cuBLAS (tensor cores for f16/bf16), everything else
// through kernels/. All work is queued on one stream; the host waits once a step, for its results (the
// tokens of greedy steps, the top-k candidates of top-k sampling, else the logits). Decode steps replay
// CUDA graphs.
// Built into libpagedlm_kernels with the kernels; the engine reaches it through cuda_entry.h.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/cuda/cuda_entry.h"
#include "common/half.h"
#include "cublas_api.h"
#include "pagedlm_kernels.h"

namespace pagedlm {

namespace {

Status cuda_status(cudaError_t error, const std::string& what) {
  return Status(ErrorCode::kCuda, what + ": " + cudaGetErrorString(error));
}

#define PAGEDLM_CUDA_TRY(call, what)                            \
  do {                                                          \
    const cudaError_t error_ = (call);                          \
    if (error_ != cudaSuccess) return cuda_status(error_, what); \
  } while (0)

// One device allocation, freed with its owner.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() { reset(); }
  cudaError_t allocate(size_t bytes) {
    reset();
    bytes_ = bytes;
    return cudaMalloc(&ptr_, std::max<size_t>(bytes, 1));
  }
  void reset() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

struct DeviceWeight {
  cuda::DeviceMatrix matrix{};
  DeviceMemory data, scales;
};

struct DeviceLayer {
  DeviceMemory attn_norm, ffn_norm, bq, bk, bv;
  DeviceWeight wq, wk, wv, wo, w_gate, w_up, w_down;
};

// Room for the partitions of split decode attention; a batch whose partials do not fit takes the prefill kernel.
constexpr size_t kDecodeWorkspaceBytes = size_t{32} << 20;
// Decode batches up to this many sequences run as CUDA graphs (padded to a power of two).
constexpr int kMaxGraphBatch = 64;
// cuBLAS inside a captured graph must not allocate: it gets a workspace of its own.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

// What a step copies back: every logit row, or for greedy steps the argmax tokens, or for steps that only
// look at the top-k logits (greedy or top_k sampling, no penalties) the k best candidates of each row.
enum class Results { kLogits, kTokens, kCandidates };

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

class CudaBackend final : public Backend {
 public:
  static void create(const CudaBackendRequest& request, CudaBackendReply& reply);
  ~CudaBackend() override;

  const KvLayout& kv_layout() const override { return layout_; }
  Status forward(const ForwardBatch& batch, float* logits) override;
  size_t block_bytes() const override;
  void export_block(BlockId block, uint8_t* out) const override;
  void import_block(BlockId block, const uint8_t* in) override;
  void copy_block(BlockId from, BlockId to) override;

 private:
  explicit CudaBackend(std::shared_ptr<const LlamaModel> model) : model_(std::move(model)), config_(model_->config()) {}
  Status initialize(const CudaBackendRequest& request, CudaBackendReply& reply);
  Status upload_weights();
  Status upload_matrix(const WeightMatrix& w, DeviceWeight& out);
  Status upload_floats(const std::vector<float>& values, DeviceMemory& out);
  Status allocate_pool(const CudaBackendRequest& request);
  Status allocate_activations(int tokens);

  // Fills meta_ and meta_host_ for the batch, padded to `seqs` single-token sequences and tables of
  // `table_stride` blocks when those are larger (a graph's fixed shape).
  void pack_batch(const ForwardBatch& batch, int seqs, int table_stride);
  Status upload_batch(const ForwardBatch& batch);
  // Queues the whole step on the stream, ending with the logits of meta_'s logit rows in logits_.
  Status enqueue_step();
  // Queues what `results` needs from the logits of `rows` rows (argmax, top-k or nothing more).
  Status enqueue_selection(const ForwardBatch& batch, Results results, int rows);
  // Copies the step's results to the host and waits for them.
  Status copy_results(const ForwardBatch& batch, float* logits, Results results);
  Status enqueue_graph_copy(const ForwardBatch& batch, Results results, int rows);
  Status forward_with_graph(const ForwardBatch& batch, float* logits, int seqs, int context, Results results);
  void drop_graphs();
  Status matmul(const DeviceWeight& w, const float* x, int n_tokens, float* y, const DeviceMemory* bias = nullptr);
  Status attention_block(int layer);
  Status ffn_block(int layer, int n_tokens);
  Status attend(int layer);
  Status output_logits();
  cuda::PagedKv layer_kv(int layer) const;
  template <typename Visit>
  void for_each_block_piece(BlockId block, Visit visit) const;

  std::shared_ptr<const LlamaModel> model_;
  const ModelConfig& config_;
  KvLayout layout_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  int sm_count_ = 1;
  uint64_t weight_bytes_ = 0;

  DeviceWeight embedding_, output_;
  DeviceMemory output_norm_, rope_frequencies_;
  std::vector<DeviceLayer> layers_;
  size_t largest_q8_matrix_ = 0;  // elements: the f16 scratch for prefill GEMMs of Q8_0 weights

  DeviceMemory k_pool_, v_pool_, k_scales_, v_scales_;

  // Step activations, sized for the largest batch (grown on demand).
  int capacity_tokens_ = 0;
  DeviceMemory x_, xb_, q_, k_, v_, att_, gate_, up_, half_x_, half_w_, logits_, greedy_ids_, top_ids_, top_values_, workspace_;

  // The step's metadata: one host vector, one copy to the device.
  struct BatchMeta {
    int n_tokens = 0, n_seqs = 0, n_logit_rows = 0, max_blocks = 0, max_query_len = 0, max_context_len = 0;
    bool all_decode = true;
    size_t tokens = 0, positions = 0, slots = 0, query_starts = 0, start_positions = 0, context_lens = 0, logit_rows = 0, tables = 0;
  } meta_;
  std::vector<int32_t> meta_host_;
  DeviceMemory meta_device_;
  const int32_t* meta_base_ = nullptr;  // meta_device_, or the running graph's own copy
  const int32_t* meta(size_t offset) const { return meta_base_ + offset; }

  // Decode steps replayed as CUDA graphs, one per (batch bucket, context bucket): kernel arguments are fixed
  // at capture, so the step's metadata is copied into the graph's own buffer before each launch.
  struct DecodeGraph {
    cudaGraphExec_t exec = nullptr;
    DeviceMemory meta;
  };
  bool graphs_enabled_ = true;
  std::map<std::tuple<int, int, Results, int>, DecodeGraph> graphs_;  // (sequences, context, results, top-k width)
  // The graphs' copy targets: [kMaxGraphBatch, vocab] logits, [kMaxGraphBatch] tokens, [kMaxGraphBatch,
  // kMaxTopK] candidates.
  float* pinned_logits_ = nullptr;
  int32_t* pinned_ids_ = nullptr;
  int32_t* pinned_top_ids_ = nullptr;
  float* pinned_top_values_ = nullptr;
  DeviceMemory cublas_workspace_;
};

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

void CudaBackend::create(const CudaBackendRequest& request, CudaBackendReply& reply) {
  const int head_dim = request.model->config().head_dim;
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

// A failed allocation while uploading weights says what did not fit and what to change.
Status weights_status(cudaError_t error, const std::string& what, uint64_t uploaded) {
  if (error != cudaErrorMemoryAllocation) return cuda_status(error, what);
  return Status(ErrorCode::kOutOfMemory, "the weights do not fit in GPU memory (" + what + " failed after " + std::to_string(uploaded >> 20) +
                                             " MiB): use a smaller or more quantized model, another gpu, or device 'cpu'");
}

#define PAGEDLM_WEIGHTS_TRY(call, what)                                        \
  do {                                                                         \
    const cudaError_t error_ = (call);                                         \
    if (error_ != cudaSuccess) return weights_status(error_, what, weight_bytes_); \
  } while (0)

Status CudaBackend::upload_floats(const std::vector<float>& values, DeviceMemory& out) {
  if (values.empty()) return Status::ok();
  PAGEDLM_WEIGHTS_TRY(out.allocate(values.size() * sizeof(float)), "allocating " + std::to_string(values.size() * 4) + " bytes for weights");
  PAGEDLM_WEIGHTS_TRY(cudaMemcpy(out.get(), values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice), "uploading weights");
  weight_bytes_ += out.bytes();
  return Status::ok();
}

Status CudaBackend::upload_matrix(const WeightMatrix& w, DeviceWeight& out) {
  const size_t elements = static_cast<size_t>(w.rows) * w.cols;
  const std::string what = "uploading a " + std::to_string(w.rows) + "x" + std::to_string(w.cols) + " " + tensor_type_name(w.type) + " matrix";
  switch (w.type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16: {
      const size_t bytes = static_cast<size_t>(w.rows) * w.row_bytes;
      PAGEDLM_WEIGHTS_TRY(out.data.allocate(bytes), what);
      PAGEDLM_WEIGHTS_TRY(cudaMemcpy(out.data.get(), w.data, bytes, cudaMemcpyHostToDevice), what);
      out.matrix = {w.type, out.data.get(), nullptr, w.rows, w.cols};
      break;
    }
    case TensorType::kQ8_0: {
      DeviceMemory raw;
      const size_t bytes = static_cast<size_t>(w.rows) * w.row_bytes;
      PAGEDLM_WEIGHTS_TRY(raw.allocate(bytes), what);
      PAGEDLM_WEIGHTS_TRY(cudaMemcpy(raw.get(), w.data, bytes, cudaMemcpyHostToDevice), what);
      PAGEDLM_WEIGHTS_TRY(out.data.allocate(elements), what);
      PAGEDLM_WEIGHTS_TRY(out.scales.allocate(elements / kQ8BlockElements * sizeof(uint16_t)), what);
      PAGEDLM_WEIGHTS_TRY(cuda::launch_split_q8_0({raw.get<uint8_t>(), out.data.get<int8_t>(), out.scales.get<uint16_t>(), w.rows, w.cols}, nullptr), what);
      PAGEDLM_WEIGHTS_TRY(cudaDeviceSynchronize(), what);
      out.matrix = {w.type, out.data.get(), out.scales.get<uint16_t>(), w.rows, w.cols};
      largest_q8_matrix_ = std::max(largest_q8_matrix_, elements);
      break;
    }
    default: {
      // Q4_0 / Q4_K / Q6_K have no kernels here: expanded to f16 once, at upload.
      std::vector<float> row(w.cols);
      std::vector<uint16_t> halves(elements);
      for (int r = 0; r < w.rows; ++r) {
        dequantize_row(w.type, w.row(r), row.data(), w.cols);
        for (int c = 0; c < w.cols; ++c) halves[static_cast<size_t>(r) * w.cols + c] = float_to_fp16(row[c]);
      }
      PAGEDLM_WEIGHTS_TRY(out.data.allocate(elements * sizeof(uint16_t)), what);
      PAGEDLM_WEIGHTS_TRY(cudaMemcpy(out.data.get(), halves.data(), elements * sizeof(uint16_t), cudaMemcpyHostToDevice), what);
      out.matrix = {TensorType::kF16, out.data.get(), nullptr, w.rows, w.cols};
    }
  }
  weight_bytes_ += out.data.bytes() + out.scales.bytes();
  return Status::ok();
}

Status CudaBackend::upload_weights() {
  if (Status s = upload_matrix(model_->token_embedding(), embedding_); !s.is_ok()) return s;
  if (!config_.tied_output) {
    if (Status s = upload_matrix(model_->output(), output_); !s.is_ok()) return s;
  }
  if (Status s = upload_floats(model_->output_norm(), output_norm_); !s.is_ok()) return s;
  if (Status s = upload_floats(rope_inverse_frequencies(config_), rope_frequencies_); !s.is_ok()) return s;
  layers_ = std::vector<DeviceLayer>(config_.n_layers);
  for (int l = 0; l < config_.n_layers; ++l) {
    const LayerWeights& w = model_->layers()[l];
    DeviceLayer& d = layers_[l];
    for (const auto& [host, device] : {std::pair{&w.attn_norm, &d.attn_norm}, {&w.ffn_norm, &d.ffn_norm}, {&w.bq, &d.bq}, {&w.bk, &d.bk}, {&w.bv, &d.bv}}) {
      if (Status s = upload_floats(*host, *device); !s.is_ok()) return s;
    }
    for (const auto& [host, device] : {std::pair{&w.wq, &d.wq}, {&w.wk, &d.wk}, {&w.wv, &d.wv}, {&w.wo, &d.wo}, {&w.w_gate, &d.w_gate},
                                       {&w.w_up, &d.w_up}, {&w.w_down, &d.w_down}}) {
      if (Status s = upload_matrix(*host, *device); !s.is_ok()) return s;
    }
  }
  return Status::ok();
}

Status CudaBackend::allocate_pool(const CudaBackendRequest& request) {
  layout_ = request.layout;
  if (layout_.num_blocks <= 0) {
    size_t free_bytes = 0, total_bytes = 0;
    PAGEDLM_CUDA_TRY(cudaMemGetInfo(&free_bytes, &total_bytes), "reading free device memory");
    layout_.num_blocks = static_cast<int32_t>(static_cast<double>(free_bytes) * request.gpu_memory_fraction / static_cast<double>(layout_.bytes_per_block()));
    if (layout_.num_blocks < 1) {
      return Status(ErrorCode::kOutOfMemory, "the KV pool does not fit on the GPU after the weights (" + std::to_string(free_bytes >> 20) +
                                                 " MiB free): raise kvCache.gpuMemoryFraction or use a smaller model or kvCache.dtype 'int8'");
    }
  }
  const size_t elements = layout_.layer_elements() * layout_.num_layers;
  const size_t element_bytes = kv_dtype_bytes(layout_.dtype);
  const std::string what = "allocating the KV pool (" + std::to_string(layout_.total_bytes() >> 20) + " MiB, " + std::to_string(layout_.num_blocks) +
                           " blocks): lower kvCache.memory / kvCache.blocks or use kvCache.dtype 'int8'";
  const auto out_of_memory = [&](cudaError_t e) { return Status(ErrorCode::kOutOfMemory, what + " (" + cudaGetErrorString(e) + ")"); };
  if (cudaError_t e = k_pool_.allocate(elements * element_bytes); e != cudaSuccess) return out_of_memory(e);
  if (cudaError_t e = v_pool_.allocate(elements * element_bytes); e != cudaSuccess) return out_of_memory(e);
  if (kv_dtype_has_scales(layout_.dtype)) {
    const size_t rows = layout_.layer_rows() * layout_.num_layers;
    if (cudaError_t e = k_scales_.allocate(rows * sizeof(float)); e != cudaSuccess) return out_of_memory(e);
    if (cudaError_t e = v_scales_.allocate(rows * sizeof(float)); e != cudaSuccess) return out_of_memory(e);
  }
  return Status::ok();
}

Status CudaBackend::allocate_activations(int tokens) {
  const ModelConfig& c = config_;
  const size_t t = static_cast<size_t>(tokens);
  const size_t widest = std::max({c.dim, c.q_dim(), c.ffn_dim});
  const std::string what = "allocating activations for " + std::to_string(tokens) + " tokens";
  for (const auto& [buffer, floats] : {std::pair{&x_, t * c.dim}, {&xb_, t * c.dim}, {&q_, t * c.q_dim()}, {&k_, t * c.kv_dim()},
                                       {&v_, t * c.kv_dim()}, {&att_, t * c.q_dim()}, {&gate_, t * c.ffn_dim}, {&up_, t * c.ffn_dim},
                                       {&logits_, t * c.vocab_size}}) {
    PAGEDLM_CUDA_TRY(buffer->allocate(floats * sizeof(float)), what);
  }
  PAGEDLM_CUDA_TRY(half_x_.allocate(t * widest * sizeof(uint16_t)), what);
  PAGEDLM_CUDA_TRY(greedy_ids_.allocate(t * sizeof(int32_t)), what);
  PAGEDLM_CUDA_TRY(top_ids_.allocate(t * cuda::kMaxTopK * sizeof(int32_t)), what);
  PAGEDLM_CUDA_TRY(top_values_.allocate(t * cuda::kMaxTopK * sizeof(float)), what);
  if (largest_q8_matrix_ > 0) PAGEDLM_CUDA_TRY(half_w_.allocate(largest_q8_matrix_ * sizeof(uint16_t)), what);
  if (workspace_.bytes() == 0) PAGEDLM_CUDA_TRY(workspace_.allocate(kDecodeWorkspaceBytes), what);
  capacity_tokens_ = tokens;
  return Status::ok();
}

cuda::PagedKv CudaBackend::layer_kv(int layer) const {
  const size_t elements = layout_.layer_elements() * layer, rows = layout_.layer_rows() * layer;
  const size_t bytes = elements * kv_dtype_bytes(layout_.dtype);
  const bool scaled = kv_dtype_has_scales(layout_.dtype);
  return {k_pool_.get<uint8_t>() + bytes, v_pool_.get<uint8_t>() + bytes, scaled ? k_scales_.get<float>() + rows : nullptr,
          scaled ? v_scales_.get<float>() + rows : nullptr, layout_.dtype, layout_.num_kv_heads, layout_.head_dim, layout_.block_size};
}

// Packs tokens, positions, slots, per-sequence offsets and block tables into one buffer. Padding sequences
// have no tokens to keep (token -1 embeds as zeros, slot -1 writes nothing, context 0 attends to nothing).
void CudaBackend::pack_batch(const ForwardBatch& batch, int seqs, int table_stride) {
  BatchMeta& m = meta_;
  m = BatchMeta{};
  const int real_seqs = static_cast<int>(batch.sequences.size());
  const int padding = std::max(0, seqs - real_seqs);
  m.n_tokens = static_cast<int>(batch.tokens.size()) + padding;
  m.n_seqs = real_seqs + padding;
  m.max_blocks = table_stride;
  for (const BatchSequence& s : batch.sequences) {
    const int context = s.start_position + s.num_tokens;
    m.max_blocks = std::max(m.max_blocks, (context + layout_.block_size - 1) / layout_.block_size);
    m.max_query_len = std::max(m.max_query_len, s.num_tokens);
    m.max_context_len = std::max(m.max_context_len, context);
    m.all_decode = m.all_decode && s.num_tokens == 1;
    m.n_logit_rows += s.want_logits;
  }
  // A graph's kernels keep the arguments they were captured with: size them by the bucket, not this step.
  m.max_context_len = std::max(m.max_context_len, table_stride * layout_.block_size);
  m.n_logit_rows += padding;
  std::vector<int32_t>& h = meta_host_;
  h.clear();
  const auto section = [&](size_t count, int32_t fill) {
    const size_t at = h.size();
    h.resize(at + count, fill);
    return at;
  };
  m.tokens = section(m.n_tokens, -1);
  m.positions = section(m.n_tokens, 0);
  m.slots = section(m.n_tokens, -1);
  m.query_starts = section(m.n_seqs + 1, 0);
  m.start_positions = section(m.n_seqs, 0);
  m.context_lens = section(m.n_seqs, 0);
  m.logit_rows = section(std::max(1, m.n_logit_rows), 0);
  m.tables = section(static_cast<size_t>(m.n_seqs) * std::max(1, m.max_blocks), 0);
  std::copy(batch.tokens.begin(), batch.tokens.end(), h.begin() + m.tokens);
  int logit_row = 0;
  for (int s = 0; s < real_seqs; ++s) {
    const BatchSequence& seq = batch.sequences[s];
    const int blocks = (seq.start_position + seq.num_tokens + layout_.block_size - 1) / layout_.block_size;
    for (int j = 0; j < seq.num_tokens; ++j) {
      const int position = seq.start_position + j;
      h[m.positions + seq.first_token + j] = position;
      h[m.slots + seq.first_token + j] = seq.block_table[position / layout_.block_size] * layout_.block_size + position % layout_.block_size;
    }
    h[m.query_starts + s] = seq.first_token;
    h[m.start_positions + s] = seq.start_position;
    h[m.context_lens + s] = seq.start_position + seq.num_tokens;
    if (seq.want_logits) h[m.logit_rows + logit_row++] = seq.first_token + seq.num_tokens - 1;
    std::copy(seq.block_table, seq.block_table + blocks, h.begin() + m.tables + static_cast<size_t>(s) * m.max_blocks);
  }
  const int real_tokens = static_cast<int>(batch.tokens.size());
  for (int p = 0; p < padding; ++p) {
    h[m.query_starts + real_seqs + p] = real_tokens + p;
    h[m.logit_rows + logit_row++] = real_tokens + p;
  }
  h[m.query_starts + m.n_seqs] = m.n_tokens;
}

Status CudaBackend::upload_batch(const ForwardBatch& batch) {
  pack_batch(batch, 0, 0);
  const std::vector<int32_t>& h = meta_host_;
  if (meta_device_.bytes() < h.size() * sizeof(int32_t)) {
    PAGEDLM_CUDA_TRY(cudaStreamSynchronize(stream_), "waiting for the previous step");
    PAGEDLM_CUDA_TRY(meta_device_.allocate(h.size() * 2 * sizeof(int32_t)), "allocating the step's metadata");
  }
  meta_base_ = meta_device_.get<int32_t>();
  PAGEDLM_CUDA_TRY(cudaMemcpyAsync(meta_device_.get(), h.data(), h.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_),
                   "copying the step's metadata");
  return Status::ok();
}

// y[t, :] = W x[t, :] (+ bias): Q8_0 decode steps through the dequantizing matvec, the rest through cuBLAS.
Status CudaBackend::matmul(const DeviceWeight& w, const float* x, int n_tokens, float* y, const DeviceMemory* bias) {
  const cuda::DeviceMatrix& m = w.matrix;
  const float alpha = 1.0f, beta = 0.0f;
  if (m.type == TensorType::kQ8_0 && n_tokens <= cuda::kMaxMatvecTokens) {
    PAGEDLM_CUDA_TRY(cuda::launch_q8_0_matvec({m, x, y, n_tokens}, stream_), "Q8_0 matvec");
  } else {
    const void* weights = m.data;
    const void* input = x;
    cudaDataType type = CUDA_R_32F;
    if (m.type != TensorType::kF32) {
      const bool bfloat = m.type == TensorType::kBF16;
      type = bfloat ? CUDA_R_16BF : CUDA_R_16F;
      if (m.type == TensorType::kQ8_0) {
        PAGEDLM_CUDA_TRY(cuda::launch_dequantize_q8_0({m, half_w_.get<uint16_t>()}, stream_), "expanding Q8_0 weights");
        weights = half_w_.get();
      }
      PAGEDLM_CUDA_TRY(cuda::launch_to_half({x, half_x_.get<uint16_t>(), static_cast<size_t>(n_tokens) * m.cols, bfloat}, stream_),
                       "converting activations");
      input = half_x_.get();
    }
    // Row-major y[n, rows] = x[n, cols] W^T is column-major y^T = W^T^T x^T: W is read as its transpose.
    const cublasStatus_t s = cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m.rows, n_tokens, m.cols, &alpha, weights, type, m.cols, input,
                                          type, m.cols, &beta, y, CUDA_R_32F, m.rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) return Status(ErrorCode::kCuda, std::string("cuBLAS GEMM: ") + cublasGetStatusString(s));
  }
  if (bias != nullptr && bias->bytes() > 0) {
    PAGEDLM_CUDA_TRY(cuda::launch_add_bias({y, bias->get<float>(), n_tokens, m.rows}, stream_), "adding a bias");
  }
  return Status::ok();
}

Status CudaBackend::attend(int layer) {
  const ModelConfig& c = config_;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  if (meta_.all_decode) {
    cuda::DecodeAttentionParams p{q_.get<float>(), att_.get<float>(), layer_kv(layer), meta(meta_.tables), meta(meta_.context_lens), meta_.n_seqs,
                                  c.n_heads, std::max(1, meta_.max_blocks), meta_.max_context_len,
                                  cuda::choose_decode_partition(meta_.n_seqs, c.n_kv_heads, meta_.max_context_len, 4 * sm_count_), scale,
                                  workspace_.get<float>()};
    while (cuda::decode_attention_workspace_bytes(p) > workspace_.bytes() && p.partition_size < cuda::kMaxDecodePartition) p.partition_size *= 2;
    if (cuda::decode_attention_workspace_bytes(p) <= workspace_.bytes()) {
      PAGEDLM_CUDA_TRY(cuda::launch_decode_attention(p, stream_), "decode attention");
      return Status::ok();
    }
  }
  const cuda::PrefillAttentionParams p{q_.get<float>(), att_.get<float>(), layer_kv(layer), meta(meta_.tables), meta(meta_.query_starts),
                                       meta(meta_.start_positions), meta_.n_seqs, c.n_heads, std::max(1, meta_.max_blocks), meta_.max_query_len,
                                       scale};
  PAGEDLM_CUDA_TRY(cuda::launch_prefill_attention(p, stream_), "prefill attention");
  return Status::ok();
}

Status CudaBackend::attention_block(int layer) {
  const ModelConfig& c = config_;
  const DeviceLayer& w = layers_[layer];
  const int n = meta_.n_tokens;
  PAGEDLM_CUDA_TRY(cuda::launch_rms_norm({x_.get<float>(), w.attn_norm.get<float>(), xb_.get<float>(), n, c.dim, c.rms_eps}, stream_), "RMSNorm");
  if (Status s = matmul(w.wq, xb_.get<float>(), n, q_.get<float>(), &w.bq); !s.is_ok()) return s;
  if (Status s = matmul(w.wk, xb_.get<float>(), n, k_.get<float>(), &w.bk); !s.is_ok()) return s;
  if (Status s = matmul(w.wv, xb_.get<float>(), n, v_.get<float>(), &w.bv); !s.is_ok()) return s;
  const cuda::RopeParams rope{q_.get<float>(), k_.get<float>(), meta(meta_.positions), rope_frequencies_.get<float>(), n, c.n_heads, c.n_kv_heads,
                              c.head_dim, c.rope_dim, c.rope_layout, c.rope_position_scale};
  PAGEDLM_CUDA_TRY(cuda::launch_rope(rope, stream_), "RoPE");
  PAGEDLM_CUDA_TRY(cuda::launch_kv_append({k_.get<float>(), v_.get<float>(), meta(meta_.slots), layer_kv(layer), n}, stream_), "KV append");
  if (Status s = attend(layer); !s.is_ok()) return s;
  if (Status s = matmul(w.wo, att_.get<float>(), n, xb_.get<float>()); !s.is_ok()) return s;
  PAGEDLM_CUDA_TRY(cuda::launch_add({x_.get<float>(), xb_.get<float>(), static_cast<size_t>(n) * c.dim}, stream_), "residual add");
  return Status::ok();
}

Status CudaBackend::ffn_block(int layer, int n) {
  const ModelConfig& c = config_;
  const DeviceLayer& w = layers_[layer];
  PAGEDLM_CUDA_TRY(cuda::launch_rms_norm({x_.get<float>(), w.ffn_norm.get<float>(), xb_.get<float>(), n, c.dim, c.rms_eps}, stream_), "RMSNorm");
  if (Status s = matmul(w.w_gate, xb_.get<float>(), n, gate_.get<float>()); !s.is_ok()) return s;
  if (Status s = matmul(w.w_up, xb_.get<float>(), n, up_.get<float>()); !s.is_ok()) return s;
  PAGEDLM_CUDA_TRY(cuda::launch_swiglu({gate_.get<float>(), up_.get<float>(), static_cast<size_t>(n) * c.ffn_dim}, stream_), "SwiGLU");
  if (Status s = matmul(w.w_down, gate_.get<float>(), n, xb_.get<float>()); !s.is_ok()) return s;
  PAGEDLM_CUDA_TRY(cuda::launch_add({x_.get<float>(), xb_.get<float>(), static_cast<size_t>(n) * c.dim}, stream_), "residual add");
  return Status::ok();
}

Status CudaBackend::output_logits() {
  const ModelConfig& c = config_;
  const int rows = meta_.n_logit_rows;
  if (rows == 0) return Status::ok();
  PAGEDLM_CUDA_TRY(cuda::launch_gather_rows({x_.get<float>(), meta(meta_.logit_rows), xb_.get<float>(), rows, c.dim}, stream_), "gathering rows");
  PAGEDLM_CUDA_TRY(cuda::launch_rms_norm({xb_.get<float>(), output_norm_.get<float>(), xb_.get<float>(), rows, c.dim, c.rms_eps}, stream_), "RMSNorm");
  const DeviceWeight& head = c.tied_output ? embedding_ : output_;
  return matmul(head, xb_.get<float>(), rows, logits_.get<float>());
}

Status CudaBackend::enqueue_step() {
  const int n = meta_.n_tokens;
  PAGEDLM_CUDA_TRY(cuda::launch_embedding({embedding_.matrix, meta(meta_.tokens), x_.get<float>(), n}, stream_), "embedding");
  for (int l = 0; l < config_.n_layers; ++l) {
    if (Status s = attention_block(l); !s.is_ok()) return s;
    if (Status s = ffn_block(l, n); !s.is_ok()) return s;
  }
  return output_logits();
}

Status CudaBackend::enqueue_selection(const ForwardBatch& batch, Results results, int rows) {
  const int vocab = config_.vocab_size;
  if (results == Results::kTokens) {
    PAGEDLM_CUDA_TRY(cuda::launch_argmax({logits_.get<float>(), greedy_ids_.get<int32_t>(), rows, vocab}, stream_), "argmax");
  } else if (results == Results::kCandidates) {
    PAGEDLM_CUDA_TRY(cuda::launch_top_k({logits_.get<float>(), top_ids_.get<int32_t>(), top_values_.get<float>(), rows, vocab, batch.top_k_width}, stream_),
                     "top-k");
  }
  return Status::ok();
}

Status CudaBackend::copy_results(const ForwardBatch& batch, float* logits, Results results) {
  const int rows = meta_.n_logit_rows;
  if (rows > 0) {
    if (Status s = enqueue_selection(batch, results, rows); !s.is_ok()) return s;
    const size_t candidates = static_cast<size_t>(rows) * batch.top_k_width;
    if (results == Results::kTokens) {
      PAGEDLM_CUDA_TRY(cudaMemcpyAsync(batch.greedy_tokens, greedy_ids_.get(), rows * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_),
                       "copying sampled tokens");
    } else if (results == Results::kCandidates) {
      PAGEDLM_CUDA_TRY(cudaMemcpyAsync(batch.top_ids, top_ids_.get(), candidates * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_), "copying candidates");
      PAGEDLM_CUDA_TRY(cudaMemcpyAsync(batch.top_values, top_values_.get(), candidates * sizeof(float), cudaMemcpyDeviceToHost, stream_),
                       "copying candidates");
    } else {
      const size_t bytes = static_cast<size_t>(rows) * config_.vocab_size * sizeof(float);
      PAGEDLM_CUDA_TRY(cudaMemcpyAsync(logits, logits_.get(), bytes, cudaMemcpyDeviceToHost, stream_), "copying logits");
    }
  }
  PAGEDLM_CUDA_TRY(cudaStreamSynchronize(stream_), "finishing the step");
  return Status::ok();
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
  const bool graph_shape = std::all_of(batch.sequences.begin(), batch.sequences.end(), [](const BatchSequence& s) { return s.num_tokens == 1 && s.want_logits; });
  if (graphs_enabled_ && graph_shape && seqs <= kMaxGraphBatch && seqs <= capacity_tokens_) {
    int context = 0;
    for (const BatchSequence& s : batch.sequences) context = std::max(context, s.start_position + 1);
    context = std::max(next_power_of_two(context), next_power_of_two(layout_.block_size));
    return forward_with_graph(batch, logits, seqs, (context + layout_.block_size - 1) / layout_.block_size * layout_.block_size, results);
  }
  if (Status s = upload_batch(batch); !s.is_ok()) return s;
  if (Status s = enqueue_step(); !s.is_ok()) return s;
  return copy_results(batch, logits, results);
}

// The CPU backend's order (per layer: K, V, then their scales), so saved caches read back on either backend.
template <typename Visit>
void CudaBackend::for_each_block_piece(BlockId block, Visit visit) const {
  const size_t elements = layout_.block_elements(), rows = elements / layout_.head_dim;
  const size_t element_bytes = kv_dtype_bytes(layout_.dtype);
  for (int32_t layer = 0; layer < layout_.num_layers; ++layer) {
    const size_t first = static_cast<size_t>(layer) * layout_.layer_elements() + static_cast<size_t>(block) * elements;
    visit(k_pool_.get<uint8_t>() + first * element_bytes, elements * element_bytes);
    visit(v_pool_.get<uint8_t>() + first * element_bytes, elements * element_bytes);
    if (kv_dtype_has_scales(layout_.dtype)) {
      visit(reinterpret_cast<uint8_t*>(k_scales_.get<float>() + first / layout_.head_dim), rows * sizeof(float));
      visit(reinterpret_cast<uint8_t*>(v_scales_.get<float>() + first / layout_.head_dim), rows * sizeof(float));
    }
  }
}

size_t CudaBackend::block_bytes() const {
  size_t total = 0;
  for_each_block_piece(0, [&](uint8_t*, size_t n) { total += n; });
  return total;
}

void CudaBackend::export_block(BlockId block, uint8_t* out) const {
  cudaStreamSynchronize(stream_);
  for_each_block_piece(block, [&](uint8_t* piece, size_t n) {
    cudaMemcpy(out, piece, n, cudaMemcpyDeviceToHost);
    out += n;
  });
}

void CudaBackend::import_block(BlockId block, const uint8_t* in) {
  cudaStreamSynchronize(stream_);
  for_each_block_piece(block, [&](uint8_t* piece, size_t n) {
    cudaMemcpy(piece, in, n, cudaMemcpyHostToDevice);
    in += n;
  });
}

void CudaBackend::copy_block(BlockId from, BlockId to) {
  std::vector<uint8_t*> targets;
  for_each_block_piece(to, [&](uint8_t* piece, size_t) { targets.push_back(piece); });
  size_t i = 0;
  for_each_block_piece(from, [&](uint8_t* piece, size_t n) { cudaMemcpyAsync(targets[i++], piece, n, cudaMemcpyDeviceToDevice, stream_); });
}

}  // namespace

}  // namespace pagedlm

extern "C" __attribute__((visibility("default"))) void pagedlm_create_cuda_backend(const pagedlm::CudaBackendRequest& request,
                                                                                     pagedlm::CudaBackendReply& reply) {
  pagedlm::CudaBackend::create(request, reply);
}
