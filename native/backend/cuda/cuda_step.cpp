// One step of the CUDA backend, queued on its stream: the batch's metadata packed and copied in one piece,
// the layers (cuBLAS GEMMs and the kernels of kernels/), then the selection and copy of the step's results.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"

namespace pagedlm::cuda_backend {

namespace {
// Up to this many tokens a quantized matrix is read once per group of kMaxMatvecTokens (at most 8 reads);
// past it, expanding the matrix to f16 once and a tensor-core GEMM costs less.
constexpr int kMaxGroupedMatvecTokens = 64;
}  // namespace

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
    m.n_logit_rows += s.want_logits ? s.logit_rows : 0;
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
      // 64-bit product: allocate_pool refused pools whose last slot does not fit the kernels' int32.
      const int64_t slot = static_cast<int64_t>(seq.block_table[position / layout_.block_size]) * layout_.block_size + position % layout_.block_size;
      h[m.slots + seq.first_token + j] = static_cast<int32_t>(slot);
    }
    h[m.query_starts + s] = seq.first_token;
    h[m.start_positions + s] = seq.start_position;
    h[m.context_lens + s] = seq.start_position + seq.num_tokens;
    if (seq.want_logits) {
      for (int j = seq.num_tokens - seq.logit_rows; j < seq.num_tokens; ++j) h[m.logit_rows + logit_row++] = seq.first_token + j;
    }
    std::copy(seq.block_table, seq.block_table + blocks, h.begin() + m.tables + static_cast<size_t>(s) * m.max_blocks);
  }
  const int real_tokens = static_cast<int>(batch.tokens.size());
  for (int p = 0; p < padding; ++p) {
    h[m.query_starts + real_seqs + p] = real_tokens + p;
    h[m.logit_rows + logit_row++] = real_tokens + p;
  }
  h[m.query_starts + m.n_seqs] = m.n_tokens;
  for (int s = 0; s < m.n_seqs; ++s) {
    const bool decode = s >= real_seqs || batch.sequences[s].num_tokens == 1;
    // A decode run's queries are consecutive rows (the kernel indexes them by sequence).
    const bool joins = !m.runs.empty() && m.runs.back().decode == decode && (!decode || m.runs.back().first_token + m.runs.back().count == h[m.query_starts + s]);
    if (!joins) m.runs.push_back({s, 0, h[m.query_starts + s], decode});
    ++m.runs.back().count;
  }
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

namespace {

bool quantized(const cuda::DeviceMatrix& m) { return m.type != TensorType::kF32 && m.type != TensorType::kF16 && m.type != TensorType::kBF16; }

// Decode steps read the weights once through launch_matvec, which folds the RMSNorm in front and the bias,
// residual add or SwiGLU behind. Quantized weights take it a group of kMaxMatvecTokens tokens at a time up
// to kMaxGroupedMatvecTokens (the weights read once a group) rather than being expanded to f16 for cuBLAS.
bool runs_as_matvec(const cuda::DeviceMatrix& m, int n_tokens) {
  return n_tokens <= (quantized(m) ? kMaxGroupedMatvecTokens : cuda::kMaxMatvecTokens) && cuda::matvec_supported(m);
}

}  // namespace

// Only bf16 GEMMs take their input straight from the norm or SwiGLU: an f16 input goes through the per-row
// scaling of matmul, which keeps activations past 65504 finite.
bool CudaBackend::reads_half(const cuda::DeviceMatrix& m, int n_tokens) { return m.type == TensorType::kBF16 && !runs_as_matvec(m, n_tokens); }

