// Activations quantized to int8 for the integer dot products of Q8_0 and the other 32-value types (blocks of
// 32) and of the 256-value types (kernels.h: multiplies_q8_activations, multiplies_q8k_activations). Part of
// the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/common.inl"

namespace pagedlm {

namespace {

inline float max_magnitude(const float* v, int n) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(v + i)));
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// 32 values times `inverse`, rounded to int8.
inline __m256i round_to_int8(const float* v, __m256 inverse) {
  __m256i q[4];
  for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(v + 8 * i), inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  // Pack 32 int32 to 32 int8; the packs work within 128-bit lanes, the permute restores the order.
  const __m256i words = _mm256_packs_epi32(q[0], q[1]);
  const __m256i words2 = _mm256_packs_epi32(q[2], q[3]);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words, words2), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline int sum_int8(__m256i bytes) {
  const __m256i pair_sums = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), bytes), _mm256_set1_epi16(1));
  __m128i sum4 = _mm_add_epi32(_mm256_castsi256_si128(pair_sums), _mm256_extracti128_si256(pair_sums, 1));
  sum4 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0x4E));
  sum4 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0xB1));
  return _mm_cvtsi128_si32(sum4);
}

void quantize_q8(const float* x, int n, ActivationBlockQ8* out) {
  for (int b = 0; b < n / static_cast<int>(kQ8BlockElements); ++b) {
    const float* v = x + static_cast<size_t>(b) * kQ8BlockElements;
    const float scale = max_magnitude(v, 32) / 127.0f;
    const __m256i bytes = round_to_int8(v, _mm256_set1_ps(scale > 0 ? 1.0f / scale : 0.0f));
    out[b].scale = scale;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].values), bytes);
    out[b].unsigned_offset = PAGEDLM_X86_AVX512 ? -128 * sum_int8(bytes) : 0;
  }
}

void quantize_q8k(const float* x, int n, ActivationBlockQ8K* out) {
  for (int b = 0; b < n / static_cast<int>(kQKElements); ++b) {
    const float* v = x + static_cast<size_t>(b) * kQKElements;
    const float scale = max_magnitude(v, kQKElements) / 127.0f;
    const __m256 inverse = _mm256_set1_ps(scale > 0 ? 1.0f / scale : 0.0f);
    out[b].scale = scale;
    for (int s = 0; s < 8; ++s) {
      const __m256i bytes = round_to_int8(v + 32 * s, inverse);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].values + 32 * s), bytes);
      const int sum = sum_int8(bytes);
      out[b].sums[s] = static_cast<int16_t>(sum);
#if PAGEDLM_X86_AVX512
      out[b].sums_high[s] = static_cast<int8_t>(sum >> 7);  // arithmetic: floor(sum / 128), in [-32, 31]
      out[b].sums_low[s] = static_cast<int8_t>(sum & 127);
      const int first_half = sum_int8(_mm256_zextsi128_si256(_mm256_castsi256_si128(bytes)));
      out[b].q6_offsets[2 * s] = -32 * first_half;
      out[b].q6_offsets[2 * s + 1] = -32 * (sum - first_half);
#endif
    }
  }
}

}  // namespace

}  // namespace pagedlm
