// Paged decode attention on the GPU: GB/s of K/V read and percent of the device-to-device copy bandwidth
// measured in the same run, for contexts 1k-32k, batch 1-64, block sizes 16 and 32. Shapes of one
// Llama-3-8B layer (32 query heads, 8 KV heads, head size 128). Block tables are shuffled, as a long-lived
// pool's are. Usage: pagedlm_kernel_bench [--quick | --copy]  (--copy: only the copy bandwidth, as JSON)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "pagedlm_kernels.h"

namespace {

using namespace pagedlm;

#define CHECK(call)                                                                              \
  do {                                                                                           \
    const cudaError_t e = (call);                                                                \
    if (e != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e));                     \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

constexpr int kHeads = 32, kKvHeads = 8, kHeadDim = 128;

template <typename Body>
float time_ms(int reps, Body&& body) {
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) body();  // warm-up
  CHECK(cudaEventRecord(start));
  for (int i = 0; i < reps; ++i) body();
  CHECK(cudaEventRecord(stop));
  CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, start, stop));
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  return ms / reps;
}

// Bytes read plus bytes written per second by cudaMemcpy device to device: the card's practical ceiling.
double copy_bandwidth_gbs() {
  const size_t bytes = size_t{1} << 30;
  void *a, *b;
  CHECK(cudaMalloc(&a, bytes));
  CHECK(cudaMalloc(&b, bytes));
  const float ms = time_ms(10, [&] { CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); });
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

struct Pool {
  KvDtype dtype;
  int block_size;
  int num_blocks;
  void *k, *v;
  float *k_scales = nullptr, *v_scales = nullptr;
};

Pool make_pool(KvDtype dtype, int block_size, size_t max_tokens) {
  Pool p{dtype, block_size, static_cast<int>(max_tokens / block_size), nullptr, nullptr};
  const size_t elements = max_tokens * kKvHeads * kHeadDim;
  CHECK(cudaMalloc(&p.k, elements * kv_row_bytes(dtype, 1)));
  CHECK(cudaMalloc(&p.v, elements * kv_row_bytes(dtype, 1)));
  // Small random-looking bytes: f16 0x2a2a is ~0.04, int8 42; the values do not change the timing.
  CHECK(cudaMemset(p.k, 0x2a, elements * kv_row_bytes(dtype, 1)));
  CHECK(cudaMemset(p.v, 0x2a, elements * kv_row_bytes(dtype, 1)));
  if (kv_dtype_has_scales(dtype)) {
    CHECK(cudaMalloc(&p.k_scales, max_tokens * kKvHeads * sizeof(float)));
    CHECK(cudaMalloc(&p.v_scales, max_tokens * kKvHeads * sizeof(float)));
    CHECK(cudaMemset(p.k_scales, 0, max_tokens * kKvHeads * sizeof(float)));
    CHECK(cudaMemset(p.v_scales, 0, max_tokens * kKvHeads * sizeof(float)));
  }
  return p;
}

void free_pool(Pool& p) {
  cudaFree(p.k);
  cudaFree(p.v);
  cudaFree(p.k_scales);
  cudaFree(p.v_scales);
}

struct CaseResult {
  float ms;
  double gbs;
  int partition;
};

