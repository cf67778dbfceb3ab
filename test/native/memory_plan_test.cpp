// The memory planner: the default context is the model's when one sequence of it fits the KV budget, the
// pool holds four contexts within that budget, and callers' options override each part.
#include <gtest/gtest.h>

#include "engine/memory_plan.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// 2 layers x 2 KV heads x 32 dims x f16 x (K and V): 512 bytes a token, 8 KiB a 16-token block.
KvLayout small_layout() { return KvLayout{2, 2, 32, 16, 0, KvDtype::kF16, KvDtype::kF16}; }

TEST(MemoryPlan, TheModelsContextWhenItFitsWithFourContextsOfPool) {
  const MemoryBudget memory{1024 * kMiB, "option"};
  const ContextPlan plan = plan_context({}, 4096, small_layout(), 100 * kMiB, memory);
  EXPECT_EQ(plan.context_length, 4096);
  EXPECT_EQ(plan.limit, ContextLimit::kModel);
  EXPECT_EQ(plan.num_blocks, 4 * 4096 / 16);
  EXPECT_EQ(plan.kv_budget, 462 * kMiB);
}

TEST(MemoryPlan, TheBudgetCapsTheContextAndThePool) {
  // 10 MiB after the weights: a 5 MiB budget of 640 blocks, 10,240 tokens.
  const ContextPlan plan = plan_context({}, 131072, small_layout(), 100 * kMiB, {110 * kMiB, "option"});
  EXPECT_EQ(plan.limit, ContextLimit::kMemory);
  EXPECT_EQ(plan.context_length, 640 * 16);
  EXPECT_EQ(plan.num_blocks, 640);
}

TEST(MemoryPlan, APoolBetweenOneAndFourContextsTakesTheBudget) {
  // A 5 MiB budget (640 blocks) and a 4,096-token context (256 blocks): two and a half contexts.
  const ContextPlan plan = plan_context({}, 4096, small_layout(), 100 * kMiB, {110 * kMiB, "option"});
  EXPECT_EQ(plan.limit, ContextLimit::kModel);
  EXPECT_EQ(plan.context_length, 4096);
  EXPECT_EQ(plan.num_blocks, 640);
}

TEST(MemoryPlan, NoMemoryLeftStillGivesOneBlock) {
  const ContextPlan plan = plan_context({}, 4096, small_layout(), 100 * kMiB, {50 * kMiB, "option"});
  EXPECT_EQ(plan.limit, ContextLimit::kMemory);
  EXPECT_EQ(plan.context_length, 16);
  EXPECT_EQ(plan.num_blocks, 1);
}

TEST(MemoryPlan, AContextOptionIsServedAsAsked) {
  ContextRequest request;
  request.context_length = 1000;
  const ContextPlan plan = plan_context(request, 131072, small_layout(), 100 * kMiB, {1024 * kMiB, "option"});
  EXPECT_EQ(plan.limit, ContextLimit::kOption);
  EXPECT_EQ(plan.context_length, 1000);
  EXPECT_EQ(plan.num_blocks, 4 * 63);
}

TEST(MemoryPlan, ACallersPoolBoundsTheDefaultContext) {
  ContextRequest blocks;
  blocks.kv_blocks = 64;
  const ContextPlan by_blocks = plan_context(blocks, 131072, small_layout(), 100 * kMiB, {1, "option"});
  EXPECT_EQ(by_blocks.limit, ContextLimit::kKvPool);
  EXPECT_EQ(by_blocks.context_length, 1024);
  EXPECT_EQ(by_blocks.num_blocks, 64);
  ContextRequest bytes;
  bytes.kv_memory = 10 * 8192;
  const ContextPlan by_bytes = plan_context(bytes, 128, small_layout(), 100 * kMiB, {1, "option"});
  EXPECT_EQ(by_bytes.limit, ContextLimit::kModel);
  EXPECT_EQ(by_bytes.context_length, 128);
  EXPECT_EQ(by_bytes.num_blocks, 10);
}

TEST(MemoryPlan, InspectReadsTheHeaderAndPlans) {
  testing::SyntheticSpec spec;
  spec.context = 100000;
  spec.weight_type = TensorType::kF16;
  const std::string path = testing::write_synthetic_model(spec, "inspect.gguf");
  InspectOptions options;
  options.memory = 64 * kMiB;
  options.sequences = 2;
  auto inspected = inspect_model(path, options);
  ASSERT_TRUE(inspected.is_ok()) << inspected.status().message();
  const ModelInspection& i = inspected.value();
  EXPECT_EQ(i.model.config.context_length, 100000);
  EXPECT_EQ(i.model.config.vocab_size, spec.vocab);
  EXPECT_EQ(i.memory.source, "option");
  EXPECT_GT(i.model.weight_bytes_by_type.at("F16"), 0u);
  const KvLayout layout{spec.layers, spec.kv_heads, spec.dim / spec.heads, 16, 0, KvDtype::kF16, KvDtype::kF16};
  EXPECT_EQ(i.max_context_length, static_cast<int64_t>(i.kv_budget / layout.bytes_per_block()) / 2 * 16);
  EXPECT_EQ(i.default_plan.context_length, std::min<int64_t>(100000, static_cast<int64_t>(i.kv_budget / layout.bytes_per_block()) * 16));
}

TEST(MemoryPlan, InspectRefusesBadOptionsAndFiles) {
  InspectOptions zero_sequences;
  zero_sequences.sequences = 0;
  EXPECT_EQ(inspect_model("/nonexistent.gguf", zero_sequences).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(inspect_model("/nonexistent.gguf", {}).status().code(), ErrorCode::kIo);
  testing::SyntheticSpec spec;
  spec.architecture = "mamba";
  auto other = inspect_model(testing::write_synthetic_model(spec, "inspect-mamba.gguf"), {});
  ASSERT_FALSE(other.is_ok());
  EXPECT_EQ(other.status().code(), ErrorCode::kUnsupported);
  EXPECT_NE(other.status().message().find("mamba"), std::string::npos);
}

}  // namespace
}  // namespace pagedlm
