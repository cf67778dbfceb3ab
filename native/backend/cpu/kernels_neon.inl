// The ARM64 kernel table, included by kernels_neon.cpp (plain NEON, -march=armv8-a) and
// kernels_neon_dotprod.cpp (the same with sdot, -march=armv8.2-a+dotprod), each compiled with its own flags;
// the dot-product table is called only after a run-time check (cpu_has_dotprod in kernels_portable.cpp).
// So neither this file nor the family files under neon/ include a header whose inline functions other files
// also use (ODR: the linker could keep the dot-product copy), and everything in them has internal linkage.
// Before including it, define PAGEDLM_NEON_DOTPROD (0 or 1), which picks how 16 int8 products are summed
// (dot16 in neon/common.inl): one sdot, or two widening multiplies and pairwise adds.
//
// Weights are read row-major (no packed copy). Float weights (F32, F16, BF16) go through 4-row x 4-token
// tiles of FMAs; the quantized types the x86 tables multiply with int8 activations (Q8_0, Q4_1, Q5_0, Q5_1,
// IQ4_NL in blocks of 32; Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS in blocks of 256) are unpacked to int8 a
// block at a time and multiplied with int8 activations in exact integer sums; the rest (Q4_0 among them)
// are dequantized a row at a time into float, as on x86.
//
// The families, one file each under neon/: common.inl (conversions, loaders, the float tile, dot16),
// elementwise.inl, quantize.inl (int8 activations), unpacked.inl (the quantized driver and the 32-value
// types), k_quants.inl (the 256-value types), attention.inl. This file dispatches matmul_rows by weight type
// and fills the table.
#include "backend/cpu/neon/attention.inl"
#include "backend/cpu/neon/common.inl"
#include "backend/cpu/neon/elementwise.inl"
#include "backend/cpu/neon/k_quants.inl"
#include "backend/cpu/neon/quantize.inl"
#include "backend/cpu/neon/unpacked.inl"

namespace pagedlm {

namespace {

void matmul_rows(const MatmulArgs& a, int row_begin, int row_end, float* scratch) {
  const auto float_row = [&](auto row_type) {
    using Row = decltype(row_type);
    using Element = std::remove_cv_t<std::remove_pointer_t<decltype(Row::p)>>;
    matmul_float_rows<Row>(a, row_begin, row_end, [&](int r) { return Row{reinterpret_cast<const Element*>(a.weights + static_cast<size_t>(r) * a.row_bytes)}; });
  };
  switch (a.type) {
    case TensorType::kF32: return float_row(F32Row{});
    case TensorType::kF16: return float_row(F16Row{});
    case TensorType::kBF16: return float_row(BF16Row{});
    default: break;
  }
  if (a.xq != nullptr) {  // the caller quantized the activations in blocks of 32
    switch (a.type) {
      case TensorType::kQ8_0: return matmul_q8_0(a, row_begin, row_end);
      case TensorType::kQ4_1: return matmul_q4_1(a, row_begin, row_end);
      case TensorType::kQ5_0: return matmul_q5_0(a, row_begin, row_end);
      case TensorType::kQ5_1: return matmul_q5_1(a, row_begin, row_end);
      case TensorType::kIQ4_NL: return matmul_iq4_nl(a, row_begin, row_end);
      default: break;
    }
  }
  if (a.xk != nullptr) {  // in blocks of 256
    switch (a.type) {
      case TensorType::kQ2_K: return matmul_q2k(a, row_begin, row_end);
      case TensorType::kQ3_K: return matmul_q3k(a, row_begin, row_end);
      case TensorType::kQ4_K: return matmul_q4k(a, row_begin, row_end);
      case TensorType::kQ5_K: return matmul_q5k(a, row_begin, row_end);
      case TensorType::kQ6_K: return matmul_q6k(a, row_begin, row_end);
      case TensorType::kIQ4_XS: return matmul_iq4_xs(a, row_begin, row_end);
      default: break;
    }
  }
  // Types without an int8 path here, or activations the caller left in float: dequantize one row at a time
  // into the thread's scratch.
  for (int r = row_begin; r < row_end; ++r) {
    dequantize_row(a.type, a.weights + static_cast<size_t>(r) * a.row_bytes, scratch, a.cols);
    matmul_float_rows<F32Row>(a, r, r + 1, [&](int) { return F32Row{scratch}; });
  }
}

}  // namespace

const CpuKernels& PAGEDLM_NEON_TABLE() {
  // No packed copies (pack_rows, packed_group_rows stay null): every kernel here reads rows in place.
  static const CpuKernels kernels{
      .name = PAGEDLM_NEON_DOTPROD ? "neon-dotprod" : "neon",
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
      .quantize_q8 = quantize_q8,
      .quantize_q8k = quantize_q8k,
      .f32_to_f16 = f32_to_f16,
      .max_f32 = max_f32,
  };
  return kernels;
}

}  // namespace pagedlm