Status CudaBackend::matvec_groups(cuda::MatvecParams p, int n_tokens) {
  const int out_width = p.output == cuda::MatvecOutput::kSwiglu ? p.weights.rows / 2 : p.weights.rows;
  for (int first = 0; first < n_tokens; first += cuda::kMaxMatvecTokens) {
    cuda::MatvecParams group = p;
    group.x = p.x + static_cast<size_t>(first) * p.weights.cols;
    group.y = p.y + static_cast<size_t>(first) * out_width;
    group.n_tokens = std::min(cuda::kMaxMatvecTokens, n_tokens - first);
    PAGEDLM_CUDA_TRY(cuda::launch_matvec(group, stream_), "matvec");
  }
  return Status::ok();
}

// y[t, :] = W x[t, :] (+ bias), or y[t, :] += W x[t, :]: decode steps through the matvec kernel, the rest
// through cuBLAS, whose beta = 1 folds the residual add into the GEMM.
Status CudaBackend::matmul(const DeviceWeight& w, const float* x, int n_tokens, float* y, const DeviceMemory* bias, MatmulOptions options) {
  const cuda::DeviceMatrix& m = w.matrix;
  const float* bias_values = bias != nullptr && bias->bytes() > 0 ? bias->get<float>() : nullptr;
  if (runs_as_matvec(m, n_tokens) && reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    return matvec_groups({m, x, nullptr, 0.0f, bias_values, y, options.accumulate ? cuda::MatvecOutput::kAccumulate : cuda::MatvecOutput::kStore, n_tokens},
                         n_tokens);
  }
  const void* weights = m.data;
  const void* input = x;
  cudaDataType type = CUDA_R_32F;
  const float* row_scales = nullptr;  // set when the GEMM's rows come out scaled
  if (m.type != TensorType::kF32) {
    const bool bfloat = m.type == TensorType::kBF16;
    type = bfloat ? CUDA_R_16BF : CUDA_R_16F;
    if (quantized(m)) {
      PAGEDLM_CUDA_TRY(cuda::launch_dequantize({m, half_w_.get<uint16_t>()}, stream_), "expanding quantized weights");
      weights = half_w_.get();
    }
    if (bfloat) {  // bf16 has f32's range
      if (!options.input_in_half) {
        PAGEDLM_CUDA_TRY(cuda::launch_to_half({x, half_x_.get<uint16_t>(), static_cast<size_t>(n_tokens) * m.cols, true}, stream_),
                         "converting activations");
      }
    } else {  // f16 tops out at 65504: each row scaled into range, scaled back after the GEMM
      if (options.input_in_half) return Status(ErrorCode::kInternal, "an f16 GEMM's input must come through its row scaling");
      PAGEDLM_CUDA_TRY(cuda::launch_to_half_rows({x, half_x_.get<uint16_t>(), row_scales_.get<float>(), n_tokens, m.cols}, stream_),
                       "converting activations");
      row_scales = row_scales_.get<float>();
    }
    input = half_x_.get();
  }
  // Scaled rows cannot accumulate in the GEMM (beta would scale the residual too): they land in gemm_out_ and
  // the unscaling adds them to y.
  const bool accumulate_after = row_scales != nullptr && options.accumulate;
  if (accumulate_after && static_cast<size_t>(n_tokens) * m.rows * sizeof(float) > gemm_out_.bytes()) {
    return Status(ErrorCode::kInternal, "an accumulating GEMM wider than the residual");
  }
  float* product = accumulate_after ? gemm_out_.get<float>() : y;
  const float alpha = 1.0f, beta = options.accumulate && !accumulate_after ? 1.0f : 0.0f;
  // Row-major y[n, rows] = x[n, cols] W^T is column-major y^T = W^T^T x^T: W is read as its transpose.
  const cublasStatus_t s = cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m.rows, n_tokens, m.cols, &alpha, weights, type, m.cols, input,
                                        type, m.cols, &beta, product, CUDA_R_32F, m.rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return Status(ErrorCode::kCuda, std::string("cuBLAS GEMM: ") + cublasGetStatusString(s));
  if (row_scales != nullptr) {
    cuda::UnscaleRowsParams unscale{product, row_scales, bias_values, n_tokens, m.rows};
    if (accumulate_after) unscale.accumulate_into = y;
    PAGEDLM_CUDA_TRY(cuda::launch_unscale_rows(unscale, stream_), "scaling rows back");
  } else if (bias_values != nullptr) {
    PAGEDLM_CUDA_TRY(cuda::launch_add_bias({y, bias_values, n_tokens, m.rows}, stream_), "adding a bias");
  }
  return Status::ok();
}

