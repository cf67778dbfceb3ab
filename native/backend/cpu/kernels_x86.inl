// The x86 kernels, included by kernels_avx2.cpp (AVX2 + FMA + F16C) and kernels_avx512.cpp (the same plus
// AVX-512 F/BW/VL/VNNI), each compiled with its own -m flags and called only after a run-time CPU check. So
// this file includes no header whose inline functions other files also use (ODR: the linker could keep the
// wide copy), and everything here has internal linkage. Before including it, define
// PAGEDLM_X86_AVX512 (0 or 1), which picks:
//   AVX2: 16 ymm registers, so float tiles of 4 rows x 3 tokens and Q8_0 tiles of 4 x 2, and the Q8_0
//         block dot product through maddubs + madd;
//   AVX-512: 32 ymm registers, so 4 x 4 tiles, and vpdpbusd; packed Q8_0 weights are read 512 bits at a
//         time with rows in lanes (tile_q8_lanes). The float kernels stay 256 bits wide.
// Within one table, every tile shape runs the same operations per (row, token), so a token's result never
// depends on its neighbours in the batch.
#include <immintrin.h>

#include <cstring>
#include <type_traits>

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
// lines ahead themselves. The float and Q8_0-lanes tiles ask into L2 from 8 KB ahead: on one Zen 4 thread
// that took the 4-token F16 tile from 21 to 42 GMAC/s against asking into L1 from 2 KB ahead (which, further
// out, evicts lines still in use); the 4-token Q6_K-lanes tile streams 25% faster with its near L1 form.
// The one-token tiles of this table that decode runs (Q8_0, Q4_K and Q6_K lanes, tile_4x1_wide) ask for
// nothing: with two threads streaming one step's rounds, both at 35 GB/s and at 60 GB/s of read
// bandwidth, they kept up with a plain read (96-101%) without software prefetches and fell to 67% (Q8_0),
// 79% (Q6_K) and 85-89% (Q4_K) of it at 60 GB/s with them (likely: each prefetch takes a load slot and a
// miss buffer that the hardware stream prefetcher, which follows these streams anyway, would use).
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
// tile_4xT, so the bits are the same, in half the instructions. Decode's one-token F16 rounds streamed at
// 55% of a plain read (60 GB/s, two threads) through tile_4xT<1> and 95-97% through this tile, which asks
// for no lines ahead (see prefetch_far); at 35 GB/s, 88-90% -> 98-99%.
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

// Q8_0 x int8 activations. A block's dot product is exact in integers; its float work is one
// fma(float(dot), w_scale * x_scale, sum) per (row, token, block), the same in every kernel of a table, so
// row-major and packed weights give the same bits.
//   Row-major and 4-row interleaved: |w| (unsigned) times x carrying w's sign, in 8 int32 lanes through
//   maddubs + madd on AVX2 (|w|, |x| <= 128 keeps its int16 pairs from saturating) or vpdpbusd on
//   AVX-512, then 4 rows' lanes summed together into one 128-bit vector of 4 row dots.
//   AVX-512 packed copies: rows in lanes (tile_q8_lanes).
inline __m256i q8_block_dot(__m256i w, __m256i x) {
  const __m256i abs_w = _mm256_sign_epi8(w, w);
#if PAGEDLM_X86_AVX512
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), abs_w, _mm256_sign_epi8(x, w));
#else
  const __m256i pairs = _mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
#endif
}

// Four rows' 8-lane sums, each summed to one lane: lane k of the result is the total of rows[k].
inline __m128i sum_lanes_of_4(const __m256i rows[4]) {
  const __m256i pairs = _mm256_hadd_epi32(_mm256_hadd_epi32(rows[0], rows[1]), _mm256_hadd_epi32(rows[2], rows[3]));
  return _mm_add_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
}

// A 4-row x T-token tile of Q8_0, row-major (G = 1) or 4-row interleaved; each token's 4 row sums live in
// the lanes of one 128-bit accumulator.
template <int T, int G>
void tile_q8_4xT(const BlockQ8_0* const* w, const MatmulArgs& a, int t, int r) {
  constexpr int R = 4;
  const int blocks = a.cols / static_cast<int>(kQ8BlockElements);
  __m128 acc[T];
  for (auto& v : acc) v = _mm_setzero_ps();
  const ActivationBlockQ8* x[T];
  for (int j = 0; j < T; ++j) x[j] = a.xq + static_cast<size_t>(t + j) * blocks;
  for (int b = 0; b < blocks; ++b) {
    if constexpr (G > 1) {
      // A group's block is 4 x 34 bytes: the lines it spans.
      const char* group_block = reinterpret_cast<const char*>(w[0] + static_cast<size_t>(b) * G);
      for (int line = 0; line < 3; ++line) prefetch_near(group_block + 64 * line);
    }
    __m256i wv[R];
    for (int k = 0; k < R; ++k) wv[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[k][static_cast<size_t>(b) * G].values));
    const __m128 w_scale = _mm_setr_ps(half_to_float(w[0][static_cast<size_t>(b) * G].scale), half_to_float(w[1][static_cast<size_t>(b) * G].scale),
                                       half_to_float(w[2][static_cast<size_t>(b) * G].scale), half_to_float(w[3][static_cast<size_t>(b) * G].scale));
    for (int j = 0; j < T; ++j) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j][b].values));
      __m256i lanes[R];
      for (int k = 0; k < R; ++k) lanes[k] = q8_block_dot(wv[k], xv);
      const __m128 dots = _mm_cvtepi32_ps(sum_lanes_of_4(lanes));
      acc[j] = _mm_fmadd_ps(dots, _mm_mul_ps(w_scale, _mm_set1_ps(x[j][b].scale)), acc[j]);
    }
  }
  for (int j = 0; j < T; ++j) _mm_storeu_ps(a.y + static_cast<size_t>(t + j) * a.y_stride + r, acc[j]);
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

