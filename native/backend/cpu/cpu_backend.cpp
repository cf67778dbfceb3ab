#include "backend/cpu/cpu_backend.h"

#include "backend/cpu/block_attention.h"
#include "backend/cpu/logit_select.h"
#include "common/fault.h"
#include "common/platform.h"

#include <algorithm>
#include <cmath>
#include <new>
#include <cstring>
#include <stdexcept>

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

namespace pagedlm {

namespace {
// Rows per matmul task come in multiples of this: every table's packed group height divides it.
constexpr int kRowsPerTaskMultiple = 16;
// Matmul rows are split into this many tasks per thread: each thread streams its own share of them in order,
// and the last few even out the round's end.
constexpr int kTasksPerThread = 16;
// Element-wise work goes to the pool in chunks this large: smaller, a round costs more than it saves.
constexpr int kElementwiseChunk = 16384;
// GeGLU is scalar tanh per element, many times SwiGLU's vector cost: smaller chunks, so that even one
// decode token's FFN row is shared by the threads.
constexpr int kGegluChunk = 1024;
// KV blocks that attention asks the memory for ahead of the one it reads.
constexpr int kPrefetchBlocks = 2;

// Asks for the cache line holding `address` ahead of a read, into L2 and up.
inline void prefetch_for_read(const void* address) {
#if defined(_MSC_VER) && !defined(__clang__)
  _mm_prefetch(static_cast<const char*>(address), _MM_HINT_T1);  // MSVC has no __builtin_prefetch (x64 only)
#else
  __builtin_prefetch(address, 0, 2);
#endif
}

// The matrices `kernels` read from a packed copy (kernels.h), in the order a step reads them.
std::vector<const WeightMatrix*> packed_matrices(const LlamaModel& model, const CpuKernels& kernels) {
  std::vector<const WeightMatrix*> matrices;
  if (kernels.pack_rows == nullptr) return matrices;
  for (const LayerWeights& l : model.layers()) {
    for (const WeightMatrix* w : {&l.wq_a, &l.wq_b, &l.wq, &l.wkv_a, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      if (w->data != nullptr) matrices.push_back(w);
    }
  }
  matrices.push_back(&model.output());
  std::erase_if(matrices, [&](const WeightMatrix* w) { return !can_interleave_rows(kernels, w->type, w->rows, w->cols); });
  return matrices;
}

// A matrix's room in the packed arena: each copy starts on a page of its own, so the kernels' loads never
// straddle two matrices.
size_t packed_copy_bytes(const WeightMatrix& w) {
  constexpr size_t kAlign = 4096;
  return (static_cast<size_t>(w.rows) * w.row_bytes + kAlign - 1) / kAlign * kAlign;
}

size_t packed_arena_bytes(const std::vector<const WeightMatrix*>& matrices) {
  size_t total = 0;
  for (const WeightMatrix* w : matrices) total += packed_copy_bytes(*w);
  return total;
}
}  // namespace

Result<std::unique_ptr<CpuBackend>> CpuBackend::create(std::shared_ptr<const LlamaModel> model, KvLayout layout, int threads, int context_length) {
  return create(std::move(model), layout, std::make_shared<ThreadPool>(static_cast<size_t>(std::max(1, threads))), context_length);
}

Result<std::unique_ptr<CpuBackend>> CpuBackend::create(std::shared_ptr<const LlamaModel> model, KvLayout layout, std::shared_ptr<ThreadPool> pool,
                                                       int context_length) {
  if (!pool) return Status(ErrorCode::kInternal, "the CPU backend needs a thread pool");
  const std::vector<const WeightMatrix*> matrices = packed_matrices(*model, best_cpu_kernels());
  const size_t packed = packed_arena_bytes(matrices);
  // A model loaded with mmap: false stays in the heap beside its packed copy.
  const size_t model_heap = model->gguf().heap_bytes();
  const auto too_big = [&] {
    const auto mib = [](size_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; };
    std::string beside;
    if (packed > 0) beside += " the " + mib(packed) + " packed copy of the weights";
    if (model_heap > 0) beside += std::string(packed > 0 ? " and" : "") + " the " + mib(model_heap) + " heap copy of the model file (mmap: false)";
    return Status(ErrorCode::kOutOfMemory, "cannot allocate a KV pool of " + std::to_string(layout.total_bytes() >> 20) + " MiB" +
                                               (beside.empty() ? "" : " beside" + beside) + ": lower kvCache.blocks, kvCache.memory or contextLength" +
                                               (model_heap > 0 ? ", or load with mmap: true" : ""));
  };
  // A pool (and weights copies) larger than RAM would fill up and summon the OOM killer instead of an error.
  const uint64_t physical = physical_memory_bytes();
  if (physical > 0 && layout.total_bytes() + packed + model_heap > physical) return too_big();
  try {
    if (fault_armed("kv.allocate")) throw std::bad_alloc();
    return std::unique_ptr<CpuBackend>(new CpuBackend(std::move(model), layout, std::move(pool), matrices, context_length));
  } catch (const std::bad_alloc&) {
    return too_big();
  } catch (const std::length_error&) {
    return too_big();
  }
}

CpuBackend::CpuBackend(std::shared_ptr<const LlamaModel> model, KvLayout layout, std::shared_ptr<ThreadPool> pool,
                       const std::vector<const WeightMatrix*>& packed, int context_length)
    : model_(std::move(model)), config_(model_->config()), layout_(layout), pool_owner_(std::move(pool)), pool_(*pool_owner_), kernels_(best_cpu_kernels()) {
  const std::vector<float>& factors = config_.rope_factors_for_context(context_length > 0 ? context_length : config_.context_length);
  for (const LayerAttention& layer : config_.layers) {
    const RopeSettings settings = rope_settings(config_, layer, factors);
    const auto known = std::find(rope_settings_.begin(), rope_settings_.end(), settings);
    layer_rope_.push_back(static_cast<int>(known - rope_settings_.begin()));
    if (known == rope_settings_.end()) rope_settings_.push_back(settings);
  }
  rope_.resize(rope_settings_.size());
  k_data_ = HugePageBuffer(layout_.pieces() * layout_.piece_bytes(KvRole::kKey));
  v_data_ = HugePageBuffer(layout_.pieces() * layout_.piece_bytes(KvRole::kValue));
  k_scales_.resize(layout_.pieces() * layout_.piece_scale_bytes(KvRole::kKey));
  v_scales_.resize(layout_.pieces() * layout_.piece_scale_bytes(KvRole::kValue));
  // The widest input row a matmul reads.
  const size_t scratch = std::max({static_cast<size_t>(config_.dim), static_cast<size_t>(config_.ffn_dim), static_cast<size_t>(config_.q_dim()),
                                   static_cast<size_t>(config_.attention_output_dim()), static_cast<size_t>(config_.q_lora_rank)});
  thread_scratch_.assign(pool_.size(), std::vector<float>(scratch));
  const size_t query_rows = static_cast<size_t>(kQueryChunk) * (config_.n_heads / config_.n_kv_heads);
  const size_t attention = query_rows * (config_.head_dim + 2) + static_cast<size_t>(layout_.block_size) * (2 * config_.head_dim + 1);
  attention_scratch_.assign(pool_.size(), std::vector<float>(attention));
  interleave_weights(packed);
}

void CpuBackend::interleave_weights(const std::vector<const WeightMatrix*>& matrices) {
  packed_weights_ = HugePageBuffer(packed_arena_bytes(matrices));
  uint8_t* next = packed_weights_.data();
  for (const WeightMatrix* w : matrices) {
    interleaved_[w] = next;
    pack_matrix(*w, next);
    next += packed_copy_bytes(*w);
  }
}

void CpuBackend::pack_matrix(const WeightMatrix& w, uint8_t* out) {
  // One task per group of rows, so copying a 2 GB model takes all threads.
  constexpr int kRowsPerTask = 256;
  pool_.parallel_for((w.rows + kRowsPerTask - 1) / kRowsPerTask, [&](size_t task, size_t) {
    const int begin = static_cast<int>(task) * kRowsPerTask;
    const int rows = std::min(kRowsPerTask, w.rows - begin);
    kernels_.pack_rows(w.type, w.row(begin), w.row_bytes, rows, out + static_cast<size_t>(begin) * w.row_bytes);
  });
  // The mapped rows are not read again (a tied output's rows are: they are the embedding table).
  if (w.data != model_->token_embedding().data) model_->gguf().drop_resident_pages(w.data, static_cast<size_t>(w.rows) * w.row_bytes);
}

Status CpuBackend::forward(const ForwardBatch& batch, float* logits) {
  const int n = static_cast<int>(batch.tokens.size());
  if (n == 0) return Status::ok();
  const ModelConfig& c = config_;
  if (fault_armed("step.allocate")) throw std::bad_alloc();
  x_.resize(static_cast<size_t>(n) * c.dim);
  xb_.resize(x_.size());
  q_.resize(static_cast<size_t>(n) * c.q_dim());
  att_.resize(q_.size());
  k_.resize(static_cast<size_t>(n) * c.kv_dim());
  v_.resize(c.latent_attention() ? 0 : k_.size());
  if (c.latent_attention()) {
    query_lora_.resize(static_cast<size_t>(n) * c.q_lora_rank);
    head_queries_.resize(static_cast<size_t>(n) * c.n_heads * (c.qk_nope_dim + c.rope_dim));
    head_outputs_.resize(static_cast<size_t>(n) * c.attention_output_dim());
    head_in_.resize(static_cast<size_t>(n) * std::max(c.qk_nope_dim, c.kv_lora_rank));
    head_out_.resize(static_cast<size_t>(n) * std::max(c.kv_lora_rank, c.v_head_dim));
  }
  gate_.resize(static_cast<size_t>(n) * c.ffn_dim);
  up_.resize(gate_.size());

  TokenSlots slots;
  slots.position.resize(n);
  slots.sequence.resize(n);
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const BatchSequence& seq = batch.sequences[s];
    for (int j = 0; j < seq.num_tokens; ++j) {
      slots.position[seq.first_token + j] = seq.start_position + j;
      slots.sequence[seq.first_token + j] = static_cast<int32_t>(s);
    }
  }
  for (size_t r = 0; r < rope_settings_.size(); ++r) {
    rope_[r].resize(n);
    for (int t = 0; t < n; ++t) rope_angles(rope_settings_[r], slots.position[t], rope_[r][t]);
  }

