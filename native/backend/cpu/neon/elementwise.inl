// Vector loops over plain float arrays: dot products, axpy, exp, the SwiGLU activation, the softmax
// numerators, the maximum and fp16 conversion. Part of the NEON kernels: see kernels_neon.inl.
#pragma once

#include "backend/cpu/neon/common.inl"

namespace pagedlm {

namespace {

template <typename Row>
float row_dot(const Row& row, const float* x, int n) {
  const float* xs[1] = {x};
  float y;
  float* ys[1] = {&y};
  tile_dots<1, 1>(&row, n, xs, ys, 1);
  return y;
}

float dot_f32(const float* a, const float* b, int n) { return row_dot(F32Row{a}, b, n); }
float dot_f16(const uint16_t* a, const float* b, int n) { return row_dot(F16Row{a}, b, n); }

// y += alpha x, one fused multiply-add per element (the vector lanes and the tail alike), so that
// axpy_rows, which runs the same per element, gives the same bits.
template <typename Row>
void axpy(float alpha, const Row& x, float* y, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), x.load4(i), alpha));
  for (; i < n; ++i) y[i] = fma_one(alpha, x.at(i), y[i]);
}

void axpy_f32(float alpha, const float* x, float* y, int n) { axpy(alpha, F32Row{x}, y, n); }
void axpy_f16(float alpha, const uint16_t* x, float* y, int n) { axpy(alpha, F16Row{x}, y, n); }

void dot_rows_f32(const float* k, int n, int d, const float* q, float* out) {
  for (int p = 0; p < n; ++p) out[p] = dot_f32(k + static_cast<size_t>(p) * d, q, d);
}
void dot_rows_f16(const uint16_t* k, int n, int d, const float* q, float* out) {
  for (int p = 0; p < n; ++p) out[p] = dot_f16(k + static_cast<size_t>(p) * d, q, d);
}

// acc += sum of weights[p] x v[p], 16 columns at a time held in registers across all n rows; each element
// sees the same fused multiply-adds, in the same order, as n calls of axpy.
template <typename Row, typename Element>
void axpy_rows(const float* weights, const Element* v, int n, int d, float* acc) {
  int i = 0;
  for (; i + 16 <= d; i += 16) {
    float32x4_t a[4];
    for (int m = 0; m < 4; ++m) a[m] = vld1q_f32(acc + i + 4 * m);
    for (int p = 0; p < n; ++p) {
      const Row row{v + static_cast<size_t>(p) * d};
      for (int m = 0; m < 4; ++m) a[m] = vfmaq_n_f32(a[m], row.load4(i + 4 * m), weights[p]);
    }
    for (int m = 0; m < 4; ++m) vst1q_f32(acc + i + 4 * m, a[m]);
  }
  for (; i + 4 <= d; i += 4) {
    float32x4_t a = vld1q_f32(acc + i);
    for (int p = 0; p < n; ++p) a = vfmaq_n_f32(a, Row{v + static_cast<size_t>(p) * d}.load4(i), weights[p]);
    vst1q_f32(acc + i, a);
  }
  for (; i < d; ++i) {
    for (int p = 0; p < n; ++p) acc[i] = fma_one(weights[p], Row{v + static_cast<size_t>(p) * d}.at(i), acc[i]);
  }
}

void axpy_rows_f32(const float* weights, const float* v, int n, int d, float* acc) { axpy_rows<F32Row>(weights, v, n, d, acc); }
void axpy_rows_f16(const float* weights, const uint16_t* v, int n, int d, float* acc) { axpy_rows<F16Row>(weights, v, n, d, acc); }

// e^x in 4 lanes, within about 2 ulp of std::exp: 2^n x e^r with n = round(x log2 e) and r = x - n ln 2
// (ln 2 in two parts, so r keeps its low bits) in [-ln2/2, ln2/2], where a degree-6 Taylor polynomial is
// accurate to 1.2e-7. x is clamped to where 2^n stays a normal float: below e^-87.3 (1e-38) the result is
// e^-87.3, above e^88.3, e^88.3.
inline float32x4_t exp4(float32x4_t x) {
  x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.3f));
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504f));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.0f / 720);
  for (const float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = vfmaq_f32(vdupq_n_f32(c), p, r);
  const int32x4_t two_to_n = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(two_to_n));
}

inline float32x4_t swiglu4(float32x4_t gate, float32x4_t up) {
  const float32x4_t silu = vdivq_f32(gate, vaddq_f32(vdupq_n_f32(1.0f), exp4(vnegq_f32(gate))));
  return vmulq_f32(silu, up);
}

// The last n % 4 values go through the same vector code as the rest, from zero-padded copies (and no
// <cmath>: see kernels_neon.inl).
void swiglu(float* gate, const float* up, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(gate + i, swiglu4(vld1q_f32(gate + i), vld1q_f32(up + i)));
  if (i == n) return;
  float g[4] = {}, u[4] = {};
  const size_t tail_bytes = static_cast<size_t>(n - i) * sizeof(float);
  std::memcpy(g, gate + i, tail_bytes);
  std::memcpy(u, up + i, tail_bytes);
  vst1q_f32(g, swiglu4(vld1q_f32(g), vld1q_f32(u)));
  std::memcpy(gate + i, g, tail_bytes);
}

float exp_sum(float* x, int n, float shift) {
  const float32x4_t s = vdupq_n_f32(shift);
  float32x4_t sum = vdupq_n_f32(0);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), s));
    vst1q_f32(x + i, e);
    sum = vaddq_f32(sum, e);
  }
  float total = vaddvq_f32(sum);
  if (i < n) {
    float last[4] = {};
    std::memcpy(last, x + i, static_cast<size_t>(n - i) * sizeof(float));
    vst1q_f32(last, exp4(vsubq_f32(vld1q_f32(last), s)));
    for (int j = 0; j < n - i; ++j) total += x[i + j] = last[j];
  }
  return total;
}

// `x > m ? x : m` lane by lane, which keeps m where x is NaN (fmax would return the NaN).
inline float32x4_t max_skipping_nan(float32x4_t x, float32x4_t m) { return vbslq_f32(vcgtq_f32(x, m), x, m); }

float max_f32(const float* x, int n) {
  float32x4_t m[4];
  for (float32x4_t& v : m) v = vdupq_n_f32(-__builtin_inff());
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 4; ++j) m[j] = max_skipping_nan(vld1q_f32(x + i + 4 * j), m[j]);
  }
  for (; i + 4 <= n; i += 4) m[0] = max_skipping_nan(vld1q_f32(x + i), m[0]);
  // No lane holds NaN, so the across-lanes maximum needs no care.
  float best = vmaxvq_f32(vmaxq_f32(vmaxq_f32(m[0], m[1]), vmaxq_f32(m[2], m[3])));
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

// fcvtn rounds to nearest even, as float_to_fp16 does; the tail goes through a zero-padded vector.
void f32_to_f16(const float* x, uint16_t* out, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
  if (i == n) return;
  float tail[4] = {};
  uint16_t halves[4];
  std::memcpy(tail, x + i, sizeof(float) * (n - i));
  vst1_u16(halves, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(tail))));
  std::memcpy(out + i, halves, sizeof(uint16_t) * (n - i));
}

}  // namespace

}  // namespace pagedlm
