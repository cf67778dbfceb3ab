// IQ4_NL weights times int8 activations quantized per 32 values, one row at a time (x86/unpacked.inl). Part
// of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// kIq4Values as a pshufb table in both 128-bit lanes: one shuffle turns 32 indices into 32 int8 weights.
inline __m256i iq4_table() {
  const __m128i levels = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4Values));
  return _mm256_setr_m128i(levels, levels);
}

struct UnpackedIQ4_NL : Unpacked32<true, false> {
  void unpack(const BlockIQ4_NL& block) {
    q = _mm256_shuffle_epi8(iq4_table(), nibbles_in_order(block.nibbles));
    d = half_to_float(block.d);
    m = 0;
  }
};

void matmul_iq4_nl(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockIQ4_NL, UnpackedIQ4_NL>(a, row_begin, row_end, a.xq); }

}  // namespace

}  // namespace pagedlm
