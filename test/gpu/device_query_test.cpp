// Planning for the GPU before a load: the library's device query, and Engine.inspect's plan from the
// device's free memory and the weights as the CUDA backend stores them.
#include <gtest/gtest.h>

#include "backend/cuda/cuda_entry.h"
#include "engine/memory_plan.h"
#include "gpu_test_support.h"
#include "support/synthetic_model.h"

// Named here so that the linker keeps the entry point of a static library (the emulated build), where the
// engine's loader then finds it in the process by name.
extern "C" void pagedlm_query_cuda_device(int device, pagedlm::CudaDeviceReply& reply);

namespace pagedlm {
namespace {

TEST(CudaDeviceQuery, ReportsTheDevicesMemory) {
  PAGEDLM_REQUIRE_DEVICE();
  CudaDeviceReply direct;
  pagedlm_query_cuda_device(0, direct);
  ASSERT_TRUE(direct.status.is_ok()) << direct.status.message();
  CudaDeviceReply reply;
  query_cuda_device(0, reply);
  ASSERT_TRUE(reply.status.is_ok()) << reply.status.message();
  EXPECT_FALSE(reply.name.empty());
  EXPECT_GT(reply.free_bytes, 0u);
  EXPECT_LE(reply.free_bytes, reply.total_bytes);
  EXPECT_EQ(reply.name, direct.name);
  CudaDeviceReply missing;
  query_cuda_device(1 << 20, missing);
  EXPECT_EQ(missing.status.code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(missing.unavailable);
}

TEST(CudaDeviceQuery, InspectPlansWithTheDevicesFreeMemoryAndWidenedWeights) {
  PAGEDLM_REQUIRE_DEVICE();
  testing::SyntheticSpec spec;
  spec.dim = 64;
  spec.weight_type = TensorType::kQ4_0;  // widened to f16 on the device: four times its bytes, and more
  const std::string path = testing::write_synthetic_model(spec, "inspect-cuda.gguf");
  InspectOptions options;
  options.device = "cuda";
  auto inspected = inspect_model(path, options);
  ASSERT_TRUE(inspected.is_ok()) << inspected.status().message();
  const ModelInspection& i = inspected.value();
  EXPECT_EQ(i.device, "cuda");
  EXPECT_EQ(i.memory.source, "cuda");
  EXPECT_FALSE(i.gpu_name.empty());
  EXPECT_GT(i.device_weight_bytes, 3 * i.model.weight_bytes_by_type.at("Q4_0"));
  EXPECT_EQ(i.kv_budget, static_cast<uint64_t>(static_cast<double>(i.memory.bytes - i.device_weight_bytes) * kDefaultKvShare));
  options.device = "cpu";
  EXPECT_EQ(inspect_model(path, options).value().device, "cpu");
}

}  // namespace
}  // namespace pagedlm