template <int G>
void matmul_q8(const MatmulArgs& a, int row_begin, int row_end) {
  const auto row = [&](int r) {
    const size_t group_start = static_cast<size_t>(r - r % G) * a.row_bytes;
    return reinterpret_cast<const BlockQ8_0*>(a.weights + group_start) + r % G;
  };
  matmul_quantized<BlockQ8_0>(a, row_begin, row_end, row, [](auto tokens, const BlockQ8_0* const* w, const MatmulArgs& args, int t, int r) {
    tile_q8_4xT<decltype(tokens)::value, G>(w, args, t, r);
  });
}

#if PAGEDLM_X86_AVX512
// Q8_0 packed for AVX-512 with rows in lanes: a group of 16 rows stores each 32-value block as the 16 rows'
// fp16 scales, then for each 4 consecutive values the 16 rows' 4 bytes, as w + 128 (unsigned). One vpdpbusd
// multiplies 4 values of all 16 rows by the same 4 activations (broadcast), so a block's 16 dot products
// end in the 16 int32 lanes of one register: no horizontal sums, and the float work of a block is done
// once per 16 rows. Started from the activation block's unsigned_offset, the lanes hold the signed dots.
// acc += u8 lanes of `w` x the 4 int8 at `four` broadcast to every lane, the broadcast folded into the
// instruction's memory operand ({1to16}): from _mm512_set1_epi32 GCC 12 emits a separate vpbroadcastd.
inline __m512i dpbusd_broadcast(__m512i acc, __m512i w, const int8_t* four) {
  using Aliased = int32_t __attribute__((may_alias, aligned(1)));
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const Aliased*>(four)));
  return acc;
}

constexpr int kLaneRows = 16;
struct LaneBlockQ8 {
  uint16_t scales[kLaneRows];
  uint8_t quads[kQ8BlockElements / 4][kLaneRows][4];
};
static_assert(sizeof(LaneBlockQ8) == kLaneRows * sizeof(BlockQ8_0), "the packed copy is the size of the rows");
constexpr int kLaneTileTokens = 8;

void pack_q8_lanes(const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
  const size_t blocks = row_bytes / sizeof(BlockQ8_0);
  auto* out = reinterpret_cast<LaneBlockQ8*>(dst);
  for (int g = 0; g < rows; g += kLaneRows) {
    for (size_t b = 0; b < blocks; ++b, ++out) {
      for (int k = 0; k < kLaneRows; ++k) {
        const auto& block = reinterpret_cast<const BlockQ8_0*>(src + static_cast<size_t>(g + k) * row_bytes)[b];
        out->scales[k] = block.scale;
        for (size_t i = 0; i < kQ8BlockElements; ++i) out->quads[i / 4][k][i % 4] = static_cast<uint8_t>(block.values[i]) ^ 0x80;
      }
    }
  }
}

// 16 rows x T tokens: per block, 8 vpdpbusd per token and one convert, multiply and fma per token.
template <int T>
void tile_q8_lanes(const LaneBlockQ8* w, const MatmulArgs& a, int t, int r) {
  const int blocks = a.cols / static_cast<int>(kQ8BlockElements);
  __m512 acc[T];
  for (auto& v : acc) v = _mm512_setzero_ps();
  const ActivationBlockQ8* x[T];
  for (int j = 0; j < T; ++j) x[j] = a.xq + static_cast<size_t>(t + j) * blocks;
  for (int b = 0; b < blocks; ++b) {
    const LaneBlockQ8& block = w[b];
    if constexpr (T > 1) {
      for (int line = 0; line < 9; ++line) prefetch_far(reinterpret_cast<const char*>(&block) + 64 * line);
    }
    __m512i dots[T];
    for (int j = 0; j < T; ++j) dots[j] = _mm512_set1_epi32(x[j][b].unsigned_offset);
    for (int q = 0; q < static_cast<int>(kQ8BlockElements / 4); ++q) {
      const __m512i wv = _mm512_loadu_si512(block.quads[q]);
      for (int j = 0; j < T; ++j) dots[j] = dpbusd_broadcast(dots[j], wv, x[j][b].values + 4 * q);
    }
    const __m512 w_scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.scales)));
    for (int j = 0; j < T; ++j) acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[j]), _mm512_mul_ps(w_scale, _mm512_set1_ps(x[j][b].scale)), acc[j]);
  }
  for (int j = 0; j < T; ++j) _mm512_storeu_ps(a.y + static_cast<size_t>(t + j) * a.y_stride + r, acc[j]);
}

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

void matmul_q8_lanes(const MatmulArgs& a, int row_begin, int row_end) {
  matmul_lanes<LaneBlockQ8, kLaneTileTokens>(a, row_begin, row_end, [](auto tokens, const LaneBlockQ8* w, const MatmulArgs& args, int t, int r) {
    tile_q8_lanes<decltype(tokens)::value>(w, args, t, r);
  });
}
#endif

// Q4_K's 8 six-bit scales (bytes 0-7 of out) and mins (bytes 8-15) of one super-block, unpacked a 32-bit
// word at a time from the packing of tensor_type.cpp: scales 0-3 and mins 0-3 are the low 6 bits of bytes
// 0-3 and 4-7; scales 4-7 and mins 4-7 take the low and high nibbles of bytes 8-11 plus the top 2 bits of
// bytes 0-3 and 4-7.
inline void q4_k_scales(const uint8_t* packed, uint32_t out[4]) {
  uint32_t w[3];
  std::memcpy(w, packed, sizeof(w));
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  out[0] = w[0] & kLow6;
  out[1] = (w[2] & kLow4) | (((w[0] >> 6) & kLow2) << 4);
  out[2] = w[1] & kLow6;
  out[3] = ((w[2] >> 4) & kLow4) | (((w[1] >> 6) & kLow2) << 4);
}

