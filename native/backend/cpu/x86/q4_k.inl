// Q4_K weights times int8 activations quantized per 256 values: 4-row tiles on row-major weights, and on
// AVX-512 16-row tiles with rows in lanes. Part of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/common.inl"

namespace pagedlm {

namespace {

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

// Per lane (row), the bytes of scales 0-3, 4-7 and minimums 0-3, 4-7: q4_k_scales on 16 rows' packed
// words (word w of every row together). Q5_K packs its scales the same way.
struct LaneScalesQ4K {
  __m512i sc_low, sc_high, m_low, m_high;
  explicit LaneScalesQ4K(const uint32_t (&words)[3][kLaneRows]) {
    const __m512i low6 = _mm512_set1_epi8(0x3f), low4 = _mm512_set1_epi8(0x0f), low2 = _mm512_set1_epi8(0x03);
    const __m512i w0 = _mm512_loadu_si512(words[0]), w1 = _mm512_loadu_si512(words[1]), w2 = _mm512_loadu_si512(words[2]);
    sc_low = _mm512_and_si512(w0, low6);
    sc_high = _mm512_or_si512(_mm512_and_si512(w2, low4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 6), low2), 4));
    m_low = _mm512_and_si512(w1, low6);
    m_high = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 4), low4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 6), low2), 4));
  }
  // Sum over sub-blocks of m_s x (the activations' sum over s), exact: 128 x (m . sums_high) + (m . sums_low),
  // four sub-blocks per vpdpbusd.
  __m512i min_total(const ActivationBlockQ8K& x) const {
    __m512i high = dpbusd_broadcast(_mm512_setzero_si512(), m_low, x.sums_high);
    high = dpbusd_broadcast(high, m_high, x.sums_high + 4);
    __m512i low = dpbusd_broadcast(_mm512_setzero_si512(), m_low, x.sums_low);
    low = dpbusd_broadcast(low, m_high, x.sums_low + 4);
    return _mm512_add_epi32(_mm512_slli_epi32(high, 7), low);
  }
};

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
  const __m512i low4 = _mm512_set1_epi8(0x0f), byte = _mm512_set1_epi32(0xff);
  const __m512i high4 = _mm512_set1_epi8(static_cast<char>(0xf0));
  __m512 acc[T];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int sb = 0; sb < super_blocks; ++sb) {
    const LaneBlockQ4K& block = w[sb];
    const ActivationBlockQ8K* x[T];
    for (int j = 0; j < T; ++j) x[j] = a.xk + static_cast<size_t>(t + j) * super_blocks + sb;
    const LaneScalesQ4K lane_scales(block.scale_words);
    const __m512i sc_low = lane_scales.sc_low, sc_high = lane_scales.sc_high;
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
      const __m512i mins = lane_scales.min_total(*x[j]);
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

}  // namespace

}  // namespace pagedlm
