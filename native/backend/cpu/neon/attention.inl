// Attention over one KV block fused for a group of query rows (the online softmax on whole vectors), K/V in
// f32, f16 or read in place from the KV pool's other encodings. Part of the NEON kernels: see
// kernels_neon.inl.
#pragma once

#include "backend/cpu/neon/common.inl"
#include "backend/cpu/neon/elementwise.inl"

namespace pagedlm {

namespace {

// Encoded KV elements the loaders read directly (int8 is int8_t): bf16 bits, and fp8 e4m3 codes
// (kv_dtype.h), whose exponent and mantissa shifted 20 bits up are a float 2^120 times too small.
struct Bf16Bits {
  uint16_t bits;
};
struct Fp8Code {
  uint8_t bits;
};
constexpr float kFp8Rebias = 1.329228e36f;  // 2^120

// 4 consecutive elements as floats.
inline float32x4_t load4(const float* p) { return vld1q_f32(p); }
inline float32x4_t load4(const uint16_t* p) { return half4_to_float(vld1_u16(p)); }
inline float32x4_t load4(const Bf16Bits* p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16)); }
inline uint32x4_t widen4(const uint8_t* p) {
  uint32_t word;
  std::memcpy(&word, p, 4);
  return vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(word)))));
}
inline float32x4_t load4(const int8_t* p) {
  const int32x4_t bytes = vreinterpretq_s32_u32(widen4(reinterpret_cast<const uint8_t*>(p)));
  return vcvtq_f32_s32(vshrq_n_s32(vshlq_n_s32(bytes, 24), 24));  // sign-extended from the low byte
}
inline float32x4_t load4(const Fp8Code* p) {
  const uint32x4_t code = widen4(reinterpret_cast<const uint8_t*>(p));
  const uint32x4_t magnitude = vandq_u32(code, vdupq_n_u32(0x7f));
  const float32x4_t value = vmulq_n_f32(vreinterpretq_f32_u32(vshlq_n_u32(magnitude, 20)), kFp8Rebias);
  const uint32x4_t sign = vshlq_n_u32(vandq_u32(code, vdupq_n_u32(0x80)), 24);
  const uint32x4_t nan = vceqq_u32(magnitude, vdupq_n_u32(0x7f));  // 0x7f: NaN (all ones is a NaN)
  return vreinterpretq_f32_u32(vorrq_u32(vorrq_u32(vreinterpretq_u32_f32(value), sign), nan));
}
// The first n (< 4 allowed) of 4 elements, zeros after them.
template <typename Element>
inline float32x4_t load4(const Element* p, int n) {
  if (n >= 4) return load4(p);
  Element part[4] = {};
  std::memcpy(part, p, static_cast<size_t>(n > 0 ? n : 0) * sizeof(Element));
  return load4(part);
}
inline void store4(float* p, float32x4_t v, int n) {
  if (n >= 4) return vst1q_f32(p, v);
  float part[4];
  vst1q_f32(part, v);
  std::memcpy(p, part, static_cast<size_t>(n) * sizeof(float));
}
// Lanes from n on replaced by fill.
inline float32x4_t first_or(float32x4_t v, int n, float fill) {
  static constexpr int32_t kIndex[4] = {0, 1, 2, 3};
  return vbslq_f32(vcgtq_s32(vdupq_n_s32(n), vld1q_s32(kIndex)), v, vdupq_n_f32(fill));
}

// cap x tanh(x / cap), with tanh(y) = 1 - 2 / (exp(2y) + 1): one exp, whose clamping keeps it finite where
// tanh is +-1 in float.
inline float32x4_t soft_cap(float32x4_t x, float cap) {
  const float32x4_t e = exp4(vmulq_n_f32(x, 2.0f / cap));
  return vmulq_n_f32(vaddq_f32(vdupq_n_f32(1.0f), vdivq_f32(vdupq_n_f32(-2.0f), vaddq_f32(e, vdupq_n_f32(1.0f)))), cap);
}

