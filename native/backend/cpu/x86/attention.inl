// Attention over one KV block: scores against K rows and the weighted sum of V rows, row by row and fused for
// a group of query rows (the online softmax on whole vectors). Part of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/common.inl"
#include "backend/cpu/x86/elementwise.inl"

namespace pagedlm {

namespace {

// Scores of 4 K rows at a time, sharing each load of q; each row's sum runs the FMAs of row_dots<1>.
template <typename Row, typename Element>
void dot_rows(const Element* k, int n, int d, const float* q, float* out) {
  int p = 0;
  for (; p + 4 <= n; p += 4) {
    const Row rows[4] = {{k + static_cast<size_t>(p) * d}, {k + static_cast<size_t>(p + 1) * d}, {k + static_cast<size_t>(p + 2) * d},
                         {k + static_cast<size_t>(p + 3) * d}};
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int i = 0;
    for (; i + 8 <= d; i += 8) {
      const __m256 qv = _mm256_loadu_ps(q + i);
      for (int r = 0; r < 4; ++r) acc[r] = _mm256_fmadd_ps(rows[r].load8(i), qv, acc[r]);
    }
    for (int r = 0; r < 4; ++r) {
      float sum = hsum(acc[r]);
      for (int j = i; j < d; ++j) sum += rows[r].at(j) * q[j];
      out[p + r] = sum;
    }
  }
  for (; p < n; ++p) row_dots<1>(Row{k + static_cast<size_t>(p) * d}, d, q, out + p, 1);
}

// acc += sum of weights[p] * v[p], 32 dimensions at a time held in registers across all n rows; each
// element sees the same FMAs, in the same order, as n calls of axpy.
template <typename Row, typename Element>
void axpy_rows(const float* weights, const Element* v, int n, int d, float* acc) {
  int i = 0;
  for (; i + 32 <= d; i += 32) {
    __m256 a[4];
    for (int m = 0; m < 4; ++m) a[m] = _mm256_loadu_ps(acc + i + 8 * m);
    for (int p = 0; p < n; ++p) {
      const __m256 w = _mm256_set1_ps(weights[p]);
      const Row row{v + static_cast<size_t>(p) * d};
      for (int m = 0; m < 4; ++m) a[m] = _mm256_fmadd_ps(w, row.load8(i + 8 * m), a[m]);
    }
    for (int m = 0; m < 4; ++m) _mm256_storeu_ps(acc + i + 8 * m, a[m]);
  }
  for (; i + 8 <= d; i += 8) {
    __m256 a = _mm256_loadu_ps(acc + i);
    for (int p = 0; p < n; ++p) a = _mm256_fmadd_ps(_mm256_set1_ps(weights[p]), Row{v + static_cast<size_t>(p) * d}.load8(i), a);
    _mm256_storeu_ps(acc + i, a);
  }
  for (; i < d; ++i) {
    for (int p = 0; p < n; ++p) acc[i] += weights[p] * Row{v + static_cast<size_t>(p) * d}.at(i);
  }
}

void dot_rows_f32(const float* k, int n, int d, const float* q, float* out) { dot_rows<F32Row<1>>(k, n, d, q, out); }
void dot_rows_f16(const uint16_t* k, int n, int d, const float* q, float* out) { dot_rows<F16Row<1>>(k, n, d, q, out); }
void axpy_rows_f32(const float* weights, const float* v, int n, int d, float* acc) { axpy_rows<F32Row<1>>(weights, v, n, d, acc); }
void axpy_rows_f16(const float* weights, const uint16_t* v, int n, int d, float* acc) { axpy_rows<F16Row<1>>(weights, v, n, d, acc); }

// One KV block's attention for a group of query rows, one vector of positions (8 on AVX2, 16 on AVX-512) at
// a time: each K row is loaded (and converted) once for every query row, its dot products stay in registers
// as lane-wise partial sums, and a transposing add tree turns a vector's worth of positions' partials into
// one vector of scores, so the softmax and the V update run on whole vectors. Measured against the per-row
// kernels by bench/cpu/attention_bench.cpp (docs/benchmarks.md).
//
// The vector width's operations. A partial chunk (head_dim not a multiple of the width, positions past the
// block's end) loads zeros past `n` and stores only the first `n` lanes.
// Encoded KV elements the attention loaders read directly (int8 is int8_t): bf16 bits, and fp8 e4m3 codes
// (kv_dtype.h), whose exponent and mantissa shifted 20 bits up are a float 2^120 times too small.
struct Bf16Bits {
  uint16_t bits;
};
struct Fp8Code {
  uint8_t bits;
};
constexpr float kFp8Rebias = 1.329228e36f;  // 2^120

struct Lanes8 {
  using V = __m256;
  static constexpr int kWidth = 8;
  // 16 ymm registers: 2 query rows' partial sums at a time, and 4 vectors (32 columns) of V per row (4 rows
  // or 2 vectors measured no better).
  static constexpr int kRowsPerPass = 2;
  static constexpr int kColumnsPerPass = 4;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  [[gnu::always_inline]] static V exp(V x) { return exp8(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static V load(const Bf16Bits* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
  }
  static V load(const int8_t* p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))); }
  static V load(const Fp8Code* p) {
    const __m256i code = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m256i magnitude = _mm256_and_si256(code, _mm256_set1_epi32(0x7f));
    const __m256 value = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(magnitude, 20)), _mm256_set1_ps(kFp8Rebias));
    const __m256 sign = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(code, _mm256_set1_epi32(0x80)), 24));
    const __m256 nan = _mm256_castsi256_ps(_mm256_cmpeq_epi32(magnitude, _mm256_set1_epi32(0x7f)));  // 0x7f: NaN
    return _mm256_or_ps(_mm256_or_ps(value, sign), nan);
  }
  template <typename Element>
  static V load(const Element* p, int n) {
    if (n >= kWidth) return load(p);
    Element part[kWidth] = {};
    std::memcpy(part, p, static_cast<size_t>(n > 0 ? n : 0) * sizeof(Element));
    return load(part);
  }
  static void store(float* p, V v, int n) {
    if (n >= kWidth) return _mm256_storeu_ps(p, v);
    float part[kWidth];
    _mm256_storeu_ps(part, v);
    std::memcpy(p, part, static_cast<size_t>(n) * sizeof(float));
  }
  static V unpack_add(V a, V b) { return add(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b)); }
  static V unpack_add_pairs(V a, V b) {
    const __m256d ad = _mm256_castps_pd(a), bd = _mm256_castps_pd(b);
    return add(_mm256_castpd_ps(_mm256_unpacklo_pd(ad, bd)), _mm256_castpd_ps(_mm256_unpackhi_pd(ad, bd)));
  }
  // Folded quads (in each 128-bit lane, that lane's sums of 4 positions) -> the 8 totals in order.
  static V totals(const V (&quads)[2]) { return add(_mm256_permute2f128_ps(quads[0], quads[1], 0x20), _mm256_permute2f128_ps(quads[0], quads[1], 0x31)); }
  static V first_or(V v, int n, float fill) {
    const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), v, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), index)));
  }
  static float reduce_max(V v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
  }
  static float reduce_add(V v) { return hsum(v); }
};

