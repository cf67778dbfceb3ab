// Q3_K weights times int8 activations quantized per 256 values, one row at a time (x86/unpacked.inl). Part
// of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Signed 3-bit weights (-4 to 3) with signed 6-bit scales per 16 values: a super-block's dot product is
// d * sx * sum over sub-blocks of sc_s * sum(q * xq), the sum exact in integers.
struct UnpackedQ3K : UnpackedK<true> {
  void unpack(const BlockQ3_K& block) {
    int sc[16];
    for (int s = 0; s < 16; ++s) {
      const int low = s < 8 ? block.scales[s] & 0xF : block.scales[s - 8] >> 4;
      sc[s] = (low | ((block.scales[8 + s % 4] >> (2 * (s / 4))) & 3) << 4) - 32;
    }
    const __m256i low2 = _mm256_set1_epi8(0x03), third = _mm256_set1_epi8(0x04), offset = _mm256_set1_epi8(4);
    const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.high));
    for (int half = 0; half < 2; ++half) {
      const __m256i low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.low + 32 * half));
      for (int k = 0; k < 4; ++k) {
        const int c = 4 * half + k;
        // Bit c of each high byte to bit 2: 16-bit shifts, the bits they carry across bytes fall outside the mask.
        const __m256i bit = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(high, c), 2), third);
        q[c] = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(low, 2 * k), low2), bit), offset);
        scales[c] = scales_of_halves(sc[2 * c], sc[2 * c + 1]);
      }
    }
    d = half_to_float(block.d);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const { return fma_one(static_cast<float>(sum_scaled(x)), d * x.scale, sum); }
};

void matmul_q3k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ3_K, UnpackedQ3K>(a, row_begin, row_end, a.xk); }

}  // namespace

}  // namespace pagedlm