Status CudaBackend::normed_matmul(const DeviceMemory& norm, const DeviceWeight& w, int n_tokens, float* y, const DeviceMemory* bias,
                                  cuda::MatvecOutput output) {
  const ModelConfig& c = config_;
  if (runs_as_matvec(w.matrix, n_tokens)) {
    const bool has_bias = bias != nullptr && bias->bytes() > 0;
    return matvec_groups({w.matrix, x_.get<float>(), norm.get<float>(), c.rms_eps, has_bias ? bias->get<float>() : nullptr, y, output, n_tokens},
                         n_tokens);
  }
  if (output == cuda::MatvecOutput::kSwiglu) return Status(ErrorCode::kInternal, "SwiGLU after a matmul runs in the matvec only");
  cuda::RmsNormParams p{x_.get<float>(), norm.get<float>(), xb_.get<float>(), n_tokens, c.dim, c.rms_eps};
  const bool half = reads_half(w.matrix, n_tokens);
  if (half) {
    p.half_out = half_x_.get<uint16_t>();
    p.bfloat = true;
  }
  PAGEDLM_CUDA_TRY(cuda::launch_rms_norm(p, stream_), "RMSNorm");
  return matmul(w, xb_.get<float>(), n_tokens, y, bias, {.input_in_half = half});
}

// Each run of decode sequences goes through the split decode kernel and each run of prefill sequences through
// the prefill kernel, each over its slice of the batch's rows, tables and contexts.
Status CudaBackend::attend(int layer) {
  for (const SequenceRun& run : meta_.runs) {
    if (Status s = run.decode ? attend_decode(layer, run) : attend_prefill(layer, run); !s.is_ok()) return s;
  }
  return Status::ok();
}

Status CudaBackend::attend_decode(int layer, const SequenceRun& run) {
  const ModelConfig& c = config_;
  const size_t row = static_cast<size_t>(c.n_heads) * layout_.head_dim;
  const int table_stride = std::max(1, meta_.max_blocks);
  cuda::DecodeAttentionParams p{q_.get<float>() + run.first_token * row, att_.get<float>() + run.first_token * row, layer_kv(layer),
                                meta(meta_.tables) + static_cast<size_t>(run.first_seq) * table_stride, meta(meta_.context_lens) + run.first_seq,
                                run.count, c.n_heads, table_stride, std::max(1, meta_.max_context_len),
                                cuda::choose_decode_partition(run.count, c.n_kv_heads, meta_.max_context_len, decode_target_blocks_), c.attention_scale,
                                workspace_.get<float>(), c.layers[layer].window};
  // The workspace serves every batch the pool can hold; a graph's bucketed table may reach past the pool,
  // and then fewer, longer partitions fit.
  while (cuda::decode_attention_workspace_bytes(p) > workspace_.bytes()) p.partition_size *= 2;
  PAGEDLM_CUDA_TRY(cuda::launch_decode_attention(p, stream_), "decode attention");
  return Status::ok();
}

Status CudaBackend::attend_prefill(int layer, const SequenceRun& run) {
  const ModelConfig& c = config_;
  const int table_stride = std::max(1, meta_.max_blocks);
  const cuda::PrefillAttentionParams p{q_.get<float>(), att_.get<float>(), layer_kv(layer), meta(meta_.tables) + static_cast<size_t>(run.first_seq) * table_stride,
                                       meta(meta_.query_starts) + run.first_seq, meta(meta_.start_positions) + run.first_seq, run.count, c.n_heads,
                                       table_stride, meta_.max_query_len, c.attention_scale, c.layers[layer].window};
  PAGEDLM_CUDA_TRY(cuda::launch_prefill_attention(p, stream_), "prefill attention");
  return Status::ok();
}

