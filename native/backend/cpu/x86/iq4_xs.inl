// IQ4_XS weights times int8 activations quantized per 256 values: one row at a time on row-major weights
// (x86/unpacked.inl), and on AVX-512 16-row tiles with rows in lanes. Part of the x86 kernels: see
// kernels_x86.inl.
#pragma once

#include <array>

#include "backend/cpu/x86/iq4_nl.inl"  // iq4_table
#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Indices through the pshufb table of kIq4Values to signed int8 weights, with signed 6-bit scales per 32
// values: a super-block's dot product is d * sx * sum over s of sc_s * sum(w * xq), exact in integers.
struct UnpackedIQ4XS : UnpackedK<true> {
  void unpack(const BlockIQ4_XS& block) {
    const __m256i table = iq4_table();
    for (int pair = 0; pair < 4; ++pair) {
      const __m256i indices = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.nibbles + 32 * pair));
      lookup_nibbles(indices, table, q[2 * pair], q[2 * pair + 1]);
    }
    for (int s = 0; s < 8; ++s) {
      const int scale = (((block.scales_low[s / 2] >> (4 * (s % 2))) & 0xF) | ((block.scales_high >> (2 * s)) & 3) << 4) - 32;
      scales[s] = _mm256_set1_epi16(static_cast<int16_t>(scale));
    }
    d = half_to_float(block.d);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const { return fma_one(static_cast<float>(sum_scaled(x)), d * x.scale, sum); }
};

void matmul_iq4_xs(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockIQ4_XS, UnpackedIQ4XS>(a, row_begin, row_end, a.xk); }

#if PAGEDLM_X86_AVX512
// IQ4_XS packed for AVX-512 with rows in lanes, the same size as the rows: a group of 16 rows stores each
// super-block as the rows' d, scales_high and scales_low, then per sub-block and 4 consecutive values
// 4v .. 4v + 3 (v < 4) the 16 rows' 4 index bytes, each holding value 4v + i in its low nibble and value
// 16 + 4v + i in its high one (the rows' own bytes 16s + 4v + i, regrouped).
struct LaneBlockIQ4XS {
  uint16_t d[kLaneRows];
  uint16_t scales_high[kLaneRows];
  uint32_t scales_low[kLaneRows];
  uint8_t nibbles[8][4][kLaneRows][4];  // [sub-block][4 values][row][value]
};
static_assert(sizeof(LaneBlockIQ4XS) == kLaneRows * sizeof(BlockIQ4_XS), "the packed copy is the size of the rows");
constexpr int kIq4xsLaneTileTokens = 4;

void pack_iq4_xs_lanes(const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
  const size_t super_blocks = row_bytes / sizeof(BlockIQ4_XS);
  auto* out = reinterpret_cast<LaneBlockIQ4XS*>(dst);
  for (int g = 0; g < rows; g += kLaneRows) {
    for (size_t sb = 0; sb < super_blocks; ++sb, ++out) {
      for (int k = 0; k < kLaneRows; ++k) {
        const auto& block = reinterpret_cast<const BlockIQ4_XS*>(src + static_cast<size_t>(g + k) * row_bytes)[sb];
        out->d[k] = block.d;
        out->scales_high[k] = block.scales_high;
        std::memcpy(&out->scales_low[k], block.scales_low, 4);
        for (int s = 0; s < 8; ++s) {
          for (int b = 0; b < 16; ++b) out->nibbles[s][b / 4][k][b % 4] = block.nibbles[16 * s + b];
        }
      }
    }
  }
}

// 16 rows x T tokens of packed IQ4_XS. The indices become unsigned weights (level + 128) through one
// vpshufb per 64 of them, so vpdpbusd multiplies them with the activations; each sub-block's dot product
// starts from -128 x the activations' sum over it, which leaves the signed one. Then one multiply by the
// 16 rows' sub-block scales, and per super-block one convert and fma per token, as UnpackedIQ4XS.
template <int T>
void tile_iq4_xs_lanes(const LaneBlockIQ4XS* w, const MatmulArgs& a, int t, int r) {
  static constexpr auto kLevels = [] {
    std::array<uint8_t, 16> levels{};
    for (int i = 0; i < 16; ++i) levels[i] = static_cast<uint8_t>(kIq4Values[i] + 128);
    return levels;
  }();
  const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kLevels.data())));
  const int super_blocks = a.cols / static_cast<int>(kQKElements);
  const __m512i low4 = _mm512_set1_epi8(0x0f), low4_32 = _mm512_set1_epi32(0xf), low2_32 = _mm512_set1_epi32(3), offset = _mm512_set1_epi32(32);
  __m512 acc[T];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int sb = 0; sb < super_blocks; ++sb) {
    const LaneBlockIQ4XS& block = w[sb];
    const ActivationBlockQ8K* x[T];
    for (int j = 0; j < T; ++j) x[j] = a.xk + static_cast<size_t>(t + j) * super_blocks + sb;
    const __m512i scales_low = _mm512_loadu_si512(block.scales_low);
    const __m512i scales_high = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.scales_high)));
    __m512i totals[T];
    for (auto& v : totals) v = _mm512_setzero_si512();
    for (int s = 0; s < 8; ++s) {
      if constexpr (T > 1) {
        for (int line = 0; line < 4; ++line) prefetch_near(reinterpret_cast<const char*>(block.nibbles[s]) + 64 * line);
      }
      const __m512i scale = _mm512_sub_epi32(
          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(scales_low, 4 * s), low4_32), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(scales_high, 2 * s), low2_32), 4)),
          offset);
      __m512i dots[T];
      for (int j = 0; j < T; ++j) dots[j] = _mm512_set1_epi32(-128 * x[j]->sums[s]);
      for (int v = 0; v < 4; ++v) {
        const __m512i packed = _mm512_loadu_si512(block.nibbles[s][v]);
        const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(packed, low4));
        const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4));
        for (int j = 0; j < T; ++j) {
          dots[j] = dpbusd_broadcast(dots[j], lo, x[j]->values + 32 * s + 4 * v);
          dots[j] = dpbusd_broadcast(dots[j], hi, x[j]->values + 32 * s + 16 + 4 * v);
        }
      }
      for (int j = 0; j < T; ++j) totals[j] = _mm512_add_epi32(totals[j], _mm512_mullo_epi32(dots[j], scale));
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.d)));
    for (int j = 0; j < T; ++j) acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(totals[j]), _mm512_mul_ps(d, _mm512_set1_ps(x[j]->scale)), acc[j]);
  }
  for (int j = 0; j < T; ++j) _mm512_storeu_ps(a.y + static_cast<size_t>(t + j) * a.y_stride + r, acc[j]);
}

void matmul_iq4_xs_lanes(const MatmulArgs& a, int row_begin, int row_end) {
  matmul_lanes<LaneBlockIQ4XS, kIq4xsLaneTileTokens>(a, row_begin, row_end, [](auto tokens, const LaneBlockIQ4XS* w, const MatmulArgs& args, int t, int r) {
    tile_iq4_xs_lanes<decltype(tokens)::value>(w, args, t, r);
  });
}
#endif

}  // namespace

}  // namespace pagedlm
