// Launchers of pagedlm's CUDA kernels. Each takes a params struct and a stream and returns the CUDA error
// code (cudaGetErrorString gives its message); launchers never allocate or synchronize, so a decode step can
// be captured in a CUDA graph. Every pointer in a params struct is device memory unless it says otherwise.
// Built into libpagedlm_kernels (cmake/cuda.cmake), which the engine opens only when a GPU is asked for, so
// the addon loads on machines without CUDA; the library exports these launchers for test/gpu and bench/kernels
// (the seam: native/backend/cuda/cuda_entry.h). Each kernel has a CPU twin that its test compares it with.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda_api.h"
#include "kv/kv_dtype.h"
#include "model/llama_model.h"
#include "model/tensor_type.h"

namespace pagedlm::cuda {

// ---- RMSNorm (CPU twin: rms_norm) ----------------------------------------------------------------------
struct RmsNormParams {
  const float* x;       // [rows, dim]
  const float* weight;  // [dim]
  float* out;           // [rows, dim]; may be x
  int rows;
  int dim;
  float eps;
};
cudaError_t launch_rms_norm(const RmsNormParams& params, cudaStream_t stream);

// ---- RoPE, normal and NeoX layouts (CPU twin: rope_apply) ------------------------------------------------
struct RopeParams {
  float* q;                           // [n_tokens, n_heads, head_dim], rotated in place
  float* k;                           // [n_tokens, n_kv_heads, head_dim], rotated in place; may be null
  const int32_t* positions;           // [n_tokens]
  const float* inverse_frequencies;   // [rope_dim / 2]: rope_inverse_frequencies(), llama3 factors applied
  int n_tokens;
  int n_heads;
  int n_kv_heads;
  int head_dim;
  int rope_dim;                       // even, <= head_dim: the leading dims that rotate
  RopeLayout layout;
  float position_scale;               // linear scaling: positions are multiplied by it
};
cudaError_t launch_rope(const RopeParams& params, cudaStream_t stream);

// ---- SwiGLU (CPU twin: swiglu) ---------------------------------------------------------------------------
struct SwigluParams {
  float* gate;      // [n], becomes silu(gate) * up
  const float* up;  // [n]
  size_t n;
};
cudaError_t launch_swiglu(const SwigluParams& params, cudaStream_t stream);

// ---- Element-wise steps between the big kernels (CPU twins: plain loops, float_to_fp16 / float_to_bf16) --
struct AddParams {  // x += y
  float* x;
  const float* y;
  size_t n;
};
cudaError_t launch_add(const AddParams& params, cudaStream_t stream);

struct AddBiasParams {  // y[r, c] += bias[c]
  float* y;             // [rows, cols]
  const float* bias;    // [cols]
  int rows;
  int cols;
};
cudaError_t launch_add_bias(const AddBiasParams& params, cudaStream_t stream);

struct ToHalfParams {  // out = f16 (or bf16) bits of x, rounded to nearest even: the activations of f16 / bf16 GEMMs
  const float* x;
  uint16_t* out;
  size_t n;
  bool bfloat;
};
cudaError_t launch_to_half(const ToHalfParams& params, cudaStream_t stream);

struct GatherRowsParams {  // dst[i] = src[rows[i]]
  const float* src;        // [*, cols]
  const int32_t* rows;     // [n_rows]
  float* dst;              // [n_rows, cols]
  int n_rows;
  int cols;
};
cudaError_t launch_gather_rows(const GatherRowsParams& params, cudaStream_t stream);

// ---- Weights on the device -------------------------------------------------------------------------------
// F32, F16 and BF16 rows as stored in the GGUF file. Q8_0 is split at upload (launch_split_q8_0) into
// 16-byte-aligned int8 rows and a separate table of f16 block scales, so kernels read both with wide loads.
struct DeviceMatrix {
  TensorType type;
  const void* data;        // F32/F16/BF16: [rows, cols] elements; Q8_0: int8 quants [rows, cols]
  const uint16_t* scales;  // Q8_0 only: f16 [rows, cols / 32]
  int rows;
  int cols;                // a multiple of 32 for Q8_0
};

struct SplitQ8_0Params {
  const uint8_t* blocks;  // GGUF Q8_0 rows: [rows, cols / 32] blocks of {f16 scale, 32 x int8}
  int8_t* quants;         // [rows, cols]
  uint16_t* scales;       // [rows, cols / 32]
  int rows;
  int cols;
};
cudaError_t launch_split_q8_0(const SplitQ8_0Params& params, cudaStream_t stream);

// A split Q8_0 matrix expanded to f16, for the tensor-core GEMMs of prefill (a scratch buffer per step).
struct DequantizeQ8_0Params {
  DeviceMatrix weights;  // type Q8_0 (split)
  uint16_t* out;         // [rows, cols] f16
};
cudaError_t launch_dequantize_q8_0(const DequantizeQ8_0Params& params, cudaStream_t stream);

// ---- Embedding gather (CPU twin: dequantize_row of each token's row) ------------------------------------
struct EmbeddingParams {
  DeviceMatrix table;      // [vocab, dim]: F32, F16, BF16 or split Q8_0
  const int32_t* tokens;   // [n_tokens]; an id outside [0, vocab) gives a row of zeros
  float* out;              // [n_tokens, dim]
  int n_tokens;
};
cudaError_t launch_embedding(const EmbeddingParams& params, cudaStream_t stream);

// ---- Q8_0 matrix x a few activation vectors (CPU twin: the dequantized product) -------------------------
constexpr int kMaxMatvecTokens = 8;
struct Q8_0MatvecParams {
  DeviceMatrix weights;  // type Q8_0 (split)
  const float* x;        // [n_tokens, cols]
  float* y;              // [n_tokens, rows]
  int n_tokens;          // 1 .. kMaxMatvecTokens: decode steps; larger batches go to cuBLAS
};
cudaError_t launch_q8_0_matvec(const Q8_0MatvecParams& params, cudaStream_t stream);

// ---- The paged KV pool ----------------------------------------------------------------------------------
// One layer of the pool, laid out as on the CPU (kv/kv_layout.h), so a block's bytes move between backends
// unchanged: K is [num_blocks][num_kv_heads][block_size] rows of head_dim elements of k_dtype, V the same in
// v_dtype, and each scaled side keeps kv_piece_scale_bytes(type, role) of scales per (block, head) piece:
// int8/fp8 a float per row, int4 K an f16 per channel of the piece, int4 V an f16 per kInt4ValueGroup values
// of each row. For a pool with V inside the K rows (kv_layout.h's v_in_k: multi-head latent attention), v and
// v_scales are k and k_scales and v_dtype is k_dtype: the attention kernels read V rows at the K row's index,
// width and scale layout, so no V array exists, and the output's values past the V width are the caller's
// to ignore.
struct PagedKv {
  void* k;
  void* v;          // may be k (V inside the K rows)
  void* k_scales;   // scaled K types only
  void* v_scales;   // scaled V types only; may be k_scales
  KvDtype k_dtype;
  KvDtype v_dtype;  // k_dtype when v is k
  int num_kv_heads;
  int head_dim;     // 8, 16, 32, 64, 80, 96, 128 or 256
  int block_size;   // 16 or 32 (any positive size works)
};

// Writes new tokens' K and V rows into their slots, each side in its type (CPU twin: kv_store, bit for bit,
// int4 K's requantization of a piece's earlier rows included). With kv.v == kv.k (V inside the K rows) only
// the K rows are written. The tokens that land in one block piece must be consecutive in the batch, in slot
// order (as a sequence's new tokens are): int4 K writes them in that order.
struct KvAppendParams {
  const float* k;        // [n_tokens, num_kv_heads, head_dim]
  const float* v;        // ignored when kv.v == kv.k
  const int32_t* slots;  // [n_tokens]: block * block_size + slot in block; negative: skip the token
  PagedKv kv;
  int n_tokens;
};
cudaError_t launch_kv_append(const KvAppendParams& params, cudaStream_t stream);

bool attention_head_dim_supported(int head_dim);

// Decode: one query token per sequence against its whole context. The context is split into partitions
// of `partition_size` tokens computed in parallel and merged with a log-sum-exp reduction, so long
// contexts at small batch still fill the GPU. Query heads sharing a KV head read its blocks once.
struct DecodeAttentionParams {
  const float* q;                // [num_seqs, num_heads, head_dim]
  float* out;                    // [num_seqs, num_heads, head_dim]
  PagedKv kv;
  const int32_t* block_tables;   // [num_seqs, max_blocks_per_seq]
  const int32_t* context_lens;   // [num_seqs]: positions each query reads, its own included
  int num_seqs;
  int num_heads;                 // a multiple of kv.num_kv_heads
  int max_blocks_per_seq;
  int max_context_len;           // >= every context_lens[i]; sizes the grid and the workspace
  int partition_size;            // tokens per partition, a positive multiple of 32 (any length: the softmax is online)
  float scale;                   // usually 1 / sqrt(head_dim)
  float* workspace;              // decode_attention_workspace_bytes(); may be null when one partition covers max_context_len
  int window = 0;                // > 0: the query reads only its last `window` positions (a sliding-window layer)
};
// Thread blocks of the decode kernel one SM holds at once for this pool and head count (from their shared
// memory and threads): SM count x this is the `target_blocks` of the two functions below.
int decode_attention_blocks_per_sm(const PagedKv& kv, int num_heads);
// A partition size that gives about `target_blocks` thread blocks for this batch, never partitions under a
// few hundred tokens: a batch that fills the device alone gets one partition per sequence.
int choose_decode_partition(int num_seqs, int num_kv_heads, int max_context_len, int target_blocks);
size_t decode_attention_workspace_bytes(const DecodeAttentionParams& params);
// The largest decode_attention_workspace_bytes() of any batch whose partition size choose_decode_partition
// picks with `target_blocks`, contexts up to max_context_len: a workspace this size serves every such step.
size_t decode_attention_workspace_limit(int num_heads, int num_kv_heads, int head_dim, int max_context_len, int target_blocks);
cudaError_t launch_decode_attention(const DecodeAttentionParams& params, cudaStream_t stream);

// Prefill: each sequence's new tokens against its cached prefix and themselves, causal, tiled with an online
// softmax. Sequence s's query rows are [query_starts[s], query_starts[s + 1]); its first new token sits at
// position start_positions[s] (the cached prefix length), and its K/V are already appended to the pool.
struct PrefillAttentionParams {
  const float* q;                   // [n_tokens, num_heads, head_dim]
  float* out;                       // [n_tokens, num_heads, head_dim]
  PagedKv kv;
  const int32_t* block_tables;      // [num_seqs, max_blocks_per_seq]
  const int32_t* query_starts;      // [num_seqs + 1]
  const int32_t* start_positions;   // [num_seqs]
  int num_seqs;
  int num_heads;
  int max_blocks_per_seq;
  int max_query_len;                // >= every sequence's new-token count; sizes the grid
  float scale;
  int window = 0;                   // > 0: a token at position p reads keys (p - window, p] only
};
cudaError_t launch_prefill_attention(const PrefillAttentionParams& params, cudaStream_t stream);

// ---- Sampling on the device --------------------------------------------------------------------------------
// Repetition / frequency / presence penalties (CPU twin: Sampler's apply_penalties). Each row lists the
// distinct tokens of its penalty window with their counts.
struct PenaltyRow {
  float repetition;  // 1 = off
  float frequency;   // 0 = off
  float presence;    // 0 = off
};
struct PenaltyParams {
  float* logits;                // [rows, vocab], in place
  const PenaltyRow* penalties;  // [rows]
  const int32_t* row_starts;    // [rows + 1] into token_ids / token_counts
  const int32_t* token_ids;     // distinct ids per row
  const int32_t* token_counts;  // occurrences of each id in the window
  int rows;
  int vocab;
};
cudaError_t launch_penalties(const PenaltyParams& params, cudaStream_t stream);

// Greedy: the largest logit of each row, the lowest id on ties, NaN ranked last.
struct ArgmaxParams {
  const float* logits;  // [rows, vocab]
  int32_t* ids;         // [rows]
  int rows;
  int vocab;
};
cudaError_t launch_argmax(const ArgmaxParams& params, cudaStream_t stream);

// The k largest logits of each row, sorted by value then id (the CPU sampler's order), so the host finishes
// temperature / top-p / min-p / the draw on k values instead of copying the whole vocabulary.
constexpr int kMaxTopK = 1024;
struct TopKParams {
  const float* logits;  // [rows, vocab]
  int32_t* ids;         // [rows, k]
  float* values;        // [rows, k]; NaN logits come back as -inf
  int rows;
  int vocab;
  int k;                // 1 .. min(vocab, kMaxTopK)
};
cudaError_t launch_top_k(const TopKParams& params, cudaStream_t stream);

}  // namespace pagedlm::cuda
