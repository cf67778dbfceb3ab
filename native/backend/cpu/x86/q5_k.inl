// Q5_K weights times int8 activations quantized per 256 values: one row at a time on row-major weights
// (x86/unpacked.inl), and on AVX-512 16-row tiles with rows in lanes. Part of the x86 kernels: see
// kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Unsigned 5-bit weights (0-31, maddubs' unsigned operand as they are) with Q4_K's scales and minimums: a
// super-block's dot product is d * sx * sum over s of sc_s * sum(q * xq) - dmin * sx * sum over s of
// m_s * (sum of xq over s), both sums exact in integers.
struct UnpackedQ5K : UnpackedK<false> {
  __m128i mins;  // 8 x int16
  float dmin;
  void unpack(const BlockQ5_K& block) {
    alignas(16) uint32_t unpacked[4];
    q4_k_scales(block.scales, unpacked);
    const auto* scale = reinterpret_cast<const uint8_t*>(unpacked);
    const __m256i low4 = _mm256_set1_epi8(0x0F), fifth = _mm256_set1_epi8(0x10);
    const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.high));
    for (int g = 0; g < 4; ++g) {
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.nibbles + 32 * g));
      const __m256i nibbles[2] = {_mm256_and_si256(packed, low4), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4)};
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * g + h;
        // Bit s of each high byte to bit 4: 16-bit shifts, the bits they carry across bytes fall outside the mask.
        const __m256i bit = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(high, s), 4), fifth);
        q[s] = _mm256_or_si256(nibbles[h], bit);
        scales[s] = _mm256_set1_epi16(scale[s]);
      }
    }
    mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(scale + 8)));
    d = half_to_float(block.d);
    dmin = half_to_float(block.dmin);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const {
    const __m128i min_sums = _mm_madd_epi16(mins, _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.sums)));
    sum = fma_one(static_cast<float>(sum_scaled(x)), d * x.scale, sum);
    return fma_one(-static_cast<float>(hsum_epi32(_mm256_zextsi128_si256(min_sums))), dmin * x.scale, sum);
  }
};

void matmul_q5k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ5_K, UnpackedQ5K>(a, row_begin, row_end, a.xk); }

#if PAGEDLM_X86_AVX512
// Q5_K packed for AVX-512 with rows in lanes, the same size as the rows: Q4_K's lane layout (x86/q4_k.inl:
// d, dmin, scale words, then per sub-block pair (2p, 2p + 1) and 4 consecutive values the 16 rows' 4
// nibble bytes), with the fifth bits between the scales and the nibbles: per sub-block pair, two vectors
// of the 16 rows' 4 bytes, vector g's byte i holding for each of the pair's value quads 4g + j (j < 4)
// the fifth bit of the even sub-block's value 4(4g + j) + i in bit 2j and the odd one's in bit 2j + 1.
struct LaneBlockQ5K {
  uint16_t d[kLaneRows];
  uint16_t dmin[kLaneRows];
  uint32_t scale_words[3][kLaneRows];
  uint8_t high[4][2][kLaneRows][4];     // [sub-block pair][quads 0-3, 4-7][row][value]
  uint8_t nibbles[4][8][kLaneRows][4];  // [sub-block pair][4 values][row][value]
};
static_assert(sizeof(LaneBlockQ5K) == kLaneRows * sizeof(BlockQ5_K), "the packed copy is the size of the rows");
constexpr int kQ5kLaneTileTokens = 4;

void pack_q5k_lanes(const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
  const size_t super_blocks = row_bytes / sizeof(BlockQ5_K);
  auto* out = reinterpret_cast<LaneBlockQ5K*>(dst);
  for (int g = 0; g < rows; g += kLaneRows) {
    for (size_t sb = 0; sb < super_blocks; ++sb, ++out) {
      std::memset(out->high, 0, sizeof(out->high));
      for (int k = 0; k < kLaneRows; ++k) {
        const auto& block = reinterpret_cast<const BlockQ5_K*>(src + static_cast<size_t>(g + k) * row_bytes)[sb];
        out->d[k] = block.d;
        out->dmin[k] = block.dmin;
        for (int word = 0; word < 3; ++word) std::memcpy(&out->scale_words[word][k], block.scales + 4 * word, 4);
        for (int pair = 0; pair < 4; ++pair) {
          for (int l = 0; l < 32; ++l) {
            const int quad = l / 4, i = l % 4, j = quad % 4;
            out->nibbles[pair][quad][k][i] = block.nibbles[32 * pair + l];
            const int even = (block.high[l] >> (2 * pair)) & 1, odd = (block.high[l] >> (2 * pair + 1)) & 1;
            out->high[pair][quad / 4][k][i] = static_cast<uint8_t>(out->high[pair][quad / 4][k][i] | even << (2 * j) | odd << (2 * j + 1));
          }
        }
      }
    }
  }
}

