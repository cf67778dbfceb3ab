// The x86 kernels, included by kernels_avx2.cpp (AVX2 + FMA + F16C) and kernels_avx512.cpp (the same plus
// AVX-512 F/BW/VL/VNNI), each compiled with its own -m flags and called only after a run-time CPU check. So
// this file includes no header whose inline functions other files also use (ODR: the linker could keep the
// wide copy), and everything here has internal linkage. Before including it, define
// PAGEDLM_X86_AVX512 (0 or 1), which picks:
//   AVX2: 16 ymm registers, so float tiles of 4 rows x 3 tokens and Q8_0 tiles of 4 x 2, and the Q8_0
//         block dot product through maddubs + madd;
//   AVX-512: 32 ymm registers (the kernels stay 256 bits wide), so 4 x 4 tiles, and vpdpbusd.
// Within one table, every tile shape runs the same operations per (row, token), so a token's result never
// depends on its neighbours in the batch.
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/kernels.h"

namespace pagedlm {

namespace {

constexpr int kTileTokens = PAGEDLM_X86_AVX512 ? 4 : 3;     // float tile: 4 rows x kTileTokens tokens
constexpr int kQ8TileTokens = PAGEDLM_X86_AVX512 ? 4 : 2;   // Q8_0 tile
constexpr int kTokenChunk = 24;  // tokens (a multiple of both tiles) whose activations stay in L2 while rows stream past

inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }
inline float bf16_bits_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Loaders give 8 consecutive weights of one row as floats (load8, i a multiple of 8) or one weight (at).
// G is how many rows are interleaved (1: row-major, kInterleaveRows: see kernels.h): chunks of 8 weights
// of one row lie G chunks apart.
template <int G>
struct F32Row {
  const float* p;
  static size_t at_index(int i) { return static_cast<size_t>(i / 8) * 8 * G + i % 8; }
  __m256 load8(int i) const { return _mm256_loadu_ps(p + at_index(i)); }
  float at(int i) const { return p[at_index(i)]; }
  const char* addr(int i) const { return reinterpret_cast<const char*>(p + at_index(i)); }
};
template <int G>
struct F16Row {
  const uint16_t* p;
  __m256 load8(int i) const { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + F32Row<G>::at_index(i)))); }
  float at(int i) const { return half_to_float(p[F32Row<G>::at_index(i)]); }
  const char* addr(int i) const { return reinterpret_cast<const char*>(p + F32Row<G>::at_index(i)); }
};
template <int G>
struct BF16Row {
  const uint16_t* p;
  __m256 load8(int i) const {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + F32Row<G>::at_index(i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  }
  float at(int i) const { return bf16_bits_to_float(p[F32Row<G>::at_index(i)]); }
  const char* addr(int i) const { return reinterpret_cast<const char*>(p + F32Row<G>::at_index(i)); }
};

// Dots of one weight row with NT token rows, converting each 8 weights once for all NT tokens.
template <int NT, typename Row>
void row_dots(const Row& w, int cols, const float* x, float* y, int y_stride) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= cols; i += 8) {
    const __m256 wv = w.load8(i);
    for (int t = 0; t < NT; ++t) acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + static_cast<size_t>(t) * cols + i), acc[t]);
  }
  for (int t = 0; t < NT; ++t) {
    float sum = hsum(acc[t]);
    for (int j = i; j < cols; ++j) sum += w.at(j) * x[static_cast<size_t>(t) * cols + j];
    y[static_cast<size_t>(t) * y_stride] = sum;
  }
}

template <typename Row>
void row_all_tokens(const Row& w, const MatmulArgs& a, int t_begin, int t_end, int r) {
  int t = t_begin;
  const auto x_at = [&](int tok) { return a.x + static_cast<size_t>(tok) * a.cols; };
  const auto y_at = [&](int tok) { return a.y + static_cast<size_t>(tok) * a.y_stride + r; };
  for (; t + 4 <= t_end; t += 4) row_dots<4>(w, a.cols, x_at(t), y_at(t), a.y_stride);
  switch (t_end - t) {
    case 3: row_dots<3>(w, a.cols, x_at(t), y_at(t), a.y_stride); break;
    case 2: row_dots<2>(w, a.cols, x_at(t), y_at(t), a.y_stride); break;
    case 1: row_dots<1>(w, a.cols, x_at(t), y_at(t), a.y_stride); break;
    default: break;
  }
}

