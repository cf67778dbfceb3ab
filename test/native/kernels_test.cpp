// Every CPU kernel table against the plain reference, on random shapes with odd sizes and tails.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "backend/cpu/block_attention.h"
#include "backend/cpu/kernels.h"
#include "common/half.h"
#include "support/gguf_writer.h"
#include "support/prepared_matmul.h"

namespace pagedlm {
namespace {

std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Random Q4_K rows: random nibbles and packed scales, super-block scales small enough for sane sums.
std::vector<uint8_t> random_q4k(std::mt19937& rng, int rows, int cols) {
  std::vector<uint8_t> bytes(static_cast<size_t>(rows) * (cols / kQKElements) * sizeof(BlockQ4_K));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  auto* blocks = reinterpret_cast<BlockQ4_K*>(bytes.data());
  std::uniform_real_distribution<float> scale(0.0005f, 0.002f);
  for (size_t i = 0; i < bytes.size() / sizeof(BlockQ4_K); ++i) {
    blocks[i].d = float_to_fp16(scale(rng));
    blocks[i].dmin = float_to_fp16(scale(rng));
  }
  return bytes;
}

class Kernels : public ::testing::TestWithParam<const CpuKernels*> {
 protected:
  void SetUp() override {
    if (!cpu_supports_kernels(*GetParam())) GTEST_SKIP() << "this CPU cannot run the " << GetParam()->name << " kernels";
  }
};

TEST_P(Kernels, MatmulMatchesDequantizedReference) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(3);
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ5_0,
                          TensorType::kQ5_1, TensorType::kIQ4_NL, TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_XS}) {
    for (int cols : {32, 64, 96, 256}) {
      for (int extra : {0, 1, 5, 7}) {
        const int c = (type == TensorType::kF32 || type == TensorType::kF16 || type == TensorType::kBF16) ? cols + extra : cols;
        if (c % static_cast<int>(tensor_type_info(static_cast<uint32_t>(type))->block_elements) != 0) continue;
        for (int n_tokens : {1, 2, 3, 4, 5, 9, 33}) {
          const int rows = 7;
          const auto w = testing::encode_tensor(random_floats(rng, static_cast<size_t>(rows) * c), type);
          const auto x = random_floats(rng, static_cast<size_t>(n_tokens) * c);
          std::vector<float> y(static_cast<size_t>(n_tokens) * rows), scratch(c);
          const size_t row_bytes = tensor_row_bytes(type, c);
          k.matmul_rows({type, w.data(), row_bytes, c, x.data(), n_tokens, y.data(), rows}, 0, rows, scratch.data());
          std::vector<float> deq(c);
          for (int r = 0; r < rows; ++r) {
            dequantize_row(type, w.data() + r * row_bytes, deq.data(), c);
            for (int t = 0; t < n_tokens; ++t) {
              double ref = 0;
              for (int i = 0; i < c; ++i) ref += static_cast<double>(deq[i]) * x[static_cast<size_t>(t) * c + i];
              ASSERT_NEAR(y[static_cast<size_t>(t) * rows + r], ref, 1e-4 * c) << tensor_type_name(type) << " cols " << c << " tokens " << n_tokens;
            }
          }
        }
      }
    }
  }
}

// What matmul_rows computes for `type` on this table, row-major or interleaved, quantizing the activations
// for Q8_0 where the table does.
std::vector<float> run_matmul(const CpuKernels& k, TensorType type, const std::vector<uint8_t>& w, int rows, int cols, const std::vector<float>& x,
                              int n_tokens, bool interleaved, int rows_per_call) {
  const testing::PreparedMatmul matmul(k, type, w, rows, cols, x, n_tokens, interleaved);
  std::vector<float> scratch(cols);
  for (int begin = 0; begin < rows; begin += rows_per_call) matmul.run(begin, std::min(rows, begin + rows_per_call), scratch.data());
  return matmul.y();
}

