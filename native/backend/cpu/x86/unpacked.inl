// The driver and dot products shared by the weight types whose x86 kernels unpack each block of a row to
// int8 once and multiply it with every token's int8 activations: Q5_K, Q3_K, Q2_K and IQ4_XS against
// ActivationBlockQ8K (256 values), Q4_1, Q5_0, Q5_1 and IQ4_NL against ActivationBlockQ8 (32 values). Part
// of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/common.inl"
#include "backend/cpu/x86/q4_k.inl"  // add_scaled_pairs

namespace pagedlm {

namespace {

// int16 pairs of |q| x x carrying q's sign: signed weights through maddubs, whose first operand is unsigned.
// |q| <= 127 and |x| <= 127 keep the pairs from saturating.
inline __m256i signed_pairs(__m256i q, __m256i x) { return _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)); }

// 32 values of int8 activations summed in int32 lanes (the dot product with weights of 1).
inline __m256i sum_lanes(__m256i x) { return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), x), _mm256_set1_epi16(1)); }

// Two int16 scales, each in the 8 lanes that hold the pairs of one 16-value half of a 32-value chunk.
inline __m256i scales_of_halves(int first, int second) { return _mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>(first)), _mm_set1_epi16(static_cast<int16_t>(second))); }

// The 16-byte lookup `table` (in both 128-bit lanes) applied to each nibble of 32 bytes: the low nibbles give
// values 0-15 of each 16-byte half, the high nibbles values 16-31, returned as the two 32-value chunks
// `bytes` holds ([first 16 bytes], [last 16 bytes]) in element order.
inline void lookup_nibbles(__m256i bytes, __m256i table, __m256i& first, __m256i& second) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(bytes, low4));
  const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4));
  first = _mm256_permute2x128_si256(lo, hi, 0x20);
  second = _mm256_permute2x128_si256(lo, hi, 0x31);
}

// The 32 nibbles of one Q4_0-style block (byte j: element j low, j + 16 high) as 32 bytes in element order.
inline __m256i nibbles_in_order(const uint8_t* nibbles) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(nibbles));
  const __m128i low4 = _mm_set1_epi8(0x0F);
  return _mm256_setr_m128i(_mm_and_si128(packed, low4), _mm_and_si128(_mm_srli_epi16(packed, 4), low4));
}

// Bit j of the little-endian 32 bits at `bits` as 0x10 in byte j: Q5_0 / Q5_1's fifth bits.
inline __m256i fifth_bits(const uint8_t* bits) {
  uint32_t word;
  std::memcpy(&word, bits, 4);
  // Byte j takes the byte of `word` that holds bit j, then keeps that bit alone.
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(word)),
                                             _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}

// Rows [row_begin, row_end) of a type whose `Unpacked` form (one block of int8 weights ready for every token)
// gives accumulate(activation block, sums) on its Sum type and total(sums): each block of a row is unpacked once per chunk of
// tokens, then multiplied with each token's activation block. Every token runs the same operations, so its
// result does not depend on the others.
template <typename Block, typename Unpacked, typename Activation>
void matmul_unpacked(const MatmulArgs& a, int row_begin, int row_end, const Activation* x) {
  const int blocks = a.cols / Unpacked::kElements;
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    for (int r = row_begin; r < row_end; ++r) {
      const auto* row = reinterpret_cast<const Block*>(a.weights + static_cast<size_t>(r) * a.row_bytes);
      typename Unpacked::Sum sums[kTokenChunk];
      for (int t = t0; t < t1; ++t) sums[t - t0] = typename Unpacked::Sum{};
      for (int b = 0; b < blocks; ++b) {
        Unpacked u;
        u.unpack(row[b]);
        for (int t = t0; t < t1; ++t) sums[t - t0] = u.accumulate(x[static_cast<size_t>(t) * blocks + b], sums[t - t0]);
      }
      for (int t = t0; t < t1; ++t) a.y[static_cast<size_t>(t) * a.y_stride + r] = Unpacked::total(sums[t - t0]);
    }
  }
}

// The 32-value types: 32 int8 weights, their scale d and (Q4_1, Q5_1) the offset m added to every weight.
// A block's dot product with an activation block is d * sx * sum(q * xq) + m * sx * sum(xq), both sums
// exact in integers.
template <bool kSigned, bool kOffset>
struct Unpacked32 {
  static constexpr int kElements = 32;
  using Sum = __m256;  // summed across lanes at the end of the row
  static float total(Sum sums) { return hsum(sums); }
  __m256i q;
  float d, m;
  __m256 accumulate(const ActivationBlockQ8& x, __m256 sums) const {
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.values));
    const __m256i pairs = kSigned ? signed_pairs(q, xv) : _mm256_maddubs_epi16(q, xv);
    sums = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1))), _mm256_set1_ps(d * x.scale), sums);
    if constexpr (kOffset) sums = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_lanes(xv)), _mm256_set1_ps(m * x.scale), sums);
    return sums;
  }
};

inline int hsum_epi32(__m256i v) {
  __m128i sum4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  sum4 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0x4E));
  sum4 = _mm_add_epi32(sum4, _mm_shuffle_epi32(sum4, 0xB1));
  return _mm_cvtsi128_si32(sum4);
}

// fma(a, b, c) rounded once, as one lane of the packed kernels' vector fma.
inline float fma_one(float a, float b, float c) { return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c))); }

// The 256-value types: 8 chunks of 32 int8 weights, each chunk's int16 scales in the lanes of its pairs,
// and the super-block's d. sum_scaled(x) is the super-block's integer dot product, sum over chunks of
// scale x sum(q * xq), exact. A row's sum is one float per token that each super-block's exact integer
// total meets in one fma (and one more for the minimums), the operations of the AVX-512 packed kernels
// (rows in lanes), so packing does not change a bit.
template <bool kSigned>
struct UnpackedK {
  static constexpr int kElements = static_cast<int>(kQKElements);
  using Sum = float;
  static float total(Sum sum) { return sum; }
  __m256i q[8];
  __m256i scales[8];
  float d;
  int sum_scaled(const ActivationBlockQ8K& x) const {
    // Two sums (even and odd chunks): shorter dependency chains for one-token decode.
    __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int c = 0; c < 8; ++c) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.values + 32 * c));
      const __m256i pairs = kSigned ? signed_pairs(q[c], xv) : _mm256_maddubs_epi16(q[c], xv);
      acc[c % 2] = add_scaled_pairs(acc[c % 2], pairs, scales[c]);
    }
    return hsum_epi32(_mm256_add_epi32(acc[0], acc[1]));
  }
};

}  // namespace

}  // namespace pagedlm