#if PAGEDLM_X86_AVX512
// The first n of 16 lanes, n clamped to [0, 16] (no <algorithm> here: see kernels_x86.inl).
inline __mmask16 first_lanes(int n) { return n <= 0 ? 0 : n >= 16 ? 0xffff : static_cast<__mmask16>((1u << n) - 1); }

struct Lanes16 {
  using V = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kRowsPerPass = 4;
  static constexpr int kColumnsPerPass = 4;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // exp8's method in 16 lanes.
  [[gnu::always_inline]] static V exp(V x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    for (const float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    const __m512i two_to_n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(two_to_n));
  }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static V load(const float* p, int n) { return _mm512_maskz_loadu_ps(first_lanes(n), p); }
  static V load(const uint16_t* p, int n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_lanes(n), p)); }
  static V bf16(__m256i bits) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16)); }
  static V load(const Bf16Bits* p) { return bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static V load(const Bf16Bits* p, int n) { return bf16(_mm256_maskz_loadu_epi16(first_lanes(n), p)); }
  static V load(const int8_t* p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))); }
  static V load(const int8_t* p, int n) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(first_lanes(n), p))); }
  static V fp8(__m128i codes) {
    const __m512i code = _mm512_cvtepu8_epi32(codes);
    const __m512i magnitude = _mm512_and_si512(code, _mm512_set1_epi32(0x7f));
    const __m512 value = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(magnitude, 20)), _mm512_set1_ps(kFp8Rebias));
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(code, _mm512_set1_epi32(0x80)), 24);
    const __mmask16 nan = _mm512_cmpeq_epi32_mask(magnitude, _mm512_set1_epi32(0x7f));  // 0x7f: NaN
    const __m512 signed_value = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(value), sign));
    return _mm512_mask_mov_ps(signed_value, nan, _mm512_set1_ps(__builtin_nanf("")));
  }
  static V load(const Fp8Code* p) { return fp8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static V load(const Fp8Code* p, int n) { return fp8(_mm_maskz_loadu_epi8(first_lanes(n), p)); }
  static void store(float* p, V v, int n) { _mm512_mask_storeu_ps(p, first_lanes(n), v); }
  static V unpack_add(V a, V b) { return add(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b)); }
  static V unpack_add_pairs(V a, V b) {
    const __m512d ad = _mm512_castps_pd(a), bd = _mm512_castps_pd(b);
    return add(_mm512_castpd_ps(_mm512_unpacklo_pd(ad, bd)), _mm512_castpd_ps(_mm512_unpackhi_pd(ad, bd)));
  }
  // Adds 128-bit lanes pairwise: [a0 + a1, a2 + a3, b0 + b1, b2 + b3].
  static V add_lane_pairs(V a, V b) {
    return add(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  static V totals(const V (&quads)[4]) { return add_lane_pairs(add_lane_pairs(quads[0], quads[1]), add_lane_pairs(quads[2], quads[3])); }
  static V first_or(V v, int n, float fill) { return _mm512_mask_mov_ps(_mm512_set1_ps(fill), first_lanes(n), v); }
  static float reduce_max(V v) { return _mm512_reduce_max_ps(v); }
  static float reduce_add(V v) { return _mm512_reduce_add_ps(v); }
};
#endif

// A head_dim the kernels know at compile time (C vectors, whole), or C = 0: any d, the last vector partial.
template <typename L, int C>
struct HeadVectors {
  int d;
  int count() const { return C > 0 ? C : (d + L::kWidth - 1) / L::kWidth; }
  template <typename Element>
  typename L::V load(const Element* row, int i) const {
    if constexpr (C > 0) return L::load(row + L::kWidth * i);
    return L::load(row + L::kWidth * i, d - L::kWidth * i);
  }
  void store(float* row, int i, typename L::V v) const { L::store(row + L::kWidth * i, v, C > 0 ? L::kWidth : d - L::kWidth * i); }
};

// Dot products of R query rows with K rows p and p + 1 (zero from `count` on), folded to one vector per row:
// in each 128-bit lane, [even-lane sum of p, of p + 1, odd-lane sum of p, of p + 1]. Positions go in pairs
// and are folded as they come, so few partial sums are live at once.
template <int R, typename L, int C, typename Element>
[[gnu::always_inline]] inline void scores_pair(const Element* k, int p, int count, HeadVectors<L, C> shape, const float* q, typename L::V (&out)[R]) {
  typename L::V t0[R], t1[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) t0[r] = t1[r] = L::zero();
  if (p < count) {
    for (int i = 0; i < shape.count(); ++i) {
      const auto k0 = shape.load(k + static_cast<size_t>(p) * shape.d, i);
      const auto k1 = p + 1 < count ? shape.load(k + static_cast<size_t>(p + 1) * shape.d, i) : L::zero();
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const auto qv = shape.load(q + static_cast<size_t>(r) * shape.d, i);
        t0[r] = L::fmadd(k0, qv, t0[r]);
        t1[r] = L::fmadd(k1, qv, t1[r]);
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) out[r] = L::unpack_add(t0[r], t1[r]);
}

// Positions p to p + 3: in each 128-bit lane, that lane's sums of the four.
template <int R, typename L, int C, typename Element>
[[gnu::always_inline]] inline void scores_quad(const Element* k, int p, int count, HeadVectors<L, C> shape, const float* q, typename L::V (&out)[R]) {
  typename L::V a[R], b[R];
  scores_pair<R>(k, p, count, shape, q, a);
  scores_pair<R>(k, p + 2, count, shape, q, b);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) out[r] = L::unpack_add_pairs(a[r], b[r]);
}

// Dot products of R query rows with K rows [0, count), count <= the width, as one vector per row (0 past count).
template <int R, typename L, int C, typename Element>
[[gnu::always_inline]] inline void scores(const Element* k, int count, HeadVectors<L, C> shape, const float* q, typename L::V (&out)[R]) {
  typename L::V quads[L::kWidth / 4][R];
#pragma GCC unroll 4
  for (int i = 0; i < L::kWidth / 4; ++i) scores_quad<R>(k, 4 * i, count, shape, q, quads[i]);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    typename L::V row[L::kWidth / 4];
#pragma GCC unroll 4
    for (int i = 0; i < L::kWidth / 4; ++i) row[i] = quads[i][r];
    out[r] = L::totals(row);
  }
}

