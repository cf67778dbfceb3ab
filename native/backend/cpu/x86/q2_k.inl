// Q2_K weights times int8 activations quantized per 256 values: one row at a time on row-major weights
// (x86/unpacked.inl), and on AVX-512 16-row tiles with rows in lanes. Part of the x86 kernels: see
// kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/unpacked.inl"

namespace pagedlm {

namespace {

// Unsigned 2-bit weights with a 4-bit scale and minimum per 16 values: a super-block's dot product is
// d * sx * sum over s of sc_s * sum(q * xq) - dmin * sx * sum over s of m_s * (sum of xq over s), both
// sums exact in integers; the activations' sums per 16 values come from maddubs with ones.
struct UnpackedQ2K : UnpackedK<false> {
  __m256i mins[8];
  float dmin;
  void unpack(const BlockQ2_K& block) {
    const __m256i low2 = _mm256_set1_epi8(0x03);
    for (int half = 0; half < 2; ++half) {
      const __m256i values = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.values + 32 * half));
      for (int k = 0; k < 4; ++k) {
        const int c = 4 * half + k;
        q[c] = _mm256_and_si256(_mm256_srli_epi16(values, 2 * k), low2);
        scales[c] = scales_of_halves(block.scales[2 * c] & 0xF, block.scales[2 * c + 1] & 0xF);
        mins[c] = scales_of_halves(block.scales[2 * c] >> 4, block.scales[2 * c + 1] >> 4);
      }
    }
    d = half_to_float(block.d);
    dmin = half_to_float(block.dmin);
  }
  float accumulate(const ActivationBlockQ8K& x, float sum) const {
    const __m256i ones = _mm256_set1_epi8(1);
    __m256i min_sums = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.values + 32 * c));
      min_sums = add_scaled_pairs(min_sums, _mm256_maddubs_epi16(ones, xv), mins[c]);
    }
    sum = fma_one(static_cast<float>(sum_scaled(x)), d * x.scale, sum);
    return fma_one(-static_cast<float>(hsum_epi32(min_sums)), dmin * x.scale, sum);
  }
};

void matmul_q2k(const MatmulArgs& a, int row_begin, int row_end) { matmul_unpacked<BlockQ2_K, UnpackedQ2K>(a, row_begin, row_end, a.xk); }

#if PAGEDLM_X86_AVX512
// Q2_K packed for AVX-512 with rows in lanes, the same size as the rows: a group of 16 rows stores each
// super-block as the rows' d and dmin, their 16 scale bytes as four 32-bit words per row (word w of every
// row together), then per 16-value sub-block the 16 rows' 4 bytes, byte i holding value 4j + i of the
// sub-block in bits 2j and 2j + 1 (j < 4).
struct LaneBlockQ2K {
  uint16_t d[kLaneRows];
  uint16_t dmin[kLaneRows];
  uint32_t scale_words[4][kLaneRows];
  uint8_t values[16][kLaneRows][4];  // [sub-block][row][value]
};
static_assert(sizeof(LaneBlockQ2K) == kLaneRows * sizeof(BlockQ2_K), "the packed copy is the size of the rows");
constexpr int kQ2kLaneTileTokens = 4;

void pack_q2k_lanes(const uint8_t* src, size_t row_bytes, int rows, uint8_t* dst) {
  const size_t super_blocks = row_bytes / sizeof(BlockQ2_K);
  auto* out = reinterpret_cast<LaneBlockQ2K*>(dst);
  for (int g = 0; g < rows; g += kLaneRows) {
    for (size_t sb = 0; sb < super_blocks; ++sb, ++out) {
      std::memset(out->values, 0, sizeof(out->values));
      for (int k = 0; k < kLaneRows; ++k) {
        const auto& block = reinterpret_cast<const BlockQ2_K*>(src + static_cast<size_t>(g + k) * row_bytes)[sb];
        out->d[k] = block.d;
        out->dmin[k] = block.dmin;
        for (int word = 0; word < 4; ++word) std::memcpy(&out->scale_words[word][k], block.scales + 4 * word, 4);
        for (int v = 0; v < 256; ++v) {
          const int half = v / 128, chunk = v % 128 / 32, l = v % 32;
          const int q = (block.values[32 * half + l] >> (2 * chunk)) & 3;
          uint8_t& byte = out->values[v / 16][k][v % 4];
          byte = static_cast<uint8_t>(byte | q << (2 * (v % 16 / 4)));
        }
      }
    }
  }
}

