// Q5_1 weights times int8 activations quantized per 32 values, one row at a time (x86/unpacked.inl). Part of
// the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Nibbles joined with their fifth bits (0-31) straight into maddubs; the block's m times the activations' sum.
struct UnpackedQ5_1 : Unpacked32<false, true> {
  void unpack(const BlockQ5_1& block) {
    q = _mm256_or_si256(nibbles_in_order(block.nibbles), fifth_bits(block.high));
    d = half_to_float(block.d);
    m = half_to_float(block.m);
  }
};

void matmul_q5_1(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ5_1, UnpackedQ5_1>(a, row_begin, row_end, a.xq); }

}  // namespace

}  // namespace pagedlm
