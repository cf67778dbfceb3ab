// The CUDA backend: the forward pass of CpuBackend on one GPU. Weights are uploaded once (F32, F16, BF16, Q4_K
// as stored; Q8_0 and Q4_0 split into quants + scales; Q6_K padded; the other quantized types expanded to F16;
// Q|K|V and gate|up stacked), the paged KV pool lives in device memory with the CPU's layout, decode matmuls
// run pagedlm's matvec (norm, bias, residual add and SwiGLU folded in), larger GEMMs cuBLAS (tensor cores for
// f16/bf16), everything else kernels/. All work is queued on one stream; the host waits once a step, for its
// results (the tokens of greedy steps, the top-k candidates of top-k sampling, else the logits). Decode steps
// replay CUDA graphs.
//
// Built into libpagedlm_kernels with the kernels; the engine reaches it through cuda_entry.h and never
// includes this header, which the backend's own files share:
//   cuda_backend.cpp  creation, forward() and its CUDA graphs, block export/import/copy, the entry point
//   cuda_memory.cpp   what lives in device memory: the weights' upload, the KV pool, the step's activations
//   cuda_step.cpp     one step on the stream: the batch's metadata, the layers, the results' selection and copy
// Its names live in pagedlm::cuda_backend, which exports.map keeps private to the library (unlike pagedlm::cuda,
// whose launchers it exports).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_entry.h"
#include "cublas_api.h"
#include "pagedlm_kernels.h"

namespace pagedlm::cuda_backend {

inline Status cuda_status(cudaError_t error, const std::string& what) {
  return Status(ErrorCode::kCuda, what + ": " + cudaGetErrorString(error));
}

inline Status to_status(cudaError_t error, const std::string& what) { return error == cudaSuccess ? Status::ok() : cuda_status(error, what); }

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
  // Frees the old buffer first (the device may not hold both); a failure leaves none and a size of 0, so no
  // caller can mistake the old pointer or the new size for a buffer it has. The failure is also taken off
  // the runtime's last error, which the next launcher's cudaGetLastError would otherwise report.
  cudaError_t allocate(size_t bytes) {
    reset();
    void* fresh = nullptr;
    const cudaError_t error = cudaMalloc(&fresh, std::max<size_t>(bytes, 1));
    if (error != cudaSuccess) {
      cudaGetLastError();
      return error;
    }
    ptr_ = fresh;
    bytes_ = bytes;
    return cudaSuccess;
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
  DeviceMemory attn_norm, ffn_norm;
  // Q|K|V rows as one matrix (bqkv its biases, if any) and gate|up as one, when their parts share a type;
  // else wq, wk, wv (bq, bk, bv) and w_gate, w_up. Latent attention uses wq alone.
  DeviceWeight wqkv, w_gate_up;
  DeviceMemory bqkv, bq, bk, bv;
  DeviceWeight wq, wk, wv, wo, w_gate, w_up, w_down;
  // Latent attention only (LayerWeights' fields of the same names).
  DeviceMemory q_a_norm, kv_a_norm;
  DeviceWeight wq_a, wq_b, wkv_a;
  std::vector<DeviceWeight> wk_b, wv_b;  // [n_heads]
};

// Decode batches up to this many sequences run as CUDA graphs (padded to a power of two).
constexpr int kMaxGraphBatch = 64;
// cuBLAS inside a captured graph must not allocate: it gets a workspace of its own.
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

// How a matmul takes its input and leaves its output.
struct MatmulOptions {
  bool accumulate = false;     // y += W x (the residual add) instead of y = W x
  bool input_in_half = false;  // the activations are in half_x_ already, in the GEMM's 16-bit type (see reads_half)
};

// What a step copies back: every logit row, or for greedy steps the argmax tokens, or for steps that only
// look at the top-k logits (greedy or top_k sampling, no penalties) the k best candidates of each row.
enum class Results { kLogits, kTokens, kCandidates };

class CudaBackend final : public Backend {
 public:
  static void create(const CudaBackendRequest& request, CudaBackendReply& reply);
  ~CudaBackend() override;

