// RMSNorm, RoPE, SwiGLU and the embedding gather against their CPU twins.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/ops.h"
#include "common/half.h"
#include "gpu_test_support.h"
#include "model/tensor_type.h"

namespace pagedlm {
namespace {

using gpu_test::all_close;
using gpu_test::DeviceBuffer;
using gpu_test::random_floats;
using gpu_test::random_q8_0_rows;

TEST(CudaRmsNorm, MatchesCpuTwin) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(1);
  for (int dim : {1, 31, 64, 257, 4096}) {
    for (int rows : {1, 3, 17}) {
      const std::vector<float> x = random_floats(rng, static_cast<size_t>(rows) * dim), w = random_floats(rng, dim);
      DeviceBuffer<float> dx(x), dw(w), dout(x.size());
      ASSERT_EQ(cuda::launch_rms_norm({dx.get(), dw.get(), dout.get(), rows, dim, 1e-5f}, nullptr), cudaSuccess);
      std::vector<float> want(x.size());
      for (int r = 0; r < rows; ++r) rms_norm(x.data() + r * dim, w.data(), want.data() + r * dim, dim, 1e-5f);
      EXPECT_TRUE(all_close(dout.download(), want, 1e-5f)) << "dim " << dim << " rows " << rows;
    }
  }
}

TEST(CudaRmsNorm, RejectsEmptyShapes) {
  EXPECT_EQ(cuda::launch_rms_norm({nullptr, nullptr, nullptr, 0, 8, 1e-5f}, nullptr), cudaErrorInvalidValue);
}

struct RopeCase {
  int head_dim, rope_dim, n_heads, n_kv_heads;
  RopeLayout layout;
  bool llama3;
};

TEST(CudaRope, MatchesCpuTwinInBothLayoutsWithScaling) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(2);
  for (const RopeCase& rc : {RopeCase{64, 64, 4, 2, RopeLayout::kNormal, false}, RopeCase{128, 128, 8, 2, RopeLayout::kNeox, true},
                             RopeCase{80, 32, 3, 1, RopeLayout::kNeox, false}, RopeCase{96, 96, 6, 6, RopeLayout::kNormal, true}}) {
    ModelConfig config;
    config.head_dim = rc.head_dim;
    config.rope_dim = rc.rope_dim;
    config.rope_layout = rc.layout;
    config.rope_base = 500000.0f;
    config.rope_position_scale = rc.llama3 ? 1.0f : 0.5f;
    if (rc.llama3) {
      for (int i = 0; i < rc.rope_dim / 2; ++i) config.rope_freq_factors.push_back(1.0f + static_cast<float>(i % 7));
    }
    const std::vector<int32_t> positions = {0, 1, 17, 4095, 30001};
    const int n = static_cast<int>(positions.size());
    std::vector<float> q = random_floats(rng, static_cast<size_t>(n) * rc.n_heads * rc.head_dim);
    std::vector<float> k = random_floats(rng, static_cast<size_t>(n) * rc.n_kv_heads * rc.head_dim);
    DeviceBuffer<float> dq(q), dk(k), frequencies(rope_inverse_frequencies(config));
    DeviceBuffer<int32_t> dpos(positions);
    const cuda::RopeParams params{dq.get(), dk.get(), dpos.get(), frequencies.get(), n, rc.n_heads, rc.n_kv_heads,
                                  rc.head_dim, rc.rope_dim, rc.layout, config.rope_position_scale};
    ASSERT_EQ(cuda::launch_rope(params, nullptr), cudaSuccess);
    for (int t = 0; t < n; ++t) {
      RopeAngles angles;
      rope_angles(config, positions[t], angles);
      rope_apply(q.data() + static_cast<size_t>(t) * rc.n_heads * rc.head_dim, rc.n_heads, rc.head_dim, rc.rope_dim, rc.layout, angles);
      rope_apply(k.data() + static_cast<size_t>(t) * rc.n_kv_heads * rc.head_dim, rc.n_kv_heads, rc.head_dim, rc.rope_dim, rc.layout, angles);
    }
    // Angles up to 3e4 radians: a few ulp of the angle show up as ~1e-4 in sin/cos, on either side.
    EXPECT_TRUE(all_close(dq.download(), q, 2e-4f)) << "head_dim " << rc.head_dim;
    EXPECT_TRUE(all_close(dk.download(), k, 2e-4f)) << "head_dim " << rc.head_dim;
  }
}