// 16 rows x T tokens of packed Q2_K: per sub-block 4 sets of 2-bit weights (a shift and a mask each), one
// vpdpbusd each per token, one multiply by the rows' sub-block scales, and one by their minimums against the
// activations' sum over the sub-block (from q6_offsets, -32 x that sum); per super-block the float work of
// UnpackedQ2K.
template <int T>
void tile_q2k_lanes(const LaneBlockQ2K* w, const MatmulArgs& a, int t, int r) {
  const int super_blocks = a.cols / static_cast<int>(kQKElements);
  const __m512i low2 = _mm512_set1_epi8(0x03), low4 = _mm512_set1_epi8(0x0f);
  __m512 acc[T];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int sb = 0; sb < super_blocks; ++sb) {
    const LaneBlockQ2K& block = w[sb];
    const ActivationBlockQ8K* x[T];
    for (int j = 0; j < T; ++j) x[j] = a.xk + static_cast<size_t>(t + j) * super_blocks + sb;
    __m512i scales[4], mins[4];  // per word: each row's 4 sub-block scales / minimums as bytes
    for (int word = 0; word < 4; ++word) {
      const __m512i packed = _mm512_loadu_si512(block.scale_words[word]);
      scales[word] = _mm512_and_si512(packed, low4);
      mins[word] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4);
    }
    __m512i totals[T], min_totals[T];
    for (int j = 0; j < T; ++j) totals[j] = min_totals[j] = _mm512_setzero_si512();
    for (int s = 0; s < 16; ++s) {
      const __m512i values = _mm512_loadu_si512(block.values[s]);
      const auto byte_of = [&](__m512i bytes) { return _mm512_srli_epi32(_mm512_slli_epi32(bytes, 24 - 8 * (s % 4)), 24); };
      const __m512i scale = byte_of(scales[s / 4]), min = byte_of(mins[s / 4]);
      __m512i dots[T];
      for (int j = 0; j < T; ++j) dots[j] = _mm512_setzero_si512();
      for (int set = 0; set < 4; ++set) {
        const __m512i q = _mm512_and_si512(_mm512_srli_epi16(values, 2 * set), low2);
        for (int j = 0; j < T; ++j) dots[j] = dpbusd_broadcast(dots[j], q, x[j]->values + 16 * s + 4 * set);
      }
      for (int j = 0; j < T; ++j) {
        totals[j] = _mm512_add_epi32(totals[j], _mm512_mullo_epi32(dots[j], scale));
        min_totals[j] = _mm512_add_epi32(min_totals[j], _mm512_mullo_epi32(min, _mm512_set1_epi32(x[j]->q6_offsets[s] / -32)));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.d)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block.dmin)));
    for (int j = 0; j < T; ++j) {
      const __m512 x_scale = _mm512_set1_ps(x[j]->scale);
      acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(totals[j]), _mm512_mul_ps(d, x_scale), acc[j]);
      acc[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(min_totals[j]), _mm512_mul_ps(dmin, x_scale), acc[j]);
    }
  }
  for (int j = 0; j < T; ++j) _mm512_storeu_ps(a.y + static_cast<size_t>(t + j) * a.y_stride + r, acc[j]);
}

void matmul_q2k_lanes(const MatmulArgs& a, int row_begin, int row_end) {
  matmul_lanes<LaneBlockQ2K, kQ2kLaneTileTokens>(a, row_begin, row_end, [](auto tokens, const LaneBlockQ2K* w, const MatmulArgs& args, int t, int r) {
    tile_q2k_lanes<decltype(tokens)::value>(w, args, t, r);
  });
}
#endif

}  // namespace

}  // namespace pagedlm
