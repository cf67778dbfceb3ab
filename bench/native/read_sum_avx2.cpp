// Compiled with -mavx2 and called only where the CPU has it (read_sum.cpp), so it includes no header whose
// inline functions other files also use.
#include <immintrin.h>

#include <cstddef>

namespace pagedlm::bench {

float read_sum_avx2(const float* x, size_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 4; ++j) acc[j] = _mm256_add_ps(acc[j], _mm256_loadu_ps(x + i + 8 * j));
  }
  const __m256 sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  float total = _mm_cvtss_f32(lo);
  for (; i < n; ++i) total += x[i];
  return total;
}

}  // namespace pagedlm::bench