  embed(batch);
  for (int l = 0; l < c.n_layers; ++l) {
    attention_block(l, batch, slots);
    ffn_block(l, n);
  }
  output_hidden(batch);
  output_logits(batch, logits);
  return Status::ok();
}

template <typename Visit>
void CpuBackend::for_each_block_piece(BlockId block, Visit visit) const {
  const size_t heads = static_cast<size_t>(layout_.num_kv_heads);
  for (int32_t layer = 0; layer < layout_.num_layers; ++layer) {
    const size_t first = layout_.piece_index(layer, block, 0);
    for (KvRole role : {KvRole::kKey, KvRole::kValue}) {
      if (layout_.piece_bytes(role) > 0) visit(piece_rows(role, first), heads * layout_.piece_bytes(role));
    }
    for (KvRole role : {KvRole::kKey, KvRole::kValue}) {
      if (layout_.piece_scale_bytes(role) > 0) visit(piece_scales(role, first), heads * layout_.piece_scale_bytes(role));
    }
  }
}

size_t CpuBackend::block_bytes() const {
  size_t total = 0;
  for_each_block_piece(0, [&](const uint8_t*, size_t n) { total += n; });
  return total;
}

Status CpuBackend::export_block(BlockId block, uint8_t* out) const {
  for_each_block_piece(block, [&](const uint8_t* piece, size_t n) {
    std::memcpy(out, piece, n);
    out += n;
  });
  return Status::ok();
}

Status CpuBackend::import_block(BlockId block, const uint8_t* in) {
  // The pieces live in this object's own vectors; writing through them is writing our storage.
  for_each_block_piece(block, [&](const uint8_t* piece, size_t n) {
    std::memcpy(const_cast<uint8_t*>(piece), in, n);
    in += n;
  });
  return Status::ok();
}

Status CpuBackend::copy_block(BlockId from, BlockId to) {
  std::vector<uint8_t> bytes(block_bytes());
  export_block(from, bytes.data());
  return import_block(to, bytes.data());
}

void CpuBackend::embed(const ForwardBatch& batch) {
  const WeightMatrix& e = model_->token_embedding();
  for (size_t t = 0; t < batch.tokens.size(); ++t) {
    float* x = x_.data() + t * config_.dim;
    dequantize_row(e.type, e.row(batch.tokens[t]), x, config_.dim);
    if (config_.embedding_scale != 1.0f) {
      for (int i = 0; i < config_.dim; ++i) x[i] *= config_.embedding_scale;
    }
  }
}

void CpuBackend::norm_rows(const float* x, const std::vector<float>& weight, float* out, int n_tokens) {
  for (int t = 0; t < n_tokens; ++t) {
    rms_norm(x + static_cast<size_t>(t) * config_.dim, weight.data(), out + static_cast<size_t>(t) * config_.dim, config_.dim, config_.rms_eps);
  }
}

void CpuBackend::norm_heads(float* x, const std::vector<float>& weight, int heads, int n_tokens) {
  const int d = config_.head_dim;
  for (size_t row = 0; row < static_cast<size_t>(n_tokens) * heads; ++row) rms_norm(x + row * d, weight.data(), x + row * d, d, config_.rms_eps);
}

void CpuBackend::add_residual(float* y, const std::vector<float>& post_norm, int n_tokens) {
  if (!post_norm.empty()) norm_rows(y, post_norm, y, n_tokens);
  for (size_t i = 0; i < static_cast<size_t>(n_tokens) * config_.dim; ++i) x_[i] += y[i];
}

template <typename Block>
const Block* CpuBackend::quantize_activations(void (*quantize)(const float*, int, Block*), size_t block_elements, const float* x, int n_tokens,
                                              int cols, std::vector<Block>& out) {
  const size_t blocks_per_token = static_cast<size_t>(cols) / block_elements;
  out.resize(static_cast<size_t>(n_tokens) * blocks_per_token);
  pool_.parallel_for(static_cast<size_t>(n_tokens), [&](size_t t, size_t) { quantize(x + t * cols, cols, out.data() + t * blocks_per_token); });
  return out.data();
}

void CpuBackend::matmul(std::initializer_list<MatmulOutput> outputs, const float* x, int n_tokens) {
  const ActivationBlockQ8* xq = nullptr;
  const ActivationBlockQ8K* xk = nullptr;
  int total_rows = 0;
  matmul_args_.clear();
  for (const MatmulOutput& out : outputs) {
    const WeightMatrix& w = out.w;
    total_rows += w.rows;
    MatmulArgs args{w.type, w.data, w.row_bytes, w.cols, x, n_tokens, out.y, w.rows};
    if (const auto copy = interleaved_.find(&w); copy != interleaved_.end()) {
      args.weights = copy->second;
      args.interleaved = true;
    }
    if (multiplies_q8_activations(w.type) && kernels_.quantize_q8 != nullptr) {
      if (xq == nullptr) xq = quantize_activations(kernels_.quantize_q8, kQ8BlockElements, x, n_tokens, w.cols, xq_);
      args.xq = xq;
    }
    if (multiplies_q8k_activations(w.type) && kernels_.quantize_q8k != nullptr) {
      if (xk == nullptr) xk = quantize_activations(kernels_.quantize_q8k, kQKElements, x, n_tokens, w.cols, xk_);
      args.xk = xk;
    }
    matmul_args_.push_back(args);
  }
  // About kTasksPerThread tasks per thread over all the rows, so that the round ends within a small task of
  // even (thread_pool.h); a task stays within one matrix.
  const size_t tasks = pool_.size() * kTasksPerThread;
  int rows_per_task = static_cast<int>((total_rows + tasks - 1) / tasks);
  rows_per_task = std::max(1, (rows_per_task + kRowsPerTaskMultiple - 1) / kRowsPerTaskMultiple) * kRowsPerTaskMultiple;
  matmul_tasks_.clear();
  int output = 0;
  for (const MatmulOutput& out : outputs) {
    for (int begin = 0; begin < out.w.rows; begin += rows_per_task) matmul_tasks_.push_back({output, begin, std::min(out.w.rows, begin + rows_per_task)});
    ++output;
  }
  pool_.parallel_for(matmul_tasks_.size(), [&](size_t i, size_t thread) {
    const MatmulTask& task = matmul_tasks_[i];
    kernels_.matmul_rows(matmul_args_[task.output], task.row_begin, task.row_end, thread_scratch_[thread].data());
  });
  for (const MatmulOutput& out : outputs) {
    if (out.bias == nullptr || out.bias->empty()) continue;
    for (int t = 0; t < n_tokens; ++t) {
      for (int r = 0; r < out.w.rows; ++r) out.y[static_cast<size_t>(t) * out.w.rows + r] += (*out.bias)[r];
    }
  }
}

void CpuBackend::attention_block(int layer, const ForwardBatch& batch, const TokenSlots& slots) {
  if (config_.latent_attention()) return latent_attention_block(layer, batch, slots);
  const LayerWeights& w = model_->layers()[layer];
  const int n = static_cast<int>(batch.tokens.size());
  norm_rows(x_.data(), w.attn_norm, xb_.data(), n);
  matmul({{w.wq, q_.data(), &w.bq}, {w.wk, k_.data(), &w.bk}, {w.wv, v_.data(), &w.bv}}, xb_.data(), n);
  if (config_.qk_norm) {
    norm_heads(q_.data(), w.q_norm, config_.n_heads, n);
    norm_heads(k_.data(), w.k_norm, config_.n_kv_heads, n);
  }
  rope_and_store_kv(layer, batch, slots);
  attend(layer, batch);
  matmul({{w.wo, xb_.data()}}, att_.data(), n);
  add_residual(xb_.data(), w.attn_post_norm, n);
}

// The absorbed form: q_ holds per head [W_UK q_nope, RoPE'd q_rope] and k_ per token [latent, RoPE'd k_rope],
// the one KV row every head reads; attention's output per head is a latent (the first kv_lora_rank values of
// each att_ row: V is the latent part of the K row), which W_UV expands to the head's output.
void CpuBackend::latent_attention_block(int layer, const ForwardBatch& batch, const TokenSlots& slots) {
  const ModelConfig& c = config_;
  const LayerWeights& w = model_->layers()[layer];
  const int n = static_cast<int>(batch.tokens.size());
  const int query_width = c.qk_nope_dim + c.rope_dim;
  norm_rows(x_.data(), w.attn_norm, xb_.data(), n);
  if (c.q_lora_rank > 0) {
    matmul({{w.wq_a, query_lora_.data()}, {w.wkv_a, k_.data()}}, xb_.data(), n);
    for (int t = 0; t < n; ++t) {
      float* row = query_lora_.data() + static_cast<size_t>(t) * c.q_lora_rank;
      rms_norm(row, w.q_a_norm.data(), row, c.q_lora_rank, c.rms_eps);
    }
    matmul({{w.wq_b, head_queries_.data()}}, query_lora_.data(), n);
  } else {
    matmul({{w.wq, head_queries_.data()}, {w.wkv_a, k_.data()}}, xb_.data(), n);
  }
  const std::vector<RopeAngles>& angles = rope_[layer_rope_[layer]];
  for (int t = 0; t < n; ++t) {
    float* kv = k_.data() + static_cast<size_t>(t) * c.kv_dim();
    rms_norm(kv, w.kv_a_norm.data(), kv, c.kv_lora_rank, c.rms_eps);
    rope_apply(kv + c.kv_lora_rank, 1, c.rope_dim, c.rope_dim, c.rope_layout, angles[t]);
    float* queries = head_queries_.data() + static_cast<size_t>(t) * c.n_heads * query_width;
    rope_apply(queries + c.qk_nope_dim, c.n_heads, query_width, c.rope_dim, c.rope_layout, angles[t]);
    for (int h = 0; h < c.n_heads; ++h) {
      std::copy_n(queries + static_cast<size_t>(h) * query_width + c.qk_nope_dim, c.rope_dim,
                  q_.data() + static_cast<size_t>(t) * c.q_dim() + static_cast<size_t>(h) * c.head_dim + c.kv_lora_rank);
    }
  }
  // Each head's no-RoPE query through its W_UK, into the latent part of its q_ row.
  per_head_matmul(w.wk_b, head_queries_.data(), query_width, 0, c.qk_nope_dim, q_.data(), c.head_dim, n);
  store_latent_kv(layer, batch, slots);
  attend(layer, batch);
  per_head_matmul(w.wv_b, att_.data(), c.head_dim, 0, c.kv_lora_rank, head_outputs_.data(), c.v_head_dim, n);
  matmul({{w.wo, xb_.data()}}, head_outputs_.data(), n);
  add_residual(xb_.data(), w.attn_post_norm, n);
}

void CpuBackend::per_head_matmul(const std::vector<WeightMatrix>& heads, const float* in, int in_stride, int in_first, int in_width, float* out,
                                 int out_stride, int n_tokens) {
  for (size_t h = 0; h < heads.size(); ++h) {
    const WeightMatrix& w = heads[h];
    for (int t = 0; t < n_tokens; ++t) {
      std::copy_n(in + (static_cast<size_t>(t) * heads.size() + h) * in_stride + in_first, in_width, head_in_.data() + static_cast<size_t>(t) * in_width);
    }
    matmul({{w, head_out_.data()}}, head_in_.data(), n_tokens);
    for (int t = 0; t < n_tokens; ++t) {
      std::copy_n(head_out_.data() + static_cast<size_t>(t) * w.rows, w.rows, out + (static_cast<size_t>(t) * heads.size() + h) * out_stride);
    }
  }
}

void CpuBackend::store_latent_kv(int layer, const ForwardBatch& batch, const TokenSlots& slots) {
  for (size_t t = 0; t < batch.tokens.size(); ++t) {
    const int pos = slots.position[t];
    const BlockId block = batch.sequences[slots.sequence[t]].block_table[pos / layout_.block_size];
    store_kv_row(KvRole::kKey, k_.data() + t * config_.kv_dim(), layout_.piece_index(layer, block, 0), pos % layout_.block_size);
  }
}

void CpuBackend::rope_and_store_kv(int layer, const ForwardBatch& batch, const TokenSlots& slots) {
  const ModelConfig& c = config_;
  const std::vector<RopeAngles>& angles = rope_[layer_rope_[layer]];
  for (size_t t = 0; t < batch.tokens.size(); ++t) {
    float* q = q_.data() + t * c.q_dim();
    float* k = k_.data() + t * c.kv_dim();
    const float* v = v_.data() + t * c.kv_dim();
    rope_apply(q, c.n_heads, c.head_dim, c.rope_dim, c.rope_layout, angles[t]);
    rope_apply(k, c.n_kv_heads, c.head_dim, c.rope_dim, c.rope_layout, angles[t]);
    const int pos = slots.position[t];
    const BlockId block = batch.sequences[slots.sequence[t]].block_table[pos / layout_.block_size];
    for (int h = 0; h < c.n_kv_heads; ++h) {
      const size_t piece = layout_.piece_index(layer, block, h);
      store_kv_row(KvRole::kKey, k + static_cast<size_t>(h) * c.head_dim, piece, pos % layout_.block_size);
      store_kv_row(KvRole::kValue, v + static_cast<size_t>(h) * c.head_dim, piece, pos % layout_.block_size);
    }
  }
}

uint8_t* CpuBackend::piece_rows(KvRole role, size_t piece) const {
  const HugePageBuffer& data = role == KvRole::kKey ? k_data_ : v_data_;
  return const_cast<uint8_t*>(data.data()) + piece * layout_.piece_bytes(role);
}

uint8_t* CpuBackend::piece_scales(KvRole role, size_t piece) const {
  const std::vector<uint8_t>& scales = role == KvRole::kKey ? k_scales_ : v_scales_;
  return scales.empty() ? nullptr : const_cast<uint8_t*>(scales.data()) + piece * layout_.piece_scale_bytes(role);
}

void CpuBackend::store_kv_row(KvRole role, const float* row, size_t piece, int slot) {
  const KvDtype dtype = layout_.dtype_of(role);
  uint8_t* rows = piece_rows(role, piece);
  // f16 rows, the default pool, convert in hardware where the table can: the same bits, 8 values an
  // instruction instead of float_to_fp16's bit manipulation per value.
  if (dtype == KvDtype::kF16 && kernels_.f32_to_f16 != nullptr) {
    return kernels_.f32_to_f16(row, reinterpret_cast<uint16_t*>(rows + static_cast<size_t>(slot) * layout_.row_bytes(role)), config_.head_dim);
  }
  kv_store(dtype, role, row, rows, piece_scales(role, piece), slot, config_.head_dim);
}

// Causal attention: a token at position p reads positions [0, p] of its own sequence through its block table
// ((p - window, p] on a windowed layer: the blocks wholly below that are not read at all).
// One task per (sequence, KV head, chunk of query tokens): every K/V block is read (and decoded, for the
// types the kernels do not read in place) once for all the query heads sharing that KV head and all the chunk's tokens.
void CpuBackend::attend(int layer, const ForwardBatch& batch) {
  std::vector<AttentionTask>& tasks = attention_tasks_;
  tasks.clear();
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    for (int first = 0; first < batch.sequences[s].num_tokens; first += kQueryChunk) {
      for (int h = 0; h < config_.n_kv_heads; ++h) tasks.push_back({static_cast<int>(s), h, first});
    }
  }
  const int window = config_.layers[layer].window;
  pool_.parallel_for(tasks.size(), [&](size_t i, size_t thread) {
    const AttentionTask& task = tasks[i];
    const BatchSequence& seq = batch.sequences[task.sequence];
    attend_chunk(layer, window, seq, task.kv_head, task.first, std::min(seq.num_tokens, task.first + kQueryChunk), attention_scratch_[thread].data());
  });
}

