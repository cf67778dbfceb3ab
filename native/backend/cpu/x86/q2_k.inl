// Q2_K weights times int8 activations quantized per 256 values, one row at a time (x86/unpacked.inl). Part
// of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Unsigned 2-bit weights with a 4-bit scale and minimum per 16 values: a super-block's dot product is
// d * sx * sum over s of sc_s * sum(q * xq) - dmin * sx * sum over s of m_s * (sum of xq over s), both
// sums exact in integers; the activations' sums per 16 values come from maddubs with ones.
struct UnpackedQ2K : UnpackedK<false> {
  __m256i mins[8];
  float dmin;
  void unpack(const BlockQ2_K& block) {
    const __m256i low2 = _mm256_set1_epi8(0x03);
    for (int half = 0; half < 2; ++half) {
      const __m256i values = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.values + 32 * half));
      for (int k = 0; k < 4; ++k) {
        const int c = 4 * half + k;
        q[c] = _mm256_and_si256(_mm256_srli_epi16(values, 2 * k), low2);
        scales[c] = scales_of_halves(block.scales[2 * c] & 0xF, block.scales[2 * c + 1] & 0xF);
        mins[c] = scales_of_halves(block.scales[2 * c] >> 4, block.scales[2 * c + 1] >> 4);
      }
    }
    d = half_to_float(block.d);
    dmin = half_to_float(block.dmin);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const {
    const __m256i ones = _mm256_set1_epi8(1);
    __m256i min_sums = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.values + 32 * c));
      min_sums = add_scaled_pairs(min_sums, _mm256_maddubs_epi16(ones, xv), mins[c]);
    }
    sum = fma_one(static_cast<float>(sum_scaled(x)), d * x.scale, sum);
    return fma_one(-static_cast<float>(hsum_epi32(min_sums)), dmin * x.scale, sum);
  }
};

void matmul_q2k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ2_K, UnpackedQ2K>(a, row_begin, row_end, a.xk); }

}  // namespace

}  // namespace pagedlm
