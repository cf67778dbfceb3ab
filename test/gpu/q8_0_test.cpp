// The Q8_0 split at upload and the expansion to f16 for the GEMMs of larger batches (the decode product: matvec_test).
#include "gpu_test_support.h"

namespace pagedlm {
namespace {

using gpu_test::DeviceBuffer;
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

}  // namespace
}  // namespace pagedlm
