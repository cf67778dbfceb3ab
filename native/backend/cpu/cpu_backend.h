// The CPU backend: the decoder's forward pass (every architecture of llama_model.h) over a batch of tokens from many sequences, with K/V kept in a
// paged pool that attention reads through each sequence's block table. Matmuls and attention are split
// across a ThreadPool. Engine thread only.
#pragma once

#include <initializer_list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"
#include "backend/cpu/thread_pool.h"
#include "common/huge_page_buffer.h"
#include "model/llama_model.h"

namespace pagedlm {

class CpuBackend final : public Backend {
 public:
  // Allocates the KV pool (layout.num_blocks blocks); kOutOfMemory when it cannot. `context_length`: the
  // context the engine serves, which picks LongRoPE factors as llama.cpp does (0: the model's own).
  static Result<std::unique_ptr<CpuBackend>> create(std::shared_ptr<const LlamaModel> model, KvLayout layout, int threads, int context_length = 0);
  // The same on another backend's workers (a draft model beside its target): both run on the engine
  // thread, one forward pass at a time, so they never call the pool at once.
  static Result<std::unique_ptr<CpuBackend>> create(std::shared_ptr<const LlamaModel> model, KvLayout layout, std::shared_ptr<ThreadPool> pool,
                                                    int context_length = 0);

  const KvLayout& kv_layout() const override { return layout_; }
  Status forward(const ForwardBatch& batch, float* logits) override;
  bool computes_hidden_states() const override { return true; }
  size_t block_bytes() const override;
  Status export_block(BlockId block, uint8_t* out) const override;
  Status import_block(BlockId block, const uint8_t* in) override;
  Status copy_block(BlockId from, BlockId to) override;

  int threads() const { return static_cast<int>(pool_.size()); }
  const std::shared_ptr<ThreadPool>& thread_pool() const { return pool_owner_; }
  // Bytes of the packed copy of the weights the kernels read (0 where they read the model's rows).
  size_t packed_weight_bytes() const { return packed_weights_.size(); }
  const char* kernels_name() const { return kernels_.name; }

 private:
  // `packed`: the matrices the kernels read from a packed copy (kernels.h), in the order a step reads them.
  CpuBackend(std::shared_ptr<const LlamaModel> model, KvLayout layout, std::shared_ptr<ThreadPool> pool, const std::vector<const WeightMatrix*>& packed,
             int context_length);
  // Visits each contiguous piece of one block's storage (K, V, and their scales, per layer) in a fixed order.
  template <typename Visit>
  void for_each_block_piece(BlockId block, Visit visit) const;

  // Per-token positions and the sequence each token belongs to, for one batch.
  struct TokenSlots {
    std::vector<int32_t> position;  // [n_tokens]
    std::vector<int32_t> sequence;  // [n_tokens]
  };

  void embed(const ForwardBatch& batch);
  void attention_block(int layer, const ForwardBatch& batch, const TokenSlots& slots);
  void ffn_block(int layer, int n_tokens);
  void rope_and_store_kv(int layer, const ForwardBatch& batch, const TokenSlots& slots);
  // Multi-head latent attention (ModelConfig::latent_attention) in its absorbed form.
  void latent_attention_block(int layer, const ForwardBatch& batch, const TokenSlots& slots);
  // Each token's latent KV row (k_) into the pool.
  void store_latent_kv(int layer, const ForwardBatch& batch, const TokenSlots& slots);
  // For each head h and token t: out[t, h] = heads[h] x in[t, h][in_first, in_first + in_width), where the
  // [t, h] rows of `in` are in_stride wide and those of `out` out_stride wide.
  void per_head_matmul(const std::vector<WeightMatrix>& heads, const float* in, int in_stride, int in_first, int in_width, float* out, int out_stride,
                       int n_tokens);
  // Row `slot` of K or V (head_dim floats) into block piece `piece` (KvLayout::piece_index) in its type.
  void store_kv_row(KvRole role, const float* row, size_t piece, int slot);
  // A block piece's rows and its scales (null for the unscaled types) in the pool.
  uint8_t* piece_rows(KvRole role, size_t piece) const;
  uint8_t* piece_scales(KvRole role, size_t piece) const;
  void attend(int layer, const ForwardBatch& batch);
  // Attention of tokens [first, end) of one sequence, for the query heads that share `kv_head`.
  // `window` > 0: token p reads positions (p - window, p] only (LayerAttention::window).
  void attend_chunk(int layer, int window, const BatchSequence& seq, int kv_head, int first, int end, float* scratch);
  // One block's K/V rows, each side in its pool encoding or decoded to f32, for one token's query rows;
  // the scales are int8/fp8 rows' own.
  void attend_rows(KvDtype k_type, KvDtype v_type, const uint8_t* k, const uint8_t* v, const float* k_scales, const float* v_scales, int n,
                   const AttentionRows& rows, float* scores) const;
  // Whether attention reads rows of `dtype` where they lie (else decodes a block of them into floats).
  bool reads_in_place(KvDtype dtype) const;
  void output_logits(const ForwardBatch& batch, float* logits);
  // The final norm of every token of the want_hidden sequences, into batch.hidden.
  void output_hidden(const ForwardBatch& batch);
  // Fills the batch's greedy_tokens / top_ids for the rows whose sampler needs only those (backend.h).
  void select_candidates(const ForwardBatch& batch, const float* logits);
  // Copies each of `matrices` into packed_weights_ in the kernels' layout, and points interleaved_ at each copy.
  void interleave_weights(const std::vector<const WeightMatrix*>& matrices);
  // Copies w's rows into the kernels' packed layout at `out` (w.rows x w.row_bytes), on all threads.
  void pack_matrix(const WeightMatrix& w, uint8_t* out);
  // Each token's row of x ([n_tokens][cols]) quantized into `out` by a kernel-table quantizer, in parallel.
  template <typename Block>
  const Block* quantize_activations(void (*quantize)(const float*, int, Block*), size_t block_elements, const float* x, int n_tokens, int cols,
                                    std::vector<Block>& out);
  // One product of a shared input: y[t, :] = W x[t, :] for every token (+ bias when given).
  struct MatmulOutput {
    const WeightMatrix& w;
    float* y;
    const std::vector<float>* bias = nullptr;
  };
  // The products of one input with each matrix (Q, K and V; gate and up), split by rows across the pool in
  // one round, the input quantized once: one round's wait for the slowest task instead of one per matrix.
  void matmul(std::initializer_list<MatmulOutput> outputs, const float* x, int n_tokens);
  void norm_rows(const float* x, const std::vector<float>& weight, float* out, int n_tokens);
  // RMSNorm of each head (head_dim wide) of `heads` heads per token, in place (qk_norm).
  void norm_heads(float* x, const std::vector<float>& weight, int heads, int n_tokens);
  // y = RMSNorm(y) with the post-norm `weight` when it has one, then x += y: the residual add.
  void add_residual(float* y, const std::vector<float>& post_norm, int n_tokens);

