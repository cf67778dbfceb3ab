// KV append: the device writes the same bytes and scales as kv_store for every KV type, K and V each in its
// own type; int4 K's per-channel requantization of a block's earlier rows included.
#include "paged_pool.h"

namespace pagedlm {
namespace {

using gpu_test::DeviceBuffer;
using gpu_test::PagedPool;
using gpu_test::random_floats;

constexpr KvDtype kAllTypes[] = {KvDtype::kF32, KvDtype::kF16, KvDtype::kBF16, KvDtype::kInt8, KvDtype::kFp8E4M3, KvDtype::kInt4};

// Appends steps of tokens for two sequences whose blocks are scattered over the pool, as the engine does: a
// step's tokens of one sequence are consecutive and in position order, and a later step continues the
// sequences' partly filled blocks. Each step is checked against kv_store's bytes for the same rows.
void check_append(std::mt19937& rng, KvTypes types, int head_dim, int block_size) {
  const int kv_heads = 3, num_blocks = 8;
  PagedPool pool(types, kv_heads, head_dim, block_size, num_blocks);
  std::vector<int32_t> blocks(num_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  const int tables[2][3] = {{blocks[0], blocks[1], blocks[2]}, {blocks[3], blocks[4], blocks[5]}};
  int lengths[2] = {0, 0};
  const auto device = pool.upload();
  // {tokens of sequence 0, tokens of sequence 1} per step: a prefill that crosses a block, then decode-like
  // steps, then a chunk that fills and crosses the next block.
  const int steps[][2] = {{block_size + 3, 5}, {1, 1}, {1, 0}, {block_size, block_size + 2}};
  for (const auto& step : steps) {
    std::vector<int32_t> slots;
    for (int s = 0; s < 2; ++s) {
      for (int i = 0; i < step[s]; ++i, ++lengths[s]) {
        slots.push_back(tables[s][lengths[s] / block_size] * block_size + lengths[s] % block_size);
        if (s == 1 && i == 2) slots.push_back(-1);  // a token skipped inside a block's run
      }
    }
    const int n_tokens = static_cast<int>(slots.size());
    // Large values reach fp8's saturation and f16's range edge; one row is all zeros (scale 0); V's scale of
    // values differs from K's so that a channel's range widens and narrows from token to token.
    std::vector<float> k = random_floats(rng, static_cast<size_t>(n_tokens) * kv_heads * head_dim, 200.0f);
    std::vector<float> v = random_floats(rng, k.size(), 0.01f);
    std::fill_n(k.begin() + head_dim, head_dim, 0.0f);
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
    const std::string where = std::string("K ") + kv_dtype_name(types.k) + " V " + kv_dtype_name(types.v) + " head_dim " + std::to_string(head_dim) +
                              " block " + std::to_string(block_size) + " after " + std::to_string(lengths[0]) + "/" + std::to_string(lengths[1]);
    ASSERT_EQ(device->k.download(), pool.k()) << where;
    ASSERT_EQ(device->v.download(), pool.v()) << where;
    ASSERT_EQ(device->k_scales.download(), pool.k_scales()) << where;
    ASSERT_EQ(device->v_scales.download(), pool.v_scales()) << where;
  }
}

TEST(CudaKvAppend, WritesTheCpuEncodingBitForBit) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(7);
  for (KvDtype dtype : kAllTypes) {
    for (const auto& [head_dim, block_size] : {std::pair{64, 16}, {80, 32}, {128, 16}, {256, 32}}) check_append(rng, KvTypes::both(dtype), head_dim, block_size);
  }
  check_append(rng, KvTypes::both(KvDtype::kInt4), 8, 16);  // one partial V group per row
}

TEST(CudaKvAppend, EveryPairOfKAndVTypes) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(17);
  for (KvDtype k : kAllTypes) {
    for (KvDtype v : kAllTypes) {
      if (k != v) check_append(rng, {k, v}, 64, 16);
    }
  }
}

TEST(CudaKvAppend, RejectsQuantizedPoolsWithoutScales) {
  const cuda::PagedKv kv{nullptr, nullptr, nullptr, nullptr, KvDtype::kInt8, KvDtype::kInt8, 1, 64, 16};
  EXPECT_EQ(cuda::launch_kv_append({nullptr, nullptr, nullptr, kv, 1}, nullptr), cudaErrorInvalidValue);
  int dummy = 0;
  const cuda::PagedKv int4_values{&dummy, &dummy + 1, nullptr, nullptr, KvDtype::kF16, KvDtype::kInt4, 1, 64, 16};
  EXPECT_EQ(cuda::launch_kv_append({nullptr, nullptr, nullptr, int4_values, 1}, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace pagedlm
