#include "read_sum.h"

#include "backend/cpu/kernels.h"

namespace pagedlm::bench {

namespace {

float read_sum_portable(const float* x, size_t n) {
  float sum[16] = {};
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) sum[j] += x[i + j];
  }
  float total = 0;
  for (; i < n; ++i) total += x[i];
  for (float s : sum) total += s;
  return total;
}

}  // namespace

float read_sum(const float* x, size_t n) {
#if defined(PAGEDLM_HAVE_X86_READ_SUM)
  static const bool wide = &best_cpu_kernels() != &portable_kernels();
  if (wide) return read_sum_avx2(x, n);
#endif
  return read_sum_portable(x, n);
}

}  // namespace pagedlm::bench