// acc (int32 lanes) += pairs (int16) x scale, pairwise.
inline __m256i add_scaled_pairs(__m256i acc, __m256i pairs, __m256i scale) {
#if PAGEDLM_X86_AVX512
  return _mm256_dpwssd_epi32(acc, pairs, scale);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scale));
#endif
}

// A 4-row x T-token tile of Q4_K x int8 activations quantized per 256 values (one scale per super-block).
// A weight is d * sc * q - dmin * m per 32-value sub-block, so a super-block's dot product is
//   d * sx * sum over s of sc_s * sum(q * xq)  -  dmin * sx * sum over s of m_s * sum(xq over s):
// both sums exact in integers (nibble x int8 pairs through maddubs, then times sc_s), then
//   acc = fma(total, d * sx, acc);  acc = fnmadd(min_total, dmin * sx, acc)
// per (row, token, super-block), the same in the packed kernel (tile_q4k_lanes), so both give the same bits.
template <int T>
void tile_q4k_4xT(const BlockQ4_K* const* w, const MatmulArgs& a, int t, int r) {
  constexpr int R = 4;
  const int super_blocks = a.cols / static_cast<int>(kQKElements);
  __m128 acc[T];
  for (auto& v : acc) v = _mm_setzero_ps();
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  for (int sb = 0; sb < super_blocks; ++sb) {
    const ActivationBlockQ8K* x[T];
    for (int j = 0; j < T; ++j) x[j] = a.xk + static_cast<size_t>(t + j) * super_blocks + sb;
    __m256i totals[T][R];    // 8 lanes each, summed per row below
    __m128i min_sums[T][R];  // 4 lanes each
    for (int k = 0; k < R; ++k) {
      const BlockQ4_K& block = w[k][sb];
      alignas(16) uint32_t unpacked[4];
      q4_k_scales(block.scales, unpacked);
      const auto* scale = reinterpret_cast<const uint8_t*>(unpacked);
      // Two integer sums per token (even and odd sub-blocks): shorter dependency chains for decode.
      __m256i dots[T][2];
      for (auto& pair : dots) pair[0] = pair[1] = _mm256_setzero_si256();
      for (int g = 0; g < 4; ++g) {
        const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.nibbles + 32 * g));
        const __m256i q[2] = {_mm256_and_si256(packed, low_nibbles), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles)};
        for (int h = 0; h < 2; ++h) {
          const __m256i sub_scale = _mm256_set1_epi16(scale[2 * g + h]);
          for (int j = 0; j < T; ++j) {
            const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j]->values + 32 * (2 * g + h)));
            dots[j][h] = add_scaled_pairs(dots[j][h], _mm256_maddubs_epi16(q[h], xv), sub_scale);
          }
        }
      }
      const __m128i min16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scale + 8)));
      for (int j = 0; j < T; ++j) {
        totals[j][k] = _mm256_add_epi32(dots[j][0], dots[j][1]);
        min_sums[j][k] = _mm_madd_epi16(min16, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[j]->sums)));
      }
    }
    const __m128 d = _mm_setr_ps(half_to_float(w[0][sb].d), half_to_float(w[1][sb].d), half_to_float(w[2][sb].d), half_to_float(w[3][sb].d));
    const __m128 dmin = _mm_setr_ps(half_to_float(w[0][sb].dmin), half_to_float(w[1][sb].dmin), half_to_float(w[2][sb].dmin), half_to_float(w[3][sb].dmin));
    for (int j = 0; j < T; ++j) {
      const __m128 total = _mm_cvtepi32_ps(sum_lanes_of_4(totals[j]));
      const __m128i m = _mm_hadd_epi32(_mm_hadd_epi32(min_sums[j][0], min_sums[j][1]), _mm_hadd_epi32(min_sums[j][2], min_sums[j][3]));
      const __m128 x_scale = _mm_set1_ps(x[j]->scale);
      acc[j] = _mm_fmadd_ps(total, _mm_mul_ps(d, x_scale), acc[j]);
      acc[j] = _mm_fnmadd_ps(_mm_cvtepi32_ps(m), _mm_mul_ps(dmin, x_scale), acc[j]);
    }
  }
  for (int j = 0; j < T; ++j) _mm_storeu_ps(a.y + static_cast<size_t>(t + j) * a.y_stride + r, acc[j]);
}

#if PAGEDLM_X86_AVX512
// Q4_K packed for AVX-512 with rows in lanes, the same size as the rows: a group of 16 rows stores each
// super-block as the rows' d and dmin, their 12 packed scale bytes as three 32-bit words per row (word w of
// every row together), then for each pair of sub-blocks (2g, 2g + 1) and each 4 consecutive values the 16
// rows' 4 bytes (low nibbles: sub-block 2g, high: 2g + 1). The scales unpack 16 rows at a time with the word
// operations of q4_k_scales; one vpdpbusd multiplies 4 nibbles of 16 rows by 4 broadcast activations.
struct LaneBlockQ4K {
  uint16_t d[kLaneRows];
  uint16_t dmin[kLaneRows];
  uint32_t scale_words[3][kLaneRows];
  uint8_t nibbles[4][8][kLaneRows][4];  // [sub-block pair][4 values][row][value]
};
static_assert(sizeof(LaneBlockQ4K) == kLaneRows * sizeof(BlockQ4_K), "the packed copy is the size of the rows");
constexpr int kQ4kLaneTileTokens = 4;