  const KvLayout& kv_layout() const override { return layout_; }
  Status forward(const ForwardBatch& batch, float* logits) override;
  bool computes_hidden_states() const override { return true; }
  size_t block_bytes() const override;
  Status export_block(BlockId block, uint8_t* out) const override;
  Status import_block(BlockId block, const uint8_t* in) override;
  Status copy_block(BlockId from, BlockId to) override;
  std::shared_ptr<uint8_t> allocate_host_blocks(size_t bytes) override;
  Status export_block_async(BlockId block, uint8_t* out) override;
  Status import_block_async(BlockId block, const uint8_t* in) override;
  Status finish_host_copies() override;

 private:
  explicit CudaBackend(std::shared_ptr<const LlamaModel> model) : model_(std::move(model)), config_(model_->config()) {}
  Status initialize(const CudaBackendRequest& request, CudaBackendReply& reply);

  // cuda_memory.cpp
  Status upload_weights();
  // keep_quantized false: types the matvec reads quantized are expanded to f16 too (the embedding gather's table).
  Status upload_matrix(const WeightMatrix& w, DeviceWeight& out, bool keep_quantized = true);
  Status allocate_and_upload(const void* bytes, size_t count, DeviceMemory& out, const std::string& what);
  // The parts' rows, in order, uploaded as one matrix (parts of one type and width).
  Status upload_stacked(const std::vector<const WeightMatrix*>& parts, DeviceWeight& out);
  Status upload_projections(const LayerWeights& w, DeviceLayer& d);
  Status upload_floats(const std::vector<float>& values, DeviceMemory& out);
  Status allocate_pool(const CudaBackendRequest& request);
  Status allocate_decode_workspace();
  Status allocate_activations(int tokens);
  Status grow_activations(int tokens);
  // Copies `bytes` of pageable host memory to the device on the stream and waits: the host buffer may be
  // gone once this returns, and the stream's later kernels see the bytes.
  cudaError_t upload_bytes(void* device, const void* host, size_t bytes);
  cuda::PagedKv layer_kv(int layer) const;

  // cuda_step.cpp
  // Fills meta_ and meta_host_ for the batch, padded to `seqs` single-token sequences and tables of
  // `table_stride` blocks when those are larger (a graph's fixed shape).
  void pack_batch(const ForwardBatch& batch, int seqs, int table_stride);
  Status upload_batch(const ForwardBatch& batch);
  // Queues the whole step on the stream, ending with the logits of meta_'s logit rows in logits_.
  Status enqueue_step();
  // Queues what `results` needs from the logits of `rows` rows (argmax, top-k or nothing more).
  Status enqueue_selection(const ForwardBatch& batch, Results results, int rows);
  // Queues the final norm of every token and the copy of the want_hidden sequences' rows to batch.hidden.
  Status copy_hidden_rows(const ForwardBatch& batch);
  // Copies the step's results to the host and waits for them.
  Status copy_results(const ForwardBatch& batch, float* logits, Results results);
  Status matmul(const DeviceWeight& w, const float* x, int n_tokens, float* y, const DeviceMemory* bias = nullptr, MatmulOptions options = {});
  // Whether a matmul of `m` over n_tokens reads 16-bit activations (half_x_): the cuBLAS GEMMs of non-F32 weights.
  static bool reads_half(const cuda::DeviceMatrix& m, int n_tokens);
  // launch_matvec over n_tokens rows, kMaxMatvecTokens at a time (p.n_tokens is ignored).
  Status matvec_groups(cuda::MatvecParams p, int n_tokens);
  // y = w RMSNorm(x_) (+ bias), the norm's weight `norm`: one matvec launch with the norm folded in for decode
  // steps (kSwiglu: y = SwiGLU of the gate|up rows, decode steps only), else the norm writing the GEMM's input
  // (xb_, or half_x_ when it reads 16-bit activations) and the GEMM.
  Status normed_matmul(const DeviceMemory& norm, const DeviceWeight& w, int n_tokens, float* y, const DeviceMemory* bias = nullptr,
                       cuda::MatvecOutput output = cuda::MatvecOutput::kStore);
  Status attention_block(int layer);
  // Multi-head latent attention in the absorbed form, as CpuBackend::latent_attention_block.
  Status latent_attention_block(int layer);
  // For each head h and token t: out[t, h] = heads[h] x in[t, h][0, heads[h].cols), rows of `in` in_stride
  // floats apart per (t, h) and of `out` out_stride.
  Status per_head_matmul(const std::vector<DeviceWeight>& heads, const float* in, int in_stride, float* out, int out_stride);
  // `rows` rows of `width` floats from src (src_stride floats apart) to dst (dst_stride apart), on the stream.
  Status copy_columns(float* dst, int dst_stride, const float* src, int src_stride, int width, int rows);
  Status ffn_block(int layer, int n_tokens);
  // Consecutive sequences of a batch of one kind: decode (one new token each) or prefill.
  struct SequenceRun {
    int first_seq, count, first_token;
    bool decode;
  };
  Status attend(int layer);
  Status attend_decode(int layer, const SequenceRun& run);
  Status attend_prefill(int layer, const SequenceRun& run);
  Status output_logits();

