// What the CUDA backend keeps in device memory: the weights (uploaded once, in the layout their kernels
// read), the paged KV pool (the CPU's layout) and the step's activations (grown with the largest batch).
#include <algorithm>
#include <initializer_list>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "backend/cpu/ops.h"
#include "backend/cuda/cuda_backend.h"
#include "common/half.h"

namespace pagedlm::cuda_backend {

namespace {

// A failed allocation while uploading weights says what did not fit and what to change.
Status weights_status(cudaError_t error, const std::string& what, uint64_t uploaded) {
  if (error != cudaErrorMemoryAllocation) return cuda_status(error, what);
  return Status(ErrorCode::kOutOfMemory, "the weights do not fit in GPU memory (" + what + " failed after " + std::to_string(uploaded >> 20) +
                                             " MiB): use a smaller or more quantized model, another gpu, or device 'cpu'");
}

// Matrices whose rows stack into one: the same type and width (in every GGUF type a row's blocks stand alone).
bool rows_stack(std::initializer_list<const WeightMatrix*> parts) {
  const WeightMatrix& first = **parts.begin();
  return std::all_of(parts.begin(), parts.end(), [&](const WeightMatrix* part) {
    return part->data != nullptr && part->type == first.type && part->cols == first.cols && part->row_bytes == first.row_bytes;
  });
}

}  // namespace

#define PAGEDLM_WEIGHTS_TRY(call, what)                                        \
  do {                                                                         \
    const cudaError_t error_ = (call);                                         \
    if (error_ != cudaSuccess) return weights_status(error_, what, weight_bytes_); \
  } while (0)

cudaError_t CudaBackend::upload_bytes(void* device, const void* host, size_t bytes) {
  const cudaError_t queued = cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream_);
  return queued != cudaSuccess ? queued : cudaStreamSynchronize(stream_);
}

Status CudaBackend::upload_floats(const std::vector<float>& values, DeviceMemory& out) {
  if (values.empty()) return Status::ok();
  PAGEDLM_WEIGHTS_TRY(out.allocate(values.size() * sizeof(float)), "allocating " + std::to_string(values.size() * 4) + " bytes for weights");
  PAGEDLM_WEIGHTS_TRY(upload_bytes(out.get(), values.data(), values.size() * sizeof(float)), "uploading weights");
  weight_bytes_ += out.bytes();
  return Status::ok();
}

Status CudaBackend::allocate_and_upload(const void* bytes, size_t count, DeviceMemory& out, const std::string& what) {
  PAGEDLM_WEIGHTS_TRY(out.allocate(count), what);
  PAGEDLM_WEIGHTS_TRY(upload_bytes(out.get(), bytes, count), what);
  return Status::ok();
}

