// Q5_0 weights times int8 activations quantized per 32 values, one row at a time (x86/unpacked.inl). Part of
// the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Nibbles joined with their fifth bits, minus 16: signed weights in [-16, 15].
struct UnpackedQ5_0 : Unpacked32<true, false> {
  void unpack(const BlockQ5_0& block) {
    q = _mm256_sub_epi8(_mm256_or_si256(nibbles_in_order(block.nibbles), fifth_bits(block.high)), _mm256_set1_epi8(16));
    d = half_to_float(block.d);
    m = 0;
  }
};

void matmul_q5_0(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ5_0, UnpackedQ5_0>(a, row_begin, row_end, a.xq); }

}  // namespace

}  // namespace pagedlm