void pack_q4k_lanes(const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
  const size_t super_blocks = row_bytes / sizeof(BlockQ4_K);
  auto* out = reinterpret_cast<LaneBlockQ4K*>(dst);
  for (int g = 0; g < rows; g += kLaneRows) {
    for (size_t sb = 0; sb < super_blocks; ++sb, ++out) {
      for (int k = 0; k < kLaneRows; ++k) {
        const auto& block = reinterpret_cast<const BlockQ4_K*>(src + static_cast<size_t>(g + k) * row_bytes)[sb];
        out->d[k] = block.d;
        out->dmin[k] = block.dmin;
        for (int word = 0; word < 3; ++word) std::memcpy(&out->scale_words[word][k], block.scales + 4 * word, 4);
        for (int pair = 0; pair < 4; ++pair) {
          for (int i = 0; i < 32; ++i) out->nibbles[pair][i / 4][k][i % 4] = block.nibbles[32 * pair + i];
        }
      }
    }
  }
}

// 16 rows x T tokens of packed Q4_K: per sub-block pair, 16 vpdpbusd per token and two multiplies by the
// sub-block scales; per super-block, 4 vpdpbusd per token for the minimums and the float work of
// tile_q4k_4xT, once per 16 rows. The high nibbles multiply in place (16 x their value, one AND instead of a
// shift and an AND: a third fewer operations per weight byte, which one-token decode is bound by when the
// memory is fast); the low ones' scales carry the same factor 16, divided out of the integer total
// exactly. |16 x total| stays below 2^29: 16 x 8 sub-blocks x 63 x 32 x 15 x 128.
template <int T>
void tile_q4k_lanes(const LaneBlockQ4K* w, const MatmulArgs& a, int t, int r) {
  const int super_blocks = a.cols / static_cast<int>(kQKElements);
  const __m512i low6 = _mm512_set1_epi8(0x3f), low4 = _mm512_set1_epi8(0x0f), low2 = _mm512_set1_epi8(0x03), byte = _mm512_set1_epi32(0xff);
  const __m512i high4 = _mm512_set1_epi8(static_cast<char>(0xf0));
  __m512 acc[T];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int sb = 0; sb < super_blocks; ++sb) {
    const LaneBlockQ4K& block = w[sb];
    const ActivationBlockQ8K* x[T];
    for (int j = 0; j < T; ++j) x[j] = a.xk + static_cast<size_t>(t + j) * super_blocks + sb;
    const auto word = [&](int i) { return _mm512_loadu_si512(block.scale_words[i]); };
    const __m512i w0 = word(0), w1 = word(1), w2 = word(2);
    // Per lane: the bytes of sc0-3, sc4-7, m0-3 and m4-7 (q4_k_scales on 16 rows).
    const __m512i sc_low = _mm512_and_si512(w0, low6);
    const __m512i sc_high = _mm512_or_si512(_mm512_and_si512(w2, low4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 6), low2), 4));
    const __m512i m_low = _mm512_and_si512(w1, low6);
    const __m512i m_high = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 4), low4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 6), low2), 4));
    __m512i totals[T];
    for (auto& v : totals) v = _mm512_setzero_si512();
    for (int pair = 0; pair < 4; ++pair) {
      if constexpr (T > 1) {
        for (int line = 0; line < 8; ++line) prefetch_near(reinterpret_cast<const char*>(block.nibbles[pair]) + 64 * line);
      }
      __m512i even[T], odd16[T];
      for (int j = 0; j < T; ++j) even[j] = odd16[j] = _mm512_setzero_si512();
      for (int q = 0; q < 8; ++q) {
        const __m512i packed = _mm512_loadu_si512(block.nibbles[pair][q]);
        const __m512i lo = _mm512_and_si512(packed, low4);
        const __m512i hi16 = _mm512_and_si512(packed, high4);
        for (int j = 0; j < T; ++j) {
          even[j] = dpbusd_broadcast(even[j], lo, x[j]->values + 64 * pair + 4 * q);
          odd16[j] = dpbusd_broadcast(odd16[j], hi16, x[j]->values + 64 * pair + 32 + 4 * q);
        }
      }
      const __m512i scales = pair < 2 ? sc_low : sc_high;
      const int shift = 16 * (pair % 2);
      const __m512i sc_even16 = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(scales, shift), byte), 4);
      const __m512i sc_odd = _mm512_and_si512(_mm512_srli_epi32(scales, shift + 8), byte);
      for (int j = 0; j < T; ++j) {
        totals[j] = _mm512_add_epi32(totals[j], _mm512_add_epi32(_mm512_mullo_epi32(even[j], sc_even16), _mm512_mullo_epi32(odd16[j], sc_odd)));
      }
    }
    for (int j = 0; j < T; ++j) totals[j] = _mm512_srai_epi32(totals[j], 4);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.d)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.dmin)));
    for (int j = 0; j < T; ++j) {
      // sum of m_s x sums_s = 128 x (m . sums_high) + (m . sums_low), four sub-blocks per vpdpbusd.
      __m512i high = dpbusd_broadcast(_mm512_setzero_si512(), m_low, x[j]->sums_high);
      high = dpbusd_broadcast(high, m_high, x[j]->sums_high + 4);
      __m512i low = dpbusd_broadcast(_mm512_setzero_si512(), m_low, x[j]->sums_low);
      low = dpbusd_broadcast(low, m_high, x[j]->sums_low + 4);
      const __m512i mins = _mm512_add_epi32(_mm512_slli_epi32(high, 7), low);
      const __m512 x_scale = _mm512_set1_ps(x[j]->scale);
      acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(totals[j]), _mm512_mul_ps(d, x_scale), acc[j]);
      acc[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_mul_ps(dmin, x_scale), acc[j]);
    }
  }
  for (int j = 0; j < T; ++j) _mm512_storeu_ps(a.y + static_cast<size_t>(t + j) * a.y_stride + r, acc[j]);
}