TEST_P(Kernels, InterleavedRowsGiveTheSameBits) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(11);
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0, TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K,
                          TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_XS}) {
    for (int cols : {32, 64, 256, 8 * 37, 768}) {
      if (cols % static_cast<int>(tensor_type_info(static_cast<uint32_t>(type))->block_elements) != 0) continue;
      for (int rows : {4, 12, 16, 36, 48}) {
        if (!can_interleave_rows(k, type, rows, cols)) {
          const int group = k.pack_rows != nullptr ? k.packed_group_rows(type) : 0;
          ASSERT_TRUE(group == 0 || rows % group != 0) << tensor_type_name(type) << " " << rows;
          continue;
        }
        const auto w = type == TensorType::kQ4_K ? random_q4k(rng, rows, cols) : testing::encode_tensor(random_floats(rng, static_cast<size_t>(rows) * cols), type);
        for (int n_tokens : {1, 2, 3, 7, 9, 30}) {
          const auto x = random_floats(rng, static_cast<size_t>(n_tokens) * cols);
          const auto plain = run_matmul(k, type, w, rows, cols, x, n_tokens, false, 8);
          const auto interleaved = run_matmul(k, type, w, rows, cols, x, n_tokens, true, k.packed_group_rows(type));
          ASSERT_EQ(0, std::memcmp(plain.data(), interleaved.data(), plain.size() * sizeof(float))) << tensor_type_name(type) << " " << rows << "x" << cols;
        }
      }
    }
  }
  EXPECT_FALSE(can_interleave_rows(k, TensorType::kF16, 6, 64));
  EXPECT_FALSE(can_interleave_rows(k, TensorType::kF16, 8, 60));
  EXPECT_FALSE(can_interleave_rows(k, TensorType::kQ4_K, 8, 256));
}

// A token's output must not depend on which other tokens share its matmul (or on the row split), row-major
// or packed.
TEST_P(Kernels, EachTokenAloneEqualsItInABatch) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(13);
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1,
                          TensorType::kIQ4_NL, TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_XS}) {
    for (const bool packed : {false, true}) {
      const int rows = packed ? 32 : 13, cols = 256, n_tokens = 11;
      if (packed && !can_interleave_rows(k, type, rows, cols)) continue;
      const int rows_per_call = packed ? k.packed_group_rows(type) : 4;
      const auto w = type == TensorType::kQ4_K ? random_q4k(rng, rows, cols) : testing::encode_tensor(random_floats(rng, static_cast<size_t>(rows) * cols), type);
      const auto x = random_floats(rng, static_cast<size_t>(n_tokens) * cols);
      const auto batched = run_matmul(k, type, w, rows, cols, x, n_tokens, packed, rows_per_call);
      for (int t = 0; t < n_tokens; ++t) {
        const std::vector<float> one(x.begin() + static_cast<size_t>(t) * cols, x.begin() + static_cast<size_t>(t + 1) * cols);
        const auto alone = run_matmul(k, type, w, rows, cols, one, 1, packed, rows);
        ASSERT_EQ(0, std::memcmp(alone.data(), batched.data() + static_cast<size_t>(t) * rows, rows * sizeof(float)))
            << tensor_type_name(type) << (packed ? " packed" : "") << " token " << t;
      }
    }
  }
}

// Q8_0 weights times int8 activations: exact against a reference that quantizes the same way, and within
// int8 rounding of the float product.
TEST_P(Kernels, Q8ActivationPathMatchesItsReference) {
  const CpuKernels& k = *GetParam();
  if (k.quantize_q8 == nullptr) GTEST_SKIP() << k.name << " multiplies Q8_0 weights with float activations";
  std::mt19937 rng(17);
  for (int cols : {32, 96, 2048}) {
    for (int rows : {1, 3, 4, 9}) {
      for (int n_tokens : {1, 2, 5}) {
        const auto w = testing::encode_tensor(random_floats(rng, static_cast<size_t>(rows) * cols), TensorType::kQ8_0);
        auto x = random_floats(rng, static_cast<size_t>(n_tokens) * cols);
        x[0] = 0;  // a zero and an all-zero block
        std::fill(x.begin() + (x.size() >= 64 ? 32 : 0), x.begin() + (x.size() >= 64 ? 64 : 0), 0.0f);
        const auto y = run_matmul(k, TensorType::kQ8_0, w, rows, cols, x, n_tokens, false, 4);
        const auto* blocks = reinterpret_cast<const BlockQ8_0*>(w.data());
        for (int t = 0; t < n_tokens; ++t) {
          for (int r = 0; r < rows; ++r) {
            double quantized = 0, exact = 0, magnitude = 0;
            for (int b = 0; b < cols / 32; ++b) {
              const float* xb = x.data() + static_cast<size_t>(t) * cols + b * 32;
              float amax = 0;
              for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
              const float xs = amax / 127;
              const BlockQ8_0& wb = blocks[static_cast<size_t>(r) * (cols / 32) + b];
              int32_t dot = 0;
              for (int i = 0; i < 32; ++i) dot += wb.values[i] * (xs > 0 ? static_cast<int>(std::nearbyint(xb[i] / xs)) : 0);
              quantized += static_cast<double>(fp16_to_float(wb.scale)) * xs * dot;
              for (int i = 0; i < 32; ++i) {
                exact += static_cast<double>(fp16_to_float(wb.scale)) * wb.values[i] * xb[i];
                magnitude += std::fabs(static_cast<double>(fp16_to_float(wb.scale)) * wb.values[i] * xb[i]);
              }
            }
            const float got = y[static_cast<size_t>(t) * rows + r];
            ASSERT_NEAR(got, quantized, 1e-5 * magnitude + 1e-6) << "cols " << cols << " rows " << rows;
            ASSERT_NEAR(got, exact, 1e-2 * magnitude + 1e-6);
          }
        }
      }
    }
  }
}