Status CudaBackend::copy_columns(float* dst, int dst_stride, const float* src, int src_stride, int width, int rows) {
  PAGEDLM_CUDA_TRY(cudaMemcpy2DAsync(dst, sizeof(float) * dst_stride, src, sizeof(float) * src_stride, sizeof(float) * width, rows,
                                     cudaMemcpyDeviceToDevice, stream_),
                   "copying a column range");
  return Status::ok();
}

Status CudaBackend::per_head_matmul(const std::vector<DeviceWeight>& heads, const float* in, int in_stride, float* out, int out_stride) {
  const int n = meta_.n_tokens;
  const int count = static_cast<int>(heads.size());
  for (int h = 0; h < count; ++h) {
    const cuda::DeviceMatrix& m = heads[h].matrix;
    if (Status s = copy_columns(head_in_.get<float>(), m.cols, in + static_cast<size_t>(h) * in_stride, in_stride * count, m.cols, n); !s.is_ok()) return s;
    if (Status s = matmul(heads[h], head_in_.get<float>(), n, head_out_.get<float>()); !s.is_ok()) return s;
    if (Status s = copy_columns(out + static_cast<size_t>(h) * out_stride, out_stride * count, head_out_.get<float>(), m.rows, m.rows, n); !s.is_ok()) return s;
  }
  return Status::ok();
}

// The CPU's absorbed form (CpuBackend::latent_attention_block): q_ holds per head [W_UK q_nope, RoPE'd q_rope],
// k_ per token [latent, RoPE'd k_rope], the one row every head reads and the pool stores (V inside it); each
// head's output latent (the first kv_lora_rank values of its att_ row) goes through W_UV before wo.
Status CudaBackend::latent_attention_block(int layer) {
  const ModelConfig& c = config_;
  const DeviceLayer& w = layers_[layer];
  const int n = meta_.n_tokens;
  const int query_width = c.qk_nope_dim + c.rope_dim;
  float* queries = head_queries_.get<float>();
  PAGEDLM_CUDA_TRY(cuda::launch_rms_norm({x_.get<float>(), w.attn_norm.get<float>(), xb_.get<float>(), n, c.dim, c.rms_eps}, stream_), "RMSNorm");
  if (c.q_lora_rank > 0) {
    if (Status s = matmul(w.wq_a, xb_.get<float>(), n, query_lora_.get<float>()); !s.is_ok()) return s;
    PAGEDLM_CUDA_TRY(cuda::launch_rms_norm({query_lora_.get<float>(), w.q_a_norm.get<float>(), query_lora_.get<float>(), n, c.q_lora_rank, c.rms_eps}, stream_),
                     "RMSNorm");
    if (Status s = matmul(w.wq_b, query_lora_.get<float>(), n, queries); !s.is_ok()) return s;
  } else if (Status s = matmul(w.wq, xb_.get<float>(), n, queries); !s.is_ok()) {
    return s;
  }
  if (Status s = matmul(w.wkv_a, xb_.get<float>(), n, k_.get<float>()); !s.is_ok()) return s;
  // The latent's norm, on a contiguous copy of its columns.
  if (Status s = copy_columns(latent_.get<float>(), c.kv_lora_rank, k_.get<float>(), c.kv_dim(), c.kv_lora_rank, n); !s.is_ok()) return s;
  PAGEDLM_CUDA_TRY(cuda::launch_rms_norm({latent_.get<float>(), w.kv_a_norm.get<float>(), latent_.get<float>(), n, c.kv_lora_rank, c.rms_eps}, stream_),
                   "RMSNorm");
  if (Status s = copy_columns(k_.get<float>(), c.kv_dim(), latent_.get<float>(), c.kv_lora_rank, c.kv_lora_rank, n); !s.is_ok()) return s;
  // RoPE on the queries' RoPE parts (rows query_width apart from their offset) and on the key part of k_.
  const cuda::RopeParams rope_q{queries + c.qk_nope_dim, nullptr, meta(meta_.positions), rope_frequencies_.get<float>(), n, c.n_heads, 0,
                                query_width, c.rope_dim, c.rope_layout, c.rope_position_scale};
  PAGEDLM_CUDA_TRY(cuda::launch_rope(rope_q, stream_), "RoPE");
  const cuda::RopeParams rope_k{k_.get<float>() + c.kv_lora_rank, nullptr, meta(meta_.positions), rope_frequencies_.get<float>(), n, 1, 0,
                                c.kv_dim(), c.rope_dim, c.rope_layout, c.rope_position_scale};
  PAGEDLM_CUDA_TRY(cuda::launch_rope(rope_k, stream_), "RoPE");
  if (Status s = copy_columns(q_.get<float>() + c.kv_lora_rank, c.head_dim, queries + c.qk_nope_dim, query_width, c.rope_dim, n * c.n_heads); !s.is_ok()) {
    return s;
  }
  if (Status s = per_head_matmul(w.wk_b, queries, query_width, q_.get<float>(), c.head_dim); !s.is_ok()) return s;
  const cuda::PagedKv kv = layer_kv(layer);
  PAGEDLM_CUDA_TRY(cuda::launch_kv_append({k_.get<float>(), k_.get<float>(), meta(meta_.slots), kv, n}, stream_), "KV append");
  if (Status s = attend(layer); !s.is_ok()) return s;
  if (Status s = per_head_matmul(w.wv_b, att_.get<float>(), c.head_dim, head_outputs_.get<float>(), c.v_head_dim); !s.is_ok()) return s;
  if (Status s = matmul(w.wo, head_outputs_.get<float>(), n, xb_.get<float>()); !s.is_ok()) return s;
  PAGEDLM_CUDA_TRY(cuda::launch_add({x_.get<float>(), xb_.get<float>(), static_cast<size_t>(n) * c.dim}, stream_), "residual add");
  return Status::ok();
}

