// AVX2 + FMA + F16C kernels. This file is compiled with -mavx2 -mfma -mf16c and only called after a run-time
// CPU check, so it includes no header whose inline functions other files also use (ODR: the linker could
// keep the AVX2 copy).
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/kernels.h"

namespace pagedlm {

namespace {

constexpr int kTokenChunk = 24;  // tokens (a multiple of the tile's 3) whose activations stay in L2 while rows stream past

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

// Loaders give 8 consecutive weights of one row as floats (load8) or one weight (at).
struct F32Row {
  const float* p;
  __m256 load8(int i) const { return _mm256_loadu_ps(p + i); }
  float at(int i) const { return p[i]; }
};
struct F16Row {
  const uint16_t* p;
  __m256 load8(int i) const { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i))); }
  float at(int i) const { return half_to_float(p[i]); }
};
struct BF16Row {
  const uint16_t* p;
  __m256 load8(int i) const {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  float at(int i) const { return bf16_bits_to_float(p[i]); }
};
struct Q8Row {
  const BlockQ8_0* blocks;
  __m256 load8(int i) const {
    const BlockQ8_0& b = blocks[i / 32];
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.values + i % 32));
    return _mm256_mul_ps(_mm256_set1_ps(half_to_float(b.scale)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
  }
  float at(int i) const { return half_to_float(blocks[i / 32].scale) * blocks[i / 32].values[i % 32]; }
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

// A 4-row x T-token tile (T <= 3): 4T accumulators, and each weight vector converted once per T tokens
// while each activation vector is loaded once per 4 rows, so the inner loop is bound by FMAs, not loads.
// At T = 3 it uses all 16 ymm registers: 12 sums, 3 activations, 1 weight.
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
    for (int k = 0; k < R; ++k) {
      const __m256 wv = w[k].load8(i);
      for (int j = 0; j < T; ++j) acc[k][j] = _mm256_fmadd_ps(wv, xv[j], acc[k][j]);
    }
  }
  for (int k = 0; k < R; ++k) {
    for (int j = 0; j < T; ++j) {
      float sum = hsum(acc[k][j]);
      for (int c = i; c < a.cols; ++c) sum += w[k].at(c) * x[j][c];
      a.y[static_cast<size_t>(t + j) * a.y_stride + r + k] = sum;
    }
  }
}

template <typename Row>
void matmul_typed(const MatmulArgs& a, int row_begin, int row_end, Row (*row_at)(const uint8_t*)) {
  const auto row = [&](int r) { return row_at(a.weights + static_cast<size_t>(r) * a.row_bytes); };
  for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenChunk) {
    const int t1 = t0 + kTokenChunk < a.n_tokens ? t0 + kTokenChunk : a.n_tokens;
    int r = row_begin;
    if (t1 - t0 >= 2) {
      // Four rows at a time, so that every weight is read once per chunk of tokens.
      for (; r + 4 <= row_end; r += 4) {
        const Row w[4] = {row(r), row(r + 1), row(r + 2), row(r + 3)};
        int t = t0;
        for (; t + 3 <= t1; t += 3) tile_4xT<3>(w, a, t, r);
        if (t1 - t == 2) tile_4xT<2>(w, a, t, r);
        if (t1 - t == 1) tile_4xT<1>(w, a, t, r);
      }
    }
    for (; r < row_end; ++r) row_all_tokens(row(r), a, t0, t1, r);
  }
}

void matmul_rows(const MatmulArgs& a, int row_begin, int row_end, float* scratch) {
  switch (a.type) {
    case TensorType::kF32:
      return matmul_typed<F32Row>(a, row_begin, row_end, [](const uint8_t* p) { return F32Row{reinterpret_cast<const float*>(p)}; });
    case TensorType::kF16:
      return matmul_typed<F16Row>(a, row_begin, row_end, [](const uint8_t* p) { return F16Row{reinterpret_cast<const uint16_t*>(p)}; });
    case TensorType::kBF16:
      return matmul_typed<BF16Row>(a, row_begin, row_end, [](const uint8_t* p) { return BF16Row{reinterpret_cast<const uint16_t*>(p)}; });
    case TensorType::kQ8_0:
      return matmul_typed<Q8Row>(a, row_begin, row_end, [](const uint8_t* p) { return Q8Row{reinterpret_cast<const BlockQ8_0*>(p)}; });
    default:
      // Types without a register loader: dequantize one row at a time into the thread's scratch.
      for (int r = row_begin; r < row_end; ++r) {
        dequantize_row(a.type, a.weights + static_cast<size_t>(r) * a.row_bytes, scratch, a.cols);
        row_all_tokens(F32Row{scratch}, a, 0, a.n_tokens, r);
      }
      return;
  }
}

float dot_f32(const float* a, const float* b, int n) {
  float y;
  row_dots<1>(F32Row{a}, n, b, &y, 1);
  return y;
}

float dot_f16(const uint16_t* a, const float* b, int n) {
  float y;
  row_dots<1>(F16Row{a}, n, b, &y, 1);
  return y;
}

template <typename Row>
void axpy(float alpha, const Row& x, float* y, int n) {
  const __m256 av = _mm256_set1_ps(alpha);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, x.load8(i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x.at(i);
}

void axpy_f32(float alpha, const float* x, float* y, int n) { axpy(alpha, F32Row{x}, y, n); }
void axpy_f16(float alpha, const uint16_t* x, float* y, int n) { axpy(alpha, F16Row{x}, y, n); }

}  // namespace

const CpuKernels& avx2_kernels() {
  static const CpuKernels kernels{"avx2", matmul_rows, dot_f32, dot_f16, axpy_f32, axpy_f16};
  return kernels;
}

}  // namespace pagedlm