TEST(CudaRope, RejectsOddRopeDims) {
  EXPECT_EQ(cuda::launch_rope({nullptr, nullptr, nullptr, nullptr, 1, 1, 1, 64, 63, RopeLayout::kNormal, 1.0f}, nullptr),
            cudaErrorInvalidValue);
}

TEST(CudaSwiglu, MatchesCpuTwin) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(3);
  for (size_t n : {1, 255, 256, 11008 * 3 + 5}) {
    std::vector<float> gate = random_floats(rng, n, 3.0f);
    const std::vector<float> up = random_floats(rng, n);
    DeviceBuffer<float> dgate(gate), dup(up);
    const int width = static_cast<int>(n);
    ASSERT_EQ(cuda::launch_swiglu({dgate.get(), dup.get(), dgate.get(), nullptr, false, 1, width, width}, nullptr), cudaSuccess);
    portable_kernels().swiglu(gate.data(), up.data(), static_cast<int>(n));
    EXPECT_TRUE(all_close(dgate.download(), gate, 1e-6f)) << "n " << n;
  }
}

// SwiGLU over gate|up rows (the stacked projection's output), written as the down GEMM's 16-bit input.
TEST(CudaSwiglu, ReadsGateUpRowsAndWritesGemmInput) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(5);
  const int tokens = 3, width = 300;
  const std::vector<float> gate_up = random_floats(rng, static_cast<size_t>(tokens) * 2 * width, 3.0f);
  DeviceBuffer<float> dgate_up(gate_up);
  for (bool bfloat : {false, true}) {
    DeviceBuffer<uint16_t> out(static_cast<size_t>(tokens) * width);
    ASSERT_EQ(cuda::launch_swiglu({dgate_up.get(), dgate_up.get() + width, nullptr, out.get(), bfloat, tokens, width, 2 * width}, nullptr), cudaSuccess);
    std::vector<uint16_t> want;
    for (int t = 0; t < tokens; ++t) {
      std::vector<float> gate(gate_up.begin() + 2 * t * width, gate_up.begin() + (2 * t + 1) * width);
      portable_kernels().swiglu(gate.data(), gate_up.data() + (2 * t + 1) * width, width);
      for (float g : gate) want.push_back(bfloat ? float_to_bf16(g) : float_to_fp16(g));
    }
    const std::vector<uint16_t> got = out.download();
    for (size_t i = 0; i < want.size(); ++i) {
      const float a = bfloat ? bf16_to_float(got[i]) : fp16_to_float(got[i]), b = bfloat ? bf16_to_float(want[i]) : fp16_to_float(want[i]);
      ASSERT_NEAR(a, b, 1e-2f * std::max(1.0f, std::fabs(b))) << "bfloat " << bfloat << " at " << i;
    }
  }
  EXPECT_EQ(cuda::launch_swiglu({nullptr, nullptr, nullptr, nullptr, false, 1, 8, 4}, nullptr), cudaErrorInvalidValue);
}

TEST(CudaRmsNorm, WritesGemmInputAsHalfOrBfloat) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(6);
  const int rows = 2, dim = 200;
  const std::vector<float> x = random_floats(rng, rows * dim, 4.0f), w = random_floats(rng, dim);
  DeviceBuffer<float> dx(x), dw(w);
  for (bool bfloat : {false, true}) {
    DeviceBuffer<uint16_t> out(rows * dim);
    ASSERT_EQ(cuda::launch_rms_norm({dx.get(), dw.get(), nullptr, rows, dim, 1e-5f, out.get(), bfloat}, nullptr), cudaSuccess);
    std::vector<float> want(x.size());
    for (int r = 0; r < rows; ++r) rms_norm(x.data() + r * dim, w.data(), want.data() + r * dim, dim, 1e-5f);
    const std::vector<uint16_t> got = out.download();
    for (size_t i = 0; i < want.size(); ++i) {
      const float a = bfloat ? bf16_to_float(got[i]) : fp16_to_float(got[i]);
      ASSERT_NEAR(a, want[i], (bfloat ? 1e-2f : 2e-3f) * std::max(1.0f, std::fabs(want[i]))) << "bfloat " << bfloat << " at " << i;
    }
  }
}

