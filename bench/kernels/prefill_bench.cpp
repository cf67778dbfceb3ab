// Paged prefill attention on the GPU: TFLOP/s of the causal attention of whole prompts (and of prompts after
// a cached prefix), K/V read through shuffled block tables from an f16 (or int8 / bf16) pool. Shapes of
// Llama-3-8B (32 query heads, 8 KV heads, head size 128) and of a head-size-64 model. FLOPs count the
// visible (causal) part only: 4 x heads x head size per (query, visible key) pair, as FlashAttention's
// benchmarks count them; bench/kernels/sdpa_bench.py --prefill runs PyTorch on the same shapes.
// Usage: pagedlm_prefill_bench [--quick]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "pagedlm_kernels.h"

namespace {

using namespace pagedlm;

#define CHECK(call)                                                          \
  do {                                                                       \
    const cudaError_t e = (call);                                            \
    if (e != cudaSuccess) {                                                  \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e)); \
      std::exit(1);                                                          \
    }                                                                        \
  } while (0)

struct Shape {
  const char* name;
  int heads, kv_heads, head_dim;
};

struct Case {
  Shape shape;
  KvDtype dtype;
  int batch;
  int cached;  // prefix already in the pool
  int fresh;   // new tokens per sequence
};

// Median of `reps` timed launches after warm-up; a 256 MiB buffer is rewritten between launches so that each
// starts with K/V out of L2.
template <typename Body>
float median_ms(int reps, Body&& body) {
  void* flush;
  const size_t flush_bytes = size_t{256} << 20;
  CHECK(cudaMalloc(&flush, flush_bytes));
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 2; ++i) body();
  std::vector<float> times;
  for (int i = 0; i < reps; ++i) {
    CHECK(cudaMemsetAsync(flush, i, flush_bytes));
    CHECK(cudaEventRecord(start));
    body();
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  CHECK(cudaFree(flush));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

double run_case(const Case& c, std::mt19937& rng) {
  constexpr int kBlockSize = 16;
  const Shape& s = c.shape;
  const int context = c.cached + c.fresh;
  const int blocks_per_seq = (context + kBlockSize - 1) / kBlockSize;
  const int num_blocks = c.batch * blocks_per_seq;
  const size_t rows = static_cast<size_t>(num_blocks) * s.kv_heads * kBlockSize;
  const size_t side_bytes = rows * kv_row_bytes(c.dtype, s.head_dim);
  void *k, *v, *k_scales = nullptr, *v_scales = nullptr;
  CHECK(cudaMalloc(&k, side_bytes));
  CHECK(cudaMalloc(&v, side_bytes));
  CHECK(cudaMemset(k, 0x2a, side_bytes));  // f16 0x2a2a is ~0.04, int8 42: the values do not change the timing
  CHECK(cudaMemset(v, 0x2a, side_bytes));
  if (kv_dtype_has_scales(c.dtype)) {
    CHECK(cudaMalloc(&k_scales, rows * sizeof(float)));
    CHECK(cudaMalloc(&v_scales, rows * sizeof(float)));
    CHECK(cudaMemset(k_scales, 0, rows * sizeof(float)));
    CHECK(cudaMemset(v_scales, 0, rows * sizeof(float)));
  }
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> starts(c.batch + 1), positions(c.batch, c.cached);
  for (int i = 0; i <= c.batch; ++i) starts[i] = i * c.fresh;
  const size_t q_elements = static_cast<size_t>(c.batch) * c.fresh * s.heads * s.head_dim;
  int32_t *tables, *query_starts, *start_positions;
  float *q, *out;
  CHECK(cudaMalloc(&tables, ids.size() * sizeof(int32_t)));
  CHECK(cudaMalloc(&query_starts, starts.size() * sizeof(int32_t)));
  CHECK(cudaMalloc(&start_positions, positions.size() * sizeof(int32_t)));
  CHECK(cudaMalloc(&q, q_elements * sizeof(float)));
  CHECK(cudaMalloc(&out, q_elements * sizeof(float)));
  CHECK(cudaMemcpy(tables, ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(query_starts, starts.data(), starts.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(start_positions, positions.data(), positions.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  CHECK(cudaMemset(q, 0, q_elements * sizeof(float)));
  const cuda::PagedKv kv{k, v, k_scales, v_scales, c.dtype, c.dtype, s.kv_heads, s.head_dim, kBlockSize};
  const cuda::PrefillAttentionParams params{q, out, kv, tables, query_starts, start_positions, c.batch, s.heads, blocks_per_seq, c.fresh,
                                            1.0f / std::sqrt(static_cast<float>(s.head_dim))};
  const float ms = median_ms(10, [&] { CHECK(cuda::launch_prefill_attention(params, nullptr)); });
  CHECK(cudaGetLastError());
  for (void* p : {k, v, k_scales, v_scales, static_cast<void*>(tables), static_cast<void*>(query_starts), static_cast<void*>(start_positions),
                  static_cast<void*>(q), static_cast<void*>(out)}) {
    cudaFree(p);
  }
  // Visible pairs: each new token j (0-based) sees cached + j + 1 keys.
  const double pairs = static_cast<double>(c.batch) * (static_cast<double>(c.fresh) * c.cached + c.fresh * (c.fresh + 1.0) / 2);
  const double flops = 4.0 * s.heads * s.head_dim * pairs;
  const double tflops = flops / (ms * 1e-3) / 1e12;
  std::printf("| %s | %s | %d | %d | %d | %.1f | %.1f |\n", s.name, kv_dtype_name(c.dtype), c.batch, c.cached, c.fresh, ms * 1e3, tflops);
  // The headline test/gpu/run.sh reads: one 8K prompt at the Llama-8B attention shape, f16 pool.
  if (s.head_dim == 128 && c.dtype == KvDtype::kF16 && c.batch == 1 && c.cached == 0 && c.fresh == 8192) {
    std::printf("SUMMARY prefill_1x8k_tflops %.2f\n", tflops);
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  cudaDeviceProp prop;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    std::printf("no CUDA device: nothing to measure\n");
    return 1;
  }
  const Shape llama8b{"32/8 x 128", 32, 8, 128}, small{"32/8 x 64", 32, 8, 64};
  std::printf("# paged prefill attention, %s\n", prop.name);
  std::printf("causal; TFLOP/s count the visible (query, key) pairs, 4 x heads x head size FLOPs each\n\n");
  std::printf("| heads x size | KV | batch | cached | new | us | TFLOP/s |\n|---|---|---|---|---|---|---|\n");
  std::vector<Case> cases = {{llama8b, KvDtype::kF16, 1, 0, 512},  {llama8b, KvDtype::kF16, 1, 0, 2048}, {llama8b, KvDtype::kF16, 4, 0, 2048},
                             {llama8b, KvDtype::kF16, 1, 0, 8192}, {llama8b, KvDtype::kF16, 1, 4096, 512}, {small, KvDtype::kF16, 4, 0, 2048}};
  if (!quick) {
    cases.push_back({llama8b, KvDtype::kBF16, 4, 0, 2048});
    cases.push_back({llama8b, KvDtype::kInt8, 4, 0, 2048});
    cases.push_back({llama8b, KvDtype::kF16, 16, 0, 1024});
    cases.push_back({llama8b, KvDtype::kF16, 1, 0, 16384});
  }
  std::mt19937 rng(1);
  for (const Case& c : cases) run_case(c, rng);
  return 0;
}
