// Hot loops of the CPU backend behind a table of function pointers, chosen once at run time: AVX2/FMA/F16C
// where the CPU has them, portable C++ elsewhere. The implementations take raw pointers only, so that no
// inline function compiled for AVX2 can leak into code that runs on an older CPU.
#pragma once

#include <cstddef>
#include <cstdint>

#include "model/tensor_type.h"

namespace pagedlm {

struct MatmulArgs {
  TensorType type;
  const uint8_t* weights;  // [rows][row_bytes]
  size_t row_bytes;
  int cols;
  const float* x;          // [n_tokens, cols]
  int n_tokens;
  float* y;                // [n_tokens, y_stride]; y[t * y_stride + r]
  int y_stride;
};

struct CpuKernels {
  const char* name;
  // y[t, r] = dot(W[r, :], x[t, :]) for r in [row_begin, row_end) and every token t.
  // `scratch` holds at least `cols` floats, private to the calling thread.
  void (*matmul_rows)(const MatmulArgs& args, int row_begin, int row_end, float* scratch);
  float (*dot_f32)(const float* a, const float* b, int n);
  float (*dot_f16)(const uint16_t* a, const float* b, int n);
  void (*axpy_f32)(float alpha, const float* x, float* y, int n);    // y += alpha * x
  void (*axpy_f16)(float alpha, const uint16_t* x, float* y, int n);
};

const CpuKernels& portable_kernels();
const CpuKernels& avx2_kernels();
// The fastest table this CPU supports (PAGEDLM_CPU_KERNELS=portable forces the portable one).
const CpuKernels& best_cpu_kernels();

}  // namespace pagedlm
