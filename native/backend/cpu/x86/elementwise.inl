// Vector loops over plain float arrays: dot products, axpy, exp, the SwiGLU activation, the softmax
// numerators, the maximum and fp16 conversion. Part of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/common.inl"

namespace pagedlm {

namespace {

float dot_f32(const float* a, const float* b, int n) {
  float y;
  row_dots<1>(F32Row<1>{a}, n, b, &y, 1);
  return y;
}

float dot_f16(const uint16_t* a, const float* b, int n) {
  float y;
  row_dots<1>(F16Row<1>{a}, n, b, &y, 1);
  return y;
}

template <typename Row>
void axpy(float alpha, const Row& x, float* y, int n) {
  const __m256 av = _mm256_set1_ps(alpha);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, x.load8(i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x.at(i);
}

void axpy_f32(float alpha, const float* x, float* y, int n) { axpy(alpha, F32Row<1>{x}, y, n); }

void axpy_f16(float alpha, const uint16_t* x, float* y, int n) { axpy(alpha, F16Row<1>{x}, y, n); }

// e^x in 8 lanes, within about 2 ulp of std::exp: 2^n x e^r with n = round(x log2 e) and r = x - n ln 2
// (ln 2 in two parts, so r keeps its low bits) in [-ln2/2, ln2/2], where a degree-6 Taylor polynomial is
// accurate to 1.2e-7. x is clamped to where 2^n stays a normal float: below e^-87.3 (1e-38) the result is
// e^-87.3, above e^88.3, e^88.3.
[[gnu::always_inline]] inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  for (const float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
  const __m256i two_to_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(two_to_n));
}

inline __m256 swiglu8(__m256 gate, __m256 up) {
  const __m256 silu = _mm256_div_ps(gate, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), gate))));
  return _mm256_mul_ps(silu, up);
}

// The last n % 8 values go through the same vector code as the rest, from zero-padded copies (and no
// <cmath>: see kernels_x86.inl).
void swiglu(float* gate, const float* up, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(gate + i, swiglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i == n) return;
  float g[8] = {}, u[8] = {};
  const size_t tail_bytes = static_cast<size_t>(n - i) * sizeof(float);
  std::memcpy(g, gate + i, tail_bytes);
  std::memcpy(u, up + i, tail_bytes);
  _mm256_storeu_ps(g, swiglu8(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
  std::memcpy(gate + i, g, tail_bytes);
}

float exp_sum(float* x, int n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  float total = hsum(sum);
  if (i < n) {
    float last[8] = {};
    std::memcpy(last, x + i, static_cast<size_t>(n - i) * sizeof(float));
    _mm256_storeu_ps(last, exp8(_mm256_sub_ps(_mm256_loadu_ps(last), s)));
    for (int j = 0; j < n - i; ++j) total += x[i + j] = last[j];
  }
  return total;
}

float max_f32(const float* x, int n) {
  // maxps returns its second operand when either is NaN: the running maximum goes second, so NaN is skipped.
  __m256 m[4];
  for (__m256& v : m) v = _mm256_set1_ps(-__builtin_inff());
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 4; ++j) m[j] = _mm256_max_ps(_mm256_loadu_ps(x + i + 8 * j), m[j]);
  }
  for (; i + 8 <= n; i += 8) m[0] = _mm256_max_ps(_mm256_loadu_ps(x + i), m[0]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])));
  float best = lanes[0];
  for (int j = 1; j < 8; ++j) best = lanes[j] > best ? lanes[j] : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

// Rounds to nearest even, as float_to_fp16 does; the tail goes through a zero-padded vector.
void f32_to_f16(const float* x, uint16_t* out, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  if (i == n) return;
  float tail[8] = {};
  uint16_t halves[8];
  std::memcpy(tail, x + i, sizeof(float) * (n - i));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(halves), _mm256_cvtps_ph(_mm256_loadu_ps(tail), _MM_FROUND_TO_NEAREST_INT));
  std::memcpy(out + i, halves, sizeof(uint16_t) * (n - i));
}

}  // namespace

}  // namespace pagedlm
