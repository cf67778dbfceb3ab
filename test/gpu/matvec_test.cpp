// The decode matvec (every device weight type x output step x folded RMSNorm on/off x token count) against its
// CPU twin: rms_norm, dequantize_row and a double dot product.
#include <cstring>
#include <memory>
#include <string>

#include "backend/cpu/ops.h"
#include "gpu_test_support.h"

namespace pagedlm {
namespace {

using gpu_test::all_close;
using gpu_test::DeviceBuffer;
using gpu_test::random_floats;
using gpu_test::random_q8_0_rows;

// A random matrix as GGUF stores it (host bytes) and as the device keeps it.
struct TestMatrix {
  TensorType type;
  int rows, cols;
  std::vector<uint8_t> stored;                    // GGUF rows
  std::unique_ptr<DeviceBuffer<uint8_t>> data;    // device rows (Q8_0: split int8 quants)
  std::unique_ptr<DeviceBuffer<uint16_t>> scales;  // Q8_0 only

  cuda::DeviceMatrix device() const { return {type, data->get(), scales ? scales->get() : nullptr, rows, cols}; }
  std::vector<float> dequantized() const {
    std::vector<float> out(static_cast<size_t>(rows) * cols);
    const size_t row_bytes = stored.size() / rows;
    for (int r = 0; r < rows; ++r) dequantize_row(type, stored.data() + r * row_bytes, out.data() + static_cast<size_t>(r) * cols, cols);
    return out;
  }
};

std::unique_ptr<TestMatrix> make_matrix(std::mt19937& rng, TensorType type, int rows, int cols) {
  auto m = std::make_unique<TestMatrix>(TestMatrix{type, rows, cols, {}, nullptr, nullptr});
  const size_t n = static_cast<size_t>(rows) * cols;
  if (type == TensorType::kQ8_0) {
    m->stored = random_q8_0_rows(rng, rows, cols);
    DeviceBuffer<uint8_t> raw(m->stored);
    m->data = std::make_unique<DeviceBuffer<uint8_t>>(n);
    m->scales = std::make_unique<DeviceBuffer<uint16_t>>(n / 32);
    EXPECT_EQ(cuda::launch_split_q8_0({raw.get(), reinterpret_cast<int8_t*>(m->data->get()), m->scales->get(), rows, cols}, nullptr), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return m;
  }
  const std::vector<float> values = random_floats(rng, n, 0.1f);
  if (type == TensorType::kF32) {
    m->stored.resize(n * 4);
    std::memcpy(m->stored.data(), values.data(), n * 4);
  } else {
    std::vector<uint16_t> halves(n);
    for (size_t i = 0; i < n; ++i) halves[i] = type == TensorType::kF16 ? float_to_fp16(values[i]) : float_to_bf16(values[i]);
    m->stored.resize(n * 2);
    std::memcpy(m->stored.data(), halves.data(), n * 2);
  }
  m->data = std::make_unique<DeviceBuffer<uint8_t>>(m->stored);
  return m;
}

float silu(float g) { return g / (1.0f + std::exp(-g)); }

struct Case {
  cuda::MatvecOutput output;
  bool norm;
  bool bias;
  int tokens;
};

std::string describe(const TestMatrix& m, const Case& c) {
  static const char* outputs[] = {"store", "accumulate", "swiglu"};
  return std::string(tensor_type_name(m.type)) + " " + std::to_string(m.rows) + "x" + std::to_string(m.cols) + ", " +
         outputs[static_cast<int>(c.output)] + (c.norm ? ", norm" : "") + (c.bias ? ", bias" : "") + ", " + std::to_string(c.tokens) + " tokens";
}

// The device result of one case against the CPU twin.
void check_case(std::mt19937& rng, const TestMatrix& m, const std::vector<float>& weights, const Case& c) {
  const int rows = m.rows, cols = m.cols, tokens = c.tokens;
  const float eps = 1e-5f;
  const std::vector<float> x = random_floats(rng, static_cast<size_t>(tokens) * cols);
  const std::vector<float> norm_weight = random_floats(rng, cols);
  const std::vector<float> bias = random_floats(rng, rows);
  const int out_cols = c.output == cuda::MatvecOutput::kSwiglu ? rows / 2 : rows;
  const std::vector<float> y0 = random_floats(rng, static_cast<size_t>(tokens) * out_cols);

  std::vector<float> want(y0.size());
  double magnitude = 0;
  std::vector<float> in(cols), product(rows);
  for (int t = 0; t < tokens; ++t) {
    const float* xt = x.data() + static_cast<size_t>(t) * cols;
    if (c.norm) rms_norm(xt, norm_weight.data(), in.data(), cols, eps);
    else std::copy(xt, xt + cols, in.begin());
    for (int r = 0; r < rows; ++r) {
      double sum = 0;
      for (int k = 0; k < cols; ++k) sum += static_cast<double>(weights[static_cast<size_t>(r) * cols + k]) * in[k];
      product[r] = static_cast<float>(sum) + (c.bias ? bias[r] : 0.0f);
      magnitude = std::max(magnitude, std::fabs(static_cast<double>(product[r])));
    }
    for (int o = 0; o < out_cols; ++o) {
      const size_t i = static_cast<size_t>(t) * out_cols + o;
      switch (c.output) {
        case cuda::MatvecOutput::kStore: want[i] = product[o]; break;
        case cuda::MatvecOutput::kAccumulate: want[i] = y0[i] + product[o]; break;
        case cuda::MatvecOutput::kSwiglu: want[i] = silu(product[o]) * product[rows / 2 + o]; break;
      }
    }
  }
  DeviceBuffer<float> dx(x), dnorm(norm_weight), dbias(bias), dy(y0);
  const cuda::MatvecParams p{m.device(), dx.get(), c.norm ? dnorm.get() : nullptr, eps, c.bias ? dbias.get() : nullptr, dy.get(), c.output, tokens};
  ASSERT_EQ(cuda::launch_matvec(p, nullptr), cudaSuccess) << describe(m, c);
  // Float sums of `cols` products in another order, relative to the typical size of a result (squared for SwiGLU's product).
  float tolerance = 1e-5f * static_cast<float>(std::sqrt(cols)) * static_cast<float>(1 + magnitude);
  if (c.output == cuda::MatvecOutput::kSwiglu) tolerance *= 2.0f * static_cast<float>(1 + magnitude);
  EXPECT_TRUE(all_close(dy.download(), want, tolerance)) << describe(m, c);
}

TEST(CudaMatvec, EveryTypeOutputNormAndTokenCountMatchesTheCpuTwin) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(26);
  for (const TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0}) {
    for (const auto& [rows, cols] : {std::pair{38, 96}, {6, 1056}}) {
      const auto m = make_matrix(rng, type, rows, cols);
      const std::vector<float> weights = m->dequantized();
      for (const cuda::MatvecOutput output : {cuda::MatvecOutput::kStore, cuda::MatvecOutput::kAccumulate, cuda::MatvecOutput::kSwiglu}) {
        for (const bool norm : {false, true}) {
          for (const int tokens : {1, 3, 8}) check_case(rng, *m, weights, {output, norm, tokens == 3, tokens});
        }
      }
    }
  }
}

TEST(CudaMatvec, ReadsEveryRowOfATallMatrix) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(27);
  const auto m = make_matrix(rng, TensorType::kQ8_0, 1001, 64);
  check_case(rng, *m, m->dequantized(), {cuda::MatvecOutput::kStore, false, false, 2});
}