void matmul_q4k_lanes(const MatmulArgs& a, int row_begin, int row_end) {
  matmul_lanes<LaneBlockQ4K, kQ4kLaneTileTokens>(a, row_begin, row_end, [](auto tokens, const LaneBlockQ4K* w, const MatmulArgs& args, int t, int r) {
    tile_q4k_lanes<decltype(tokens)::value>(w, args, t, r);
  });
}
#endif

void matmul_q4k(const MatmulArgs& a, int row_begin, int row_end) {
  const auto row = [&](int r) { return reinterpret_cast<const BlockQ4_K*>(a.weights + static_cast<size_t>(r) * a.row_bytes); };
  matmul_quantized<BlockQ4_K>(a, row_begin, row_end, row, [](auto tokens, const BlockQ4_K* const* w, const MatmulArgs& args, int t, int r) {
    tile_q4k_4xT<decltype(tokens)::value>(w, args, t, r);
  });
}

// Q6_K x int8 activations (ActivationBlockQ8K), one row at a time: each super-block's 256 weights are
// unpacked once to int8 (q - 32) for every token of the chunk. Dot products are exact in integers (|q| <= 32
// keeps maddubs' int16 pairs from saturating) and meet their 16-value sub-block scales in madd; then one
// vector fma per (row, token, super-block) scales the integer lanes by d x x_scale. Every token runs the
// same operations, so its result does not depend on the others.
struct UnpackedQ6K {
#if PAGEDLM_X86_AVX512
  // Chunks 2j and 2j + 1 side by side: |q| as the unsigned operand, q's signs to give to the activations.
  __m512i magnitudes[4];
  __mmask64 negative[4];
  __m512i scales[4];
#else
  __m256i q[8];       // values 32c .. 32c + 31, minus 32
  __m256i scales[8];  // chunk c's two sub-block scales, each in 8 int16 lanes
#endif
  float d;
};

inline void unpack_q6k(const BlockQ6_K& block, UnpackedQ6K& u) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), high2 = _mm256_set1_epi8(0x30), offset = _mm256_set1_epi8(32);
#if PAGEDLM_X86_AVX512
  __m256i q[8];  // joined in pairs below
#else
  __m256i* q = u.q;
#endif
  for (int half = 0; half < 2; ++half) {
    const auto load = [](const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
    const __m256i l0 = load(block.low + 64 * half), l1 = load(block.low + 64 * half + 32), h = load(block.high + 32 * half);
    // 16-bit shifts: the bits that cross into a neighbouring byte land outside that byte's mask.
    __m256i* chunk = q + 4 * half;
    chunk[0] = _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_and_si256(_mm256_slli_epi16(h, 4), high2));
    chunk[1] = _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_and_si256(_mm256_slli_epi16(h, 2), high2));
    chunk[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), _mm256_and_si256(h, high2));
    chunk[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4), _mm256_and_si256(_mm256_srli_epi16(h, 2), high2));
    for (int k = 0; k < 4; ++k) chunk[k] = _mm256_sub_epi8(chunk[k], offset);
  }
#if PAGEDLM_X86_AVX512
  // The 16 scales as int16, then each group of 8 lanes picks its sub-block's: lane i of vector j takes 4j + i/8.
  const __m512i scales16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block.scales))));
  static constexpr int16_t kLaneGroup[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
  const __m512i lane_group = _mm512_loadu_si512(kLaneGroup);
  const auto join = [](__m256i a, __m256i b) { return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1); };
  for (int j = 0; j < 4; ++j) {
    const __m512i values = join(q[2 * j], q[2 * j + 1]);
    u.magnitudes[j] = _mm512_abs_epi8(values);
    u.negative[j] = _mm512_movepi8_mask(values);
    u.scales[j] = _mm512_permutexvar_epi16(_mm512_add_epi16(lane_group, _mm512_set1_epi16(static_cast<int16_t>(4 * j))), scales16);
  }
#else
  for (int c = 0; c < 8; ++c) u.scales[c] = _mm256_setr_m128i(_mm_set1_epi16(block.scales[2 * c]), _mm_set1_epi16(block.scales[2 * c + 1]));
#endif
  u.d = half_to_float(block.d);
}

#if PAGEDLM_X86_AVX512
// A super-block's dot product summed exactly in integers, then one scalar fma per (row, token, super-block):
// the same operations as the packed kernel (tile_q6k_lanes), so packing does not change a bit.
using Q6KSum = float;
inline Q6KSum q6k_accumulate(const UnpackedQ6K& u, const ActivationBlockQ8K& x, Q6KSum sum) {
  __m512i acc = _mm512_setzero_si512();
  for (int j = 0; j < 4; ++j) {
    const __m512i xv = _mm512_loadu_si512(x.values + 64 * j);
    const __m512i signed_x = _mm512_mask_sub_epi8(xv, u.negative[j], _mm512_setzero_si512(), xv);
    acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u.magnitudes[j], signed_x), u.scales[j]));
  }
  const __m128 total = _mm_cvtsi32_ss(_mm_setzero_ps(), _mm512_reduce_add_epi32(acc));
  return _mm_cvtss_f32(_mm_fmadd_ss(total, _mm_set_ss(u.d * x.scale), _mm_set_ss(sum)));
}
inline float q6k_total(Q6KSum sum) { return sum; }
#else
// A super-block's dot product left in integer lanes, scaled into float lanes: the horizontal sum waits for
// the end of the row.
using Q6KSum = __m256;
inline Q6KSum q6k_accumulate(const UnpackedQ6K& u, const ActivationBlockQ8K& x, Q6KSum sums) {
  __m256i acc = _mm256_setzero_si256();
  for (int c = 0; c < 8; ++c) {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.values + 32 * c));
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(u.q[c], u.q[c]), _mm256_sign_epi8(xv, u.q[c]));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, u.scales[c]));
  }
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(u.d * x.scale), sums);
}
inline float q6k_total(Q6KSum sums) { return hsum(sums); }
#endif

