// Q5_K weights times int8 activations quantized per 256 values, one row at a time (x86/unpacked.inl). Part
// of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Unsigned 5-bit weights (0-31, maddubs' unsigned operand as they are) with Q4_K's scales and minimums: a
// super-block's dot product is d * sx * sum over s of sc_s * sum(q * xq) - dmin * sx * sum over s of
// m_s * (sum of xq over s), both sums exact in integers.
struct UnpackedQ5K : UnpackedK<false> {
  __m128i mins;  // 8 x int16
  float dmin;
  void unpack(const BlockQ5_K& block) {
    alignas(16) uint32_t unpacked[4];
    q4_k_scales(block.scales, unpacked);
    const auto* scale = reinterpret_cast<const uint8_t*>(unpacked);
    const __m256i low4 = _mm256_set1_epi8(0x0F), fifth = _mm256_set1_epi8(0x10);
    const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.high));
    for (int g = 0; g < 4; ++g) {
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.nibbles + 32 * g));
      const __m256i nibbles[2] = {_mm256_and_si256(packed, low4), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4)};
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * g + h;
        // Bit s of each high byte to bit 4: 16-bit shifts, the bits they carry across bytes fall outside the mask.
        const __m256i bit = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(high, s), 4), fifth);
        q[s] = _mm256_or_si256(nibbles[h], bit);
        scales[s] = _mm256_set1_epi16(scale[s]);
      }
    }
    mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scale + 8)));
    d = half_to_float(block.d);
    dmin = half_to_float(block.dmin);
  }
  __m256 accumulate(const ActivationBlockQ8K& x, __m256 sums) const {
    const __m128i min_sums = _mm_madd_epi16(mins, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.sums)));
    sums = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_scaled(x)), _mm256_set1_ps(d * x.scale), sums);
    return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(_mm256_zextsi128_si256(min_sums)), _mm256_set1_ps(dmin * x.scale), sums);
  }
};

void matmul_q5k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ5_K, UnpackedQ5K>(a, row_begin, row_end, a.xk); }

}  // namespace

}  // namespace pagedlm