Status CudaBackend::upload_matrix(const WeightMatrix& w, DeviceWeight& out, bool keep_quantized) {
  if (w.data == nullptr) return Status::ok();  // a matrix the architecture lacks (wk and wv with latent attention)
  const size_t elements = static_cast<size_t>(w.rows) * w.cols;
  const std::string what = "uploading a " + std::to_string(w.rows) + "x" + std::to_string(w.cols) + " " + tensor_type_name(w.type) + " matrix";
  if (keep_quantized && cuda::kept_quantized(w.type)) {
    const cuda::HostLayout layout = cuda::device_layout(w.type, w.data, w.rows, w.cols);
    if (Status s = allocate_and_upload(layout.data.data(), layout.data.size(), out.data, what); !s.is_ok()) return s;
    if (!layout.scales.empty()) {
      if (Status s = allocate_and_upload(layout.scales.data(), layout.scales.size() * sizeof(uint16_t), out.scales, what); !s.is_ok()) return s;
    }
    out.matrix = {w.type, out.data.get(), out.scales.get<uint16_t>(), w.rows, w.cols};
    largest_q8_matrix_ = std::max(largest_q8_matrix_, elements);
    weight_bytes_ += out.data.bytes() + out.scales.bytes();
    return Status::ok();
  }
  switch (w.type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16: {
      const size_t bytes = static_cast<size_t>(w.rows) * w.row_bytes;
      PAGEDLM_WEIGHTS_TRY(out.data.allocate(bytes), what);
      PAGEDLM_WEIGHTS_TRY(upload_bytes(out.data.get(), w.data, bytes), what);
      out.matrix = {w.type, out.data.get(), nullptr, w.rows, w.cols};
      break;
    }
    case TensorType::kQ8_0: {
      DeviceMemory raw;
      const size_t bytes = static_cast<size_t>(w.rows) * w.row_bytes;
      PAGEDLM_WEIGHTS_TRY(raw.allocate(bytes), what);
      PAGEDLM_WEIGHTS_TRY(upload_bytes(raw.get(), w.data, bytes), what);
      PAGEDLM_WEIGHTS_TRY(out.data.allocate(elements), what);
      PAGEDLM_WEIGHTS_TRY(out.scales.allocate(elements / kQ8BlockElements * sizeof(uint16_t)), what);
      PAGEDLM_WEIGHTS_TRY(cuda::launch_split_q8_0({raw.get<uint8_t>(), out.data.get<int8_t>(), out.scales.get<uint16_t>(), w.rows, w.cols}, stream_), what);
      PAGEDLM_WEIGHTS_TRY(cudaStreamSynchronize(stream_), what);
      out.matrix = {w.type, out.data.get(), out.scales.get<uint16_t>(), w.rows, w.cols};
      largest_q8_matrix_ = std::max(largest_q8_matrix_, elements);
      break;
    }
    default: {
      // Every other type (Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K, IQ4_XS; Q4_0, Q4_K and Q6_K for the
      // embedding table, whose gather reads float and Q8_0 rows only) has no kernels here: expanded to f16
      // once, at upload, through the same dequantize_row as the CPU reads it with.
      std::vector<float> row(w.cols);
      std::vector<uint16_t> halves(elements);
      for (int r = 0; r < w.rows; ++r) {
        dequantize_row(w.type, w.row(r), row.data(), w.cols);
        for (int c = 0; c < w.cols; ++c) halves[static_cast<size_t>(r) * w.cols + c] = float_to_fp16(row[c]);
      }
      PAGEDLM_WEIGHTS_TRY(out.data.allocate(elements * sizeof(uint16_t)), what);
      PAGEDLM_WEIGHTS_TRY(upload_bytes(out.data.get(), halves.data(), elements * sizeof(uint16_t)), what);
      out.matrix = {TensorType::kF16, out.data.get(), nullptr, w.rows, w.cols};
    }
  }
  weight_bytes_ += out.data.bytes() + out.scales.bytes();
  return Status::ok();
}

Status CudaBackend::upload_stacked(const std::vector<const WeightMatrix*>& parts, DeviceWeight& out) {
  const WeightMatrix& first = *parts.front();
  std::vector<uint8_t> bytes;
  int rows = 0;
  for (const WeightMatrix* part : parts) {
    bytes.insert(bytes.end(), part->data, part->data + static_cast<size_t>(part->rows) * part->row_bytes);
    rows += part->rows;
  }
  return upload_matrix(WeightMatrix{first.type, bytes.data(), rows, first.cols, first.row_bytes}, out);
}

// Q|K|V and gate|up each as one matrix when their parts share a type (one matmul, and a decode step reads
// the normed activations once); a model that quantizes them differently keeps them apart. The latent
// attention's wq stays alone (it has no wk or wv).
Status CudaBackend::upload_projections(const LayerWeights& w, DeviceLayer& d) {
  if (rows_stack({&w.wq, &w.wk, &w.wv})) {
    if (Status s = upload_stacked({&w.wq, &w.wk, &w.wv}, d.wqkv); !s.is_ok()) return s;
    if (!w.bq.empty() || !w.bk.empty() || !w.bv.empty()) {
      std::vector<float> biases;
      for (const auto& [bias, width] : {std::pair{&w.bq, w.wq.rows}, {&w.bk, w.wk.rows}, {&w.bv, w.wv.rows}}) {
        if (bias->empty()) biases.insert(biases.end(), width, 0.0f);
        else biases.insert(biases.end(), bias->begin(), bias->end());
      }
      if (Status s = upload_floats(biases, d.bqkv); !s.is_ok()) return s;
    }
  } else {
    for (const auto& [host, device] : {std::pair{&w.wq, &d.wq}, {&w.wk, &d.wk}, {&w.wv, &d.wv}}) {
      if (Status s = upload_matrix(*host, *device); !s.is_ok()) return s;
    }
    for (const auto& [host, device] : {std::pair{&w.bq, &d.bq}, {&w.bk, &d.bk}, {&w.bv, &d.bv}}) {
      if (Status s = upload_floats(*host, *device); !s.is_ok()) return s;
    }
  }
  if (rows_stack({&w.w_gate, &w.w_up})) return upload_stacked({&w.w_gate, &w.w_up}, d.w_gate_up);
  for (const auto& [host, device] : {std::pair{&w.w_gate, &d.w_gate}, {&w.w_up, &d.w_up}}) {
    if (Status s = upload_matrix(*host, *device); !s.is_ok()) return s;
  }
  return Status::ok();
}