// Scores of R query rows against K rows [0, count) (count <= 4), one vector per row (0 past count): each K
// row's 4 columns are loaded and converted once for all R rows; the lane-wise partial sums of the 4
// positions fold into one vector by two pairwise adds.
template <int R, typename Element>
void scores(const Element* k, int count, int d, const float* q, float32x4_t (&out)[R]) {
  float32x4_t part[R][4];
  for (auto& row : part) {
    for (auto& v : row) v = vdupq_n_f32(0);
  }
  for (int i = 0; i < d; i += 4) {
    float32x4_t qv[R];
    for (int r = 0; r < R; ++r) qv[r] = load4(q + static_cast<size_t>(r) * d + i, d - i);
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      if (p >= count) continue;
      const float32x4_t kv = load4(k + static_cast<size_t>(p) * d + i, d - i);
      for (int r = 0; r < R; ++r) part[r][p] = vfmaq_f32(part[r][p], kv, qv[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = vpaddq_f32(vpaddq_f32(part[r][0], part[r][1]), vpaddq_f32(part[r][2], part[r][3]));
}

// acc[r] = acc[r] x rescale[r] + sum over p < count of weights[r][p] x v[p], 16 columns at a time in registers.
template <int R, typename Element>
void accumulate_values(const Element* v, int count, int d, const float (&weights)[R][4], const float (&rescale)[R], float* acc) {
  constexpr int M = 4;
  for (int c = 0; c < d; c += 4 * M) {
    float32x4_t a[R][M];
    for (int r = 0; r < R; ++r) {
      for (int m = 0; m < M; ++m) a[r][m] = vmulq_n_f32(load4(acc + static_cast<size_t>(r) * d + c + 4 * m, d - c - 4 * m), rescale[r]);
    }
    for (int p = 0; p < count; ++p) {
      for (int m = 0; m < M; ++m) {
        if (c + 4 * m >= d) break;
        const float32x4_t vv = load4(v + static_cast<size_t>(p) * d + c + 4 * m, d - c - 4 * m);
        for (int r = 0; r < R; ++r) a[r][m] = vfmaq_n_f32(a[r][m], vv, weights[r][p]);
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int m = 0; m < M; ++m) {
        if (c + 4 * m < d) store4(acc + static_cast<size_t>(r) * d + c + 4 * m, a[r][m], d - c - 4 * m);
      }
    }
  }
}

// Up to 4 positions for R rows: scores, then each row's online-softmax step, then the V update.
template <int R, typename KElement, typename VElement>
void attend_positions(const KElement* k, const VElement* v, const float* k_scales, const float* v_scales, int count, int d, const AttentionRows& rows,
                      int first_row) {
  float32x4_t s[R];
  scores<R>(k, count, d, rows.q + static_cast<size_t>(first_row) * d, s);
  if (k_scales != nullptr) {  // q . (scale x k) = scale x (q . k)
    const float32x4_t scale = load4(k_scales, count);
    for (auto& row : s) row = vmulq_f32(row, scale);
  }
  float weights[R][4];
  float rescale[R];
  float* row_max = rows.row_max + first_row;
  for (int r = 0; r < R; ++r) {
    float32x4_t scaled = vmulq_n_f32(s[r], rows.scale);
    if (rows.softcap > 0) scaled = soft_cap(scaled, rows.softcap);
    scaled = first_or(scaled, count, -__builtin_inff());
    const float block_max = vmaxvq_f32(scaled);
    const float new_max = block_max > row_max[r] ? block_max : row_max[r];
    const float32x4_t w = first_or(exp4(vsubq_f32(scaled, vdupq_n_f32(new_max))), count, 0.0f);
    vst1q_f32(weights[r], w);
    // From row_max = -inf (no positions yet) exp4 clamps to e^-87.3, which multiplies zeros.
    rescale[r] = vgetq_lane_f32(exp4(vdupq_n_f32(row_max[r] - new_max)), 0);
    row_max[r] = new_max;
    rows.row_sum[first_row + r] = rows.row_sum[first_row + r] * rescale[r] + vaddvq_f32(w);
    if (v_scales != nullptr) vst1q_f32(weights[r], vmulq_f32(w, load4(v_scales, count)));  // p x (scale x v) = (p x scale) x v
  }
  accumulate_values<R>(v, count, d, weights, rescale, rows.acc + static_cast<size_t>(first_row) * d);
}

template <typename KElement, typename VElement>
void attend_block(const KElement* k, const VElement* v, const float* k_scales, const float* v_scales, int n, int d, const AttentionRows& rows) {
  constexpr int R = 4;  // 16 partial-score and 16 column accumulators of 32 registers
  for (int p = 0; p < n; p += 4) {
    const KElement* kp = k + static_cast<size_t>(p) * d;
    const VElement* vp = v + static_cast<size_t>(p) * d;
    const float* ks = k_scales != nullptr ? k_scales + p : nullptr;
    const float* vs = v_scales != nullptr ? v_scales + p : nullptr;
    const int count = n - p < 4 ? n - p : 4;
    int r = 0;
    for (; r + R <= rows.rows; r += R) attend_positions<R>(kp, vp, ks, vs, count, d, rows, r);
    switch (rows.rows - r) {
      case 3: attend_positions<3>(kp, vp, ks, vs, count, d, rows, r); break;
      case 2: attend_positions<2>(kp, vp, ks, vs, count, d, rows, r); break;
      case 1: attend_positions<1>(kp, vp, ks, vs, count, d, rows, r); break;
      default: break;
    }
  }
}

void attend_block_f32(const float* k, const float* v, int n, int d, const AttentionRows& rows) { attend_block(k, v, nullptr, nullptr, n, d, rows); }
void attend_block_f16(const uint16_t* k, const uint16_t* v, int n, int d, const AttentionRows& rows) {
  attend_block(k, v, nullptr, nullptr, n, d, rows);
}
// Calls body(typed pointer) with `rows` read as the element type of `dtype` (int4 has none: kernels.h).
template <typename Body>
void with_element_type(KvDtype dtype, const uint8_t* rows, Body&& body) {
  switch (dtype) {
    case KvDtype::kF32: return body(reinterpret_cast<const float*>(rows));
    case KvDtype::kF16: return body(reinterpret_cast<const uint16_t*>(rows));
    case KvDtype::kBF16: return body(reinterpret_cast<const Bf16Bits*>(rows));
    case KvDtype::kInt8: return body(reinterpret_cast<const int8_t*>(rows));
    case KvDtype::kFp8E4M3: return body(reinterpret_cast<const Fp8Code*>(rows));
    case KvDtype::kInt4: break;
  }
  __builtin_trap();  // int4 reaches the kernels decoded (kernels.h): a caller that gets here is wrong
}

// One instantiation per (K type, V type) pair of the five types read in place.
void attend_block_encoded(KvDtype k_type, KvDtype v_type, const uint8_t* k, const uint8_t* v, const float* k_scales, const float* v_scales, int n,
                          int d, const AttentionRows& rows) {
  const bool k_scaled = k_type == KvDtype::kInt8 || k_type == KvDtype::kFp8E4M3;
  const bool v_scaled = v_type == KvDtype::kInt8 || v_type == KvDtype::kFp8E4M3;
  with_element_type(k_type, k, [&](const auto* typed_k) {
    with_element_type(v_type, v, [&](const auto* typed_v) {
      attend_block(typed_k, typed_v, k_scaled ? k_scales : nullptr, v_scaled ? v_scales : nullptr, n, d, rows);
    });
  });
}

}  // namespace

}  // namespace pagedlm