// Interleaved weights are one sequential stream; with 2-4 tokens the work per cache line leaves too few
// loads in flight to hide DRAM latency, so the tile asks for the line this far ahead itself.
constexpr int kPrefetchBytes = 2048;

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
    if (a.interleaved) _mm_prefetch(w[0].addr(i) + kPrefetchBytes, _MM_HINT_T0);
    for (int k = 0; k < R; ++k) {
      const __m256 wv = w[k].load8(i);
      for (int j = 0; j < T; ++j) acc[k][j] = _mm256_fmadd_ps(wv, xv[j], acc[k][j]);
    }
  }
  for (int k = 0; k < R; ++k) {
    for (int j = 0; j < T; ++j) {
      float sum = hsum(acc[k][j]);
      for (int c = i; c < a.cols; ++c) sum += w[k].at(c) * x[j][c];
      a.y[static_cast<size_t>(t + j) * a.y_stride + r + k] = sum;
    }
  }
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
      if (t1 - t == 1) tile_4xT<1>(w, a, t, r);
    }
    for (; r < row_end; ++r) row_all_tokens(row(r), a, t0, t1, r);
  }
}

template <template <int> class RowT, typename Element>
void matmul_float_any(const MatmulArgs& a, int row_begin, int row_end) {
  if (a.interleaved) return matmul_float<RowT, Element, kInterleaveRows>(a, row_begin, row_end);
  matmul_float<RowT, Element, 1>(a, row_begin, row_end);
}

// Q8_0 x int8 activations. Per 32-value block, an integer dot product in 8 int32 lanes (each lane the sum
// of 4 products), converted to float and scaled by both blocks' scales into a float sum.
//   Signed weights (row-major): |w| (unsigned) times x carrying w's sign, through maddubs + madd on AVX2
//   (|w|, |x| <= 128 keeps its int16 pairs from saturating) or vpdpbusd on AVX-512.
//   Unsigned weights (AVX-512 interleaved copies, stored as w + 128): vpdpbusd of (w + 128) and x, started
//   from the activation block's lane_offsets (-128 x its lane sums of x), which gives the same lanes.
inline __m256i q8_block_dot(__m256i abs_w, __m256i w, __m256i x) {
#if PAGEDLM_X86_AVX512
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), abs_w, _mm256_sign_epi8(x, w));
#else
  const __m256i pairs = _mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
#endif
}

// Interleaved Q8_0 copies hold w + 128 where the table has vpdpbusd (see pack_rows).
constexpr bool kUnsignedQ8Copies = PAGEDLM_X86_AVX512;

// A 4-row x T-token tile of Q8_0 (AVX2: T <= 2, so 8 sums, the weights and their magnitudes and T
// activations fit 16 registers).
template <int T, int G>
void tile_q8_4xT(const BlockQ8_0* const* w, const MatmulArgs& a, int t, int r) {
  constexpr int R = 4;
  constexpr bool kUnsigned = kUnsignedQ8Copies && G > 1;
  const int blocks = a.cols / static_cast<int>(kQ8BlockElements);
  __m256 acc[R][T];
  for (auto& row : acc) {
    for (auto& v : row) v = _mm256_setzero_ps();
  }
  const ActivationBlockQ8* x[T];
  for (int j = 0; j < T; ++j) x[j] = a.xq + static_cast<size_t>(t + j) * blocks;
  for (int b = 0; b < blocks; ++b) {
    __m256i xv[T];
    __m256 x_scale[T];
    for (int j = 0; j < T; ++j) {
      xv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j][b].values));
      x_scale[j] = _mm256_set1_ps(x[j][b].scale);
    }
    if constexpr (G > 1) {
      // A group's block is 4 x 34 bytes: the lines it spans, kPrefetchBytes ahead (see tile_4xT).
      const char* ahead = reinterpret_cast<const char*>(w[0] + static_cast<size_t>(b) * G) + kPrefetchBytes;
      for (int line = 0; line < 3; ++line) _mm_prefetch(ahead + 64 * line, _MM_HINT_T0);
    }
    for (int k = 0; k < R; ++k) {
      const BlockQ8_0& block = w[k][static_cast<size_t>(b) * G];
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.values));
      const __m256 w_scale = _mm256_set1_ps(half_to_float(block.scale));
      for (int j = 0; j < T; ++j) {
        __m256i lanes;
        if constexpr (kUnsigned) {
#if PAGEDLM_X86_AVX512
          lanes = _mm256_dpbusd_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j][b].lane_offsets)), wv, xv[j]);
