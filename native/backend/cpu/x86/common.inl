// What the x86 kernel families share: tile sizes, horizontal sums, half-precision conversions, the weight row
// loaders, software prefetch, and the drivers that walk rows and tokens in tiles. See kernels_x86.inl for how
// these files are compiled (once per table, internal linkage only).
#pragma once
#if !defined(PAGEDLM_X86_AVX512)
#error "compiled only through kernels_x86.inl, once per x86 kernel table"
#endif

#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "backend/cpu/kernels.h"

namespace pagedlm {

namespace {

constexpr int kTileTokens = PAGEDLM_X86_AVX512 ? 4 : 3;     // float tile: 4 rows x kTileTokens tokens
constexpr int kQ8TileTokens = PAGEDLM_X86_AVX512 ? 4 : 2;   // Q8_0 and Q4_K 4-row tiles
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
// With AVX-512, interleaved rows also give load16: this row's 8 weights at i and the next row's, which
// follow them in the packed copy, as one 512-bit vector.
template <int G>
struct F32Row {
  const float* p;
  static size_t at_index(int i) { return static_cast<size_t>(i / 8) * 8 * G + i % 8; }
  __m256 load8(int i) const { return _mm256_loadu_ps(p + at_index(i)); }
#if PAGEDLM_X86_AVX512
  __m512 load16(int i) const { return _mm512_loadu_ps(p + at_index(i)); }
#endif
  float at(int i) const { return p[at_index(i)]; }
  const char* addr(int i) const { return reinterpret_cast<const char*>(p + at_index(i)); }
};
template <int G>
struct F16Row {
  const uint16_t* p;
  __m256 load8(int i) const { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + F32Row<G>::at_index(i)))); }
#if PAGEDLM_X86_AVX512
  __m512 load16(int i) const { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + F32Row<G>::at_index(i)))); }
#endif
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
#if PAGEDLM_X86_AVX512
  __m512 load16(int i) const {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + F32Row<G>::at_index(i)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
  }
#endif
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

// Packed weights are one sequential stream per tile. Once a tile does real work per cache line, the hardware
// prefetchers alone leave too few lines in flight to hide DRAM latency, so the multi-token tiles ask for
// lines ahead themselves. The float and Q8_0-lanes tiles ask into L2 from 8 KB ahead, which streams faster
// for them than asking into L1 from 2 KB ahead (further out, that evicts lines still in use); the Q6_K-lanes
// tile streams faster with the near L1 form. The one-token tiles of this table that decode runs (Q8_0, Q4_K
// and Q6_K lanes, tile_4x1_wide) ask for nothing: without software prefetches they keep up with a plain
// streaming read, with them they fall well behind it (likely: each prefetch takes a load slot and a miss
// buffer that the hardware stream prefetcher, which follows these streams anyway, would use). The
// measurements behind these choices: docs/benchmarks.md.
inline void prefetch_far(const void* at) { _mm_prefetch(static_cast<const char*>(at) + 8192, _MM_HINT_T1); }
inline void prefetch_near(const void* at) { _mm_prefetch(static_cast<const char*>(at) + 2048, _MM_HINT_T0); }

// One row's dot product from its vector sum: the horizontal sum, then the columns from `tail` on (fewer than
// 8) one by one.
template <typename Row>
inline float finish_row(const Row& row, __m256 acc, int tail, int cols, const float* x) {
  float sum = hsum(acc);
  for (int c = tail; c < cols; ++c) sum += row.at(c) * x[c];
  return sum;
}

// Four rows' 8-lane sums, each summed to one lane: lane k of the result is the total of rows[k].
inline __m128i sum_lanes_of_4(const __m256i rows[4]) {
  const __m256i pairs = _mm256_hadd_epi32(_mm256_hadd_epi32(rows[0], rows[1]), _mm256_hadd_epi32(rows[2], rows[3]));
  return _mm_add_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
}

// Drives a quantized type's 4-row tiles over rows and chunks of tokens; tile(std::integral_constant<int, T>,
// w, args, t, r) runs the T-token tile for rows w at token t. A last group of fewer than 4 rows (row-major
// only) repeats its last row, and writes through a private output so that the repeats cannot overwrite a
// neighbour's rows.
template <typename Block, typename RowAt, typename Tile>
void matmul_quantized(const MatmulArgs& a, int row_begin, int row_end, RowAt row, Tile tile) {
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    for (int r = row_begin; r < row_end; r += 4) {
      const Block* w[4];
      for (int k = 0; k < 4; ++k) w[k] = row(r + k < row_end ? r + k : row_end - 1);
      if (r + 4 <= row_end) {
        int t = t0;
        for (; t + kQ8TileTokens <= t1; t += kQ8TileTokens) tile(std::integral_constant<int, kQ8TileTokens>{}, w, a, t, r);
        if constexpr (kQ8TileTokens > 3) {
          if (t1 - t == 3) tile(std::integral_constant<int, 3>{}, w, a, t, r);
        }
        if constexpr (kQ8TileTokens > 2) {
          if (t1 - t == 2) tile(std::integral_constant<int, 2>{}, w, a, t, r);
        }
        if (t1 - t == 1) tile(std::integral_constant<int, 1>{}, w, a, t, r);
        continue;
      }
      float tail[4];
      MatmulArgs one = a;
      one.y = tail;
      one.y_stride = 0;  // token t's row k lands in tail[k]
      for (int t = t0; t < t1; ++t) {
        tile(std::integral_constant<int, 1>{}, w, one, t, 0);
        for (int k = 0; r + k < row_end; ++k) a.y[static_cast<size_t>(t) * a.y_stride + r + k] = tail[k];
      }
    }
  }
}

#if PAGEDLM_X86_AVX512
// acc += u8 lanes of `w` x the 4 int8 at `four` broadcast to every lane, the broadcast folded into the
// instruction's memory operand ({1to16}): from _mm512_set1_epi32 GCC 12 emits a separate vpbroadcastd.
inline __m512i dpbusd_broadcast(__m512i acc, __m512i w, const int8_t* four) {
  using Aliased = int32_t __attribute__((may_alias, aligned(1)));
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const Aliased*>(four)));
  return acc;
}

// Rows per group of the AVX-512 "rows in lanes" copies (Q8_0 and the 256-value types): one row per int32 lane.
constexpr int kLaneRows = 16;

// Drives a packed type's 16-row tiles over row groups and chunks of tokens, up to TileTokens tokens a tile;
// tile(std::integral_constant<int, T>, w, args, t, r) runs the T-token tile of group w at token t, row r.
template <typename LaneBlock, int TileTokens, int T = TileTokens, typename Tile>
void run_lane_tile(const LaneBlock* w, const MatmulArgs& a, int t, int r, int n, Tile tile) {
  if constexpr (T > 1) {
    if (n < T) return run_lane_tile<LaneBlock, TileTokens, T - 1>(w, a, t, r, n, tile);
  }
  tile(std::integral_constant<int, T>{}, w, a, t, r);
}

template <typename LaneBlock, int TileTokens, typename Tile>
void matmul_lanes(const MatmulArgs& a, int row_begin, int row_end, Tile tile) {
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    for (int r = row_begin; r < row_end; r += kLaneRows) {
      const auto* w = reinterpret_cast<const LaneBlock*>(a.weights + static_cast<size_t>(r) * a.row_bytes);
      for (int t = t0; t < t1; t += TileTokens) run_lane_tile<LaneBlock, TileTokens>(w, a, t, r, t1 - t, tile);
    }
  }
}
#endif

}  // namespace

}  // namespace pagedlm
