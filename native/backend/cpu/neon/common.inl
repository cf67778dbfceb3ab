// What the NEON kernel families share: half-precision conversions, the weight row loaders, horizontal sums,
// the int8 dot product of 16 values, and the float row-dot drivers. See kernels_neon.inl for how these files
// are compiled (once per table, internal linkage only).
#pragma once
#if !defined(PAGEDLM_NEON_DOTPROD)
#error "compiled only through kernels_neon.inl, once per NEON kernel table"
#endif

#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "backend/cpu/kernels.h"

namespace pagedlm {

namespace {

constexpr int kTileRows = 4;     // float tiles: 4 rows x up to 4 tokens, 16 of the 32 vector registers summing
constexpr int kTileTokens = 4;
constexpr int kTokenChunk = 24;  // tokens whose activations stay in cache while rows stream past

inline float32x4_t half4_to_float(uint16x4_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(h)); }
inline float half_to_float(uint16_t h) { return vgetq_lane_f32(half4_to_float(vdup_n_u16(h)), 0); }
inline float bf16_bits_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// One rounding, whatever -ffp-contract says: every path of a table that must give the same bits uses it.
inline float fma_one(float a, float b, float c) { return __builtin_fmaf(a, b, c); }

// Loaders give 4 consecutive weights of one row as floats (load4) or one weight (at).
struct F32Row {
  const float* p;
  float32x4_t load4(int i) const { return vld1q_f32(p + i); }
  float at(int i) const { return p[i]; }
};
struct F16Row {
  const uint16_t* p;
  float32x4_t load4(int i) const { return half4_to_float(vld1_u16(p + i)); }
  float at(int i) const { return half_to_float(p[i]); }
};
struct BF16Row {
  const uint16_t* p;
  float32x4_t load4(int i) const { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p + i), 16)); }
  float at(int i) const { return bf16_bits_to_float(p[i]); }
};

// An R-row x T-token tile of dot products over `cols`: one accumulator per (row, token), 4 columns per FMA,
// then the horizontal sum and the last cols % 4 columns one fused multiply-add at a time. Every (row, token)
// runs the same operations whatever R and T are, so a token's result never depends on its neighbours and
// dot_f32 gives the bits of a matmul row.
template <int R, int T, typename Row>
void tile_dots(const Row* w, int cols, const float* const* x, float* const* y, int y_stride) {
  float32x4_t acc[R][T];
  for (auto& row : acc) {
    for (auto& v : row) v = vdupq_n_f32(0);
  }
  int i = 0;
  for (; i + 4 <= cols; i += 4) {
    float32x4_t xv[T];
    for (int j = 0; j < T; ++j) xv[j] = vld1q_f32(x[j] + i);
    for (int k = 0; k < R; ++k) {
      const float32x4_t wv = w[k].load4(i);
      for (int j = 0; j < T; ++j) acc[k][j] = vfmaq_f32(acc[k][j], wv, xv[j]);
    }
  }
  for (int k = 0; k < R; ++k) {
    for (int j = 0; j < T; ++j) {
      float sum = vaddvq_f32(acc[k][j]);
      for (int c = i; c < cols; ++c) sum = fma_one(w[k].at(c), x[j][c], sum);
      y[j][static_cast<size_t>(k) * y_stride] = sum;
    }
  }
}

// Rows [row_begin, row_end) of a float weight matrix against every token: 4-row x 4-token tiles over chunks
// of tokens, then the rows left one at a time.
template <typename Row, typename RowAt>
void matmul_float_rows(const MatmulArgs& a, int row_begin, int row_end, RowAt row_at) {
  // A tile's outputs: row k of token j at y[j][k] (y_stride 1 within a token's row of outputs).
  const auto run = [&](auto rows, auto tokens, int r, int t) {
    constexpr int R = decltype(rows)::value, T = decltype(tokens)::value;
    Row w[R];
    const float* x[T];
    float* y[T];
    for (int k = 0; k < R; ++k) w[k] = row_at(r + k);
    for (int j = 0; j < T; ++j) {
      x[j] = a.x + static_cast<size_t>(t + j) * a.cols;
      y[j] = a.y + static_cast<size_t>(t + j) * a.y_stride + r;
    }
    tile_dots<R, T>(w, a.cols, x, y, 1);
  };
  const auto all_tokens = [&](auto rows, int r, int t0, int t1) {
    int t = t0;
    for (; t + kTileTokens <= t1; t += kTileTokens) run(rows, std::integral_constant<int, kTileTokens>{}, r, t);
    switch (t1 - t) {
      case 3: run(rows, std::integral_constant<int, 3>{}, r, t); break;
      case 2: run(rows, std::integral_constant<int, 2>{}, r, t); break;
      case 1: run(rows, std::integral_constant<int, 1>{}, r, t); break;
      default: break;
    }
  };
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    int r = row_begin;
    for (; r + kTileRows <= row_end; r += kTileRows) all_tokens(std::integral_constant<int, kTileRows>{}, r, t0, t1);
    for (; r < row_end; ++r) all_tokens(std::integral_constant<int, 1>{}, r, t0, t1);
  }
}

// 16 int8 products summed into the 4 int32 lanes of acc (which lane gets which products differs between
// the two forms; the total does not). Exact: each product fits int16 (|w|, |x| <= 128).
inline int32x4_t dot16(int32x4_t acc, int8x16_t w, int8x16_t x) {
#if PAGEDLM_NEON_DOTPROD
  return vdotq_s32(acc, w, x);
#else
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(w), vget_low_s8(x)));
  return vpadalq_s16(acc, vmull_high_s8(w, x));
#endif
}

inline int32x4_t dot32(const int8x16_t* w, const int8_t* x) { return dot16(dot16(vdupq_n_s32(0), w[0], vld1q_s8(x)), w[1], vld1q_s8(x + 16)); }

}  // namespace

}  // namespace pagedlm