// acc[r] = acc[r] x rescale[r] + sum over p < count of weights[r][p] x v[p], kColumnsPerPass vectors of
// columns at a time in registers.
template <int R, typename L, int C, typename Element>
void accumulate_values(const Element* v, int count, HeadVectors<L, C> shape, const float (&weights)[R][L::kWidth], const float* rescale, float* acc) {
  constexpr int M = L::kColumnsPerPass;
  const int d = shape.d;
  for (int c = 0; c < shape.count(); c += M) {
    const int vecs = shape.count() - c < M ? shape.count() - c : M;
    typename L::V a[R][M];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) {
        a[r][m] = m < vecs ? L::mul(shape.load(acc + static_cast<size_t>(r) * d, c + m), L::set1(rescale[r])) : L::zero();
      }
    }
    for (int p = 0; p < count; ++p) {
      typename L::V w[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) w[r] = L::set1(weights[r][p]);
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) {
        if (m >= vecs) continue;
        const auto vv = shape.load(v + static_cast<size_t>(p) * d, c + m);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) a[r][m] = L::fmadd(w[r], vv, a[r][m]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int m = 0; m < M; ++m) {
        if (m < vecs) shape.store(acc + static_cast<size_t>(r) * d, c + m, a[r][m]);
      }
    }
  }
}