void CpuBackend::attend_rows(KvDtype k_type, KvDtype v_type, const uint8_t* k, const uint8_t* v, const float* k_scales, const float* v_scales, int n,
                             const AttentionRows& rows, float* scores) const {
  const int d = config_.head_dim;
  if (kernels_.attend_block_encoded != nullptr) return kernels_.attend_block_encoded(k_type, v_type, k, v, k_scales, v_scales, n, d, rows);
  // Without the encoded kernel both sides arrive as f16 pool rows or as floats (attend_chunk).
  if (k_type == KvDtype::kF16) {
    return attend_block(kernels_, reinterpret_cast<const uint16_t*>(k), reinterpret_cast<const uint16_t*>(v), n, d, rows, scores);
  }
  attend_block(kernels_, reinterpret_cast<const float*>(k), reinterpret_cast<const float*>(v), n, d, rows, scores);
}

bool CpuBackend::reads_in_place(KvDtype dtype) const {
  // int4 scales belong to a block's channels or to groups within a row: its rows are decoded first.
  if (dtype == KvDtype::kInt4) return false;
  if (kernels_.attend_block_encoded != nullptr) return true;
  return layout_.k_dtype == layout_.v_dtype && (dtype == KvDtype::kF32 || dtype == KvDtype::kF16);
}