void matmul_q6k(const MatmulArgs& a, int row_begin, int row_end) {
  const int super_blocks = a.cols / static_cast<int>(kQKElements);
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    for (int r = row_begin; r < row_end; ++r) {
      const auto* row = reinterpret_cast<const BlockQ6_K*>(a.weights + static_cast<size_t>(r) * a.row_bytes);
      Q6KSum sums[kTokenChunk];
      for (int t = t0; t < t1; ++t) sums[t - t0] = Q6KSum{};
      for (int sb = 0; sb < super_blocks; ++sb) {
        UnpackedQ6K u;
        unpack_q6k(row[sb], u);
        for (int t = t0; t < t1; ++t) sums[t - t0] = q6k_accumulate(u, a.xk[static_cast<size_t>(t) * super_blocks + sb], sums[t - t0]);
      }
      for (int t = t0; t < t1; ++t) a.y[static_cast<size_t>(t) * a.y_stride + r] = q6k_total(sums[t - t0]);
    }
  }
}

#if PAGEDLM_X86_AVX512
// Q6_K packed for AVX-512 with rows in lanes, the same size as the rows: a group of 16 rows stores each
// super-block as the rows' d, their sub-block scales (sub-block by sub-block, a byte per row), then per
// 16-value sub-block three 64-byte vectors: for each 4 consecutive values the 16 rows' 4 low nibbles (two
// such sets per vector, in its low and high nibbles) and their high 2 bits (all four sets in one vector,
// set j in bits 2j and 2j + 1). Unpacked, each set is 16 rows x 4 unsigned 6-bit weights for one vpdpbusd
// against 4 broadcast activations, started from the activations' q6_offsets (the -32 of every weight).
struct LaneSubBlockQ6K {
  uint8_t nibbles[2][kLaneRows][4];  // sets 2i (low nibbles) and 2i + 1 (high nibbles)
  uint8_t high[kLaneRows][4];
};
struct LaneBlockQ6K {
  uint16_t d[kLaneRows];
  int8_t scales[16][kLaneRows];
  LaneSubBlockQ6K sub_blocks[16];
};
static_assert(sizeof(LaneBlockQ6K) == kLaneRows * sizeof(BlockQ6_K), "the packed copy is the size of the rows");
constexpr int kQ6kLaneTileTokens = 4;

// Value v (< 256) of a Q6_K super-block as stored: 6 bits, 32 above the signed weight.
inline int q6k_stored_value(const BlockQ6_K& block, int v) {
  const int half = v / 128, l = v % 32, k = v % 128 / 32;
  const uint8_t low = block.low[64 * half + l + 32 * (k % 2)];
  return (k < 2 ? low & 0xF : low >> 4) | (((block.high[32 * half + l] >> (2 * k)) & 3) << 4);
}

void pack_q6k_lanes(const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
  const size_t super_blocks = row_bytes / sizeof(BlockQ6_K);
  auto* out = reinterpret_cast<LaneBlockQ6K*>(dst);
  for (int g = 0; g < rows; g += kLaneRows) {
    for (size_t sb = 0; sb < super_blocks; ++sb, ++out) {
      for (int k = 0; k < kLaneRows; ++k) {
        const auto& block = reinterpret_cast<const BlockQ6_K*>(src + static_cast<size_t>(g + k) * row_bytes)[sb];
        out->d[k] = block.d;
        for (int s = 0; s < 16; ++s) {
          out->scales[s][k] = block.scales[s];
          LaneSubBlockQ6K& sub = out->sub_blocks[s];
          for (int i = 0; i < 4; ++i) {
            int q[4];
            for (int set = 0; set < 4; ++set) q[set] = q6k_stored_value(block, 16 * s + 4 * set + i);
            sub.nibbles[0][k][i] = static_cast<uint8_t>((q[0] & 0xF) | (q[1] & 0xF) << 4);
            sub.nibbles[1][k][i] = static_cast<uint8_t>((q[2] & 0xF) | (q[3] & 0xF) << 4);
            sub.high[k][i] = static_cast<uint8_t>(q[0] >> 4 | (q[1] >> 4) << 2 | (q[2] >> 4) << 4 | (q[3] >> 4) << 6);
          }
        }
      }
    }
  }
}

