// KV append: the device writes the same bytes and scales as kv_store for every KV type, K and V each in its
// own type; int4 K's per-channel requantization of a block's earlier rows included; and the same stores fused
// with RoPE.
#include "backend/cpu/ops.h"
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

// The fused RoPE + KV append against launch_rope then launch_kv_append (the path it replaces, each checked
// against its CPU twin above and in elementwise_test): the same pool bytes and scales and the same rotated
// queries, bit for bit, over steps that continue partly filled blocks (int4 K's requantization).
void check_rope_append(std::mt19937& rng, KvTypes types, int head_dim, int rope_dim, RopeLayout layout) {
  const int heads = 4, kv_heads = 2, block_size = 16, num_blocks = 6;
  const int q_width = heads * head_dim, kv_width = kv_heads * head_dim, stride = q_width + 2 * kv_width;
  PagedPool pool(types, kv_heads, head_dim, block_size, num_blocks);
  const auto separate = pool.upload();
  const auto fused = pool.upload();
  ModelConfig config;
  config.head_dim = head_dim;
  config.rope_dim = rope_dim;
  config.rope_base = 10000.0f;
  DeviceBuffer<float> frequencies(rope_inverse_frequencies(config));
  const int tables[2][2] = {{4, 1}, {0, 5}};
  int lengths[2] = {0, 0};
  const int steps[][2] = {{block_size + 3, 5}, {1, 1}, {2, 0}};
  for (const auto& step : steps) {
    std::vector<int32_t> slots, positions;
    for (int s = 0; s < 2; ++s) {
      for (int i = 0; i < step[s]; ++i, ++lengths[s]) {
        slots.push_back(tables[s][lengths[s] / block_size] * block_size + lengths[s] % block_size);
        positions.push_back(lengths[s]);
      }
    }
    const int n = static_cast<int>(slots.size());
    const std::vector<float> qkv = random_floats(rng, static_cast<size_t>(n) * stride, 20.0f);
    std::vector<float> q, k, v;
    for (int t = 0; t < n; ++t) {
      const auto row = qkv.begin() + static_cast<size_t>(t) * stride;
      q.insert(q.end(), row, row + q_width);
      k.insert(k.end(), row + q_width, row + q_width + kv_width);
      v.insert(v.end(), row + q_width + kv_width, row + stride);
    }
    DeviceBuffer<float> dq(q), dk(k), dv(v), dqkv(qkv), q_out(q.size());
    DeviceBuffer<int32_t> dslots(slots), dpositions(positions);
    const cuda::RopeParams rope{dq.get(), dk.get(), dpositions.get(), frequencies.get(), n, heads, kv_heads, head_dim, rope_dim, layout, 0.5f};
    ASSERT_EQ(cuda::launch_rope(rope, nullptr), cudaSuccess);
    ASSERT_EQ(cuda::launch_kv_append({dk.get(), dv.get(), dslots.get(), pool.view(*separate), n}, nullptr), cudaSuccess);
    const cuda::RopeKvAppendParams both{dqkv.get(), dqkv.get() + q_width, dqkv.get() + q_width + kv_width, stride, stride, q_out.get(),
                                        dpositions.get(), frequencies.get(), dslots.get(), pool.view(*fused), n, heads, rope_dim, layout, 0.5f};
    ASSERT_EQ(cuda::launch_rope_kv_append(both, nullptr), cudaSuccess);
    const std::string where = std::string("K ") + kv_dtype_name(types.k) + " V " + kv_dtype_name(types.v) + " head_dim " + std::to_string(head_dim) +
                              " rope_dim " + std::to_string(rope_dim) + " after " + std::to_string(lengths[0]) + "/" + std::to_string(lengths[1]);
    ASSERT_EQ(q_out.download(), dq.download()) << where;
    ASSERT_EQ(fused->k.download(), separate->k.download()) << where;
    ASSERT_EQ(fused->v.download(), separate->v.download()) << where;
    ASSERT_EQ(fused->k_scales.download(), separate->k_scales.download()) << where;
    ASSERT_EQ(fused->v_scales.download(), separate->v_scales.download()) << where;
  }
}

TEST(CudaRopeKvAppend, MatchesRopeThenAppendBitForBit) {
  PAGEDLM_REQUIRE_DEVICE();
  std::mt19937 rng(23);
  for (KvDtype dtype : kAllTypes) check_rope_append(rng, KvTypes::both(dtype), 64, 64, RopeLayout::kNormal);
  check_rope_append(rng, {KvDtype::kInt4, KvDtype::kF16}, 128, 128, RopeLayout::kNeox);
  check_rope_append(rng, {KvDtype::kBF16, KvDtype::kInt8}, 80, 32, RopeLayout::kNeox);  // partial rotation
  check_rope_append(rng, KvTypes::both(KvDtype::kF16), 256, 256, RopeLayout::kNormal);
}

TEST(CudaRopeKvAppend, RejectsLatentPoolsAndWideHeads) {
  int dummy = 0;
  const cuda::PagedKv latent{&dummy, &dummy, nullptr, nullptr, KvDtype::kF16, KvDtype::kF16, 1, 64, 16};
  EXPECT_EQ(cuda::launch_rope_kv_append({nullptr, nullptr, nullptr, 0, 0, nullptr, nullptr, nullptr, nullptr, latent, 1, 1, 64, RopeLayout::kNormal, 1.0f},
                                        nullptr),
            cudaErrorInvalidValue);
  const cuda::PagedKv wide{&dummy, &dummy + 1, nullptr, nullptr, KvDtype::kF16, KvDtype::kF16, 1, 512, 16};
  EXPECT_EQ(cuda::launch_rope_kv_append({nullptr, nullptr, nullptr, 0, 0, nullptr, nullptr, nullptr, nullptr, wide, 1, 1, 64, RopeLayout::kNormal, 1.0f},
                                        nullptr),
            cudaErrorInvalidValue);
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
