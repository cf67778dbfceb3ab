// The x86 kernel table, included by kernels_avx2.cpp (AVX2 + FMA + F16C) and kernels_avx512.cpp (the same plus
// AVX-512 F/BW/VL/VNNI), each compiled with its own -m flags and called only after a run-time CPU check. So
// neither this file nor the family files under x86/ include a header whose inline functions other files also
// use (ODR: the linker could keep the wide copy), and everything in them has internal linkage. Before
// including it, define PAGEDLM_X86_AVX512 (0 or 1), which picks:
//   AVX2: 16 ymm registers, so float tiles of 4 rows x 3 tokens and Q8_0 tiles of 4 x 2, and the Q8_0
//         block dot product through maddubs + madd;
//   AVX-512: 32 ymm registers, so 4 x 4 tiles, and vpdpbusd; packed Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
//         and IQ4_XS weights are read 512 bits at a time with rows in lanes (x86/q8_0.inl). The float
//         kernels stay 256 bits wide.
// Within one table, every tile shape runs the same operations per (row, token), so a token's result never
// depends on its neighbours in the batch.
//
// The families, one file each under x86/: common.inl (loaders, sums, tile drivers), quantize.inl (int8
// activations), float.inl (F32/F16/BF16), q8_0.inl, q4_k.inl, q6_k.inl, unpacked.inl (the driver of the types
// below, which unpack each block to int8 once per chunk of tokens) with q4_1.inl, q5_0.inl, q5_1.inl,
// iq4_nl.inl, q2_k.inl, q3_k.inl, q5_k.inl, iq4_xs.inl, then elementwise.inl, attention.inl.
// This file dispatches matmul_rows and packing by weight type and fills the table.
#include "backend/cpu/x86/attention.inl"
#include "backend/cpu/x86/common.inl"
#include "backend/cpu/x86/elementwise.inl"
#include "backend/cpu/x86/float.inl"
#include "backend/cpu/x86/iq4_nl.inl"
#include "backend/cpu/x86/iq4_xs.inl"
#include "backend/cpu/x86/q2_k.inl"
#include "backend/cpu/x86/q3_k.inl"
#include "backend/cpu/x86/q4_1.inl"
#include "backend/cpu/x86/q4_k.inl"
#include "backend/cpu/x86/q5_0.inl"
#include "backend/cpu/x86/q5_1.inl"
#include "backend/cpu/x86/q5_k.inl"
#include "backend/cpu/x86/q6_k.inl"
#include "backend/cpu/x86/q8_0.inl"
#include "backend/cpu/x86/quantize.inl"