// Norm, the Q|K|V projection, RoPE with the KV append, attention, and wo accumulated into the residual.
Status CudaBackend::attention_block(int layer) {
  const ModelConfig& c = config_;
  if (c.latent_attention()) return latent_attention_block(layer);
  const DeviceLayer& w = layers_[layer];
  const int n = meta_.n_tokens;
  const int q_width = c.q_dim(), kv_width = c.kv_dim();
  cuda::RopeKvAppendParams rope_append{nullptr, nullptr, nullptr, 0, 0, q_.get<float>(), meta(meta_.positions), rope_frequencies_.get<float>(),
                                       meta(meta_.slots), layer_kv(layer), n, c.n_heads, c.rope_dim, c.rope_layout, c.rope_position_scale};
  if (w.wqkv.matrix.data != nullptr) {
    float* qkv = qkv_.get<float>();
    if (Status s = normed_matmul(w.attn_norm, w.wqkv, n, qkv, &w.bqkv); !s.is_ok()) return s;
    rope_append.q = qkv, rope_append.k = qkv + q_width, rope_append.v = qkv + q_width + kv_width;
    rope_append.q_stride = rope_append.kv_stride = q_width + 2 * kv_width;
  } else {
    // Q, K and V of different types: three projections; Q is rotated in place.
    if (Status s = normed_matmul(w.attn_norm, w.wq, n, q_.get<float>(), &w.bq); !s.is_ok()) return s;
    if (Status s = normed_matmul(w.attn_norm, w.wk, n, k_.get<float>(), &w.bk); !s.is_ok()) return s;
    if (Status s = normed_matmul(w.attn_norm, w.wv, n, v_.get<float>(), &w.bv); !s.is_ok()) return s;
    rope_append.q = q_.get<float>(), rope_append.k = k_.get<float>(), rope_append.v = v_.get<float>();
    rope_append.q_stride = q_width, rope_append.kv_stride = kv_width;
  }
  PAGEDLM_CUDA_TRY(cuda::launch_rope_kv_append(rope_append, stream_), "RoPE and KV append");
  if (Status s = attend(layer); !s.is_ok()) return s;
  return matmul(w.wo, att_.get<float>(), n, x_.get<float>(), nullptr, {.accumulate = true});
}