TEST_P(Kernels, DotAndAxpy) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(5);
  for (int n : {1, 7, 8, 9, 64, 100, 128}) {
    const auto a = random_floats(rng, n), b = random_floats(rng, n);
    std::vector<uint16_t> a16(n);
    double ref = 0, ref16 = 0;
    for (int i = 0; i < n; ++i) {
      a16[i] = float_to_fp16(a[i]);
      ref += static_cast<double>(a[i]) * b[i];
      ref16 += static_cast<double>(fp16_to_float(a16[i])) * b[i];
    }
    EXPECT_NEAR(k.dot_f32(a.data(), b.data(), n), ref, 1e-5 * n);
    EXPECT_NEAR(k.dot_f16(a16.data(), b.data(), n), ref16, 1e-5 * n);
    std::vector<float> y = b, y16 = b;
    k.axpy_f32(0.5f, a.data(), y.data(), n);
    k.axpy_f16(0.5f, a16.data(), y16.data(), n);
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(y[i], b[i] + 0.5f * a[i], 1e-6);
      EXPECT_NEAR(y16[i], b[i] + 0.5f * fp16_to_float(a16[i]), 1e-6);
    }
  }
}

// Every value from far below exp's underflow to past its overflow, then random ones, with an odd count so
// the vector kernels' scalar tails run too.
std::vector<float> exp_inputs(std::mt19937& rng) {
  std::vector<float> x = {-INFINITY, -1000.0f, -104.0f, -88.0f, -87.3f, -87.0f, -20.0f, -1e-3f, -1e-30f, 0.0f, 1e-30f, 1e-3f, 0.34657f, 0.5f, 1.0f, 20.0f, 88.0f};
  for (float v = -90.0f; v <= 89.0f; v += 0.37f) x.push_back(v);
  for (const float v : random_floats(rng, 1001)) x.push_back(v * 12.0f);
  return x;
}

TEST_P(Kernels, ExpSumIsCloseToExp) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(13);
  const std::vector<float> in = exp_inputs(rng);
  const float max = *std::max_element(in.begin(), in.end());
  for (const float above_max : {0.0f, 0.5f, 30.0f}) {  // as softmax calls it: every exponent <= 0
    const float shift = max + above_max;
    std::vector<float> out = in;
    const float sum = k.exp_sum(out.data(), static_cast<int>(out.size()), shift);
    double want_sum = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      const double want = std::exp(static_cast<double>(in[i] - shift));  // the difference rounds to float first
      want_sum += want;
      if (want < 1e-37) {
        EXPECT_LE(out[i], 1e-37f) << in[i];  // too small for a normal float: 0, or nearly
      } else {
        EXPECT_NEAR(out[i], want, 4e-7 * want) << in[i] << " - " << shift;
      }
    }
    EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum);
  }
}

TEST_P(Kernels, SwigluIsCloseToItsDefinition) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(17);
  const std::vector<float> gate = exp_inputs(rng);
  const std::vector<float> up = random_floats(rng, gate.size());
  std::vector<float> out = gate;
  k.swiglu(out.data(), up.data(), static_cast<int>(out.size()));
  for (size_t i = 0; i < gate.size(); ++i) {
    if (std::isinf(gate[i])) continue;
    const double g = gate[i];
    const double want = g / (1.0 + std::exp(-g)) * up[i];
    EXPECT_NEAR(out[i], want, 1e-6 * std::fabs(want) + 1e-30) << "gate " << gate[i];
  }
}

