// Q3_K weights times int8 activations quantized per 256 values: one row at a time on row-major weights
// (x86/unpacked.inl), and on AVX-512 16-row tiles with rows in lanes. Part of the x86 kernels: see
// kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Signed 3-bit weights (-4 to 3) with signed 6-bit scales per 16 values: a super-block's dot product is
// d * sx * sum over sub-blocks of sc_s * sum(q * xq), the sum exact in integers.
struct UnpackedQ3K : UnpackedK<true> {
  void unpack(const BlockQ3_K& block) {
    int sc[16];
    for (int s = 0; s < 16; ++s) {
      const int low = s < 8 ? block.scales[s] & 0xF : block.scales[s - 8] >> 4;
      sc[s] = (low | ((block.scales[8 + s % 4] >> (2 * (s / 4))) & 3) << 4) - 32;
    }
    const __m256i low2 = _mm256_set1_epi8(0x03), third = _mm256_set1_epi8(0x04), offset = _mm256_set1_epi8(4);
    const __m256i high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.high));
    for (int half = 0; half < 2; ++half) {
      const __m256i low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.low + 32 * half));
      for (int k = 0; k < 4; ++k) {
        const int c = 4 * half + k;
        // Bit c of each high byte to bit 2: 16-bit shifts, the bits they carry across bytes fall outside the mask.
        const __m256i bit = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(high, c), 2), third);
        q[c] = _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(low, 2 * k), low2), bit), offset);
        scales[c] = scales_of_halves(sc[2 * c], sc[2 * c + 1]);
      }
    }
    d = half_to_float(block.d);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const { return fma_one(static_cast<float>(sum_scaled(x)), d * x.scale, sum); }
};

void matmul_q3k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ3_K, UnpackedQ3K>(a, row_begin, row_end, a.xk); }

#if PAGEDLM_X86_AVX512
// Q3_K packed for AVX-512 with rows in lanes, the same size as the rows: a group of 16 rows stores each
// super-block as the rows' d, their 12 scale bytes as three 32-bit words per row (word w of every row
// together), then per pair of 16-value sub-blocks (2p, 2p + 1) three vectors of the 16 rows' 4 bytes: one
// per sub-block whose byte i holds the low 2 bits of value 4j + i in bits 2j, 2j + 1 (j < 4), and one whose
// byte i holds the third bit of sub-block 2p's value 4j + i in bit j and sub-block 2p + 1's in bit 4 + j.
struct LaneBlockQ3K {
  uint16_t d[kLaneRows];
  uint32_t scale_words[3][kLaneRows];
  uint8_t low[8][2][kLaneRows][4];  // [sub-block pair][sub-block][row][value]
  uint8_t high[8][kLaneRows][4];    // [sub-block pair][row][value]
};
static_assert(sizeof(LaneBlockQ3K) == kLaneRows * sizeof(BlockQ3_K), "the packed copy is the size of the rows");
constexpr int kQ3kLaneTileTokens = 4;

void pack_q3k_lanes(const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
  const size_t super_blocks = row_bytes / sizeof(BlockQ3_K);
  auto* out = reinterpret_cast<LaneBlockQ3K*>(dst);
  for (int g = 0; g < rows; g += kLaneRows) {
    for (size_t sb = 0; sb < super_blocks; ++sb, ++out) {
      std::memset(out->low, 0, sizeof(out->low));
      std::memset(out->high, 0, sizeof(out->high));
      for (int k = 0; k < kLaneRows; ++k) {
        const auto& block = reinterpret_cast<const BlockQ3_K*>(src + static_cast<size_t>(g + k) * row_bytes)[sb];
        out->d[k] = block.d;
        for (int word = 0; word < 3; ++word) std::memcpy(&out->scale_words[word][k], block.scales + 4 * word, 4);
        for (int v = 0; v < 256; ++v) {
          const int half = v / 128, l = v % 32, chunk = v % 128 / 32;
          const int low = (block.low[32 * half + l] >> (2 * chunk)) & 3, third = (block.high[l] >> (4 * half + chunk)) & 1;
          const int s = v / 16, j = v % 16 / 4, i = v % 4;
          uint8_t& low_byte = out->low[s / 2][s % 2][k][i];
          uint8_t& high_byte = out->high[s / 2][k][i];
          low_byte = static_cast<uint8_t>(low_byte | low << (2 * j));
          high_byte = static_cast<uint8_t>(high_byte | third << (4 * (s % 2) + j));
        }
      }
    }
  }
}

// Moves bit B of each byte to bit 2 (16-bit shifts: for B <= 7 the bits carried across bytes land outside
// bit 2).
template <int B>
inline __m512i third_bit_to_2(__m512i v) {
  if constexpr (B < 2) return _mm512_slli_epi16(v, 2 - B);
  else if constexpr (B == 2) return v;
  else return _mm512_srli_epi16(v, B - 2);
}

