// Q8_0 weights times int8 activations: 4-row tiles on row-major and 4-row interleaved weights, and on
// AVX-512 16-row tiles with rows in lanes. Part of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/common.inl"

namespace pagedlm {

namespace {

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

void matmul_q8_lanes(const MatmulArgs& a, int row_begin, int row_end) {
  matmul_lanes<LaneBlockQ8, kLaneTileTokens>(a, row_begin, row_end, [](auto tokens, const LaneBlockQ8* w, const MatmulArgs& args, int t, int r) {
    tile_q8_lanes<decltype(tokens)::value>(w, args, t, r);
  });
}
#endif

}  // namespace

}  // namespace pagedlm