TEST_P(Kernels, MaxSkipsNaN) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(19);
  for (int n : {0, 1, 7, 8, 9, 31, 32, 33, 100, 4099}) {
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<float> x = random_floats(rng, n);
      if (trial == 1 && n > 0) x[n - 1] = 7.0f;  // the largest in the tail
      if (trial == 2) std::fill(x.begin(), x.end(), NAN);
      if (trial == 3) {  // NaN throughout, first and last too
        for (size_t i = 0; i < x.size(); i += 5) x[i] = NAN;
        if (n > 0) x[n - 1] = NAN;
      }
      float want = -INFINITY;
      for (float v : x) want = std::isnan(v) ? want : std::max(want, v);
      EXPECT_EQ(k.max_f32(x.data(), n), want) << "n " << n << " trial " << trial;
    }
  }
}

// Q4_K weights times int8 activations: close to the exact float product (within int8 rounding), on
// shapes with 1 to 9 rows (a partial last group of 4) and 1 to 5 tokens.
TEST_P(Kernels, Q4KMatchesDequantizedReference) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(29);
  for (int cols : {256, 512, 2048}) {
    for (int rows : {1, 4, 6, 9}) {
      for (int n_tokens : {1, 2, 3, 5}) {
        const auto w = random_q4k(rng, rows, cols);
        const auto x = random_floats(rng, static_cast<size_t>(n_tokens) * cols);
        const auto y = run_matmul(k, TensorType::kQ4_K, w, rows, cols, x, n_tokens, false, 4);
        std::vector<float> deq(cols);
        for (int r = 0; r < rows; ++r) {
          dequantize_row(TensorType::kQ4_K, w.data() + static_cast<size_t>(r) * tensor_row_bytes(TensorType::kQ4_K, cols), deq.data(), cols);
          for (int t = 0; t < n_tokens; ++t) {
            double exact = 0, magnitude = 0;
            for (int i = 0; i < cols; ++i) {
              exact += static_cast<double>(deq[i]) * x[static_cast<size_t>(t) * cols + i];
              magnitude += std::fabs(static_cast<double>(deq[i]) * x[static_cast<size_t>(t) * cols + i]);
            }
            const double tolerance = k.quantize_q8k != nullptr ? 1e-2 * magnitude : 1e-5 * magnitude;
            ASSERT_NEAR(y[static_cast<size_t>(t) * rows + r], exact, tolerance + 1e-6) << "cols " << cols << " rows " << rows << " tokens " << n_tokens;
          }
        }
      }
    }
  }
}

// Q6_K weights times int8 activations: against a double-precision product of the dequantized weights with
// the very activations the kernel multiplied (so only float rounding separates them).
TEST_P(Kernels, Q6KMatchesAReferenceOnItsInt8Activations) {
  const CpuKernels& k = *GetParam();
  if (k.quantize_q8k == nullptr) GTEST_SKIP() << k.name << " multiplies Q6_K weights with float activations";
  std::mt19937 rng(31);
  for (int cols : {256, 2048}) {
    for (int rows : {1, 3, 32}) {
      for (int n_tokens : {1, 2, 5, 30}) {
        const auto w = testing::encode_tensor(random_floats(rng, static_cast<size_t>(rows) * cols), TensorType::kQ6_K);
        const auto x = random_floats(rng, static_cast<size_t>(n_tokens) * cols);
        const bool packed = can_interleave_rows(k, TensorType::kQ6_K, rows, cols);
        const testing::PreparedMatmul matmul(k, TensorType::kQ6_K, w, rows, cols, x, n_tokens, packed);
        std::vector<float> scratch(cols), deq(cols);
        matmul.run(0, rows, scratch.data());
        for (int r = 0; r < rows; ++r) {
          dequantize_row(TensorType::kQ6_K, w.data() + static_cast<size_t>(r) * tensor_row_bytes(TensorType::kQ6_K, cols), deq.data(), cols);
          for (int t = 0; t < n_tokens; ++t) {
            double want = 0, magnitude = 0;
            for (int sb = 0; sb < cols / 256; ++sb) {
              const ActivationBlockQ8K& xk = matmul.args().xk[static_cast<size_t>(t) * (cols / 256) + sb];
              for (int i = 0; i < 256; ++i) {
                const double term = static_cast<double>(deq[256 * sb + i]) * xk.values[i] * xk.scale;
                want += term;
                magnitude += std::fabs(term);
              }
            }
            ASSERT_NEAR(matmul.y()[static_cast<size_t>(t) * rows + r], want, 1e-5 * magnitude + 1e-6) << "cols " << cols << " row " << r << " token " << t;
          }
        }
      }
    }
  }
}

