// The driver and helpers of the quantized weight types, which the NEON kernels multiply with int8
// activations: each block of a row is unpacked to int8 weights once per chunk of tokens, then multiplied
// with each token's int8 activation block in exact integer dot products (dot16). Here the 32-value types
// (Q8_0, Q4_1, Q5_0, Q5_1, IQ4_NL) against ActivationBlockQ8; neon/k_quants.inl has the 256-value ones. Part of the NEON kernels: see kernels_neon.inl.
#pragma once

#include "backend/cpu/neon/common.inl"

namespace pagedlm {

namespace {

// Rows [row_begin, row_end) of a type whose `Unpacked` form gives unpack(block) and accumulate(activation
// block, sum): each block of a row is unpacked once per chunk of tokens, then multiplied with each token's
// activation block. Every token runs the same operations, so its result does not depend on the others.
template <typename Block, typename Unpacked, typename Activation>
void matmul_unpacked(const MatmulArgs& a, int row_begin, int row_end, const Activation* x) {
  const int blocks = a.cols / Unpacked::kElements;
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    for (int r = row_begin; r < row_end; ++r) {
      const auto* row = reinterpret_cast<const Block*>(a.weights + static_cast<size_t>(r) * a.row_bytes);
      float sums[kTokenChunk] = {};
      for (int b = 0; b < blocks; ++b) {
        Unpacked u;
        u.unpack(row[b]);
        for (int t = t0; t < t1; ++t) sums[t - t0] = u.accumulate(x[static_cast<size_t>(t) * blocks + b], sums[t - t0]);
      }
      for (int t = t0; t < t1; ++t) a.y[static_cast<size_t>(t) * a.y_stride + r] = sums[t - t0];
    }
  }
}

// The 32 nibbles of one Q4_0-style block (byte j: element j low, j + 16 high) as 32 bytes in element order.
inline void nibbles_in_order(const uint8_t* nibbles, uint8x16_t out[2]) {
  const uint8x16_t packed = vld1q_u8(nibbles);
  out[0] = vandq_u8(packed, vdupq_n_u8(0x0F));
  out[1] = vshrq_n_u8(packed, 4);
}

// Bit j of the little-endian 32 bits at `bits` as 0x10 in byte j: Q5_0 / Q5_1's fifth bits.
inline void fifth_bits(const uint8_t* bits, uint8x16_t out[2]) {
  uint32_t word;
  std::memcpy(&word, bits, 4);
  const uint8x8_t bytes = vreinterpret_u8_u32(vdup_n_u32(word));
  static constexpr uint8_t kSpread[2][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3}};
  static constexpr uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t table = vcombine_u8(bytes, bytes);
  for (int h = 0; h < 2; ++h) {
    // Byte j takes the byte of `word` that holds bit j, then keeps that bit alone, as 0x10.
    const uint8x16_t spread = vqtbl1q_u8(table, vld1q_u8(kSpread[h]));
    out[h] = vandq_u8(vtstq_u8(spread, vld1q_u8(kBit)), vdupq_n_u8(0x10));
  }
}

inline int sum_int8(const int8_t* x, int n) {
  int sum = 0;
  for (int i = 0; i < n; i += 16) sum += vaddlvq_s8(vld1q_s8(x + i));
  return sum;
}

// The 32-value types: 32 int8 weights, their scale d and (Q4_1, Q5_1) the offset m added to every weight.
// A block's dot product with an activation block is d * sx * sum(q * xq) + m * sx * sum(xq), both sums
// exact in integers.
template <bool kOffset>
struct Unpacked32 {
  static constexpr int kElements = 32;
  int8x16_t q[2];
  float d, m;
  float accumulate(const ActivationBlockQ8& x, float sum) const {
    sum = fma_one(static_cast<float>(vaddvq_s32(dot32(q, x.values))), d * x.scale, sum);
    if constexpr (kOffset) sum = fma_one(static_cast<float>(sum_int8(x.values, 32)), m * x.scale, sum);
    return sum;
  }
};

struct UnpackedQ8_0 : Unpacked32<false> {
  void unpack(const BlockQ8_0& block) {
    q[0] = vld1q_s8(block.values);
    q[1] = vld1q_s8(block.values + 16);
    d = half_to_float(block.scale);
    m = 0;
  }
};

// Unsigned nibbles (0-15); the block's m times the activations' sum.
struct UnpackedQ4_1 : Unpacked32<true> {
  void unpack(const BlockQ4_1& block) {
    uint8x16_t u[2];
    nibbles_in_order(block.nibbles, u);
    for (int h = 0; h < 2; ++h) q[h] = vreinterpretq_s8_u8(u[h]);
    d = half_to_float(block.d);
    m = half_to_float(block.m);
  }
};

// Nibbles joined with their fifth bits, minus 16: signed weights in [-16, 15].
struct UnpackedQ5_0 : Unpacked32<false> {
  void unpack(const BlockQ5_0& block) {
    uint8x16_t u[2], fifth[2];
    nibbles_in_order(block.nibbles, u);
    fifth_bits(block.high, fifth);
    for (int h = 0; h < 2; ++h) q[h] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(u[h], fifth[h])), vdupq_n_s8(16));
    d = half_to_float(block.d);
    m = 0;
  }
};

// Nibbles joined with their fifth bits (0-31); the block's m times the activations' sum.
struct UnpackedQ5_1 : Unpacked32<true> {
  void unpack(const BlockQ5_1& block) {
    uint8x16_t u[2], fifth[2];
    nibbles_in_order(block.nibbles, u);
    fifth_bits(block.high, fifth);
    for (int h = 0; h < 2; ++h) q[h] = vreinterpretq_s8_u8(vorrq_u8(u[h], fifth[h]));
    d = half_to_float(block.d);
    m = half_to_float(block.m);
  }
};

// Indices through a table lookup of kIq4Values: one tbl turns 16 indices into 16 int8 weights.
struct UnpackedIQ4_NL : Unpacked32<false> {
  void unpack(const BlockIQ4_NL& block) {
    const int8x16_t levels = vld1q_s8(kIq4Values);
    uint8x16_t u[2];
    nibbles_in_order(block.nibbles, u);
    for (int h = 0; h < 2; ++h) q[h] = vqtbl1q_s8(levels, u[h]);
    d = half_to_float(block.d);
    m = 0;
  }
};

void matmul_q8_0(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ8_0, UnpackedQ8_0>(a, row_begin, row_end, a.xq); }
void matmul_q4_1(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ4_1, UnpackedQ4_1>(a, row_begin, row_end, a.xq); }
void matmul_q5_0(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ5_0, UnpackedQ5_0>(a, row_begin, row_end, a.xq); }
void matmul_q5_1(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ5_1, UnpackedQ5_1>(a, row_begin, row_end, a.xq); }
void matmul_iq4_nl(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockIQ4_NL, UnpackedIQ4_NL>(a, row_begin, row_end, a.xq); }

}  // namespace

}  // namespace pagedlm
