// The 256-value weight types (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) times int8 activations quantized per
// 256 values, one row at a time through matmul_unpacked (neon/unpacked.inl). A super-block's dot product
// is d * sx * sum over sub-blocks of sc_s * sum(q * xq) (minus dmin * sx * sum of m_s x the activations'
// sum over s, for the types with minimums), the sums exact in integers; then one fused multiply-add per
// (row, token, super-block) for each. Part of the NEON kernels: see kernels_neon.inl.
#pragma once

#include "backend/cpu/neon/unpacked.inl"

namespace pagedlm {

namespace {

// 256 int8 weights, 16 per vector in element order.
struct UnpackedK {
  static constexpr int kElements = static_cast<int>(kQKElements);
  int8x16_t q[16];
  float d;
};

// Sum over 16-value sub-blocks v of scales[v] x (q . x over v).
inline int scaled_dot_16s(const int8x16_t (&q)[16], const int8_t* x, const int32_t (&scales)[16]) {
  int32x4_t total = vdupq_n_s32(0);
  for (int v = 0; v < 16; ++v) total = vmlaq_n_s32(total, dot16(vdupq_n_s32(0), q[v], vld1q_s8(x + 16 * v)), scales[v]);
  return vaddvq_s32(total);
}

// Sum over 32-value sub-blocks s of scales[s] x (q . x over s).
inline int scaled_dot_32s(const int8x16_t (&q)[16], const int8_t* x, const int32_t (&scales)[8]) {
  int32x4_t total = vdupq_n_s32(0);
  for (int s = 0; s < 8; ++s) total = vmlaq_n_s32(total, dot32(q + 2 * s, x + 32 * s), scales[s]);
  return vaddvq_s32(total);
}

// Q4_K's 8 six-bit scales (bytes 0-7 of out) and mins (bytes 8-15) of one super-block, unpacked a 32-bit
// word at a time from the packing of tensor_type.cpp: scales 0-3 and mins 0-3 are the low 6 bits of bytes
// 0-3 and 4-7; scales 4-7 and mins 4-7 take the low and high nibbles of bytes 8-11 plus the top 2 bits of
// bytes 0-3 and 4-7. Q5_K packs its scales the same way.
inline void q4_k_scales(const uint8_t* packed, uint8_t out[16]) {
  uint32_t w[3], unpacked[4];
  std::memcpy(w, packed, sizeof(w));
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  unpacked[0] = w[0] & kLow6;
  unpacked[1] = (w[2] & kLow4) | (((w[0] >> 6) & kLow2) << 4);
  unpacked[2] = w[1] & kLow6;
  unpacked[3] = ((w[2] >> 4) & kLow4) | (((w[1] >> 6) & kLow2) << 4);
  std::memcpy(out, unpacked, 16);
}

// Unsigned 4-bit weights (Q4_K) or 5-bit ones (Q5_K: the fifth bits from `high`), with 6-bit scales and
// minimums per 32 values.
struct UnpackedQ4K : UnpackedK {
  int32_t scales[8];
  int16x8_t mins;
  float dmin;
  void unpack_scales(const uint8_t* packed, uint16_t d_half, uint16_t dmin_half) {
    uint8_t bytes[16];
    q4_k_scales(packed, bytes);
    for (int s = 0; s < 8; ++s) scales[s] = bytes[s];
    mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(bytes + 8)));
    d = half_to_float(d_half);
    dmin = half_to_float(dmin_half);
  }
  // Sub-block 2g takes the low nibbles of bytes 32g .. 32g + 31, sub-block 2g + 1 their high ones.
  void unpack_nibbles(const uint8_t* nibbles) {
    for (int g = 0; g < 4; ++g) {
      for (int h = 0; h < 2; ++h) {
        const uint8x16_t packed = vld1q_u8(nibbles + 32 * g + 16 * h);
        q[4 * g + h] = vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F)));
        q[4 * g + 2 + h] = vreinterpretq_s8_u8(vshrq_n_u8(packed, 4));
      }
    }
  }
  void unpack(const BlockQ4_K& block) {
    unpack_scales(block.scales, block.d, block.dmin);
    unpack_nibbles(block.nibbles);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const {
    const int16x8_t sums = vld1q_s16(x.sums);
    const int min_total = vaddvq_s32(vmull_s16(vget_low_s16(mins), vget_low_s16(sums))) + vaddvq_s32(vmull_high_s16(mins, sums));
    sum = fma_one(static_cast<float>(scaled_dot_32s(q, x.values, scales)), d * x.scale, sum);
    return fma_one(-static_cast<float>(min_total), dmin * x.scale, sum);
  }
};