void CpuBackend::attend_chunk(int layer, int window, const BatchSequence& seq, int kv_head, int first, int end, float* scratch) {
  const ModelConfig& c = config_;
  const int d = c.head_dim;
  const int group = c.n_heads / c.n_kv_heads;
  const int rows = (end - first) * group;
  const int bs = layout_.block_size;
  const float scale = c.attention_scale;
  // Per query row (token j, head g of the group): running max, running sum, output accumulator.
  float* row_max = scratch;
  float* row_sum = row_max + rows;
  float* acc = row_sum + rows;               // [rows][d]
  float* scores = acc + static_cast<size_t>(rows) * d;  // [bs]
  float* k_rows = scores + bs;              // [bs][d] decoded K (reads_in_place false)
  float* v_rows = k_rows + static_cast<size_t>(bs) * d;
  std::fill(row_max, row_max + rows, -INFINITY);
  std::fill(row_sum, row_sum + rows, 0.0f);
  std::fill(acc, acc + static_cast<size_t>(rows) * d, 0.0f);
  // Each side is read in the pool's encoding or decoded into floats a block at a time.
  const bool k_in_place = reads_in_place(layout_.k_dtype), v_in_place = reads_in_place(layout_.v_dtype);
  const KvDtype k_read = k_in_place ? layout_.k_dtype : KvDtype::kF32;
  const KvDtype v_read = v_in_place ? layout_.v_dtype : KvDtype::kF32;
  const size_t k_row_bytes = kv_row_bytes(k_read, d), v_row_bytes = kv_row_bytes(v_read, d);
  const int longest = seq.start_position + end;  // positions the chunk's last token reads
  // The lowest position token j of the chunk reads; the chunk's first token reads the lowest of all.
  const auto lowest_of = [&](int j) { return window > 0 ? std::max(0, seq.start_position + first + j - window + 1) : 0; };
  const int first_block = lowest_of(0) / bs;
  const auto piece_of = [&](int b) { return layout_.piece_index(layer, seq.block_table[b], kv_head); };
  // Where token j's query heads of this group start in q_ (and its outputs in att_).
  const auto group_of_token = [&](int j) {
    return static_cast<size_t>(seq.first_token + first + j) * c.q_dim() + static_cast<size_t>(kv_head) * group * d;
  };
  // A head's piece of a block is a few KB on its own pages, too short for the hardware prefetcher to get
  // ahead of: ask for the blocks after the one in hand.
  const auto prefetch = [&](int b) {
    if (b * bs >= longest) return;
    for (KvRole role : {KvRole::kKey, KvRole::kValue}) {
      if (!layout_.stores(role)) continue;
      const uint8_t* at = piece_rows(role, piece_of(b));
      for (size_t line = 0; line < layout_.piece_bytes(role); line += 64) prefetch_for_read(at + line);
    }
  };
  // One side of block b: in place with its per-row scales (int8/fp8), or its first `count` rows decoded.
  const auto side = [&](KvRole role, bool in_place, int b, int count, float* decoded, const float** row_scales) -> const uint8_t* {
    const size_t piece = piece_of(b);
    const uint8_t* piece_scale = piece_scales(role, piece);
    if (in_place) {
      *row_scales = reinterpret_cast<const float*>(piece_scale);
      return piece_rows(role, piece);
    }
    kv_load(layout_.dtype_of(role), role, piece_rows(role, piece), piece_scale, 0, count, d, decoded);
    *row_scales = nullptr;
    return reinterpret_cast<const uint8_t*>(decoded);
  };
  for (int b = first_block; b < first_block + kPrefetchBlocks; ++b) prefetch(b);
  for (int b = first_block; b * bs < longest; ++b) {
    prefetch(b + kPrefetchBlocks);
    const int in_block = std::min(bs, longest - b * bs);
    const float* k_scales = nullptr;
    const float* v_scales = nullptr;
    const uint8_t* k = side(KvRole::kKey, k_in_place, b, in_block, k_rows, &k_scales);
    // V inside K (latent attention): the V rows are the K rows, read at the K row's width; the values past
    // the latent fold into the accumulator's tail, which the caller never reads.
    const uint8_t* v = layout_.v_in_k ? k : side(KvRole::kValue, v_in_place, b, in_block, v_rows, &v_scales);
    if (layout_.v_in_k) v_scales = k_scales;
    for (int j = 0; j < end - first; ++j) {
      // Causal: token j sees positions up to its own, and on a windowed layer none below lowest_of(j).
      const int n = std::min(in_block, seq.start_position + first + j + 1 - b * bs);
      const int skip = std::max(0, lowest_of(j) - b * bs);
      if (n - skip <= 0) continue;
      const size_t r = static_cast<size_t>(j) * group;
      const AttentionRows rows_of_token{q_.data() + group_of_token(j), group, scale, row_max + r, row_sum + r, acc + r * d, c.attention_softcap};
      attend_rows(k_read, v_read, k + skip * k_row_bytes, v + skip * v_row_bytes, k_scales ? k_scales + skip : nullptr,
                  v_scales ? v_scales + skip : nullptr, n - skip, rows_of_token, scores);
    }
  }
  for (int j = 0; j < end - first; ++j) {
    const size_t r = static_cast<size_t>(j) * group;
    float* out = att_.data() + group_of_token(j);
    for (int g = 0; g < group; ++g) {
      const float inverse = 1.0f / row_sum[r + g];
      for (int i = 0; i < d; ++i) out[static_cast<size_t>(g) * d + i] = acc[(r + g) * d + i] * inverse;
    }
  }
}