#endif
        } else {
          lanes = q8_block_dot(_mm256_sign_epi8(wv, wv), wv, xv[j]);
        }
        acc[k][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_mul_ps(w_scale, x_scale[j]), acc[k][j]);
      }
    }
  }
  for (int k = 0; k < R; ++k) {
    for (int j = 0; j < T; ++j) a.y[static_cast<size_t>(t + j) * a.y_stride + r + k] = hsum(acc[k][j]);
  }
}

template <int G>
void matmul_q8(const MatmulArgs& a, int row_begin, int row_end) {
  const auto row = [&](int r) {
    const size_t group_start = static_cast<size_t>(r - r % G) * a.row_bytes;
    return reinterpret_cast<const BlockQ8_0*>(a.weights + group_start) + r % G;
  };
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    int r = row_begin;
    for (; r < row_end; r += 4) {
      // A last group of fewer than 4 rows (row-major only) repeats its last row; only real rows are written.
      const BlockQ8_0* w[4];
      for (int k = 0; k < 4; ++k) w[k] = row(r + k < row_end ? r + k : row_end - 1);
      float* const y = a.y;
      if (r + 4 <= row_end) {
        int t = t0;
        for (; t + kQ8TileTokens <= t1; t += kQ8TileTokens) tile_q8_4xT<kQ8TileTokens, G>(w, a, t, r);
        if constexpr (kQ8TileTokens > 3) {
          if (t1 - t == 3) tile_q8_4xT<3, G>(w, a, t, r);
        }
        if constexpr (kQ8TileTokens > 2) {
          if (t1 - t == 2) tile_q8_4xT<2, G>(w, a, t, r);
        }
        if (t1 - t == 1) tile_q8_4xT<1, G>(w, a, t, r);
        continue;
      }
      // The tail rows go through a private output so the repeated rows cannot overwrite a neighbour.
      float tail[4];
      MatmulArgs one = a;
      one.y = tail;
      one.y_stride = 0;
      for (int t = t0; t < t1; ++t) {
        one.xq = a.xq + static_cast<size_t>(t) * (a.cols / kQ8BlockElements);
        tile_q8_4xT<1, G>(w, one, 0, 0);
        for (int k = 0; r + k < row_end; ++k) y[static_cast<size_t>(t) * a.y_stride + r + k] = tail[k];
      }
    }
  }
}

// Integer dot product of 32 unsigned values (< 16) with 32 int8 activations, in 8 int32 lanes.
inline __m256i u4_block_dot(__m256i q, __m256i x) {
#if PAGEDLM_X86_AVX512
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, x);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1));
#endif
}

// Q4_K's 8 six-bit scales and mins of one super-block (the packing of tensor_type.cpp).
inline void q4_k_scales(const uint8_t* packed, uint8_t* scale, uint8_t* min) {
  for (int s = 0; s < 4; ++s) {
    scale[s] = packed[s] & 63;
    min[s] = packed[s + 4] & 63;
    scale[s + 4] = (packed[s + 8] & 0xF) | ((packed[s] >> 6) << 4);
    min[s + 4] = (packed[s + 8] >> 4) | ((packed[s + 4] >> 6) << 4);
  }
}