TEST(CudaEmbedding, GathersRowsOfEveryTableType) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(4);
  const int vocab = 37, dim = 96;
  const std::vector<int32_t> tokens = {0, 36, 5, 5, -1, 37, 12};
  const int n = static_cast<int>(tokens.size());
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0}) {
    std::vector<uint8_t> table;
    if (type == TensorType::kQ8_0) {
      table = random_q8_0_rows(rng, vocab, dim);
    } else {
      const std::vector<float> values = random_floats(rng, static_cast<size_t>(vocab) * dim);
      const size_t element = type == TensorType::kF32 ? 4 : 2;
      table.resize(values.size() * element);
      for (size_t i = 0; i < values.size(); ++i) {
        if (type == TensorType::kF32) std::memcpy(&table[i * 4], &values[i], 4);
        else {
          const uint16_t h = type == TensorType::kF16 ? float_to_fp16(values[i]) : float_to_bf16(values[i]);
          std::memcpy(&table[i * 2], &h, 2);
        }
      }
    }
    DeviceBuffer<uint8_t> raw(table);
    DeviceBuffer<int8_t> quants(static_cast<size_t>(vocab) * dim);
    DeviceBuffer<uint16_t> scales(static_cast<size_t>(vocab) * dim / 32);
    cuda::DeviceMatrix matrix{type, raw.get(), nullptr, vocab, dim};
    if (type == TensorType::kQ8_0) {
      ASSERT_EQ(cuda::launch_split_q8_0({raw.get(), quants.get(), scales.get(), vocab, dim}, nullptr), cudaSuccess);
      matrix = {type, quants.get(), scales.get(), vocab, dim};
    }
    DeviceBuffer<int32_t> dtokens(tokens);
    DeviceBuffer<float> out(static_cast<size_t>(n) * dim);
    ASSERT_EQ(cuda::launch_embedding({matrix, dtokens.get(), out.get(), n}, nullptr), cudaSuccess);
    const size_t row_bytes = table.size() / vocab;
    std::vector<float> want(static_cast<size_t>(n) * dim, 0.0f);
    for (int t = 0; t < n; ++t) {
      if (tokens[t] >= 0 && tokens[t] < vocab) dequantize_row(type, table.data() + tokens[t] * row_bytes, want.data() + t * dim, dim);
    }
    EXPECT_EQ(out.download(), want) << tensor_type_name(type);
  }
}

TEST(CudaElementwise, AddBiasHalfCopiesAndGather) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(15);
  const int rows = 7, cols = 300;
  const std::vector<float> x = random_floats(rng, static_cast<size_t>(rows) * cols, 1000.0f), y = random_floats(rng, x.size());
  const std::vector<float> bias = random_floats(rng, cols);
  DeviceBuffer<float> dx(x), dy(y), dbias(bias);
  ASSERT_EQ(cuda::launch_add({dx.get(), dy.get(), x.size()}, nullptr), cudaSuccess);
  ASSERT_EQ(cuda::launch_add_bias({dx.get(), dbias.get(), rows, cols}, nullptr), cudaSuccess);
  std::vector<float> want = x;
  for (size_t i = 0; i < want.size(); ++i) want[i] = (want[i] + y[i]) + bias[i % cols];
  EXPECT_EQ(dx.download(), want);

  DeviceBuffer<uint16_t> halves(x.size()), bfloats(x.size());
  DeviceBuffer<float> source(x);
  ASSERT_EQ(cuda::launch_to_half({source.get(), halves.get(), x.size(), false}, nullptr), cudaSuccess);
  ASSERT_EQ(cuda::launch_to_half({source.get(), bfloats.get(), x.size(), true}, nullptr), cudaSuccess);
  std::vector<uint16_t> want_f16(x.size()), want_bf16(x.size());
  for (size_t i = 0; i < x.size(); ++i) want_f16[i] = float_to_fp16(x[i]), want_bf16[i] = float_to_bf16(x[i]);
  EXPECT_EQ(halves.download(), want_f16);
  EXPECT_EQ(bfloats.download(), want_bf16);

  const std::vector<int32_t> picks = {6, 0, 3, 3};
  DeviceBuffer<int32_t> dpicks(picks);
  DeviceBuffer<float> gathered(picks.size() * cols);
  ASSERT_EQ(cuda::launch_gather_rows({source.get(), dpicks.get(), gathered.get(), static_cast<int>(picks.size()), cols}, nullptr), cudaSuccess);
  std::vector<float> want_rows;
  for (int r : picks) want_rows.insert(want_rows.end(), x.begin() + r * cols, x.begin() + (r + 1) * cols);
  EXPECT_EQ(gathered.download(), want_rows);
}