// The activations a prepared matmul multiplies for token t, as the kernel sees them: dequantized from its
// int8 blocks where the table quantized them, else the floats themselves.
std::vector<double> multiplied_activations(const testing::PreparedMatmul& matmul, const std::vector<float>& x, int t, int cols) {
  std::vector<double> out(cols);
  const MatmulArgs& a = matmul.args();
  for (int i = 0; i < cols; ++i) {
    if (a.xk != nullptr) {
      const ActivationBlockQ8K& block = a.xk[static_cast<size_t>(t) * (cols / 256) + i / 256];
      out[i] = static_cast<double>(block.values[i % 256]) * block.scale;
    } else if (a.xq != nullptr) {
      const ActivationBlockQ8& block = a.xq[static_cast<size_t>(t) * (cols / 32) + i / 32];
      out[i] = static_cast<double>(block.values[i % 32]) * block.scale;
    } else {
      out[i] = x[static_cast<size_t>(t) * cols + i];
    }
  }
  return out;
}

// Each quantized type on each table against a double-precision product of its dequantized weights with the
// very activations the kernel multiplied (int8 blocks where the table quantizes them), so only float
// rounding separates them; and within int8 rounding of the float product. Odd row counts, rows split
// across calls at odd offsets, token counts across a chunk of 24, several blocks per row.
TEST_P(Kernels, QuantizedTypesMatchAReferenceOnTheActivationsTheyMultiply) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(37);
  for (TensorType type : {TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kIQ4_NL, TensorType::kQ2_K, TensorType::kQ3_K,
                          TensorType::kQ5_K, TensorType::kIQ4_XS}) {
    const int block = static_cast<int>(tensor_type_info(static_cast<uint32_t>(type))->block_elements);
    for (int cols : {block, 3 * block, 8 * block}) {
      for (int rows : {1, 5, 9, 19, 32}) {  // 32: two packed groups where the table packs the type
        for (int n_tokens : {1, 2, 3, 7, 26}) {
          const auto w = testing::encode_tensor(random_floats(rng, static_cast<size_t>(rows) * cols), type);
          const auto x = random_floats(rng, static_cast<size_t>(n_tokens) * cols);
          const testing::PreparedMatmul matmul(k, type, w, rows, cols, x, n_tokens, can_interleave_rows(k, type, rows, cols));
          ASSERT_EQ(k.quantize_q8 != nullptr && multiplies_q8_activations(type), matmul.args().xq != nullptr);
          ASSERT_EQ(k.quantize_q8k != nullptr && multiplies_q8k_activations(type), matmul.args().xk != nullptr);
          std::vector<float> scratch(cols), deq(cols);
          const int rows_per_call = matmul.args().interleaved ? k.packed_group_rows(type) : 3;
          for (int begin = 0; begin < rows; begin += rows_per_call) matmul.run(begin, std::min(rows, begin + rows_per_call), scratch.data());
          for (int r = 0; r < rows; ++r) {
            dequantize_row(type, w.data() + static_cast<size_t>(r) * tensor_row_bytes(type, cols), deq.data(), cols);
            for (int t = 0; t < n_tokens; ++t) {
              const auto xm = multiplied_activations(matmul, x, t, cols);
              double want = 0, exact = 0, magnitude = 0;
              for (int i = 0; i < cols; ++i) {
                want += deq[i] * xm[i];
                exact += static_cast<double>(deq[i]) * x[static_cast<size_t>(t) * cols + i];
                magnitude += std::fabs(deq[i] * xm[i]);
              }
              const float got = matmul.y()[static_cast<size_t>(t) * rows + r];
              ASSERT_NEAR(got, want, 1e-5 * magnitude + 1e-6) << tensor_type_name(type) << " cols " << cols << " row " << r << " of " << rows << " token " << t << " of " << n_tokens;
              ASSERT_NEAR(got, exact, 1e-2 * magnitude + 1e-6) << tensor_type_name(type) << " cols " << cols << " row " << r << " token " << t;
            }
          }
        }
      }
    }
  }
}