// 16 rows x T tokens of packed Q6_K: per sub-block, the 4 sets unpacked once (shifts, masks, a ternary
// logic op each), 4 vpdpbusd and one multiply by the sub-block scales per token; per super-block, one
// convert and fma per token, as q6k_accumulate.
template <int T>
void tile_q6k_lanes(const LaneBlockQ6K* w, const MatmulArgs& a, int t, int r) {
  const int super_blocks = a.cols / static_cast<int>(kQKElements);
  const __m512i low4 = _mm512_set1_epi8(0x0F), high2 = _mm512_set1_epi8(0x30);
  // (nibble & 0x0F) | high bits already masked to 0x30
  const auto join = [&](__m512i nibbles, __m512i high) { return _mm512_ternarylogic_epi32(nibbles, low4, high, 0xEA); };
  __m512 acc[T];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int sb = 0; sb < super_blocks; ++sb) {
    const LaneBlockQ6K& block = w[sb];
    const ActivationBlockQ8K* x[T];
    for (int j = 0; j < T; ++j) x[j] = a.xk + static_cast<size_t>(t + j) * super_blocks + sb;
    __m512i totals[T];
    for (auto& v : totals) v = _mm512_setzero_si512();
    for (int s = 0; s < 16; ++s) {
      const LaneSubBlockQ6K& sub = block.sub_blocks[s];
      if constexpr (T > 1) {
        for (int line = 0; line < 3; ++line) prefetch_near(reinterpret_cast<const char*>(&sub) + 64 * line);
      }
      const __m512i n0 = _mm512_loadu_si512(sub.nibbles[0]), n1 = _mm512_loadu_si512(sub.nibbles[1]);
      const __m512i h = _mm512_loadu_si512(sub.high);
      const __m512i sets[4] = {
          join(n0, _mm512_and_si512(_mm512_slli_epi16(h, 4), high2)),
          join(_mm512_srli_epi16(n0, 4), _mm512_and_si512(_mm512_slli_epi16(h, 2), high2)),
          join(n1, _mm512_and_si512(h, high2)),
          join(_mm512_srli_epi16(n1, 4), _mm512_and_si512(_mm512_srli_epi16(h, 2), high2)),
      };
      const __m512i scale = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block.scales[s])));
      for (int j = 0; j < T; ++j) {
        __m512i dot = _mm512_set1_epi32(x[j]->q6_offsets[s]);
        for (int set = 0; set < 4; ++set) dot = dpbusd_broadcast(dot, sets[set], x[j]->values + 16 * s + 4 * set);
        totals[j] = _mm512_add_epi32(totals[j], _mm512_mullo_epi32(dot, scale));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.d)));
    for (int j = 0; j < T; ++j) acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(totals[j]), _mm512_mul_ps(d, _mm512_set1_ps(x[j]->scale)), acc[j]);
  }
  for (int j = 0; j < T; ++j) _mm512_storeu_ps(a.y + static_cast<size_t>(t + j) * a.y_stride + r, acc[j]);
}

void matmul_q6k_lanes(const MatmulArgs& a, int row_begin, int row_end) {
  matmul_lanes<LaneBlockQ6K, kQ6kLaneTileTokens>(a, row_begin, row_end, [](auto tokens, const LaneBlockQ6K* w, const MatmulArgs& args, int t, int r) {
    tile_q6k_lanes<decltype(tokens)::value>(w, args, t, r);
  });
}
#endif

inline float max_magnitude(const float* v, int n) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(v + i)));
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// 32 values times `inverse`, rounded to int8.
inline __m256i round_to_int8(const float* v, __m256 inverse) {
  __m256i q[4];
  for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(v + 8 * i), inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  // Pack 32 int32 to 32 int8; the packs work within 128-bit lanes, the permute restores the order.
  const __m256i words = _mm256_packs_epi32(q[0], q[1]);
  const __m256i words2 = _mm256_packs_epi32(q[2], q[3]);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(words, words2), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline int sum_int8(__m256i bytes) {
  const __m256i pair_sums = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), bytes), _mm256_set1_epi16(1));
  __m128i sum4 = _mm_add_epi32(_mm256_castsi256_si128(pair_sums), _mm256_extracti128_si256(pair_sums, 1));
  sum4 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0x4E));
  sum4 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0xB1));
  return _mm_cvtsi128_si32(sum4);
}

void quantize_q8(const float* x, int n, ActivationBlockQ8* out) {
  for (int b = 0; b < n / static_cast<int>(kQ8BlockElements); ++b) {
    const float* v = x + static_cast<size_t>(b) * kQ8BlockElements;
    const float scale = max_magnitude(v, 32) / 127.0f;
    const __m256i bytes = round_to_int8(v, _mm256_set1_ps(scale > 0 ? 1.0f / scale : 0.0f));
    out[b].scale = scale;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].values), bytes);
    out[b].unsigned_offset = PAGEDLM_X86_AVX512 ? -128 * sum_int8(bytes) : 0;
  }
}

void quantize_q8k(const float* x, int n, ActivationBlockQ8K* out) {
  for (int b = 0; b < n / static_cast<int>(kQKElements); ++b) {
    const float* v = x + static_cast<size_t>(b) * kQKElements;
    const float scale = max_magnitude(v, kQKElements) / 127.0f;
    const __m256 inverse = _mm256_set1_ps(scale > 0 ? 1.0f / scale : 0.0f);
    out[b].scale = scale;
    for (int s = 0; s < 8; ++s) {
      const __m256i bytes = round_to_int8(v + 32 * s, inverse);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].values + 32 * s), bytes);
      const int sum = sum_int8(bytes);
      out[b].sums[s] = static_cast<int16_t>(sum);
#if PAGEDLM_X86_AVX512
      out[b].sums_high[s] = static_cast<int8_t>(sum >> 7);  // arithmetic: floor(sum / 128), in [-32, 31]
      out[b].sums_low[s] = static_cast<int8_t>(sum & 127);
      const int first_half = sum_int8(_mm256_zextsi128_si256(_mm256_castsi256_si128(bytes)));
      out[b].q6_offsets[2 * s] = -32 * first_half;
      out[b].q6_offsets[2 * s + 1] = -32 * (sum - first_half);
#endif
    }
  }
}