void CpuBackend::ffn_block(int layer, int n_tokens) {
  const LayerWeights& w = model_->layers()[layer];
  norm_rows(x_.data(), w.ffn_norm, xb_.data(), n_tokens);
  matmul({{w.w_gate, gate_.data()}, {w.w_up, up_.data()}}, xb_.data(), n_tokens);
  const int elements = n_tokens * config_.ffn_dim;
  const bool gelu = config_.ffn_activation == FfnActivation::kGeluTanh;
  const int chunk_size = gelu ? kGegluChunk : kElementwiseChunk;
  pool_.parallel_for((elements + chunk_size - 1) / chunk_size, [&](size_t chunk, size_t) {
    const int begin = static_cast<int>(chunk) * chunk_size;
    const int count = std::min(chunk_size, elements - begin);
    if (gelu) geglu(gate_.data() + begin, up_.data() + begin, count);
    else kernels_.swiglu(gate_.data() + begin, up_.data() + begin, count);
  });
  matmul({{w.w_down, xb_.data()}}, gate_.data(), n_tokens);
  add_residual(xb_.data(), w.ffn_post_norm, n_tokens);
}

void CpuBackend::output_logits(const ForwardBatch& batch, float* logits) {
  int rows = 0;
  for (const BatchSequence& seq : batch.sequences) {
    if (!seq.want_logits) continue;
    for (int32_t r = seq.num_tokens - seq.logit_rows; r < seq.num_tokens; ++r) {
      const size_t token = static_cast<size_t>(seq.first_token + r);
      rms_norm(x_.data() + token * config_.dim, model_->output_norm().data(), xb_.data() + static_cast<size_t>(rows) * config_.dim,
               config_.dim, config_.rms_eps);
      ++rows;
    }
  }
  matmul({{model_->output(), logits}}, xb_.data(), rows);
  if (config_.final_softcap > 0) {
    pool_.parallel_for(static_cast<size_t>(rows), [&](size_t row, size_t) { softcap(logits + row * config_.vocab_size, config_.vocab_size, config_.final_softcap); });
  }
  select_candidates(batch, logits);
}

