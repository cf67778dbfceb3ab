// KV append: the device writes the same bytes and scales as kv_store_row for every KV type.
#include "paged_pool.h"

namespace pagedlm {
namespace {

using gpu_test::DeviceBuffer;
using gpu_test::PagedPool;
using gpu_test::random_floats;

TEST(CudaKvAppend, WritesTheCpuEncodingBitForBit) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(7);
  for (KvDtype dtype : {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3}) {
    for (const auto& [head_dim, block_size] : {std::pair{64, 16}, {80, 32}, {128, 16}, {256, 32}}) {
      const int kv_heads = 3, num_blocks = 5, n_tokens = 21;
      PagedPool pool(dtype, kv_heads, head_dim, block_size, num_blocks);
      std::vector<int32_t> slots(num_blocks * block_size);
      std::iota(slots.begin(), slots.end(), 0);
      std::shuffle(slots.begin(), slots.end(), rng);
      slots.resize(n_tokens);
      slots[4] = -1;  // skipped
      // Large values reach fp8's saturation and f16's range edge; one row is all zeros (scale 0).
      std::vector<float> k = random_floats(rng, static_cast<size_t>(n_tokens) * kv_heads * head_dim, 200.0f);
      std::vector<float> v = random_floats(rng, k.size(), 0.01f);
      std::fill_n(k.begin() + head_dim, head_dim, 0.0f);
      const auto device = pool.upload();
      DeviceBuffer<float> dk(k), dv(v);
      DeviceBuffer<int32_t> dslots(slots);
      ASSERT_EQ(cuda::launch_kv_append({dk.get(), dv.get(), dslots.get(), pool.view(*device), n_tokens}, nullptr), cudaSuccess);
      for (int t = 0; t < n_tokens; ++t) {
        if (slots[t] < 0) continue;
        for (int h = 0; h < kv_heads; ++h) {
          const size_t row = pool.row(slots[t] / block_size, h, slots[t] % block_size);
          const size_t src = (static_cast<size_t>(t) * kv_heads + h) * head_dim;
          pool.store(false, row, k.data() + src);
          pool.store(true, row, v.data() + src);
        }
      }
      const std::string where = std::string(kv_dtype_name(dtype)) + " head_dim " + std::to_string(head_dim);
      EXPECT_EQ(device->k.download(), pool.k()) << where;
      EXPECT_EQ(device->v.download(), pool.v()) << where;
      if (kv_dtype_has_scales(dtype)) {
        EXPECT_EQ(device->k_scales.download(), pool.k_scales()) << where;
        EXPECT_EQ(device->v_scales.download(), pool.v_scales()) << where;
      }
    }
  }
}

TEST(CudaKvAppend, RejectsQuantizedPoolsWithoutScales) {
  const cuda::PagedKv kv{nullptr, nullptr, nullptr, nullptr, KvDtype::kInt8, 1, 64, 16};
  EXPECT_EQ(cuda::launch_kv_append({nullptr, nullptr, nullptr, kv, 1}, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace pagedlm
