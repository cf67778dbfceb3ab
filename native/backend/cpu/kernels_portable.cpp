// Portable kernels: dequantize a weight row, then plain loops the compiler vectorizes for the baseline ISA.
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "backend/cpu/kernels.h"
#include "common/half.h"

namespace pagedlm {

namespace {

float dot_f32(const float* a, const float* b, int n) {
  float sum[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) sum[j] += a[i + j] * b[i + j];
  }
  float total = 0;
  for (; i < n; ++i) total += a[i] * b[i];
  for (float s : sum) total += s;
  return total;
}

float dot_f16(const uint16_t* a, const float* b, int n) {
  float total = 0;
  for (int i = 0; i < n; ++i) total += fp16_to_float(a[i]) * b[i];
  return total;
}

void axpy_f32(float alpha, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void axpy_f16(float alpha, const uint16_t* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * fp16_to_float(x[i]);
}

void matmul_rows(const MatmulArgs& a, int row_begin, int row_end, float* scratch) {
  for (int r = row_begin; r < row_end; ++r) {
    const uint8_t* row = a.weights + static_cast<size_t>(r) * a.row_bytes;
    const float* w = reinterpret_cast<const float*>(row);
    if (a.type != TensorType::kF32) {
      dequantize_row(a.type, row, scratch, a.cols);
      w = scratch;
    }
    for (int t = 0; t < a.n_tokens; ++t) a.y[static_cast<size_t>(t) * a.y_stride + r] = dot_f32(w, a.x + static_cast<size_t>(t) * a.cols, a.cols);
  }
}

#if defined(__x86_64__)
// CPUID leaf 1, ECX bit 29 (not every compiler's __builtin_cpu_supports knows "f16c").
bool cpu_has_f16c() {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
}
#endif

}  // namespace

const CpuKernels& portable_kernels() {
  static const CpuKernels kernels{"portable", matmul_rows, dot_f32, dot_f16, axpy_f32, axpy_f16};
  return kernels;
}

const CpuKernels& best_cpu_kernels() {
  static const CpuKernels& chosen = [&]() -> const CpuKernels& {
    const char* forced = std::getenv("PAGEDLM_CPU_KERNELS");
    if (forced != nullptr && std::strcmp(forced, "portable") == 0) return portable_kernels();
#if defined(__x86_64__) && defined(PAGEDLM_HAVE_AVX2_KERNELS)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c()) return avx2_kernels();
#endif
    return portable_kernels();
  }();
  return chosen;
}

#if !defined(PAGEDLM_HAVE_AVX2_KERNELS)
const CpuKernels& avx2_kernels() { return portable_kernels(); }
#endif

}  // namespace pagedlm
