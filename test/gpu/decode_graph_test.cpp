// Kernels per layer of a batch-1 decode step, counted in the CUDA graph the backend captures for it: each
// kernel node costs launch latency that a small model's step cannot hide (docs/backends.md). Counted on the
// emulator, whose capture notes every kernel launch and GEMM; the real graph holds the same launches.
#include <gtest/gtest.h>

#include "backend/cuda/cuda_entry.h"
#include "gpu_test_support.h"
#include "support/synthetic_model.h"

extern "C" void pagedlm_create_cuda_backend(const pagedlm::CudaBackendRequest& request, pagedlm::CudaBackendReply& reply);

namespace pagedlm {
namespace {

using testing::load_synthetic_model;
using testing::SyntheticSpec;

constexpr uint64_t kMaxKernelsPerLayer = 7;

#ifdef PAGEDLM_CUDA_EMULATION
// The kernel nodes of one captured batch-1 decode step at position `context` of a llama-shaped model.
uint64_t decode_step_kernels(TensorType type, int layers, int context) {
  SyntheticSpec spec;
  spec.dim = 128;
  spec.heads = 4;
  spec.kv_heads = 2;
  spec.head_dim = 64;
  spec.ffn = 256;
  spec.context = 1024;
  spec.layers = layers;
  spec.weight_type = type;
  std::vector<uint8_t> storage;
  auto model = load_synthetic_model(spec, storage);
  const ModelConfig& c = model->config();
  KvLayout layout{c.n_layers, c.n_kv_heads, c.head_dim, 16, 64, KvDtype::kF16, KvDtype::kF16};
  CudaBackendReply reply;
  pagedlm_create_cuda_backend({model, layout, 0, 64, 0.9}, reply);
  EXPECT_TRUE(reply.backend != nullptr) << reply.status.message();
  if (reply.backend == nullptr) return 0;
  std::vector<BlockId> table(64);
  for (int b = 0; b < 64; ++b) table[b] = b;
  // Only the step's kernels count here, not its numbers: the pool's rows before `context` are left unwritten.
  std::vector<float> logits(c.vocab_size);
  const uint64_t graphs_before = pagedlm::emu::graph_launches();
  ForwardBatch step;
  step.tokens = {5};
  step.sequences.push_back({0, 1, context, table.data(), true});
  EXPECT_TRUE(reply.backend->forward(step, logits.data()).is_ok());
  EXPECT_EQ(pagedlm::emu::graph_launches(), graphs_before + 1) << "the decode step ran from a graph";
  return pagedlm::emu::captured_kernel_nodes();
}
#endif

// Two models that differ only in depth: the step's embedding, output and selection kernels cancel out.
TEST(CudaDecodeGraph, AtMostSevenKernelsPerLayerAtBatchOne) {
#ifndef PAGEDLM_CUDA_EMULATION
  GTEST_SKIP() << "counted on the emulator, whose graph capture reports its kernel nodes";
#else
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0}) {
    for (int context : {20, 1000}) {  // one attention partition, and a split context with its merge
      const uint64_t shallow = decode_step_kernels(type, 1, context), deep = decode_step_kernels(type, 3, context);
      ASSERT_GT(deep, shallow);
      EXPECT_LE(deep - shallow, 2 * kMaxKernelsPerLayer)
          << tensor_type_name(type) << " at context " << context << ": " << shallow << " kernels with one layer, " << deep << " with three";
    }
  }
#endif
}

}  // namespace
}  // namespace pagedlm