TEST(CudaMatvec, RejectsWhatItCannotRead) {
  const auto params = [](cuda::DeviceMatrix w, int tokens, cuda::MatvecOutput output = cuda::MatvecOutput::kStore) {
    return cuda::MatvecParams{w, nullptr, nullptr, 0.0f, nullptr, nullptr, output, tokens};
  };
  alignas(16) static int8_t quants[4 * 64];
  alignas(16) static uint16_t scales[8];
  const cuda::DeviceMatrix q8{TensorType::kQ8_0, quants, scales, 4, 64};
  EXPECT_EQ(cuda::launch_matvec(params(q8, 9), nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::launch_matvec(params(q8, 0), nullptr), cudaErrorInvalidValue);
  EXPECT_FALSE(cuda::matvec_supported({TensorType::kQ8_0, quants, scales, 4, 48}));        // ragged blocks
  EXPECT_FALSE(cuda::matvec_supported({TensorType::kF16, quants, nullptr, 4, 60}));        // rows not 16-byte aligned
  EXPECT_FALSE(cuda::matvec_supported({TensorType::kF16, quants + 2, nullptr, 4, 64}));    // data not 16-byte aligned
  EXPECT_FALSE(cuda::matvec_supported({TensorType::kQ4_K, quants, nullptr, 4, 256}));
  EXPECT_TRUE(cuda::matvec_supported(q8));
  const cuda::DeviceMatrix odd{TensorType::kQ8_0, quants, scales, 3, 64};
  EXPECT_EQ(cuda::launch_matvec(params(odd, 1, cuda::MatvecOutput::kSwiglu), nullptr), cudaErrorInvalidValue);  // no gate/up halves
}

}  // namespace
}  // namespace pagedlm