// cap x tanh(x / cap), with tanh(y) = 1 - 2 / (exp(2y) + 1): one exp, whose clamping keeps it finite where
// tanh is +-1 in float.
template <typename L>
[[gnu::always_inline]] inline typename L::V soft_cap(typename L::V x, float cap) {
  const auto e = L::exp(L::mul(x, L::set1(2.0f / cap)));
  return L::mul(L::set1(cap), L::add(L::set1(1.0f), L::div(L::set1(-2.0f), L::add(e, L::set1(1.0f)))));
}

// Up to one vector of positions for R rows: scores, then each row's online-softmax step, then the V update.
template <int R, typename L, int C, typename KElement, typename VElement>
void attend_positions(const KElement* k, const VElement* v, const float* k_scales, const float* v_scales, int count, HeadVectors<L, C> shape,
                      const AttentionRows& rows, int first_row) {
  typename L::V s[R];
  scores<R>(k, count, shape, rows.q + static_cast<size_t>(first_row) * shape.d, s);
  if (k_scales != nullptr) {  // q . (scale x k) = scale x (q . k)
    const auto scale = L::load(k_scales, count);
    for (auto& row : s) row = L::mul(row, scale);
  }
  alignas(64) float weights[R][L::kWidth];
  alignas(64) float rescale[L::kWidth] = {};
  float* row_max = rows.row_max + first_row;
  for (int r = 0; r < R; ++r) {
    auto scaled = L::mul(s[r], L::set1(rows.scale));
    if (rows.softcap > 0) scaled = soft_cap<L>(scaled, rows.softcap);
    scaled = L::first_or(scaled, count, -__builtin_inff());
    const float block_max = L::reduce_max(scaled);
    const float new_max = block_max > row_max[r] ? block_max : row_max[r];
    L::store(weights[r], L::first_or(L::exp(L::add(scaled, L::set1(-new_max))), count, 0.0f), L::kWidth);
    rescale[r] = row_max[r] - new_max;
    row_max[r] = new_max;
  }
  // All rows' rescales in one exp. It clamps: from row_max = -inf (no positions yet) a rescale is e^-87.3,
  // which multiplies zeros.
  L::store(rescale, L::exp(L::load(rescale)), L::kWidth);
  for (int r = 0; r < R; ++r) rows.row_sum[first_row + r] = rows.row_sum[first_row + r] * rescale[r] + L::reduce_add(L::load(weights[r]));
  if (v_scales != nullptr) {  // p x (scale x v) = (p x scale) x v
    const auto scale = L::load(v_scales, count);
    for (auto& row : weights) L::store(row, L::mul(L::load(row), scale), L::kWidth);
  }
  accumulate_values<R>(v, count, shape, weights, rescale, rows.acc + static_cast<size_t>(first_row) * shape.d);
}

