// The Q8_0 split at upload and the decode matrix x vectors product against the dequantized product.
#include "gpu_test_support.h"

namespace pagedlm {
namespace {

using gpu_test::all_close;
using gpu_test::DeviceBuffer;
using gpu_test::random_floats;
using gpu_test::random_q8_0_rows;

TEST(CudaQ8_0, SplitKeepsEveryScaleAndValue) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(5);
  const int rows = 3, cols = 96;
  const std::vector<uint8_t> raw = random_q8_0_rows(rng, rows, cols);
  DeviceBuffer<uint8_t> draw(raw);
  DeviceBuffer<int8_t> quants(static_cast<size_t>(rows) * cols);
  DeviceBuffer<uint16_t> scales(static_cast<size_t>(rows) * cols / 32);
  ASSERT_EQ(cuda::launch_split_q8_0({draw.get(), quants.get(), scales.get(), rows, cols}, nullptr), cudaSuccess);
  const std::vector<int8_t> q = quants.download();
  const std::vector<uint16_t> s = scales.download();
  const auto* blocks = reinterpret_cast<const BlockQ8_0*>(raw.data());
  for (int b = 0; b < rows * cols / 32; ++b) {
    ASSERT_EQ(s[b], blocks[b].scale) << "block " << b;
    for (int i = 0; i < 32; ++i) ASSERT_EQ(q[b * 32 + i], blocks[b].values[i]) << "block " << b;
  }
}

TEST(CudaQ8_0, MatvecMatchesDequantizedProductForOneToEightTokens) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(6);
  for (const auto& [rows, cols] : {std::pair{1, 32}, {67, 96}, {130, 2048}, {5, 4096 + 32}}) {
    const std::vector<uint8_t> raw = random_q8_0_rows(rng, rows, cols);
    DeviceBuffer<uint8_t> draw(raw);
    DeviceBuffer<int8_t> quants(static_cast<size_t>(rows) * cols);
    DeviceBuffer<uint16_t> scales(static_cast<size_t>(rows) * cols / 32);
    ASSERT_EQ(cuda::launch_split_q8_0({draw.get(), quants.get(), scales.get(), rows, cols}, nullptr), cudaSuccess);
    std::vector<float> weights(static_cast<size_t>(rows) * cols);
    const size_t row_bytes = raw.size() / rows;
    for (int r = 0; r < rows; ++r) dequantize_row(TensorType::kQ8_0, raw.data() + r * row_bytes, weights.data() + static_cast<size_t>(r) * cols, cols);
    for (int tokens = 1; tokens <= cuda::kMaxMatvecTokens; ++tokens) {
      const std::vector<float> x = random_floats(rng, static_cast<size_t>(tokens) * cols);
      DeviceBuffer<float> dx(x), dy(static_cast<size_t>(tokens) * rows);
      const cuda::Q8_0MatvecParams params{{TensorType::kQ8_0, quants.get(), scales.get(), rows, cols}, dx.get(), dy.get(), tokens};
      ASSERT_EQ(cuda::launch_q8_0_matvec(params, nullptr), cudaSuccess);
      std::vector<float> want(static_cast<size_t>(tokens) * rows);
      double magnitude = 0;
      for (int t = 0; t < tokens; ++t) {
        for (int r = 0; r < rows; ++r) {
          double sum = 0;
          for (int c = 0; c < cols; ++c) sum += static_cast<double>(weights[static_cast<size_t>(r) * cols + c]) * x[static_cast<size_t>(t) * cols + c];
          want[static_cast<size_t>(t) * rows + r] = static_cast<float>(sum);
          magnitude = std::max(magnitude, std::fabs(sum));
        }
      }
      // Float sums of `cols` products in another order: relative to the typical size of a result.
      EXPECT_TRUE(all_close(dy.download(), want, 1e-5f * static_cast<float>(std::sqrt(cols)) * static_cast<float>(1 + magnitude)))
          << rows << "x" << cols << ", " << tokens << " tokens";
    }
  }
}

TEST(CudaQ8_0, DequantizesToTheNearestHalf) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(16);
  const int rows = 9, cols = 160;
  const std::vector<uint8_t> raw = random_q8_0_rows(rng, rows, cols);
  DeviceBuffer<uint8_t> draw(raw);
  DeviceBuffer<int8_t> quants(static_cast<size_t>(rows) * cols);
  DeviceBuffer<uint16_t> scales(static_cast<size_t>(rows) * cols / 32), halves(static_cast<size_t>(rows) * cols);
  ASSERT_EQ(cuda::launch_split_q8_0({draw.get(), quants.get(), scales.get(), rows, cols}, nullptr), cudaSuccess);
  ASSERT_EQ(cuda::launch_dequantize_q8_0({{TensorType::kQ8_0, quants.get(), scales.get(), rows, cols}, halves.get()}, nullptr), cudaSuccess);
  std::vector<float> values(static_cast<size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) dequantize_row(TensorType::kQ8_0, raw.data() + r * raw.size() / rows, values.data() + static_cast<size_t>(r) * cols, cols);
  std::vector<uint16_t> want(values.size());
  for (size_t i = 0; i < values.size(); ++i) want[i] = float_to_fp16(values[i]);
  EXPECT_EQ(halves.download(), want);
}

TEST(CudaQ8_0, RejectsBadShapes) {
  const cuda::Q8_0MatvecParams nine_tokens{{TensorType::kQ8_0, nullptr, nullptr, 4, 64}, nullptr, nullptr, 9};
  EXPECT_EQ(cuda::launch_q8_0_matvec(nine_tokens, nullptr), cudaErrorInvalidValue);
  const cuda::Q8_0MatvecParams ragged{{TensorType::kQ8_0, nullptr, nullptr, 4, 48}, nullptr, nullptr, 1};
  EXPECT_EQ(cuda::launch_q8_0_matvec(ragged, nullptr), cudaErrorInvalidValue);
  const cuda::Q8_0MatvecParams f16{{TensorType::kF16, nullptr, nullptr, 4, 64}, nullptr, nullptr, 1};
  EXPECT_EQ(cuda::launch_q8_0_matvec(f16, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace pagedlm
