// Portable kernels: dequantize a weight row, then plain loops the compiler vectorizes for the baseline ISA.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
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

void dot_rows_f32(const float* k, int n, int d, const float* q, float* out) {
  for (int p = 0; p < n; ++p) out[p] = dot_f32(k + static_cast<size_t>(p) * d, q, d);
}
void dot_rows_f16(const uint16_t* k, int n, int d, const float* q, float* out) {
  for (int p = 0; p < n; ++p) out[p] = dot_f16(k + static_cast<size_t>(p) * d, q, d);
}
void axpy_rows_f32(const float* weights, const float* v, int n, int d, float* acc) {
  for (int p = 0; p < n; ++p) axpy_f32(weights[p], v + static_cast<size_t>(p) * d, acc, d);
}
void axpy_rows_f16(const float* weights, const uint16_t* v, int n, int d, float* acc) {
  for (int p = 0; p < n; ++p) axpy_f16(weights[p], v + static_cast<size_t>(p) * d, acc, d);
}

void swiglu(float* gate, const float* up, int n) {
  for (int i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

float exp_sum(float* x, int n, float shift) {
  float sum = 0;
  for (int i = 0; i < n; ++i) sum += x[i] = std::exp(x[i] - shift);
  return sum;
}

float max_f32(const float* x, int n) {
  // Eight independent maxima keep eight comparisons in flight; `x > m ? x : m` skips NaN.
  float m[8];
  std::fill(m, m + 8, -INFINITY);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
  }
  for (; i < n; ++i) m[0] = x[i] > m[0] ? x[i] : m[0];
  return *std::max_element(m, m + 8);
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

#if defined(__aarch64__)
// The dot-product instructions (sdot, ARMv8.2's optional FEAT_DotProd), as the kernel reports them.
bool cpu_has_dotprod() {
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
  int present = 0;
  size_t size = sizeof(present);
  return sysctlbyname("hw.optional.arm.FEAT_DotProd", &present, &size, nullptr, 0) == 0 && present != 0;
#else
  return false;
#endif
}
#endif

}  // namespace

bool multiplies_q8_activations(TensorType type) {
  switch (type) {
    case TensorType::kQ8_0:
    case TensorType::kQ4_1:
    case TensorType::kQ5_0:
    case TensorType::kQ5_1:
    case TensorType::kIQ4_NL: return true;
    default: return false;
  }
}

bool multiplies_q8k_activations(TensorType type) {
  switch (type) {
    case TensorType::kQ2_K:
    case TensorType::kQ3_K:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
    case TensorType::kIQ4_XS: return true;
    default: return false;
  }
}

bool can_interleave_rows(const CpuKernels& kernels, TensorType type, int rows, int cols) {
  const int group = kernels.pack_rows != nullptr ? kernels.packed_group_rows(type) : 0;
  if (group == 0 || rows % group != 0) return false;
  switch (type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16: return cols % 8 == 0;
    default: return true;  // quantized rows are whole blocks already
  }
}

void interleave_rows(TensorType type, const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
  const size_t chunk = type == TensorType::kQ8_0 ? sizeof(BlockQ8_0) : 8 * tensor_row_bytes(type, 1);
  const size_t chunks = row_bytes / chunk;
  for (int g = 0; g < rows; g += kInterleaveRows) {
    const uint8_t* group = src + static_cast<size_t>(g) * row_bytes;
    uint8_t* out = dst + static_cast<size_t>(g) * row_bytes;
    for (size_t c = 0; c < chunks; ++c) {
      for (int k = 0; k < kInterleaveRows; ++k) {
        std::memcpy(out, group + k * row_bytes + c * chunk, chunk);
        out += chunk;
      }
    }
  }
}

const CpuKernels& portable_kernels() {
  // The optional slots stay null: this table fuses no attention, packs no rows and quantizes no activations.
  static const CpuKernels kernels{
      .name = "portable",
      .matmul_rows = matmul_rows,
      .dot_f32 = dot_f32,
      .dot_f16 = dot_f16,
      .axpy_f32 = axpy_f32,
      .axpy_f16 = axpy_f16,
      .dot_rows_f32 = dot_rows_f32,
      .dot_rows_f16 = dot_rows_f16,
      .axpy_rows_f32 = axpy_rows_f32,
      .axpy_rows_f16 = axpy_rows_f16,
      .swiglu = swiglu,
      .exp_sum = exp_sum,
      .max_f32 = max_f32,
  };
  return kernels;
}

std::span<const CpuKernels* const> built_cpu_kernels() {
#if defined(PAGEDLM_HAVE_X86_KERNELS)
  static const CpuKernels* const tables[] = {&portable_kernels(), &avx2_kernels(), &avx512_kernels()};
#elif defined(PAGEDLM_HAVE_NEON_KERNELS)
  static const CpuKernels* const tables[] = {&portable_kernels(), &neon_kernels(), &neon_dotprod_kernels()};
#else
  static const CpuKernels* const tables[] = {&portable_kernels()};
#endif
  return tables;
}

bool cpu_supports_kernels(const CpuKernels& kernels) {
  if (&kernels == &portable_kernels()) return true;
#if defined(__x86_64__) && defined(PAGEDLM_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
  if (&kernels == &avx2_kernels()) return avx2;
  if (&kernels == &avx512_kernels()) {
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
  }
#endif
#if defined(__aarch64__) && defined(PAGEDLM_HAVE_NEON_KERNELS)
  if (&kernels == &neon_kernels()) return true;  // Advanced SIMD is part of every ARMv8-A CPU
  if (&kernels == &neon_dotprod_kernels()) return cpu_has_dotprod();
#endif
  return false;
}

const CpuKernels& best_cpu_kernels() {
  static const CpuKernels& chosen = []() -> const CpuKernels& {
    const std::span<const CpuKernels* const> tables = built_cpu_kernels();
    if (const char* forced = std::getenv("PAGEDLM_CPU_KERNELS")) {
      for (const CpuKernels* k : tables) {
        if (std::strcmp(forced, k->name) == 0 && cpu_supports_kernels(*k)) return *k;
      }
    }
    for (auto k = tables.rbegin(); k != tables.rend(); ++k) {
      if (cpu_supports_kernels(**k)) return **k;
    }
    return portable_kernels();
  }();
  return chosen;
}

#if !defined(PAGEDLM_HAVE_X86_KERNELS)
const CpuKernels& avx2_kernels() { return portable_kernels(); }
const CpuKernels& avx512_kernels() { return portable_kernels(); }
#endif
#if !defined(PAGEDLM_HAVE_NEON_KERNELS)
const CpuKernels& neon_kernels() { return portable_kernels(); }
const CpuKernels& neon_dotprod_kernels() { return portable_kernels(); }
#endif

}  // namespace pagedlm