template <typename L, int C, typename KElement, typename VElement>
void attend_block_rows(const KElement* k, const VElement* v, const float* k_scales, const float* v_scales, int n, HeadVectors<L, C> shape,
                       const AttentionRows& rows) {
  constexpr int R = L::kRowsPerPass;
  for (int p = 0; p < n; p += L::kWidth) {
    const KElement* kp = k + static_cast<size_t>(p) * shape.d;
    const VElement* vp = v + static_cast<size_t>(p) * shape.d;
    const float* ks = k_scales != nullptr ? k_scales + p : nullptr;
    const float* vs = v_scales != nullptr ? v_scales + p : nullptr;
    const int count = n - p < L::kWidth ? n - p : L::kWidth;
    int r = 0;
    for (; r + R <= rows.rows; r += R) attend_positions<R>(kp, vp, ks, vs, count, shape, rows, r);
    const int left = rows.rows - r;  // fewer than R
    if constexpr (R > 3) {
      if (left == 3) attend_positions<3>(kp, vp, ks, vs, count, shape, rows, r);
    }
    if constexpr (R > 2) {
      if (left == 2) attend_positions<2>(kp, vp, ks, vs, count, shape, rows, r);
    }
    if (left == 1) attend_positions<1>(kp, vp, ks, vs, count, shape, rows, r);
  }
}

#if PAGEDLM_X86_AVX512
using AttentionLanes = Lanes16;
#else
using AttentionLanes = Lanes8;
#endif

// Llama-family head sizes get whole vectors and fully unrolled loops.
template <typename KElement, typename VElement>
void attend_block(const KElement* k, const VElement* v, const float* k_scales, const float* v_scales, int n, int d, const AttentionRows& rows) {
  using L = AttentionLanes;
  switch (d) {
    case 64: return attend_block_rows(k, v, k_scales, v_scales, n, HeadVectors<L, 64 / L::kWidth>{d}, rows);
    case 128: return attend_block_rows(k, v, k_scales, v_scales, n, HeadVectors<L, 128 / L::kWidth>{d}, rows);
    default: return attend_block_rows(k, v, k_scales, v_scales, n, HeadVectors<L, 0>{d}, rows);
  }
}

void attend_block_f32(const float* k, const float* v, int n, int d, const AttentionRows& rows) { attend_block(k, v, nullptr, nullptr, n, d, rows); }
void attend_block_f16(const uint16_t* k, const uint16_t* v, int n, int d, const AttentionRows& rows) {
  attend_block(k, v, nullptr, nullptr, n, d, rows);
}
// Calls body(typed pointer) with `rows` read as the element type of `dtype` (int4 has none: see kernels.h).
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

// One instantiation per (K type, V type) pair: 25.
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