  // cuda_backend.cpp
  Status enqueue_graph_copy(const ForwardBatch& batch, Results results, int rows);
  Status forward_with_graph(const ForwardBatch& batch, float* logits, int seqs, int context, Results results);
  void drop_graphs();
  template <typename Visit>
  void for_each_block_piece(BlockId block, Visit visit) const;

  std::shared_ptr<const LlamaModel> model_;
  const ModelConfig& config_;
  KvLayout layout_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  int sm_count_ = 1;
  int decode_target_blocks_ = 1;  // decode attention's blocks resident on the whole device: its partitions aim at this
  uint64_t weight_bytes_ = 0;

  DeviceWeight embedding_, output_;
  DeviceMemory output_norm_, rope_frequencies_;
  std::vector<DeviceLayer> layers_;
  size_t largest_q8_matrix_ = 0;  // elements: the f16 scratch for prefill GEMMs of quantized weights (Q8_0, Q4_0, Q4_K, Q6_K)

  DeviceMemory k_pool_, v_pool_, k_scales_, v_scales_;

  // Step activations, sized for the largest batch (grown on demand; 0 after a failed growth, so the next
  // step allocates again before it launches anything).
  int capacity_tokens_ = 0;
  // qkv_ holds the stacked projection's rows; gate_up_ gate|up rows (or, unstacked, all gate rows then all up
  // rows); ffn_hidden_ SwiGLU's f32 output when the down matmul reads f32.
  DeviceMemory x_, xb_, qkv_, q_, k_, v_, att_, gate_up_, ffn_hidden_, half_x_, half_w_, logits_, greedy_ids_, top_ids_, top_values_;
  DeviceMemory row_scales_;  // [tokens]: the power of two each f16 GEMM input row was scaled by, inverted
  DeviceMemory gemm_out_;    // [tokens, dim]: an f16 GEMM's scaled rows on their way to the residual
  // Split decode attention's partials, sized with the pool for every batch it can hold (allocate_pool).
  DeviceMemory workspace_;
  // Latent attention: the query LoRA's rows, each head's query before absorption, each head's output (wo's
  // input), one head's contiguous input and output rows, and the latents being normed.
  DeviceMemory query_lora_, head_queries_, head_outputs_, head_in_, head_out_, latent_;

  // The step's metadata: one host vector, one copy to the device.
  struct BatchMeta {
    int n_tokens = 0, n_seqs = 0, n_logit_rows = 0, max_blocks = 0, max_query_len = 0, max_context_len = 0;
    std::vector<SequenceRun> runs;
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

}  // namespace pagedlm::cuda_backend