void matmul_rows(const MatmulArgs& a, int row_begin, int row_end, float* scratch) {
  switch (a.type) {
    case TensorType::kF32: return matmul_float_any<F32Row, float>(a, row_begin, row_end);
    case TensorType::kF16: return matmul_float_any<F16Row, uint16_t>(a, row_begin, row_end);
    case TensorType::kBF16: return matmul_float_any<BF16Row, uint16_t>(a, row_begin, row_end);
    case TensorType::kQ8_0:
      if (a.xq == nullptr) break;  // the caller did not quantize the activations: dequantize instead
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_q8_lanes(a, row_begin, row_end);
#else
      if (a.interleaved) return matmul_q8<kInterleaveRows>(a, row_begin, row_end);
#endif
      return matmul_q8<1>(a, row_begin, row_end);
    case TensorType::kQ4_K:
      if (a.xk == nullptr) break;
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_q4k_lanes(a, row_begin, row_end);
#endif
      return matmul_q4k(a, row_begin, row_end);
    case TensorType::kQ6_K:
      if (a.xk == nullptr) break;
#if PAGEDLM_X86_AVX512
      if (a.interleaved) return matmul_q6k_lanes(a, row_begin, row_end);
#endif
      return matmul_q6k(a, row_begin, row_end);
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
// <cmath>: see the top of this file).
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

// One KV block's attention for a group of query rows, one vector of positions (8 on AVX2, 16 on AVX-512) at
// a time: each K row is loaded (and converted) once for every query row, its dot products stay in registers
// as lane-wise partial sums, and a transposing add tree turns a vector's worth of positions' partials into
// one vector of scores, so the softmax and the V update run on whole vectors. On Llama-1B's shape (4 query
// heads per KV head, head_dim 64) a (block, KV head) takes 338 ns against the per-row kernels' 544 with K/V
// in cache (AVX-512; bench/cpu attention bench).
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
// The first n of 16 lanes, n clamped to [0, 16] (no <algorithm> here: see the top of this file).
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

// Up to one vector of positions for R rows: scores, then each row's online-softmax step, then the V update.
template <int R, typename L, int C, typename Element>
void attend_positions(const Element* k, const Element* v, const float* k_scales, const float* v_scales, int count, HeadVectors<L, C> shape,
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
    const auto scaled = L::first_or(L::mul(s[r], L::set1(rows.scale)), count, -__builtin_inff());
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

template <typename L, int C, typename Element>
void attend_block_rows(const Element* k, const Element* v, const float* k_scales, const float* v_scales, int n, HeadVectors<L, C> shape,
                       const AttentionRows& rows) {
  constexpr int R = L::kRowsPerPass;
  for (int p = 0; p < n; p += L::kWidth) {
    const Element* kp = k + static_cast<size_t>(p) * shape.d;
    const Element* vp = v + static_cast<size_t>(p) * shape.d;
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
template <typename Element>
void attend_block(const Element* k, const Element* v, const float* k_scales, const float* v_scales, int n, int d, const AttentionRows& rows) {
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
void attend_block_encoded(KvDtype dtype, const uint8_t* k, const uint8_t* v, const float* k_scales, const float* v_scales, int n, int d,
                          const AttentionRows& rows) {
  switch (dtype) {
    case KvDtype::kF32: return attend_block_f32(reinterpret_cast<const float*>(k), reinterpret_cast<const float*>(v), n, d, rows);
    case KvDtype::kF16: return attend_block_f16(reinterpret_cast<const uint16_t*>(k), reinterpret_cast<const uint16_t*>(v), n, d, rows);
    case KvDtype::kBF16:
      return attend_block(reinterpret_cast<const Bf16Bits*>(k), reinterpret_cast<const Bf16Bits*>(v), nullptr, nullptr, n, d, rows);
    case KvDtype::kInt8:
      return attend_block(reinterpret_cast<const int8_t*>(k), reinterpret_cast<const int8_t*>(v), k_scales, v_scales, n, d, rows);
    case KvDtype::kFp8E4M3:
      return attend_block(reinterpret_cast<const Fp8Code*>(k), reinterpret_cast<const Fp8Code*>(v), k_scales, v_scales, n, d, rows);
  }
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

void pack_rows(TensorType type, const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
#if PAGEDLM_X86_AVX512
  if (type == TensorType::kQ8_0) return pack_q8_lanes(src, row_bytes, rows, dst);
  if (type == TensorType::kQ4_K) return pack_q4k_lanes(src, row_bytes, rows, dst);
  if (type == TensorType::kQ6_K) return pack_q6k_lanes(src, row_bytes, rows, dst);
#endif
  interleave_rows(type, src, row_bytes, rows, dst);
}

int packed_group_rows(TensorType type) {
  switch (type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16: return kInterleaveRows;
#if PAGEDLM_X86_AVX512
    case TensorType::kQ8_0:
    case TensorType::kQ4_K:
    case TensorType::kQ6_K: return kLaneRows;
#else
    case TensorType::kQ8_0: return kInterleaveRows;
#endif
    default: return 0;
  }
}

}  // namespace

const CpuKernels& PAGEDLM_X86_TABLE() {
  static const CpuKernels kernels{PAGEDLM_X86_AVX512 ? "avx512" : "avx2", matmul_rows, dot_f32, dot_f16, axpy_f32, axpy_f16, dot_rows_f32, dot_rows_f16, axpy_rows_f32, axpy_rows_f16, attend_block_f32, attend_block_f16, attend_block_encoded, swiglu, exp_sum, read_sum, pack_rows, packed_group_rows, quantize_q8, quantize_q8k, f32_to_f16, max_f32};
  return kernels;
}

}  // namespace pagedlm