// Bit s of `high` byte l is bit 4 of value 32s + l.
struct UnpackedQ5K : UnpackedQ4K {
  void unpack(const BlockQ5_K& block) {
    unpack_scales(block.scales, block.d, block.dmin);
    unpack_nibbles(block.nibbles);
    const uint8x16_t high[2] = {vld1q_u8(block.high), vld1q_u8(block.high + 16)};
    for (int s = 0; s < 8; ++s) {
      for (int h = 0; h < 2; ++h) {
        const uint8x16_t fifth = vandq_u8(vtstq_u8(high[h], vdupq_n_u8(static_cast<uint8_t>(1u << s))), vdupq_n_u8(0x10));
        q[2 * s + h] = vorrq_s8(q[2 * s + h], vreinterpretq_s8_u8(fifth));
      }
    }
  }
};

// Signed 6-bit weights (q - 32) with int8 scales per 16 values.
struct UnpackedQ6K : UnpackedK {
  int32_t scales[16];
  void unpack(const BlockQ6_K& block) {
    const uint8x16_t low4 = vdupq_n_u8(0x0F), high2 = vdupq_n_u8(0x30);
    for (int half = 0; half < 2; ++half) {
      for (int i = 0; i < 2; ++i) {  // values l = 16i .. 16i + 15 of each 32
        const uint8x16_t l0 = vld1q_u8(block.low + 64 * half + 16 * i), l1 = vld1q_u8(block.low + 64 * half + 32 + 16 * i);
        const uint8x16_t h = vld1q_u8(block.high + 32 * half + 16 * i);
        const uint8x16_t values[4] = {
            vorrq_u8(vandq_u8(l0, low4), vandq_u8(vshlq_n_u8(h, 4), high2)),
            vorrq_u8(vandq_u8(l1, low4), vandq_u8(vshlq_n_u8(h, 2), high2)),
            vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(h, high2)),
            vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(h, 2), high2)),
        };
        for (int k = 0; k < 4; ++k) q[8 * half + 2 * k + i] = vsubq_s8(vreinterpretq_s8_u8(values[k]), vdupq_n_s8(32));
      }
    }
    for (int v = 0; v < 16; ++v) scales[v] = block.scales[v];
    d = half_to_float(block.d);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const { return fma_one(static_cast<float>(scaled_dot_16s(q, x.values, scales)), d * x.scale, sum); }
};

// Signed 3-bit weights (-4 to 3) with signed 6-bit scales per 16 values.
struct UnpackedQ3K : UnpackedK {
  int32_t scales[16];
  void unpack(const BlockQ3_K& block) {
    for (int s = 0; s < 16; ++s) {
      const int low = s < 8 ? block.scales[s] & 0xF : block.scales[s - 8] >> 4;
      scales[s] = (low | ((block.scales[8 + s % 4] >> (2 * (s / 4))) & 3) << 4) - 32;
    }
    const uint8x16_t high[2] = {vld1q_u8(block.high), vld1q_u8(block.high + 16)};
    for (int half = 0; half < 2; ++half) {
      for (int i = 0; i < 2; ++i) {
        const uint8x16_t low = vld1q_u8(block.low + 32 * half + 16 * i);
        for (int k = 0; k < 4; ++k) {
          const uint8x16_t two = vandq_u8(vshlq_u8(low, vdupq_n_s8(static_cast<int8_t>(-2 * k))), vdupq_n_u8(0x03));
          const uint8x16_t third = vandq_u8(vtstq_u8(high[i], vdupq_n_u8(static_cast<uint8_t>(1u << (4 * half + k)))), vdupq_n_u8(0x04));
          q[8 * half + 2 * k + i] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(two, third)), vdupq_n_s8(4));
        }
      }
    }
    d = half_to_float(block.d);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const { return fma_one(static_cast<float>(scaled_dot_16s(q, x.values, scales)), d * x.scale, sum); }
};