// A 4-row x T-token tile of Q4_K x int8 activations. A weight is d * sc * q - dmin * m per 32-value
// sub-block, so a sub-block's dot product is d * sc * sx * sum(q * xq) - dmin * m * sx * sum(xq): the first
// term through integer dot products into float lanes, the second as one 8-wide product per super-block
// (its 8 minimums times the 8 activation blocks' scaled sums).
template <int T>
void tile_q4k_4xT(const BlockQ4_K* const* w, const MatmulArgs& a, int t, int r) {
  constexpr int R = 4;
  const int super_blocks = a.cols / static_cast<int>(kQKElements);
  const int x_blocks = a.cols / static_cast<int>(kQ8BlockElements);
  __m256 acc[R][T];
  __m256 min_acc[R][T];
  for (int k = 0; k < R; ++k) {
    for (int j = 0; j < T; ++j) acc[k][j] = min_acc[k][j] = _mm256_setzero_ps();
  }
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  for (int sb = 0; sb < super_blocks; ++sb) {
    __m256 x_sums[T];  // per sub-block: activation scale x sum of its int8 values
    for (int j = 0; j < T; ++j) {
      const ActivationBlockQ8* xb = a.xq + static_cast<size_t>(t + j) * x_blocks + sb * 8;
      alignas(32) float sums[8];
      for (int s = 0; s < 8; ++s) sums[s] = xb[s].scale * static_cast<float>(xb[s].sum);
      x_sums[j] = _mm256_load_ps(sums);
    }
    for (int k = 0; k < R; ++k) {
      const BlockQ4_K& block = w[k][sb];
      alignas(8) uint8_t scale[8], min[8];
      q4_k_scales(block.scales, scale, min);
      const auto widen = [](const uint8_t* v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v)))); };
      const __m256 d_scales = _mm256_mul_ps(_mm256_set1_ps(half_to_float(block.d)), widen(scale));
      const __m256 d_mins = _mm256_mul_ps(_mm256_set1_ps(half_to_float(block.dmin)), widen(min));
      for (int j = 0; j < T; ++j) min_acc[k][j] = _mm256_fmadd_ps(d_mins, x_sums[j], min_acc[k][j]);
      for (int g = 0; g < 4; ++g) {
        const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.nibbles + 32 * g));
        const __m256i q[2] = {_mm256_and_si256(packed, low_nibbles), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles)};
        const __m256 d_scale[2] = {_mm256_permutevar8x32_ps(d_scales, _mm256_set1_epi32(2 * g)),
                                   _mm256_permutevar8x32_ps(d_scales, _mm256_set1_epi32(2 * g + 1))};
        for (int j = 0; j < T; ++j) {
          // The two sub-blocks are summed first: one add per 64 values on the accumulator's dependency chain.
          const ActivationBlockQ8* xb = a.xq + static_cast<size_t>(t + j) * x_blocks + sb * 8 + 2 * g;
          __m256 pair;
          for (int h = 0; h < 2; ++h) {
            const __m256i lanes = u4_block_dot(q[h], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[h].values)));
            const __m256 scale = _mm256_mul_ps(d_scale[h], _mm256_set1_ps(xb[h].scale));
            pair = h == 0 ? _mm256_mul_ps(_mm256_cvtepi32_ps(lanes), scale) : _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), scale, pair);
          }
          acc[k][j] = _mm256_add_ps(acc[k][j], pair);
        }
      }
    }
  }
  for (int k = 0; k < R; ++k) {
    for (int j = 0; j < T; ++j) a.y[static_cast<size_t>(t + j) * a.y_stride + r + k] = hsum(acc[k][j]) - hsum(min_acc[k][j]);
  }
}

void matmul_q4k(const MatmulArgs& a, int row_begin, int row_end) {
  const auto row = [&](int r) { return reinterpret_cast<const BlockQ4_K*>(a.weights + static_cast<size_t>(r) * a.row_bytes); };
  const int x_blocks = a.cols / static_cast<int>(kQ8BlockElements);
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    for (int r = row_begin; r < row_end; r += 4) {
      const BlockQ4_K* w[4];
      for (int k = 0; k < 4; ++k) w[k] = row(r + k < row_end ? r + k : row_end - 1);
      if (r + 4 <= row_end) {
        int t = t0;
        for (; t + kQ8TileTokens <= t1; t += kQ8TileTokens) tile_q4k_4xT<kQ8TileTokens>(w, a, t, r);
        if constexpr (kQ8TileTokens > 3) {
          if (t1 - t == 3) tile_q4k_4xT<3>(w, a, t, r);
        }
        if constexpr (kQ8TileTokens > 2) {
          if (t1 - t == 2) tile_q4k_4xT<2>(w, a, t, r);
        }
        if (t1 - t == 1) tile_q4k_4xT<1>(w, a, t, r);
        continue;
      }
      // Fewer than 4 rows left: the repeated last row writes into a private output.
      float tail[4];
      MatmulArgs one = a;
      one.y = tail;
      one.y_stride = 0;
      for (int t = t0; t < t1; ++t) {
        one.xq = a.xq + static_cast<size_t>(t) * x_blocks;
        tile_q4k_4xT<1>(w, one, 0, 0);
        for (int k = 0; r + k < row_end; ++k) a.y[static_cast<size_t>(t) * a.y_stride + r + k] = tail[k];
      }
    }
  }
}

