// Q4_1 weights times int8 activations quantized per 32 values, one row at a time (x86/unpacked.inl). Part of
// the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Unsigned nibbles (0-15) straight into maddubs; the block's m times the activations' sum.
struct UnpackedQ4_1 : Unpacked32<false, true> {
  void unpack(const BlockQ4_1& block) {
    q = nibbles_in_order(block.nibbles);
    d = half_to_float(block.d);
    m = half_to_float(block.m);
  }
};

void matmul_q4_1(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ4_1, UnpackedQ4_1>(a, row_begin, row_end, a.xq); }

}  // namespace

}  // namespace pagedlm