// Unsigned 2-bit weights with a 4-bit scale and minimum per 16 values.
struct UnpackedQ2K : UnpackedK {
  int32_t scales[16];
  int16_t mins[16];
  float dmin;
  void unpack(const BlockQ2_K& block) {
    for (int half = 0; half < 2; ++half) {
      for (int i = 0; i < 2; ++i) {
        const uint8x16_t values = vld1q_u8(block.values + 32 * half + 16 * i);
        for (int k = 0; k < 4; ++k) {
          q[8 * half + 2 * k + i] = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(values, vdupq_n_s8(static_cast<int8_t>(-2 * k))), vdupq_n_u8(0x03)));
        }
      }
    }
    for (int v = 0; v < 16; ++v) {
      scales[v] = block.scales[v] & 0xF;
      mins[v] = static_cast<int16_t>(block.scales[v] >> 4);
    }
    d = half_to_float(block.d);
    dmin = half_to_float(block.dmin);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const {
    int32x4_t min_total = vdupq_n_s32(0);
    for (int half = 0; half < 2; ++half) {
      int16_t sums[8];  // the activations' sum over each 16 values
      for (int v = 0; v < 8; ++v) sums[v] = vaddlvq_s8(vld1q_s8(x.values + 128 * half + 16 * v));
      const int16x8_t m = vld1q_s16(mins + 8 * half), s = vld1q_s16(sums);
      min_total = vmlal_high_s16(vmlal_s16(min_total, vget_low_s16(m), vget_low_s16(s)), m, s);
    }
    sum = fma_one(static_cast<float>(scaled_dot_16s(q, x.values, scales)), d * x.scale, sum);
    return fma_one(-static_cast<float>(vaddvq_s32(min_total)), dmin * x.scale, sum);
  }
};

// Indices through a table lookup of kIq4Values, with signed 6-bit scales per 32 values; sub-block s's
// indices are laid as one Q4_0 block's nibbles in bytes 16s .. 16s + 15.
struct UnpackedIQ4XS : UnpackedK {
  int32_t scales[8];
  void unpack(const BlockIQ4_XS& block) {
    const int8x16_t levels = vld1q_s8(kIq4Values);
    for (int s = 0; s < 8; ++s) {
      const uint8x16_t packed = vld1q_u8(block.nibbles + 16 * s);
      q[2 * s] = vqtbl1q_s8(levels, vandq_u8(packed, vdupq_n_u8(0x0F)));
      q[2 * s + 1] = vqtbl1q_s8(levels, vshrq_n_u8(packed, 4));
      scales[s] = (((block.scales_low[s / 2] >> (4 * (s % 2))) & 0xF) | ((block.scales_high >> (2 * s)) & 3) << 4) - 32;
    }
    d = half_to_float(block.d);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const { return fma_one(static_cast<float>(scaled_dot_32s(q, x.values, scales)), d * x.scale, sum); }
};

void matmul_q2k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ2_K, UnpackedQ2K>(a, row_begin, row_end, a.xk); }
void matmul_q3k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ3_K, UnpackedQ3K>(a, row_begin, row_end, a.xk); }
void matmul_q4k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ4_K, UnpackedQ4K>(a, row_begin, row_end, a.xk); }
void matmul_q5k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ5_K, UnpackedQ5K>(a, row_begin, row_end, a.xk); }
void matmul_q6k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ6_K, UnpackedQ6K>(a, row_begin, row_end, a.xk); }
void matmul_iq4_xs(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockIQ4_XS, UnpackedIQ4XS>(a, row_begin, row_end, a.xk); }

}  // namespace

}  // namespace pagedlm
