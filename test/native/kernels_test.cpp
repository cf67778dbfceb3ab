// Every CPU kernel table against the plain reference, on random shapes with odd sizes and tails.
#include <gtest/gtest.h>

#include <random>

#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"
#include "common/half.h"
#include "support/gguf_writer.h"

namespace pagedlm {
namespace {

std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

class Kernels : public ::testing::TestWithParam<const CpuKernels*> {};

TEST_P(Kernels, MatmulMatchesDequantizedReference) {
  const CpuKernels& k = *GetParam();
  std::mt19937 rng(3);
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0, TensorType::kQ4_0}) {
    for (int cols : {32, 64, 96, 256}) {
      for (int extra : {0, 1, 5, 7}) {
        const int c = (type == TensorType::kF32 || type == TensorType::kF16 || type == TensorType::kBF16) ? cols + extra : cols;
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

INSTANTIATE_TEST_SUITE_P(Tables, Kernels, ::testing::Values(&portable_kernels(), &avx2_kernels()),
                         [](const auto& info) { return std::string(info.param->name) + std::to_string(info.index); });

TEST(ThreadPool, RunsEveryTaskOnceAcrossManyRounds) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> hits(1000);
  for (int round = 0; round < 200; ++round) {
    pool.parallel_for(hits.size(), [&](size_t i, size_t thread) {
      ASSERT_LT(thread, pool.size());
      hits[i].fetch_add(1);
    });
  }
  for (auto& h : hits) EXPECT_EQ(h.load(), 200);
}

}  // namespace
}  // namespace pagedlm
