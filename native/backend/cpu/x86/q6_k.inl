// Q6_K weights times int8 activations quantized per 256 values: one row at a time on row-major weights, and
// on AVX-512 16-row tiles with rows in lanes. Part of the x86 kernels: see kernels_x86.inl.
#pragma once

#include "backend/cpu/x86/common.inl"

namespace pagedlm {

namespace {

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

}  // namespace

}  // namespace pagedlm
