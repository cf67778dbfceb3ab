// Launchers of pagedlm's CUDA kernels. Each takes a params struct and a stream and returns the CUDA error
// code (cudaGetErrorString gives its message); launchers never allocate or synchronize, so a decode step can
// be captured in a CUDA graph. Every pointer in a params struct is device memory unless it says otherwise.
// Built into libpagedlm_kernels (cmake/cuda.cmake), which the engine opens only when a GPU is asked for, so
// the addon loads on machines without CUDA; the library exports these launchers for test/gpu and bench/kernels
// (the seam: native/backend/cuda/cuda_entry.h). Each kernel has a CPU twin that its test compares it with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

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
  uint16_t* half_out = nullptr;  // non-null: the rows go here as a GEMM's f16 (bf16) input instead of to out
  bool bfloat = false;
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
struct SwigluParams {    // row t: silu(gate) * up over `width` values
  const float* gate;    // token t's row at gate + t * in_stride
  const float* up;      // token t's row at up + t * in_stride (gate + width in a gate|up row)
  float* out;           // [n_tokens, width]; may be gate when in_stride == width
  uint16_t* half_out;   // non-null: the rows go here as a GEMM's f16 (bf16) input instead of to out
  bool bfloat;
  int n_tokens;
  int width;
  int in_stride;        // >= width
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

// Rows of activations to f16 for a tensor-core GEMM, each multiplied by the power of two (at most 1) that brings
// its largest magnitude within f16's range, so no value becomes inf; row_scales[r] gets the inverse, which
// launch_unscale_rows applies to the GEMM's output row. Powers of two are exact in binary: only values far
// below their row's largest lose bits, as they do in the GEMM's sum anyway.
struct ToHalfRowsParams {
  const float* x;      // [rows, cols]
  uint16_t* out;       // [rows, cols] f16 bits
  float* row_scales;   // [rows]
  int rows;
  int cols;
};
cudaError_t launch_to_half_rows(const ToHalfRowsParams& params, cudaStream_t stream);

struct UnscaleRowsParams {  // y[r, c] = y[r, c] * row_scales[r] (+ bias[c] when bias is not null)
  float* y;                 // [rows, cols]
  const float* row_scales;  // [rows]
  const float* bias;        // [cols] or nullptr
  int rows;
  int cols;
  float* accumulate_into = nullptr;  // non-null: [rows, cols] += the unscaled rows, y left as it is (a residual add)
};
cudaError_t launch_unscale_rows(const UnscaleRowsParams& params, cudaStream_t stream);

struct GatherRowsParams {  // dst[i] = src[rows[i]]
  const float* src;        // [*, cols]
  const int32_t* rows;     // [n_rows]
  float* dst;              // [n_rows, cols]
  int n_rows;
  int cols;
};
cudaError_t launch_gather_rows(const GatherRowsParams& params, cudaStream_t stream);

// ---- Weights on the device -------------------------------------------------------------------------------
// Layouts, each keeping every 16-byte piece a kernel reads aligned (rows back to back, so a matrix's rows
// can be placed in a slice of a larger allocation):
//   F32, F16, BF16: the rows as stored in the GGUF file.
//   Q8_0: split at upload (launch_split_q8_0) into int8 rows [rows, cols] and a table of f16 block scales.
//   Q4_0: split at upload (device_layout, on the host) into each block's 16 nibble bytes back to back (byte j:
//         value j in the low nibble, j + 16 in the high) and a table of f16 block scales.
//   Q4_K: as stored (its 144-byte blocks keep every piece aligned).
//   Q6_K: each 210-byte block as stored, then 14 zero bytes: 224-byte blocks.
// Every other quantized type is expanded to F16 at upload.
struct DeviceMatrix {
  TensorType type;
  const void* data;        // the rows in the layout above
  const uint16_t* scales;  // Q8_0 and Q4_0 only: f16 [rows, cols / 32]
  int rows;
  int cols;                // a multiple of the type's block (32, or 256 for the K types)
};

// The types kept quantized whose layout device_layout builds on the host (Q8_0 is split on the device).
bool kept_quantized(TensorType type);
struct HostLayout {
  std::vector<uint8_t> data;
  std::vector<uint16_t> scales;  // Q4_0 only
};
// `rows` GGUF rows of a kept_quantized type (host memory) in their device layout.
HostLayout device_layout(TensorType type, const uint8_t* stored_rows, int rows, int cols);

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

// A quantized matrix (Q8_0, Q4_0, Q4_K, Q6_K) expanded to f16, for the tensor-core GEMMs of prefill (a scratch
// buffer per step); each value is the CPU's dequantize_row value rounded once to f16.
struct DequantizeParams {
  DeviceMatrix weights;
  uint16_t* out;  // [rows, cols] f16
};
cudaError_t launch_dequantize(const DequantizeParams& params, cudaStream_t stream);

// ---- Embedding gather (CPU twin: dequantize_row of each token's row) ------------------------------------
struct EmbeddingParams {
  DeviceMatrix table;      // [vocab, dim]: F32, F16, BF16 or split Q8_0
  const int32_t* tokens;   // [n_tokens]; an id outside [0, vocab) gives a row of zeros
  float* out;              // [n_tokens, dim]
  int n_tokens;
};
cudaError_t launch_embedding(const EmbeddingParams& params, cudaStream_t stream);

// ---- Matrix x a few activation vectors: the decode steps' matmuls (CPU twin: the dequantized product) -------
// One launch reads the weights once for up to kMaxMatvecTokens tokens, with the layer's RMSNorm folded in
// front (each block computes the rows' sums of squares itself) and the bias, residual add or SwiGLU folded
// behind. F32, F16, BF16 and Q8_0 weights multiply float activations; Q4_0, Q4_K and Q6_K multiply int8
// activations (x times norm_weight quantized per 32 values with a float scale inside the launch) with __dp4a.
constexpr int kMaxMatvecTokens = 8;
enum class MatvecOutput { kStore, kAccumulate, kSwiglu };
struct MatvecParams {
  DeviceMatrix weights;      // rows are read with 16-byte loads: matvec_supported
  const float* x;            // [n_tokens, weights.cols], 16-byte aligned; must not overlap y
  const float* norm_weight;  // [weights.cols] or null; non-null: each x row is RMS-normalized (norm_eps) and
                             // multiplied by norm_weight before the product (the layer's RMSNorm folded in)
  float norm_eps;
  const float* bias;         // [weights.rows] or null: added to W x before the output step
  float* y;                  // kStore: y[t, r] = (W x_t)[r] + bias[r]; kAccumulate: y[t, r] += that (the residual
                             // add folded in); kSwiglu: weight rows [0, R/2) are the gate and [R/2, R) the up
                             // projection, y[t, i] = silu(gate_i) * up_i and y is [n_tokens, R/2]
  MatvecOutput output;
  int n_tokens;              // 1 .. kMaxMatvecTokens: decode steps; larger batches go to cuBLAS
};
// Whether launch_matvec takes this matrix: a type it reads and rows that start 16-byte aligned.
bool matvec_supported(const DeviceMatrix& weights);
cudaError_t launch_matvec(const MatvecParams& params, cudaStream_t stream);

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

// RoPE and the KV append in one launch (CPU twin: launch_rope then launch_kv_append, bit for bit): reads the
// unrotated Q, K and V rows of a QKV projection (one concatenated row per token, or three arrays), writes the
// rotated queries to q_out and the rotated K and V rows into the pool in their types. The pool's V is not
// inside K (latent attention takes launch_rope and launch_kv_append). Tokens landing in one block piece are
// consecutive in slot order, as for launch_kv_append.
constexpr int kMaxRopeKvHeadDim = 256;
struct RopeKvAppendParams {
  const float* q;                     // token t's [n_heads, head_dim] at q + t * q_stride
  const float* k;                     // token t's [num_kv_heads, head_dim] at k + t * kv_stride
  const float* v;                     // token t's [num_kv_heads, head_dim] at v + t * kv_stride
  int q_stride;
  int kv_stride;
  float* q_out;                       // [n_tokens, n_heads, head_dim]; may be q when q_stride is n_heads * head_dim
  const int32_t* positions;           // [n_tokens]
  const float* inverse_frequencies;   // [rope_dim / 2], as for RopeParams
  const int32_t* slots;               // [n_tokens], as for KvAppendParams
  PagedKv kv;                         // head_dim <= kMaxRopeKvHeadDim
  int n_tokens;
  int n_heads;
  int rope_dim;
  RopeLayout layout;
  float position_scale;
};
cudaError_t launch_rope_kv_append(const RopeKvAppendParams& params, cudaStream_t stream);

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
