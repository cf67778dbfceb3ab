// IQ4_XS weights times int8 activations quantized per 256 values, one row at a time (x86/unpacked.inl). Part
// of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/iq4_nl.inl"  // iq4_table
#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Indices through the pshufb table of kIq4Values to signed int8 weights, with signed 6-bit scales per 32
// values: a super-block's dot product is d * sx * sum over s of sc_s * sum(w * xq), exact in integers.
struct UnpackedIQ4XS : UnpackedK<true> {
  void unpack(const BlockIQ4_XS& block) {
    const __m256i table = iq4_table();
    for (int pair = 0; pair < 4; ++pair) {
      const __m256i indices = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.nibbles + 32 * pair));
      lookup_nibbles(indices, table, q[2 * pair], q[2 * pair + 1]);
    }
    for (int s = 0; s < 8; ++s) {
      const int scale = (((block.scales_low[s / 2] >> (4 * (s % 2))) & 0xF) | ((block.scales_high >> (2 * s)) & 3) << 4) - 32;
      scales[s] = _mm256_set1_epi16(static_cast<int16_t>(scale));
    }
    d = half_to_float(block.d);
  }
  __m256 accumulate(const ActivationBlockQ8K& x, __m256 sums) const {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_scaled(x)), _mm256_set1_ps(d * x.scale), sums);
  }
};

void matmul_iq4_xs(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockIQ4_XS, UnpackedIQ4XS>(a, row_begin, row_end, a.xk); }

}  // namespace

}  // namespace pagedlm