void CpuBackend::output_hidden(const ForwardBatch& batch) {
  std::vector<std::pair<size_t, size_t>> rows;  // (token index in the batch, hidden row)
  for (const BatchSequence& seq : batch.sequences) {
    if (!seq.want_hidden) continue;
    for (int j = 0; j < seq.num_tokens; ++j) rows.emplace_back(static_cast<size_t>(seq.first_token + j), rows.size());
  }
  if (rows.empty()) return;
  const auto dim = static_cast<size_t>(config_.dim);
  pool_.parallel_for(rows.size(), [&](size_t i, size_t) {
    rms_norm(x_.data() + rows[i].first * dim, model_->output_norm().data(), batch.hidden + rows[i].second * dim, config_.dim, config_.rms_eps);
  });
}

void CpuBackend::select_candidates(const ForwardBatch& batch, const float* logits) {
  const int vocab = config_.vocab_size;
  std::vector<const BatchSequence*> rows;
  for (const BatchSequence& seq : batch.sequences) {
    if (seq.want_logits) rows.insert(rows.end(), static_cast<size_t>(seq.logit_rows), &seq);
  }
  pool_.parallel_for(rows.size(), [&](size_t row, size_t) {
    const BatchSequence& seq = *rows[row];
    const float* x = logits + row * vocab;
    if (seq.greedy && batch.greedy_tokens != nullptr) {
      batch.greedy_tokens[row] = argmax_logits(kernels_, x, vocab);
    } else if (seq.top_k > 0 && batch.top_ids != nullptr && batch.top_k_width <= vocab) {
      const size_t first = row * batch.top_k_width;
      top_k_logits(x, vocab, batch.top_k_width, batch.top_ids + first, batch.top_values + first);
    }
  });
}

}  // namespace pagedlm