CaseResult run_case(const Pool& pool, int batch, int context, int sm_count, std::mt19937& rng) {
  const int blocks_per_seq = (context + pool.block_size - 1) / pool.block_size;
  std::vector<int32_t> ids(pool.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  ids.resize(static_cast<size_t>(batch) * blocks_per_seq);
  const std::vector<int32_t> lens(batch, context);
  int32_t *tables, *context_lens;
  float *q, *out;
  CHECK(cudaMalloc(&tables, ids.size() * sizeof(int32_t)));
  CHECK(cudaMalloc(&context_lens, lens.size() * sizeof(int32_t)));
  CHECK(cudaMalloc(&q, sizeof(float) * batch * kHeads * kHeadDim));
  CHECK(cudaMalloc(&out, sizeof(float) * batch * kHeads * kHeadDim));
  CHECK(cudaMemcpy(tables, ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(context_lens, lens.data(), lens.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  CHECK(cudaMemset(q, 0, sizeof(float) * batch * kHeads * kHeadDim));
  const cuda::PagedKv kv{pool.k, pool.v, pool.k_scales, pool.v_scales, pool.dtype, pool.dtype, kKvHeads, kHeadDim, pool.block_size};
  cuda::DecodeAttentionParams params{q, out, kv, tables, context_lens, batch, kHeads, blocks_per_seq, context,
                                     cuda::choose_decode_partition(batch, kKvHeads, context, 4 * sm_count),
                                     1.0f / std::sqrt(static_cast<float>(kHeadDim)), nullptr};
  if (const size_t bytes = cuda::decode_attention_workspace_bytes(params)) CHECK(cudaMalloc(&params.workspace, bytes));
  const float ms = time_ms(20, [&] { CHECK(cuda::launch_decode_attention(params, nullptr)); });
  CHECK(cudaGetLastError());
  const double bytes = 2.0 * batch * context * kKvHeads *
                       (kHeadDim * static_cast<double>(kv_row_bytes(pool.dtype, 1)) + (kv_dtype_has_scales(pool.dtype) ? 4 : 0));
  cudaFree(tables);
  cudaFree(context_lens);
  cudaFree(q);
  cudaFree(out);
  cudaFree(params.workspace);
  return {ms, bytes / (ms * 1e-3) / 1e9, params.partition_size};
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  int device = 0, sm_count = 0;
  cudaDeviceProp prop;
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    std::printf("no CUDA device: nothing to measure\n");
    return 1;
  }
  CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  const double copy = copy_bandwidth_gbs();
  if (argc > 1 && std::strcmp(argv[1], "--copy") == 0) {
    std::printf("{\"copyGBs\": %.1f, \"device\": \"%s\"}\n", copy, prop.name);
    return 0;
  }
  std::printf("# paged decode attention, %s (%d SMs)\n", prop.name, sm_count);
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n", copy);
  std::printf("shape: %d query heads, %d KV heads, head size %d; GB/s counts K and V bytes read\n\n", kHeads, kKvHeads, kHeadDim);
  std::printf("| KV | block | batch | context | partition | us | GB/s | %% of copy |\n|---|---|---|---|---|---|---|---|\n");
  std::mt19937 rng(1);
  const std::vector<int> batches = quick ? std::vector<int>{1, 16} : std::vector<int>{1, 4, 16, 64};
  const std::vector<int> contexts = quick ? std::vector<int>{1024, 8192} : std::vector<int>{1024, 2048, 4096, 8192, 16384, 32768};
  struct Config {
    KvDtype dtype;
    int block_size;
    std::vector<int> batches;
  };
  const std::vector<Config> configs = {{KvDtype::kF16, 16, batches}, {KvDtype::kF16, 32, batches},
                                       {KvDtype::kBF16, 16, {16}}, {KvDtype::kInt8, 16, {16}}, {KvDtype::kFp8E4M3, 16, {16}}};
  for (const Config& config : configs) {
    const size_t max_tokens = static_cast<size_t>(*std::max_element(config.batches.begin(), config.batches.end())) * contexts.back();
    Pool pool = make_pool(config.dtype, config.block_size, max_tokens + config.block_size);
    for (int batch : config.batches) {
      for (int context : contexts) {
        const CaseResult r = run_case(pool, batch, context, sm_count, rng);
        std::printf("| %s | %d | %d | %d | %d | %.1f | %.0f | %.0f%% |\n", kv_dtype_name(config.dtype), config.block_size, batch, context,
                    r.partition, r.ms * 1e3, r.gbs, 100.0 * r.gbs / copy);
      }
    }
    free_pool(pool);
  }
  return 0;
}