// The block forms attention uses give the same bits as one dot / axpy per row.
TEST_P(Kernels, RowBlocksEqualRowByRow) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(23);
  for (int d : {8, 40, 64, 80, 96, 128, 7}) {
    for (int n : {1, 3, 4, 5, 16, 32}) {
      const auto q = random_floats(rng, d), rows = random_floats(rng, static_cast<size_t>(n) * d), weights = random_floats(rng, n);
      std::vector<uint16_t> rows16(rows.size());
      for (size_t i = 0; i < rows.size(); ++i) rows16[i] = float_to_fp16(rows[i]);
      std::vector<float> scores(n), scores16(n), acc = random_floats(rng, d), acc16 = acc, each = acc, each16 = acc;
      k.dot_rows_f32(rows.data(), n, d, q.data(), scores.data());
      k.dot_rows_f16(rows16.data(), n, d, q.data(), scores16.data());
      k.axpy_rows_f32(weights.data(), rows.data(), n, d, acc.data());
      k.axpy_rows_f16(weights.data(), rows16.data(), n, d, acc16.data());
      for (int p = 0; p < n; ++p) {
        ASSERT_EQ(scores[p], k.dot_f32(rows.data() + static_cast<size_t>(p) * d, q.data(), d)) << "d " << d << " n " << n;
        ASSERT_EQ(scores16[p], k.dot_f16(rows16.data() + static_cast<size_t>(p) * d, q.data(), d));
        k.axpy_f32(weights[p], rows.data() + static_cast<size_t>(p) * d, each.data(), d);
        k.axpy_f16(weights[p], rows16.data() + static_cast<size_t>(p) * d, each16.data(), d);
      }
      ASSERT_EQ(0, std::memcmp(acc.data(), each.data(), d * sizeof(float))) << "d " << d << " n " << n;
      ASSERT_EQ(0, std::memcmp(acc16.data(), each16.data(), d * sizeof(float)));
    }
  }
}

