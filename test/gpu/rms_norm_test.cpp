// CUDA RMSNorm against its CPU twin. Skips with a message when no CUDA device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/ops.h"
#include <cuda_runtime.h>

#include "pagedlm_kernels.h"

namespace pagedlm {
namespace {

bool have_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

TEST(CudaRmsNorm, MatchesCpuTwin) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device: GPU kernel tests skipped (run test/gpu/run.sh on a GPU machine)";
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  for (int dim : {1, 31, 64, 257, 4096}) {
    for (int rows : {1, 3, 17}) {
      std::vector<float> x(static_cast<size_t>(rows) * dim), w(dim), out(x.size()), ref(x.size());
      for (float& v : x) v = dist(rng);
      for (float& v : w) v = dist(rng);
      float *dx, *dw, *dout;
      ASSERT_EQ(cudaMalloc(&dx, x.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&dw, w.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&dout, out.size() * 4), cudaSuccess);
      cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
      ASSERT_EQ(cuda::launch_rms_norm({dx, dw, dout, rows, dim, 1e-5f}, nullptr), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
      cudaFree(dx);
      cudaFree(dw);
      cudaFree(dout);
      for (int r = 0; r < rows; ++r) rms_norm(x.data() + r * dim, w.data(), ref.data() + r * dim, dim, 1e-5f);
      for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-5f * (1 + std::fabs(ref[i]))) << "dim " << dim;
    }
  }
}

TEST(CudaRmsNorm, RejectsEmptyShapes) {
  EXPECT_EQ(cuda::launch_rms_norm({nullptr, nullptr, nullptr, 0, 8, 1e-5f}, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace pagedlm