Status CudaBackend::upload_weights() {
  if (Status s = upload_matrix(model_->token_embedding(), embedding_, false); !s.is_ok()) return s;
  if (!config_.tied_output) {
    if (Status s = upload_matrix(model_->output(), output_); !s.is_ok()) return s;
  }
  if (Status s = upload_floats(model_->output_norm(), output_norm_); !s.is_ok()) return s;
  if (Status s = upload_floats(rope_inverse_frequencies(config_), rope_frequencies_); !s.is_ok()) return s;
  layers_ = std::vector<DeviceLayer>(config_.n_layers);
  for (int l = 0; l < config_.n_layers; ++l) {
    const LayerWeights& w = model_->layers()[l];
    DeviceLayer& d = layers_[l];
    for (const auto& [host, device] : {std::pair{&w.attn_norm, &d.attn_norm}, {&w.ffn_norm, &d.ffn_norm}}) {
      if (Status s = upload_floats(*host, *device); !s.is_ok()) return s;
    }
    if (Status s = upload_projections(w, d); !s.is_ok()) return s;
    for (const auto& [host, device] : {std::pair{&w.wo, &d.wo}, {&w.w_down, &d.w_down}, {&w.wq_a, &d.wq_a}, {&w.wq_b, &d.wq_b}, {&w.wkv_a, &d.wkv_a}}) {
      if (Status s = upload_matrix(*host, *device); !s.is_ok()) return s;
    }
    for (const auto& [host, device] : {std::pair{&w.q_a_norm, &d.q_a_norm}, {&w.kv_a_norm, &d.kv_a_norm}}) {
      if (Status s = upload_floats(*host, *device); !s.is_ok()) return s;
    }
    d.wk_b = std::vector<DeviceWeight>(w.wk_b.size());
    d.wv_b = std::vector<DeviceWeight>(w.wv_b.size());
    for (size_t h = 0; h < w.wk_b.size(); ++h) {
      if (Status s = upload_matrix(w.wk_b[h], d.wk_b[h]); !s.is_ok()) return s;
      if (Status s = upload_matrix(w.wv_b[h], d.wv_b[h]); !s.is_ok()) return s;
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
    if (request.max_blocks > 0) layout_.num_blocks = std::min(layout_.num_blocks, request.max_blocks);
    layout_.num_blocks = static_cast<int32_t>(std::min<int64_t>(layout_.num_blocks, std::numeric_limits<int32_t>::max() / layout_.block_size));
    if (layout_.num_blocks < 1) {
      return Status(ErrorCode::kOutOfMemory, "the KV pool does not fit on the GPU after the weights (" + std::to_string(free_bytes >> 20) +
                                                 " MiB free): raise kvCache.gpuMemoryFraction or use a smaller model or kvCache.dtype 'int8'");
    }
  }
  // Slots (block x block size + offset) reach the kernels as int32.
  const int64_t slots = static_cast<int64_t>(layout_.num_blocks) * layout_.block_size;
  if (slots > std::numeric_limits<int32_t>::max()) {
    return Status(ErrorCode::kInvalidArgument, "a KV pool of " + std::to_string(layout_.num_blocks) + " blocks of " + std::to_string(layout_.block_size) +
                                                   " tokens has more slots than the CUDA kernels address (2^31 - 1): lower kvCache.blocks or kvCache.memory");
  }
  const std::string what = "allocating the KV pool (" + std::to_string(layout_.total_bytes() >> 20) + " MiB, " + std::to_string(layout_.num_blocks) +
                           " blocks): lower kvCache.memory / kvCache.blocks or use kvCache.dtype 'int8'";
  const auto out_of_memory = [&](cudaError_t e) { return Status(ErrorCode::kOutOfMemory, what + " (" + cudaGetErrorString(e) + ")"); };
  // Per (layer, block, head) piece, as on the CPU: rows and scales of K, and of V unless V sits inside K.
  const size_t pieces = layout_.pieces();
  for (const auto& [memory, bytes] : {std::pair{&k_pool_, layout_.piece_bytes(KvRole::kKey)}, {&v_pool_, layout_.piece_bytes(KvRole::kValue)},
                                      {&k_scales_, layout_.piece_scale_bytes(KvRole::kKey)}, {&v_scales_, layout_.piece_scale_bytes(KvRole::kValue)}}) {
    if (bytes == 0) continue;
    if (cudaError_t e = memory->allocate(pieces * bytes); e != cudaSuccess) return out_of_memory(e);
  }
  return allocate_decode_workspace();
}

// Decode attention's split workspace for the largest batch of the pool's longest context, so no decode
// step has to give up splitting its contexts.
Status CudaBackend::allocate_decode_workspace() {
  decode_target_blocks_ = sm_count_ * cuda::decode_attention_blocks_per_sm(layer_kv(0), config_.n_heads);
  const int max_context = static_cast<int>(std::min<int64_t>(int64_t{layout_.num_blocks} * layout_.block_size, std::numeric_limits<int>::max()));
  const size_t bytes = cuda::decode_attention_workspace_limit(config_.n_heads, layout_.num_kv_heads, layout_.head_dim, max_context, decode_target_blocks_);
  if (bytes == 0) return Status::ok();
  PAGEDLM_CUDA_TRY(workspace_.allocate(bytes), "allocating decode attention's workspace (" + std::to_string(bytes >> 20) + " MiB)");
  return Status::ok();
}

Status CudaBackend::allocate_activations(int tokens) {
  Status status = grow_activations(tokens);
  // Some buffers may be freed or still sized for fewer tokens: no step may run on them.
  capacity_tokens_ = status.is_ok() ? tokens : 0;
  return status;
}

Status CudaBackend::grow_activations(int tokens) {
  const ModelConfig& c = config_;
  const size_t t = static_cast<size_t>(tokens);
  const size_t widest = std::max({c.dim, c.q_dim(), c.ffn_dim, c.attention_output_dim(), c.q_lora_rank});
  const std::string what = "allocating activations for " + std::to_string(tokens) + " tokens";
  const size_t qkv_width = static_cast<size_t>(c.q_dim()) + 2 * c.kv_dim();
  for (const auto& [buffer, floats] : {std::pair{&x_, t * c.dim}, {&xb_, t * c.dim}, {&gemm_out_, t * c.dim}, {&qkv_, t * qkv_width},
                                       {&q_, t * c.q_dim()}, {&k_, t * c.kv_dim()}, {&v_, t * c.kv_dim()}, {&att_, t * c.q_dim()}, {&gate_up_, t * 2 * c.ffn_dim}, {&ffn_hidden_, t * c.ffn_dim},
                                       {&logits_, t * c.vocab_size}}) {
    PAGEDLM_CUDA_TRY(buffer->allocate(floats * sizeof(float)), what);
  }
  if (c.latent_attention()) {
    const size_t head_width = std::max({c.qk_nope_dim, c.kv_lora_rank, c.v_head_dim});
    for (const auto& [buffer, floats] : {std::pair{&query_lora_, t * c.q_lora_rank}, {&head_queries_, t * c.n_heads * (c.qk_nope_dim + c.rope_dim)},
                                         {&head_outputs_, t * c.attention_output_dim()}, {&head_in_, t * head_width}, {&head_out_, t * head_width},
                                         {&latent_, t * c.kv_lora_rank}}) {
      PAGEDLM_CUDA_TRY(buffer->allocate(floats * sizeof(float)), what);
    }
  }
  PAGEDLM_CUDA_TRY(half_x_.allocate(t * widest * sizeof(uint16_t)), what);
  PAGEDLM_CUDA_TRY(row_scales_.allocate(t * sizeof(float)), what);
  PAGEDLM_CUDA_TRY(greedy_ids_.allocate(t * sizeof(int32_t)), what);
  PAGEDLM_CUDA_TRY(top_ids_.allocate(t * cuda::kMaxTopK * sizeof(int32_t)), what);
  PAGEDLM_CUDA_TRY(top_values_.allocate(t * cuda::kMaxTopK * sizeof(float)), what);
  if (largest_q8_matrix_ > 0) PAGEDLM_CUDA_TRY(half_w_.allocate(largest_q8_matrix_ * sizeof(uint16_t)), what);
  return Status::ok();
}

cuda::PagedKv CudaBackend::layer_kv(int layer) const {
  const size_t first = layout_.piece_index(layer, 0, 0);
  const auto at = [&](const DeviceMemory& memory, size_t piece_bytes) -> void* {
    return piece_bytes == 0 ? nullptr : memory.get<uint8_t>() + first * piece_bytes;
  };
  void* k = at(k_pool_, layout_.piece_bytes(KvRole::kKey));
  void* k_scales = at(k_scales_, layout_.piece_scale_bytes(KvRole::kKey));
  if (layout_.v_in_k) return {k, k, k_scales, k_scales, layout_.k_dtype, layout_.k_dtype, layout_.num_kv_heads, layout_.head_dim, layout_.block_size};
  return {k, at(v_pool_, layout_.piece_bytes(KvRole::kValue)), k_scales, at(v_scales_, layout_.piece_scale_bytes(KvRole::kValue)),
          layout_.k_dtype, layout_.v_dtype, layout_.num_kv_heads, layout_.head_dim, layout_.block_size};
}

}  // namespace pagedlm::cuda_backend