// Block attention (the table's fused form, or its row kernels composed), fed a sequence block by block (block
// lengths around the fused form's 16-position steps), ends at softmax(q . k x scale) . v for every query row,
// K/V in f32 and in f16; soft-capped, at softmax(cap x tanh(q . k x scale / cap)) . v.
TEST_P(Kernels, BlockAttentionIsSoftmaxAttention) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(29);
  const std::vector<int> blocks = {5, 16, 1, 23, 40, 16, 15};
  const int positions = 116;  // the blocks' sum
  std::vector<float> scores(40);  // the longest block
  for (int d : {7, 16, 40, 64, 80, 128, 136}) {
    for (int rows : {1, 3, 4, 5, 8}) {
      for (const auto [scale, softcap] : {std::pair{0.125f, 0.0f}, {4.0f, 0.0f}, {4.0f, 3.0f}, {0.125f, 0.5f}}) {
        const auto q = random_floats(rng, static_cast<size_t>(rows) * d);
        const auto keys = random_floats(rng, static_cast<size_t>(positions) * d), values = random_floats(rng, keys.size());
        std::vector<uint16_t> keys16(keys.size()), values16(keys.size());
        std::vector<float> keys_h(keys.size()), values_h(keys.size());  // what the f16 rows hold
        for (size_t i = 0; i < keys.size(); ++i) {
          keys16[i] = float_to_fp16(keys[i]);
          values16[i] = float_to_fp16(values[i]);
          keys_h[i] = fp16_to_float(keys16[i]);
          values_h[i] = fp16_to_float(values16[i]);
        }
        const auto check = [&](const std::vector<float>& kf, const std::vector<float>& vf, auto&& attend, const std::string& what) {
          std::vector<float> row_max(rows, -INFINITY), row_sum(rows, 0.0f), acc(static_cast<size_t>(rows) * d, 0.0f);
          const AttentionRows state{q.data(), rows, scale, row_max.data(), row_sum.data(), acc.data(), softcap};
          int at = 0;
          for (const int n : blocks) {
            attend(at, n, state);
            at += n;
          }
          for (int r = 0; r < rows; ++r) {
            std::vector<double> score(positions);
            for (int p = 0; p < positions; ++p) {
              for (int i = 0; i < d; ++i) score[p] += static_cast<double>(q[static_cast<size_t>(r) * d + i]) * kf[static_cast<size_t>(p) * d + i];
              score[p] *= scale;
              if (softcap > 0) score[p] = softcap * std::tanh(score[p] / softcap);
            }
            const double max = *std::max_element(score.begin(), score.end());
            double sum = 0;
            for (double& s : score) sum += s = std::exp(s - max);
            ASSERT_NEAR(row_max[r], max, 1e-5 * (1 + std::fabs(max))) << what << " d " << d << " rows " << rows;
            ASSERT_NEAR(row_sum[r], sum, 1e-5 * sum) << what << " d " << d << " rows " << rows;
            for (int i = 0; i < d; ++i) {
              double want = 0;
              for (int p = 0; p < positions; ++p) want += score[p] * vf[static_cast<size_t>(p) * d + i];
              ASSERT_NEAR(acc[static_cast<size_t>(r) * d + i] / row_sum[r], want / sum, 2e-5) << what << " d " << d << " rows " << rows << " col " << i;
            }
          }
        };
        check(keys, values, [&](int at, int n, const AttentionRows& state) {
          attend_block(k, keys.data() + static_cast<size_t>(at) * d, values.data() + static_cast<size_t>(at) * d, n, d, state, scores.data());
        }, "f32");
        check(keys_h, values_h, [&](int at, int n, const AttentionRows& state) {
          attend_block(k, keys16.data() + static_cast<size_t>(at) * d, values16.data() + static_cast<size_t>(at) * d, n, d, state, scores.data());
        }, "f16");
        if (k.attend_block_encoded == nullptr) continue;
        // K and V rows of every pair of the types read in place, against what kv_load_row decodes them to.
        const KvDtype in_place[] = {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3};
        struct Encoded {
          size_t row_bytes;
          std::vector<uint8_t> rows;
          std::vector<float> scales, decoded;
        };
        const auto encode = [&](KvDtype dtype, const std::vector<float>& x) {
          Encoded e{kv_row_bytes(dtype, d), {}, std::vector<float>(positions), std::vector<float>(x.size())};
          e.rows.resize(positions * e.row_bytes);
          for (int p = 0; p < positions; ++p) {
            const size_t at = static_cast<size_t>(p) * d;
            kv_store_row(dtype, x.data() + at, e.rows.data() + p * e.row_bytes, &e.scales[p], d);
            kv_load_row(dtype, e.rows.data() + p * e.row_bytes, &e.scales[p], e.decoded.data() + at, d);
          }
          return e;
        };
        for (const KvDtype k_type : in_place) {
          const Encoded ke = encode(k_type, keys);
          for (const KvDtype v_type : in_place) {
            const Encoded ve = encode(v_type, values);
            check(ke.decoded, ve.decoded, [&](int at, int n, const AttentionRows& state) {
              k.attend_block_encoded(k_type, v_type, ke.rows.data() + at * ke.row_bytes, ve.rows.data() + at * ve.row_bytes, ke.scales.data() + at,
                                     ve.scales.data() + at, n, d, state);
            }, std::string("K ") + kv_dtype_name(k_type) + " V " + kv_dtype_name(v_type));
          }
        }
      }
    }
  }
}