namespace pagedlm {

namespace {

void matmul_rows(const MatmulArgs& a, int row_begin, int row_end, float* scratch) {
  switch (a.type) {
    case TensorType::kF32: return matmul_float_any<F32Row, float>(a, row_begin, row_end);
    case TensorType::kF16: return matmul_float_any<F16Row, uint16_t>(a, row_begin, row_end);
    case TensorType::kBF16: return matmul_float_any<BF16Row, uint16_t>(a, row_begin, row_end);
    case TensorType::kQ8_0:
      if (a.xq == nullptr) break;  // the caller did not quantize the activations: dequantize instead
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_q8_lanes(a, row_begin, row_end);
#else
      if (a.interleaved) return matmul_q8<kInterleaveRows>(a, row_begin, row_end);
#endif
      return matmul_q8<1>(a, row_begin, row_end);
    case TensorType::kQ4_K:
      if (a.xk == nullptr) break;
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_q4k_lanes(a, row_begin, row_end);
#endif
      return matmul_q4k(a, row_begin, row_end);
    case TensorType::kQ6_K:
      if (a.xk == nullptr) break;
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_q6k_lanes(a, row_begin, row_end);
#endif
      return matmul_q6k(a, row_begin, row_end);
    case TensorType::kQ4_1:
      if (a.xq == nullptr) break;
      return matmul_q4_1(a, row_begin, row_end);
    case TensorType::kQ5_0:
      if (a.xq == nullptr) break;
      return matmul_q5_0(a, row_begin, row_end);
    case TensorType::kQ5_1:
      if (a.xq == nullptr) break;
      return matmul_q5_1(a, row_begin, row_end);
    case TensorType::kIQ4_NL:
      if (a.xq == nullptr) break;
      return matmul_iq4_nl(a, row_begin, row_end);
    case TensorType::kQ2_K:
      if (a.xk == nullptr) break;
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_q2k_lanes(a, row_begin, row_end);
#endif
      return matmul_q2k(a, row_begin, row_end);
    case TensorType::kQ3_K:
      if (a.xk == nullptr) break;
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_q3k_lanes(a, row_begin, row_end);
#endif
      return matmul_q3k(a, row_begin, row_end);
    case TensorType::kQ5_K:
      if (a.xk == nullptr) break;
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_q5k_lanes(a, row_begin, row_end);
#endif
      return matmul_q5k(a, row_begin, row_end);
    case TensorType::kIQ4_XS:
      if (a.xk == nullptr) break;
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_iq4_xs_lanes(a, row_begin, row_end);
#endif
      return matmul_iq4_xs(a, row_begin, row_end);
    default: break;
  }
  // Types without a register loader: dequantize one row at a time into the thread's scratch.
  for (int r = row_begin; r < row_end; ++r) {
    dequantize_row(a.type, a.weights + static_cast<size_t>(r) * a.row_bytes, scratch, a.cols);
    row_all_tokens(F32Row<1>{scratch}, a, 0, a.n_tokens, r);
  }
}

void pack_rows(TensorType type, const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
#if PAGEDLM_X86_AVX512
  if (type == TensorType::kQ8_0) return pack_q8_lanes(src, row_bytes, rows, dst);
  if (type == TensorType::kQ4_K) return pack_q4k_lanes(src, row_bytes, rows, dst);
  if (type == TensorType::kQ6_K) return pack_q6k_lanes(src, row_bytes, rows, dst);
  if (type == TensorType::kQ2_K) return pack_q2k_lanes(src, row_bytes, rows, dst);
  if (type == TensorType::kQ3_K) return pack_q3k_lanes(src, row_bytes, rows, dst);
  if (type == TensorType::kQ5_K) return pack_q5k_lanes(src, row_bytes, rows, dst);
  if (type == TensorType::kIQ4_XS) return pack_iq4_xs_lanes(src, row_bytes, rows, dst);
#endif
  interleave_rows(type, src, row_bytes, rows, dst);
}

int packed_group_rows(TensorType type) {
  switch (type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16: return kInterleaveRows;
#if PAGEDLM_X86_AVX512
    case TensorType::kQ8_0:
    case TensorType::kQ2_K:
    case TensorType::kQ3_K:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
    case TensorType::kIQ4_XS: return kLaneRows;
#else
    case TensorType::kQ8_0: return kInterleaveRows;
#endif
    default: return 0;
  }
}

}  // namespace

const CpuKernels& PAGEDLM_X86_TABLE() {
  static const CpuKernels kernels{
      .name = PAGEDLM_X86_AVX512 ? "avx512" : "avx2",
      .matmul_rows = matmul_rows,
      .dot_f32 = dot_f32,
      .dot_f16 = dot_f16,
      .axpy_f32 = axpy_f32,
      .axpy_f16 = axpy_f16,
      .dot_rows_f32 = dot_rows_f32,
      .dot_rows_f16 = dot_rows_f16,
      .axpy_rows_f32 = axpy_rows_f32,
      .axpy_rows_f16 = axpy_rows_f16,
      .attend_block_f32 = attend_block_f32,
      .attend_block_f16 = attend_block_f16,
      .attend_block_encoded = attend_block_encoded,
      .swiglu = swiglu,
      .exp_sum = exp_sum,
      .pack_rows = pack_rows,
      .packed_group_rows = packed_group_rows,
      .quantize_q8 = quantize_q8,
      .quantize_q8k = quantize_q8k,
      .f32_to_f16 = f32_to_f16,
      .max_f32 = max_f32,
  };
  return kernels;
}

}  // namespace pagedlm