// Activations past f16's 65504 (a plain conversion makes them inf) through the scaled conversion, an f16 GEMM
// and the rows scaled back with the bias: the f32 product of the CPU within f16's rounding.
TEST(CudaToHalfRows, ActivationsBeyondHalfRangeSurviveTheGemm) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(16);
  const int rows = 5, cols = 96, outputs = 24;
  std::vector<float> x = random_floats(rng, static_cast<size_t>(rows) * cols);
  const float row_magnitudes[rows] = {1.0f, 7e4f, 3e6f, 1e-3f, 2e30f};
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) x[static_cast<size_t>(r) * cols + c] *= row_magnitudes[r];
  }
  std::vector<uint16_t> w(static_cast<size_t>(outputs) * cols);
  for (uint16_t& h : w) h = float_to_fp16(std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng));
  const std::vector<float> bias = random_floats(rng, outputs);
  DeviceBuffer<float> dx(x), scales(rows), dbias(bias);
  DeviceBuffer<uint16_t> halves(x.size());
  ASSERT_EQ(cuda::launch_to_half_rows({dx.get(), halves.get(), scales.get(), rows, cols}, nullptr), cudaSuccess);
  const std::vector<uint16_t> h = halves.download();
  const std::vector<float> s = scales.download();
  // The GEMM on the host from the device's f16 rows (cuBLAS's f32 accumulation stands in exactly enough).
  std::vector<float> y(static_cast<size_t>(rows) * outputs);
  for (int r = 0; r < rows; ++r) {
    EXPECT_EQ(s[r], std::exp2(std::round(std::log2(s[r])))) << "row " << r << ": not a power of two";
    for (int o = 0; o < outputs; ++o) {
      double sum = 0;
      for (int c = 0; c < cols; ++c) {
        const float v = fp16_to_float(h[static_cast<size_t>(r) * cols + c]);
        ASSERT_TRUE(std::isfinite(v)) << "row " << r;
        sum += static_cast<double>(v) * fp16_to_float(w[static_cast<size_t>(o) * cols + c]);
      }
      y[static_cast<size_t>(r) * outputs + o] = static_cast<float>(sum);
    }
  }
  DeviceBuffer<float> dy(y);
  ASSERT_EQ(cuda::launch_unscale_rows({dy.get(), scales.get(), dbias.get(), rows, outputs}, nullptr), cudaSuccess);
  const std::vector<float> got = dy.download();
  for (int r = 0; r < rows; ++r) {
    double norm = 0;
    for (int c = 0; c < cols; ++c) norm += std::fabs(static_cast<double>(x[static_cast<size_t>(r) * cols + c]));
    for (int o = 0; o < outputs; ++o) {
      double want = bias[o];
      for (int c = 0; c < cols; ++c) want += static_cast<double>(x[static_cast<size_t>(r) * cols + c]) * fp16_to_float(w[static_cast<size_t>(o) * cols + c]);
      EXPECT_NEAR(got[static_cast<size_t>(r) * outputs + o], want, 1e-3 * norm + 1e-5 * std::fabs(want) + 1e-6) << "row " << r << " output " << o;
    }
  }
  EXPECT_EQ(s[0], 1.0f);
  EXPECT_EQ(s[3], 1.0f);
  EXPECT_GT(s[2], 1.0f);
}

}  // namespace
}  // namespace pagedlm