// Norm, the gate|up projection, SwiGLU (written as the down matmul's input), and w_down accumulated into the
// residual.
Status CudaBackend::ffn_block(int layer, int n) {
  const ModelConfig& c = config_;
  const DeviceLayer& w = layers_[layer];
  const int width = c.ffn_dim;
  float* gate_up = gate_up_.get<float>();
  cuda::SwigluParams swiglu{gate_up, gate_up + width, ffn_hidden_.get<float>(), nullptr, false, n, width, 2 * width};
  if (w.w_gate_up.matrix.data != nullptr && runs_as_matvec(w.w_gate_up.matrix, n)) {
    // Decode: norm, gate|up and SwiGLU in one launch.
    if (Status s = normed_matmul(w.ffn_norm, w.w_gate_up, n, ffn_hidden_.get<float>(), nullptr, cuda::MatvecOutput::kSwiglu); !s.is_ok()) return s;
    return matmul(w.w_down, ffn_hidden_.get<float>(), n, x_.get<float>(), nullptr, {.accumulate = true});
  }
  if (w.w_gate_up.matrix.data != nullptr) {
    if (Status s = normed_matmul(w.ffn_norm, w.w_gate_up, n, gate_up); !s.is_ok()) return s;
  } else {
    // Gate and up of different types: two projections, all gate rows then all up rows.
    float* up = gate_up + static_cast<size_t>(n) * width;
    if (Status s = normed_matmul(w.ffn_norm, w.w_gate, n, gate_up); !s.is_ok()) return s;
    if (Status s = normed_matmul(w.ffn_norm, w.w_up, n, up); !s.is_ok()) return s;
    swiglu.up = up, swiglu.in_stride = width;
  }
  const bool half = reads_half(w.w_down.matrix, n);
  if (half) swiglu.half_out = half_x_.get<uint16_t>(), swiglu.bfloat = true;
  PAGEDLM_CUDA_TRY(cuda::launch_swiglu(swiglu, stream_), "SwiGLU");
  return matmul(w.w_down, ffn_hidden_.get<float>(), n, x_.get<float>(), nullptr, {.accumulate = true, .input_in_half = half});
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

Status CudaBackend::copy_hidden_rows(const ForwardBatch& batch) {
  if (batch.num_hidden_rows() == 0) return Status::ok();
  const ModelConfig& c = config_;
  const auto dim = static_cast<size_t>(c.dim);
  // Queued after the logits' matmul has read xb_, so it may take xb_ for every token's normed row.
  PAGEDLM_CUDA_TRY(cuda::launch_rms_norm({x_.get<float>(), output_norm_.get<float>(), xb_.get<float>(), meta_.n_tokens, c.dim, c.rms_eps}, stream_), "RMSNorm");
  size_t row = 0;
  for (const BatchSequence& seq : batch.sequences) {
    if (!seq.want_hidden) continue;
    const size_t bytes = static_cast<size_t>(seq.num_tokens) * dim * sizeof(float);
    PAGEDLM_CUDA_TRY(cudaMemcpyAsync(batch.hidden + row * dim, xb_.get<float>() + static_cast<size_t>(seq.first_token) * dim, bytes, cudaMemcpyDeviceToHost, stream_),
                     "copying hidden states");
    row += static_cast<size_t>(seq.num_tokens);
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

}  // namespace pagedlm::cuda_backend