// One position: attention's output is that V row, so every fp8 code read in place must come back as
// fp8_e4m3_to_float gives it (subnormals, both zeros, the NaN codes), and int8 as value x scale.
// Every exponent (a stride through the bit patterns), every midpoint between neighbouring fp16 values (where
// rounding to nearest even decides), the subnormal, overflow and infinity edges; rows of 1-19 values so the
// vector tail is covered.
TEST_P(Kernels, F32ToF16RoundsAsFloatToFp16) {
  if (GetParam()->f32_to_f16 == nullptr) GTEST_SKIP() << GetParam()->name << " converts with float_to_fp16 itself";
  std::vector<float> values;
  for (uint32_t i = 0; i < 65536; ++i) values.push_back(bits_to_float(i * 65537u));
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    const float midpoint = (fp16_to_float(static_cast<uint16_t>(h)) + fp16_to_float(static_cast<uint16_t>(h + 1))) / 2;
    values.push_back(midpoint);
    values.push_back(-midpoint);
  }
  for (float edge : {0.0f, -0.0f, 5.96e-8f, 2.98e-8f, 2.99e-8f, 6.1e-5f, 65504.0f, 65519.9f, 65520.0f, 1e9f, INFINITY, -INFINITY, NAN}) values.push_back(edge);
  std::vector<uint16_t> out(values.size());
  for (size_t begin = 0, n = 1; begin < values.size(); begin += n, n = n % 19 + 1) {
    const size_t count = std::min(n, values.size() - begin);
    GetParam()->f32_to_f16(values.data() + begin, out.data() + begin, static_cast<int>(count));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (std::isnan(values[i])) {
      EXPECT_TRUE((out[i] & 0x7c00u) == 0x7c00u && (out[i] & 0x3ffu) != 0) << "NaN stays NaN";
      continue;
    }
    ASSERT_EQ(out[i], float_to_fp16(values[i])) << "value " << values[i] << " (bits " << std::hex << float_to_bits(values[i]) << ")";
  }
}

TEST_P(Kernels, EncodedRowsReadAsTheyDecode) {
  const CpuKernels& k = *GetParam();
  if (k.attend_block_encoded == nullptr) GTEST_SKIP() << k.name << " decodes rows before attention";
  const int d = 256;
  std::vector<uint8_t> codes(d), key(d, 0);
  for (int i = 0; i < d; ++i) codes[i] = static_cast<uint8_t>(i);
  const std::vector<float> q(d, 0.0f);
  for (const KvDtype dtype : {KvDtype::kFp8E4M3, KvDtype::kInt8}) {
    const float v_scale = dtype == KvDtype::kInt8 ? 0.25f : 1.0f, k_scale = 1.0f;
    float row_max = -INFINITY, row_sum = 0;
    std::vector<float> acc(d, 0.0f);
    k.attend_block_encoded(dtype, dtype, key.data(), codes.data(), &k_scale, &v_scale, 1, d, {q.data(), 1, 1.0f, &row_max, &row_sum, acc.data()});
    ASSERT_EQ(row_sum, 1.0f);
    for (int i = 0; i < d; ++i) {
      const float want = dtype == KvDtype::kInt8 ? v_scale * static_cast<int8_t>(codes[i]) : fp8_e4m3_to_float(codes[i]);
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(acc[i])) << kv_dtype_name(dtype) << " code " << i;
      } else {
        EXPECT_EQ(acc[i], want) << kv_dtype_name(dtype) << " code " << i;
      }
    }
  }
}

// The two NEON tables differ only in how they sum 16 int8 products (sdot, or widening multiplies and pairwise
// adds), exactly either way, so every weight type gives the same bits on both.
TEST(NeonKernels, DotProductTableGivesThePlainTablesBits) {
  if (&neon_kernels() == &portable_kernels()) GTEST_SKIP() << "built without the NEON tables";
  if (!cpu_supports_kernels(neon_dotprod_kernels())) GTEST_SKIP() << "this CPU cannot run the neon-dotprod kernels";
  std::mt19937 rng(41);
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ5_0,
                          TensorType::kQ5_1, TensorType::kIQ4_NL, TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K,
                          TensorType::kIQ4_XS}) {
    const int rows = 9, cols = 512, n_tokens = 5;
    const auto w = type == TensorType::kQ4_K ? random_q4k(rng, rows, cols) : testing::encode_tensor(random_floats(rng, static_cast<size_t>(rows) * cols), type);
    const auto x = random_floats(rng, static_cast<size_t>(n_tokens) * cols);
    const auto plain = run_matmul(neon_kernels(), type, w, rows, cols, x, n_tokens, false, 3);
    const auto dot = run_matmul(neon_dotprod_kernels(), type, w, rows, cols, x, n_tokens, false, 3);
    ASSERT_EQ(0, std::memcmp(plain.data(), dot.data(), plain.size() * sizeof(float))) << tensor_type_name(type);
  }
}

INSTANTIATE_TEST_SUITE_P(Tables, Kernels, ::testing::ValuesIn(built_cpu_kernels()),
                         [](const auto& info) {
                           std::string name = info.param->name;  // "neon-dotprod": a test name takes no '-'
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name + std::to_string(info.index);
                         });

}  // namespace
}  // namespace pagedlm