// 16 rows x T tokens of packed Q3_K: each 4-value set as unsigned q + 4 (0-7: a shift for the low bits, a
// shift and a mask for the third, one ternary-logic op to join them), one vpdpbusd per token started from
// the activations' q6_offsets / 8 (-4 x their sum over the sub-block), which leaves the signed dot
// product; one multiply by the 16 rows' sub-block scales; per super-block one convert and fma per token, as
// UnpackedQ3K.
template <int T>
void tile_q3k_lanes(const LaneBlockQ3K* w, const MatmulArgs& a, int t, int r) {
  const int super_blocks = a.cols / static_cast<int>(kQKElements);
  const __m512i low2 = _mm512_set1_epi8(0x03), bit2 = _mm512_set1_epi8(0x04), low4 = _mm512_set1_epi8(0x0f), offset = _mm512_set1_epi8(32);
  __m512 acc[T];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int sb = 0; sb < super_blocks; ++sb) {
    const LaneBlockQ3K& block = w[sb];
    const ActivationBlockQ8K* x[T];
    for (int j = 0; j < T; ++j) x[j] = a.xk + static_cast<size_t>(t + j) * super_blocks + sb;
    // The 16 rows' scales, four sub-blocks per vector as signed bytes: group g's byte b is scale 4g + b, its low
    // 4 bits from word g % 2 (nibble g / 2), its top 2 from word 2 (bits 2g, 2g + 1 of each byte).
    const __m512i w0 = _mm512_loadu_si512(block.scale_words[0]), w1 = _mm512_loadu_si512(block.scale_words[1]);
    const __m512i w2 = _mm512_loadu_si512(block.scale_words[2]);
    const auto scale_group = [&](__m512i low_word, int low_shift, int top_shift) {
      const __m512i low = _mm512_and_si512(_mm512_srli_epi16(low_word, low_shift), low4);
      const __m512i top = _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(w2, top_shift), low2), 4);
      return _mm512_sub_epi8(_mm512_or_si512(low, top), offset);
    };
    const __m512i scale_groups[4] = {scale_group(w0, 0, 0), scale_group(w1, 0, 2), scale_group(w0, 4, 4), scale_group(w1, 4, 6)};
    __m512i totals[T];
    for (auto& v : totals) v = _mm512_setzero_si512();
    for (int pair = 0; pair < 8; ++pair) {
      if constexpr (T > 1) {
        for (int line = 0; line < 3; ++line) prefetch_near(reinterpret_cast<const char*>(block.low[pair]) + 64 * line);
      }
      const __m512i high = _mm512_loadu_si512(block.high[pair]);
      // Sub-block s's third bits sit in bits 4(s % 2) + j: moved to bit 2 by the constant shift of each.
      const __m512i thirds[8] = {third_bit_to_2<0>(high), third_bit_to_2<1>(high), third_bit_to_2<2>(high), third_bit_to_2<3>(high),
                                 third_bit_to_2<4>(high), third_bit_to_2<5>(high), third_bit_to_2<6>(high), third_bit_to_2<7>(high)};
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * pair + h;
        // Byte s % 4 of group s / 4, sign-extended to the row's int32 lane.
        const __m512i scale = _mm512_srai_epi32(_mm512_slli_epi32(scale_groups[s / 4], 24 - 8 * (s % 4)), 24);
        const __m512i low = _mm512_loadu_si512(block.low[pair][h]);
        __m512i dots[T];
        for (int j = 0; j < T; ++j) dots[j] = _mm512_set1_epi32(x[j]->q6_offsets[s] / 8);
        for (int set = 0; set < 4; ++set) {
          const __m512i values = _mm512_ternarylogic_epi32(_mm512_srli_epi16(low, 2 * set), low2, _mm512_and_si512(thirds[4 * h + set], bit2), 0xEA);
          for (int j = 0; j < T; ++j) dots[j] = dpbusd_broadcast(dots[j], values, x[j]->values + 16 * s + 4 * set);
        }
        for (int j = 0; j < T; ++j) totals[j] = _mm512_add_epi32(totals[j], _mm512_mullo_epi32(dots[j], scale));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.d)));
    for (int j = 0; j < T; ++j) acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(totals[j]), _mm512_mul_ps(d, _mm512_set1_ps(x[j]->scale)), acc[j]);
  }
  for (int j = 0; j < T; ++j) _mm512_storeu_ps(a.y + static_cast<size_t>(t + j) * a.y_stride + r, acc[j]);
}

void matmul_q3k_lanes(const MatmulArgs& a, int row_begin, int row_end) {
  matmul_lanes<LaneBlockQ3K, kQ3kLaneTileTokens>(a, row_begin, row_end, [](auto tokens, const LaneBlockQ3K* w, const MatmulArgs& args, int t, int r) {
    tile_q3k_lanes<decltype(tokens)::value>(w, args, t, r);
  });
}
#endif

}  // namespace

}  // namespace pagedlm
