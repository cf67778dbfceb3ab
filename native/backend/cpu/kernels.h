// Hot loops of the CPU backend behind a table of function pointers, chosen once at run time: AVX2/FMA/F16C
// or AVX-512 on x86-64, NEON with or without the dot-product instructions on ARM64, where the CPU has them;
// portable C++ elsewhere. The implementations take raw pointers only, so that no inline function compiled
// for AVX2 (or ARM's dot product) can leak into code that runs on an older CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "kv/kv_dtype.h"
#include "model/tensor_type.h"

namespace pagedlm {

// One 32-value block of activations quantized to int8 for the integer dot products of Q8_0 and the other
// 32-value types (multiplies_q8_activations).
struct ActivationBlockQ8 {
  float scale;
  int8_t values[kQ8BlockElements];
  // -128 x the sum of the values: the dot product of unsigned weights (w + 128) comes back to the signed
  // one from here. Filled only by tables that store such weights (avx512).
  int32_t unsigned_offset;
};

// Rows of a weight matrix stored 4 at a time, chunk by chunk: row 4g+k's chunk c lives at
// group g, position c * 4 + k. A chunk is 8 elements (F32/F16/BF16) or one 34-byte block (Q8_0). A 4-row
// tile then reads one sequential stream, which the hardware prefetcher follows across page boundaries
// (row-major, each F16 row of 2,048 is its own page and every row starts cold). A table may pack a type
// in groups of other heights and orders (CpuKernels::packed_group_rows); the size never changes.
constexpr int kInterleaveRows = 4;
// Writes the 4-row interleaved copy of row-major `src` ([rows][row_bytes]) to `dst` (the same size).
void interleave_rows(TensorType type, const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst);

// One 256-value block of activations quantized to int8 with one scale, for the 256-value weight types (Q4_K
// and the others multiplies_q8k_activations names): their sub-block scales then multiply integer sums, and
// one float operation per 256 values remains.
struct ActivationBlockQ8K {
  float scale;
  // Of each 32 values: Q4_K's and Q5_K's minimums multiply them; packed IQ4_XS takes its +128 offset back
  // with them.
  int16_t sums[8];
  // The sums as 128 x high + low, both bytes (high signed, low in [0, 127]): vpdpbusd multiplies bytes.
  // Filled only by the table whose kernel reads them (avx512).
  int8_t sums_high[8];
  int8_t sums_low[8];
  // -32 x the sum of each 16 values: where the dot product of a Q6_K sub-block's unsigned 6-bit weights starts
  // to come out as that of the signed ones (q - 32); an eighth of it does the same for packed Q3_K (q - 4).
  // Filled only by the table whose kernels read them (avx512).
  int32_t q6_offsets[16];
  int8_t values[kQKElements];
};

struct MatmulArgs {
  TensorType type;
  const uint8_t* weights;  // [rows][row_bytes], or the table's pack_rows copy (same bytes) when `interleaved`
  size_t row_bytes;
  int cols;
  const float* x;          // [n_tokens, cols]
  int n_tokens;
  float* y;                // [n_tokens, y_stride]; y[t * y_stride + r]
  int y_stride;
  bool interleaved = false;
  // Weights of a type multiplies_q8_activations accepts, on tables with quantize_q8: x quantized per token
  // ([n_tokens][cols / 32]).
  const ActivationBlockQ8* xq = nullptr;
  // Weights of a type multiplies_q8k_activations accepts, on tables with quantize_q8k: x quantized per token
  // ([n_tokens][cols / 256]). Null: the kernels multiply float activations.
  const ActivationBlockQ8K* xk = nullptr;
};

// The weight types whose x86 and NEON kernels multiply int8 activations in blocks of 32 (Q8_0, Q4_1, Q5_0,
// Q5_1, IQ4_NL) or of 256 (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS), where the table quantizes them.
bool multiplies_q8_activations(TensorType type);
bool multiplies_q8k_activations(TensorType type);

// The query rows of one KV head's group (one token's query heads that share the KV head) with their online
// softmax state, which one KV block after another updates.
struct AttentionRows {
  const float* q;   // [rows][d]
  int rows;
  float scale;      // applied to each dot product before the softmax
  float* row_max;   // [rows] largest scaled score so far
  float* row_sum;   // [rows] sum of exp(score - row_max) so far
  float* acc;       // [rows][d] sum of exp(score - row_max) x v so far
  // > 0: each scaled score s becomes softcap x tanh(s / softcap) (Gemma 2).
  float softcap = 0;
};

// Filled with designated initializers (`.matmul_rows = ...`), so a slot cannot take another's function. The
// optional slots default to null; leaving out a required one draws -Wmissing-field-initializers.
struct CpuKernels {
  const char* name;
  // y[t, r] = dot(W[r, :], x[t, :]) for r in [row_begin, row_end) and every token t. With interleaved
  // weights, row_begin and row_end are multiples of packed_group_rows(type).
  // `scratch` holds at least `cols` floats, private to the calling thread.
  void (*matmul_rows)(const MatmulArgs& args, int row_begin, int row_end, float* scratch);
  float (*dot_f32)(const float* a, const float* b, int n);
  float (*dot_f16)(const uint16_t* a, const float* b, int n);
  void (*axpy_f32)(float alpha, const float* x, float* y, int n);    // y += alpha * x
  void (*axpy_f16)(float alpha, const uint16_t* x, float* y, int n);
  // Attention over one block of K/V rows ([n][d], contiguous): out[p] = dot(k[p], q) for p < n, and
  // acc += sum over p of weights[p] * v[p].
  void (*dot_rows_f32)(const float* k, int n, int d, const float* q, float* out);
  void (*dot_rows_f16)(const uint16_t* k, int n, int d, const float* q, float* out);
  void (*axpy_rows_f32)(const float* weights, const float* v, int n, int d, float* acc);
  void (*axpy_rows_f16)(const float* weights, const uint16_t* v, int n, int d, float* acc);
  // Non-null where a table fuses one block's attention for a group of query rows (each K/V row is read once
  // for all of them): scores against K rows [0, n), scaled, folded into `rows`' online softmax with V.
  // Null: block_attention.h composes dot_rows, exp_sum and axpy_rows per row.
  void (*attend_block_f32)(const float* k, const float* v, int n, int d, const AttentionRows& rows) = nullptr;
  void (*attend_block_f16)(const uint16_t* k, const uint16_t* v, int n, int d, const AttentionRows& rows) = nullptr;
  // The same over K rows of k_type and V rows of v_type (kv_dtype.h), each read without decoding it first:
  // any pair of f32, f16, bf16, int8 and fp8 (not int4, whose scales belong to a block's channels or to groups
  // within a row: the backend decodes int4 rows into f32 ones and passes kF32). An int8 or fp8 side takes each
  // row's scale from k_scales / v_scales ([n]); the other types ignore theirs.
  void (*attend_block_encoded)(KvDtype k_type, KvDtype v_type, const uint8_t* k, const uint8_t* v, const float* k_scales, const float* v_scales, int n,
                               int d, const AttentionRows& rows) = nullptr;
  // gate[i] = silu(gate[i]) x up[i], the Llama feed-forward activation.
  void (*swiglu)(float* gate, const float* up, int n);
  // x[i] = exp(x[i] - shift) for i < n, with shift >= every x[i]; returns their sum (softmax numerators).
  float (*exp_sum)(float* x, int n, float shift);
  // Non-null where matmul_rows reads MatmulArgs::interleaved weights: writes the copy it reads (for the
  // shapes can_interleave_rows accepts), of the same size as `src`.
  void (*pack_rows)(TensorType type, const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) = nullptr;
  // How many rows one group of pack_rows' copy of `type` holds; 0 where the table reads `type` row-major.
  int (*packed_group_rows)(TensorType type) = nullptr;
  // Non-null where Q8_0 and the other 32-value types (multiplies_q8_activations) multiply int8 activations
  // (as llama.cpp does): n values (a multiple of 32) of one token into n / 32 blocks, each scaled to its
  // largest magnitude.
  void (*quantize_q8)(const float* x, int n, ActivationBlockQ8* out) = nullptr;
  // Likewise for the 256-value types (multiplies_q8k_activations), in blocks of 256 (n a multiple of 256).
  void (*quantize_q8k)(const float* x, int n, ActivationBlockQ8K* out) = nullptr;
  // Non-null where the CPU converts to fp16 itself (F16C): out[i] = float_to_fp16(x[i]), bit for bit except
  // NaN payloads. Null: float_to_fp16 per value.
  void (*f32_to_f16)(const float* x, uint16_t* out, int n) = nullptr;
  // The largest of x[0, n), NaN skipped: -inf when n is 0 or every value is NaN (picking the sampled token
  // from a row of logits).
  float (*max_f32)(const float* x, int n);
};

// Whether `kernels` read `type` with `rows` x `cols` from a packed copy (whole groups of rows, whole chunks
// per row).
bool can_interleave_rows(const CpuKernels& kernels, TensorType type, int rows, int cols);

const CpuKernels& portable_kernels();
const CpuKernels& avx2_kernels();    // the portable table where not built for x86
const CpuKernels& avx512_kernels();  // likewise
const CpuKernels& neon_kernels();          // the portable table where not built for ARM64
const CpuKernels& neon_dotprod_kernels();  // likewise
// The tables built for this architecture, slowest (portable) first, whether or not this CPU can run them.
std::span<const CpuKernels* const> built_cpu_kernels();
// Whether this CPU can run a table ("portable", "avx2", "avx512", "neon", "neon-dotprod").
bool cpu_supports_kernels(const CpuKernels& kernels);
// The fastest table this CPU supports; PAGEDLM_CPU_KERNELS=portable|avx2|avx512|neon|neon-dotprod asks for
// one (ignored when the CPU cannot run it).
const CpuKernels& best_cpu_kernels();

}  // namespace pagedlm