void quantize_q8(const float* x, int n, ActivationBlockQ8* out) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  for (int b = 0; b < n / static_cast<int>(kQ8BlockElements); ++b) {
    const float* v = x + static_cast<size_t>(b) * kQ8BlockElements;
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 32; i += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(v + i)));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float max = _mm_cvtss_f32(m);
    const float scale = max / 127.0f;
    const __m256 inverse = _mm256_set1_ps(scale > 0 ? 1.0f / scale : 0.0f);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(v + 8 * i), inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    // Pack 32 int32 to 32 int8; the packs work within 128-bit lanes, the permute restores the order.
    const __m256i words = _mm256_packs_epi32(q[0], q[1]);
    const __m256i words2 = _mm256_packs_epi32(q[2], q[3]);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words, words2), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    out[b].scale = scale;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].values), bytes);
    const __m256i pair_sums = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), bytes), _mm256_set1_epi16(1));
    __m128i sum4 = _mm_add_epi32(_mm256_castsi256_si128(pair_sums), _mm256_extracti128_si256(pair_sums, 1));
    sum4 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0x4E));
    sum4 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0xB1));
    out[b].sum = _mm_cvtsi128_si32(sum4);
#if PAGEDLM_X86_AVX512
    const __m256i lane_sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(static_cast<char>(0x80)), bytes);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].lane_offsets), _mm256_sub_epi32(_mm256_setzero_si256(), lane_sums));
#endif
  }
}

void matmul_rows(const MatmulArgs& a, int row_begin, int row_end, float* scratch) {
  switch (a.type) {
    case TensorType::kF32: return matmul_float_any<F32Row, float>(a, row_begin, row_end);
    case TensorType::kF16: return matmul_float_any<F16Row, uint16_t>(a, row_begin, row_end);
    case TensorType::kBF16: return matmul_float_any<BF16Row, uint16_t>(a, row_begin, row_end);
    case TensorType::kQ8_0:
      if (a.xq == nullptr) break;  // the caller did not quantize the activations: dequantize instead
      if (a.interleaved) return matmul_q8<kInterleaveRows>(a, row_begin, row_end);
      return matmul_q8<1>(a, row_begin, row_end);
    case TensorType::kQ4_K:
      if (a.xq == nullptr) break;
      return matmul_q4k(a, row_begin, row_end);
    default: break;
  }
  // Types without a register loader: dequantize one row at a time into the thread's scratch.
  for (int r = row_begin; r < row_end; ++r) {
    dequantize_row(a.type, a.weights + static_cast<size_t>(r) * a.row_bytes, scratch, a.cols);
    row_all_tokens(F32Row<1>{scratch}, a, 0, a.n_tokens, r);
  }
}

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

float read_sum(const float* x, size_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 4; ++j) acc[j] = _mm256_add_ps(acc[j], _mm256_loadu_ps(x + i + 8 * j));
  }
  float total = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) total += x[i];
  return total;
}
void axpy_f16(float alpha, const uint16_t* x, float* y, int n) { axpy(alpha, F16Row<1>{x}, y, n); }

void pack_rows(TensorType type, const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
  interleave_rows(type, src, row_bytes, rows, dst);
  if (!kUnsignedQ8Copies || type != TensorType::kQ8_0) return;
  auto* blocks = reinterpret_cast<BlockQ8_0*>(dst);
  for (size_t b = 0; b < static_cast<size_t>(rows) * row_bytes / sizeof(BlockQ8_0); ++b) {
    for (int8_t& v : blocks[b].values) v = static_cast<int8_t>(static_cast<uint8_t>(v) ^ 0x80);  // w + 128, as unsigned
  }
}

}  // namespace

const CpuKernels& PAGEDLM_X86_TABLE() {
  static const CpuKernels kernels{PAGEDLM_X86_AVX512 ? "avx512" : "avx2", matmul_rows, dot_f32, dot_f16, axpy_f32, axpy_f16, dot_rows_f32, dot_rows_f16, axpy_rows_f32, axpy_rows_f16, read_sum, pack_rows, quantize_q8};
  return kernels;
}

}  // namespace pagedlm