  std::shared_ptr<const LlamaModel> model_;
  const ModelConfig& config_;
  KvLayout layout_;
  std::shared_ptr<ThreadPool> pool_owner_;  // possibly shared with other backends (create's pool overload)
  ThreadPool& pool_;
  const CpuKernels& kernels_;

  // The KV pool: K rows in layout_.k_dtype, V rows in layout_.v_dtype, and the scales of the scaled types; no
  // V array (v_data_, v_scales_ empty) with layout_.v_in_k.
  // [layers][num_blocks][kv_heads][block_size] rows (kv_layout.h). In huge pages: attention reads a sequence's blocks in
  // 2 KB pieces scattered over the pool, and with 4 KiB pages nearly each piece would be a TLB miss whose page
  // walk misses the caches too (cold decode attention: docs/benchmarks.md).
  HugePageBuffer k_data_;
  HugePageBuffer v_data_;
  std::vector<uint8_t> k_scales_;   // [layers][num_blocks][kv_heads] pieces of KvLayout::piece_scale_bytes
  std::vector<uint8_t> v_scales_;

  // Step activations, grown to the largest batch seen.
  std::vector<float> x_;      // [n_tokens, dim] residual stream
  std::vector<float> xb_;     // [n_tokens, dim]
  std::vector<float> q_;      // [n_tokens, q_dim]
  std::vector<float> k_;      // [n_tokens, kv_dim]
  std::vector<float> v_;      // [n_tokens, kv_dim]
  std::vector<float> att_;    // [n_tokens, q_dim]
  // Latent attention only: the query LoRA's rows, each head's query before absorption, each head's output
  // (wo's input), and one head's input and output rows for per_head_matmul.
  std::vector<float> query_lora_;    // [n_tokens, q_lora_rank]
  std::vector<float> head_queries_;  // [n_tokens, n_heads, qk_nope_dim + rope_dim]
  std::vector<float> head_outputs_;  // [n_tokens, attention_output_dim]
  std::vector<float> head_in_;
  std::vector<float> head_out_;
  std::vector<float> gate_;   // [n_tokens, ffn_dim]
  std::vector<float> up_;     // [n_tokens, ffn_dim]
  std::vector<ActivationBlockQ8> xq_;   // activations quantized for Q8_0 weights
  std::vector<ActivationBlockQ8K> xk_;  // ... and for Q4_K weights
  // Interleaved copies of the weight matrices, by the model's matrix they replace, all in one huge-page
  // arena (packed_weights_) in the order a step reads them. Decode streams every byte of it per token: on
  // 4 KiB pages that is a TLB miss per 4 KiB, on 2 MiB pages one per 2 MiB. The model's own (memory-mapped)
  // rows are not read again, except the embedding rows.
  HugePageBuffer packed_weights_;
  std::unordered_map<const WeightMatrix*, const uint8_t*> interleaved_;
  std::vector<std::vector<float>> thread_scratch_;  // [threads][largest matmul input row]
  struct MatmulTask {
    int output;  // index into matmul_args_
    int row_begin;
    int row_end;
  };
  std::vector<MatmulArgs> matmul_args_;  // one matmul call's outputs
  std::vector<MatmulTask> matmul_tasks_;
  // Query tokens of one sequence per attention task: their rows share each K/V block read.
  static constexpr int kQueryChunk = 8;
  std::vector<std::vector<float>> attention_scratch_;  // [threads][see the constructor]
  struct AttentionTask {
    int sequence;
    int kv_head;
    int first;  // index of the chunk's first token within its sequence
  };
  std::vector<AttentionTask> attention_tasks_;
  // The layers' distinct RoPE settings (Gemma 3's local and global layers differ), each layer's index into
  // them, and each setting's angles for the step's tokens.
  std::vector<RopeSettings> rope_settings_;
  std::vector<int> layer_rope_;                 // [n_layers]
  std::vector<std::vector<RopeAngles>> rope_;   // [settings][n_tokens]
};

}  // namespace pagedlm
