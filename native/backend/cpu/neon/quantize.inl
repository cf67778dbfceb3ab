// Activations quantized to int8 for the integer dot products of Q8_0 and the other 32-value types (blocks of
// 32) and of the 256-value types (kernels.h: multiplies_q8_activations, multiplies_q8k_activations). Part of
// the NEON kernels: see kernels_neon.inl.
#pragma once

#include "backend/cpu/neon/common.inl"

namespace pagedlm {

namespace {

inline float max_magnitude(const float* v, int n) {
  float32x4_t amax = vdupq_n_f32(0);
  for (int i = 0; i < n; i += 4) amax = vmaxq_f32(amax, vabsq_f32(vld1q_f32(v + i)));
  return vmaxvq_f32(amax);
}

// 16 values times `inverse`, rounded to nearest (ties to even) and narrowed to int8.
inline int8x16_t round_to_int8(const float* v, float inverse) {
  int32x4_t q[4];
  for (int i = 0; i < 4; ++i) q[i] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(v + 4 * i), inverse));
  const int16x8_t low = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
  const int16x8_t high = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
  return vcombine_s8(vqmovn_s16(low), vqmovn_s16(high));
}

// n values (a multiple of 16) scaled to `scale`'s int8, written to out; returns their sum.
inline int quantize_values(const float* v, int n, float scale, int8_t* out) {
  const float inverse = scale > 0 ? 1.0f / scale : 0.0f;
  int sum = 0;
  for (int i = 0; i < n; i += 16) {
    const int8x16_t bytes = round_to_int8(v + i, inverse);
    vst1q_s8(out + i, bytes);
    sum += vaddlvq_s8(bytes);
  }
  return sum;
}

void quantize_q8(const float* x, int n, ActivationBlockQ8* out) {
  for (int b = 0; b < n / static_cast<int>(kQ8BlockElements); ++b) {
    const float* v = x + static_cast<size_t>(b) * kQ8BlockElements;
    out[b].scale = max_magnitude(v, kQ8BlockElements) / 127.0f;
    quantize_values(v, kQ8BlockElements, out[b].scale, out[b].values);
    out[b].unsigned_offset = 0;  // no kernel here stores weights unsigned
  }
}

void quantize_q8k(const float* x, int n, ActivationBlockQ8K* out) {
  for (int b = 0; b < n / static_cast<int>(kQKElements); ++b) {
    const float* v = x + static_cast<size_t>(b) * kQKElements;
    out[b].scale = max_magnitude(v, kQKElements) / 127.0f;
    for (int s = 0; s < 8; ++s) out[b].sums[s] = static_cast<int16_t>(quantize_values(v + 32 * s, 32, out[b].scale, out[b].values + 32 * s));
  }
}

}  // namespace

}  // namespace pagedlm