// 16 rows x T tokens of packed Q5_K: per value quad of a sub-block pair, the nibbles joined with their
// fifth bits (a shift, a mask and one ternary-logic op each for the even and the odd sub-block), then one
// vpdpbusd each per token; per pair two multiplies by the sub-block scales; per super-block the minimums
// and float work of tile_q4k_lanes. The same operations per (row, token, super-block) as UnpackedQ5K.
template <int T>
void tile_q5k_lanes(const LaneBlockQ5K* w, const MatmulArgs& a, int t, int r) {
  const int super_blocks = a.cols / static_cast<int>(kQKElements);
  const __m512i low4 = _mm512_set1_epi8(0x0f), fifth = _mm512_set1_epi8(0x10), byte = _mm512_set1_epi32(0xff);
  // (nibbles & 0x0F) | fifth bits already masked to 0x10
  const auto join = [&](__m512i nibbles, __m512i bits) { return _mm512_ternarylogic_epi32(nibbles, low4, _mm512_and_si512(bits, fifth), 0xEA); };
  __m512 acc[T];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int sb = 0; sb < super_blocks; ++sb) {
    const LaneBlockQ5K& block = w[sb];
    const ActivationBlockQ8K* x[T];
    for (int j = 0; j < T; ++j) x[j] = a.xk + static_cast<size_t>(t + j) * super_blocks + sb;
    const LaneScalesQ4K lane_scales(block.scale_words);
    __m512i totals[T];
    for (auto& v : totals) v = _mm512_setzero_si512();
    for (int pair = 0; pair < 4; ++pair) {
      if constexpr (T > 1) {
        for (int line = 0; line < 8; ++line) prefetch_near(reinterpret_cast<const char*>(block.nibbles[pair]) + 64 * line);
      }
      __m512i even[T], odd[T];
      for (int j = 0; j < T; ++j) even[j] = odd[j] = _mm512_setzero_si512();
      for (int half = 0; half < 2; ++half) {
        const __m512i h = _mm512_loadu_si512(block.high[pair][half]);
        // Quad j's fifth bits (even: bit 2j, odd: bit 2j + 1) moved to bit 4; 16-bit shifts of at most 4 carry
        // bits across bytes only outside bit 4.
        const __m512i even_bits[4] = {_mm512_slli_epi16(h, 4), _mm512_slli_epi16(h, 2), h, _mm512_srli_epi16(h, 2)};
        const __m512i odd_bits[4] = {_mm512_slli_epi16(h, 3), _mm512_slli_epi16(h, 1), _mm512_srli_epi16(h, 1), _mm512_srli_epi16(h, 3)};
        for (int j = 0; j < 4; ++j) {
          const int q = 4 * half + j;
          const __m512i packed = _mm512_loadu_si512(block.nibbles[pair][q]);
          const __m512i lo = join(packed, even_bits[j]);
          const __m512i hi = join(_mm512_srli_epi16(packed, 4), odd_bits[j]);
          for (int k = 0; k < T; ++k) {
            even[k] = dpbusd_broadcast(even[k], lo, x[k]->values + 64 * pair + 4 * q);
            odd[k] = dpbusd_broadcast(odd[k], hi, x[k]->values + 64 * pair + 32 + 4 * q);
          }
        }
      }
      const __m512i scales = pair < 2 ? lane_scales.sc_low : lane_scales.sc_high;
      const int shift = 16 * (pair % 2);
      const __m512i sc_even = _mm512_and_si512(_mm512_srli_epi32(scales, shift), byte);
      const __m512i sc_odd = _mm512_and_si512(_mm512_srli_epi32(scales, shift + 8), byte);
      for (int j = 0; j < T; ++j) {
        totals[j] = _mm512_add_epi32(totals[j], _mm512_add_epi32(_mm512_mullo_epi32(even[j], sc_even), _mm512_mullo_epi32(odd[j], sc_odd)));
      }
    }
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

void matmul_q5k_lanes(const MatmulArgs& a, int row_begin, int row_end) {
  matmul_lanes<LaneBlockQ5K, kQ5kLaneTileTokens>(a, row_begin, row_end, [](auto tokens, const LaneBlockQ5K* w, const MatmulArgs& args, int t, int r) {
    tile_q5k_lanes<decltype(tokens)::value>(w, args, t, r);
  });
}
#endif

}  // namespace

}  // namespace pagedlm
