// F32, F16 and BF16 weights times float activations: 4-row tiles of FMAs. Part of the x86 kernels: see
// kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/common.inl"

namespace pagedlm {

namespace {

// A 4-row x T-token tile: 4T accumulators, and each weight vector converted once per T tokens while each
// activation vector is loaded once per 4 rows, so the inner loop is bound by FMAs, not loads. At T = 3 it
// uses all 16 ymm registers of AVX2: 12 sums, 3 activations, 1 weight. Each (row, token) sum runs the same
// sequence of FMAs as row_dots, so a token's result does not depend on its neighbours in the batch.
template <int T, typename Row>
void tile_4xT(const Row* w, const MatmulArgs& a, int t, int r) {
  constexpr int R = 4;
  __m256 acc[R][T];
  for (auto& row : acc) {
    for (auto& v : row) v = _mm256_setzero_ps();
  }
  const float* x[T];
  for (int j = 0; j < T; ++j) x[j] = a.x + static_cast<size_t>(t + j) * a.cols;
  int i = 0;
  for (; i + 8 <= a.cols; i += 8) {
    __m256 xv[T];
    for (int j = 0; j < T; ++j) xv[j] = _mm256_loadu_ps(x[j] + i);
    if (a.interleaved) prefetch_far(w[0].addr(i));
    for (int k = 0; k < R; ++k) {
      const __m256 wv = w[k].load8(i);
      for (int j = 0; j < T; ++j) acc[k][j] = _mm256_fmadd_ps(wv, xv[j], acc[k][j]);
    }
  }
  for (int k = 0; k < R; ++k) {
    for (int j = 0; j < T; ++j) a.y[static_cast<size_t>(t + j) * a.y_stride + r + k] = finish_row(w[k], acc[k][j], i, a.cols, x[j]);
  }
}

#if PAGEDLM_X86_AVX512
// tile_4xT<1> on interleaved rows, two rows per 512-bit vector: each row's 8 lanes run the same FMAs as in
// tile_4xT, so the bits are the same, in half the instructions. Half the instructions is what lets decode's
// one-token F16 rounds keep up with a plain streaming read when the memory is fast, where tile_4xT<1> falls
// well behind it (docs/benchmarks.md). It asks for no lines ahead (see prefetch_far).
template <typename Row>
void tile_4x1_wide(const Row* w, const MatmulArgs& a, int t, int r) {
  __m512 rows01 = _mm512_setzero_ps(), rows23 = _mm512_setzero_ps();
  const float* x = a.x + static_cast<size_t>(t) * a.cols;
  int i = 0;
  for (; i + 8 <= a.cols; i += 8) {
    const __m512 xv = _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(x + i))));
    rows01 = _mm512_fmadd_ps(w[0].load16(i), xv, rows01);
    rows23 = _mm512_fmadd_ps(w[2].load16(i), xv, rows23);
  }
  const auto high = [](__m512 v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); };
  const __m256 acc[4] = {_mm512_castps512_ps256(rows01), high(rows01), _mm512_castps512_ps256(rows23), high(rows23)};
  for (int k = 0; k < 4; ++k) a.y[static_cast<size_t>(t) * a.y_stride + r + k] = finish_row(w[k], acc[k], i, a.cols, x);
}
#endif

template <int G, typename Row>
void tile_4x1(const Row* w, const MatmulArgs& a, int t, int r) {
#if PAGEDLM_X86_AVX512
  if constexpr (G == kInterleaveRows) return tile_4x1_wide(w, a, t, r);
#endif
  tile_4xT<1>(w, a, t, r);
}

// Four rows at a time: every weight is read once per chunk of tokens, and even a single token has four
// independent FMA chains (one chain per row would wait on FMA latency, not on memory).
template <template <int> class RowT, typename Element, int G>
void matmul_float(const MatmulArgs& a, int row_begin, int row_end) {
  using Row = RowT<G>;
  const auto row = [&](int r) {
    // Interleaved: row r starts k chunks into its group.
    const size_t group_start = static_cast<size_t>(r - r % G) * a.row_bytes;
    return Row{reinterpret_cast<const Element*>(a.weights + group_start) + (r % G) * 8};
  };
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    int r = row_begin;
    for (; r + 4 <= row_end; r += 4) {
      const Row w[4] = {row(r), row(r + 1), row(r + 2), row(r + 3)};
      int t = t0;
      for (; t + kTileTokens <= t1; t += kTileTokens) tile_4xT<kTileTokens>(w, a, t, r);
      if constexpr (kTileTokens > 3) {
        if (t1 - t == 3) tile_4xT<3>(w, a, t, r);
      }
      if (t1 - t == 2) tile_4xT<2>(w, a, t, r);
      if (t1 - t == 1) tile_4x1<G>(w, a, t, r);
    }
    for (; r < row_end; ++r) row_all_tokens(row(r), a, t0, t1, r);
  }
}

template <template <int> class RowT, typename Element>
void matmul_float_any(const MatmulArgs& a, int row_begin, int row_end) {
  if (a.interleaved) return matmul_float<RowT, Element, kInterleaveRows>(a, row_begin, row_end);
  matmul_float<RowT, Element, 1>(a, row_begin, row_end);
}

}  // namespace

}  // namespace pagedlm
