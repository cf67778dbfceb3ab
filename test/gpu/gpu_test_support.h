// Shared by the kernel tests: device buffers, random inputs, and the skip when no GPU is present. The same
// tests build against the real kernels and against their CPU emulation (see CMakeLists.txt).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/half.h"
#include "model/tensor_type.h"
#include "pagedlm_kernels.h"

namespace pagedlm::gpu_test {

inline bool device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define PAGEDLM_REQUIRE_DEVICE()                                                                            \
  do {                                                                                                      \
    if (!::pagedlm::gpu_test::device_available())                                                           \
      GTEST_SKIP() << "no CUDA device: GPU kernel tests skipped (the emulated suite still ran; on a GPU "   \
                      "machine run test/gpu/run.sh)";                                                       \
  } while (0)

// Device memory holding a copy of a host vector; freed with the object.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&ptr_), std::max<size_t>(count, 1) * sizeof(T)), cudaSuccess);
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(ptr_); }

  void upload(const std::vector<T>& host) {
    ASSERT_EQ(host.size(), count_);
    ASSERT_EQ(cudaMemcpy(ptr_, host.data(), count_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  T* get() const { return ptr_; }
  size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  size_t count_;
};

inline std::vector<float> random_floats(std::mt19937& rng, size_t n, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Q8_0 rows as GGUF stores them: blocks of {f16 scale, 32 x int8}.
inline std::vector<uint8_t> random_q8_0_rows(std::mt19937& rng, int rows, int cols) {
  std::uniform_int_distribution<int> value(-127, 127);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  std::vector<uint8_t> bytes(static_cast<size_t>(rows) * (cols / 32) * sizeof(BlockQ8_0));
  auto* blocks = reinterpret_cast<BlockQ8_0*>(bytes.data());
  for (size_t b = 0; b < bytes.size() / sizeof(BlockQ8_0); ++b) {
    blocks[b].scale = float_to_fp16(scale(rng));
    for (int8_t& q : blocks[b].values) q = static_cast<int8_t>(value(rng));
  }
  return bytes;
}

// |got - want| <= tolerance x (1 + |want|) everywhere; reports the first mismatch.
inline ::testing::AssertionResult all_close(const std::vector<float>& got, const std::vector<float>& want, float tolerance) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= tolerance * (1.0f + std::fabs(want[i])))) {
      return ::testing::AssertionFailure() << "element " << i << ": " << got[i] << " vs " << want[i] << " (tolerance " << tolerance << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace pagedlm::gpu_test
