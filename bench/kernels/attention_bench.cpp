// Paged attention on the GPU. Decode: GB/s of K/V read and the fraction of the device-to-device copy
// bandwidth measured in the same run, for contexts 1k-32k, batch 1-64, block sizes 16 and 32, and pools of
// every KV type, split K/V types and int4 included. Prefill: TFLOP/s of the causal attention of long
// prompts. Shapes of one Llama-3-8B layer (32 query heads, 8 KV heads, head size 128). Block tables are
// shuffled, as a long-lived pool's are, and L2 is flushed before every timed launch, so no shape runs from
// cache. Lines starting "SUMMARY" carry the headline numbers for test/gpu/run.sh.
// Usage: pagedlm_kernel_bench [--quick] [--copy]   (--copy: only the copy bandwidth, as JSON)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
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

// Evicts whatever a launch left in L2 by writing a buffer twice its size.
class L2Flush {
 public:
  explicit L2Flush(int l2_bytes) : bytes_(2 * static_cast<size_t>(std::max(l2_bytes, 1 << 20))) { CHECK(cudaMalloc(&buffer_, bytes_)); }
  ~L2Flush() { cudaFree(buffer_); }
  void operator()() const { CHECK(cudaMemsetAsync(buffer_, 0, bytes_)); }

 private:
  size_t bytes_;
  void* buffer_ = nullptr;
};

// Mean time of `reps` launches of body, each timed alone after an L2 flush.
template <typename Body>
float time_ms(int reps, const L2Flush& flush, Body&& body) {
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 2; ++i) body();  // warm-up: module load, shared memory opt-in
  float total = 0;
  for (int i = 0; i < reps; ++i) {
    flush();
    CHECK(cudaEventRecord(start));
    body();
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    total += ms;
  }
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  return total / reps;
}

// Bytes read plus bytes written per second by cudaMemcpy device to device: the card's practical ceiling.
double copy_bandwidth_gbs(const L2Flush& flush) {
  const size_t bytes = size_t{1} << 30;
  void *a, *b;
  CHECK(cudaMalloc(&a, bytes));
  CHECK(cudaMalloc(&b, bytes));
  const float ms = time_ms(10, flush, [&] { CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); });
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

// One layer's pool: K and V rows of their own types, with their scales (int8/fp8 per row, int4 per piece).
struct Pool {
  KvTypes types;
  int block_size;
  int num_blocks;
  void *k = nullptr, *v = nullptr, *k_scales = nullptr, *v_scales = nullptr;

  // K/V bytes one token's rows of one KV head take, scales included: what a decode step must read.
  double bytes_per_row() const {
    double bytes = 0;
    for (const auto& [dtype, role] : {std::pair{types.k, KvRole::kKey}, {types.v, KvRole::kValue}}) {
      bytes += kv_row_bytes(dtype, kHeadDim) + static_cast<double>(kv_piece_scale_bytes(dtype, role, kHeadDim, block_size)) / block_size;
    }
    return bytes;
  }
  cuda::PagedKv view() const { return {k, v, k_scales, v_scales, types.k, types.v, kKvHeads, kHeadDim, block_size}; }
};

void* filled(size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return p;
  CHECK(cudaMalloc(&p, bytes));
  // Small bytes: f16 0x2a2a is ~0.04, int8 42, f32 scales ~1e-13; the values do not change the timing.
  CHECK(cudaMemset(p, 0x2a, bytes));
  return p;
}

Pool make_pool(KvTypes types, int block_size, size_t max_tokens) {
  Pool p{types, block_size, static_cast<int>((max_tokens + block_size - 1) / block_size)};
  const size_t pieces = static_cast<size_t>(p.num_blocks) * kKvHeads;
  p.k = filled(pieces * block_size * kv_row_bytes(types.k, kHeadDim));
  p.v = filled(pieces * block_size * kv_row_bytes(types.v, kHeadDim));
  p.k_scales = filled(pieces * kv_piece_scale_bytes(types.k, KvRole::kKey, kHeadDim, block_size));
  p.v_scales = filled(pieces * kv_piece_scale_bytes(types.v, KvRole::kValue, kHeadDim, block_size));
  return p;
}

void free_pool(Pool& p) {
  for (void* memory : {p.k, p.v, p.k_scales, p.v_scales}) cudaFree(memory);
}

std::string types_name(KvTypes t) {
  return t.k == t.v ? kv_dtype_name(t.k) : std::string(kv_dtype_name(t.k)) + "/" + kv_dtype_name(t.v);
}

struct DecodeResult {
  float ms;
  double gbs;
  int partition;
};

DecodeResult run_decode(const Pool& pool, int batch, int context, int target_blocks, const L2Flush& flush, std::mt19937& rng) {
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
  cuda::DecodeAttentionParams params{q, out, pool.view(), tables, context_lens, batch, kHeads, blocks_per_seq, context,
                                     cuda::choose_decode_partition(batch, kKvHeads, context, target_blocks),
                                     1.0f / std::sqrt(static_cast<float>(kHeadDim)), nullptr};
  if (const size_t bytes = cuda::decode_attention_workspace_bytes(params)) CHECK(cudaMalloc(&params.workspace, bytes));
  const float ms = time_ms(20, flush, [&] { CHECK(cuda::launch_decode_attention(params, nullptr)); });
  CHECK(cudaGetLastError());
  const double bytes = static_cast<double>(batch) * context * kKvHeads * pool.bytes_per_row();
  for (void* memory : {static_cast<void*>(tables), static_cast<void*>(context_lens), static_cast<void*>(q), static_cast<void*>(out),
                       static_cast<void*>(params.workspace)}) {
    cudaFree(memory);
  }
  return {ms, bytes / (ms * 1e-3) / 1e9, params.partition_size};
}

struct DecodeConfig {
  KvTypes types;
  int block_size;
  std::vector<int> batches;
  std::vector<int> contexts;
};

void bench_decode(bool quick, int target_blocks, double copy, const L2Flush& flush) {
  std::printf("## decode: %d query heads, %d KV heads, head size %d; GB/s counts the K/V bytes (and scales) read\n\n", kHeads, kKvHeads, kHeadDim);
  std::printf("| KV (K/V) | block | batch | context | partition | us | GB/s | of copy |\n|---|---|---|---|---|---|---|---|\n");
  std::mt19937 rng(1);
  const std::vector<int> all_contexts = {1024, 2048, 4096, 8192, 16384, 32768};
  std::vector<DecodeConfig> configs;
  if (quick) {
    configs = {{KvTypes::both(KvDtype::kF16), 16, {1}, {1024, 32768}}, {KvTypes::both(KvDtype::kF16), 16, {64}, {8192}},
               {KvTypes::both(KvDtype::kInt8), 16, {16}, {8192}}, {KvTypes::both(KvDtype::kInt4), 16, {16}, {8192}},
               {{KvDtype::kF16, KvDtype::kInt4}, 16, {16}, {8192}}};
  } else {
    const std::vector<int> batches = {1, 4, 16, 64};
    configs = {{KvTypes::both(KvDtype::kF16), 16, batches, all_contexts}, {KvTypes::both(KvDtype::kF16), 32, batches, all_contexts}};
    for (KvTypes types : {KvTypes::both(KvDtype::kBF16), KvTypes::both(KvDtype::kInt8), KvTypes::both(KvDtype::kFp8E4M3), KvTypes::both(KvDtype::kInt4),
                          KvTypes{KvDtype::kF16, KvDtype::kInt4}, KvTypes{KvDtype::kInt8, KvDtype::kInt4}, KvTypes{KvDtype::kInt4, KvDtype::kF16}}) {
      configs.push_back({types, 16, {1, 16}, {8192, 32768}});
    }
  }
  for (const DecodeConfig& config : configs) {
    const size_t max_tokens = static_cast<size_t>(*std::max_element(config.batches.begin(), config.batches.end())) * config.contexts.back();
    Pool pool = make_pool(config.types, config.block_size, max_tokens + config.block_size);
    for (int batch : config.batches) {
      for (int context : config.contexts) {
        const DecodeResult r = run_decode(pool, batch, context, target_blocks, flush, rng);
        const double fraction = r.gbs / copy;
        std::printf("| %s | %d | %d | %d | %d | %.1f | %.0f | %.2f |\n", types_name(config.types).c_str(), config.block_size, batch, context, r.partition,
                    r.ms * 1e3, r.gbs, fraction);
        const bool headline = config.types.k == KvDtype::kF16 && config.types.v == KvDtype::kF16 && config.block_size == 16;
        if (headline && ((batch == 1 && context == 32768) || (batch == 64 && context == 8192))) {
          std::printf("SUMMARY decode_b%d_%dk_copy_fraction %.3f\n", batch, context / 1024, fraction);
        }
      }
    }
    free_pool(pool);
  }
  std::printf("\n");
}

bool has_flag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], flag) == 0) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = has_flag(argc, argv, "--quick");
  int device = 0;
  cudaDeviceProp prop;
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    std::printf("no CUDA device: nothing to measure\n");
    return 1;
  }
  const L2Flush flush(prop.l2CacheSize);
  const double copy = copy_bandwidth_gbs(flush);
  if (has_flag(argc, argv, "--copy")) {
    std::printf("{\"copyGBs\": %.1f, \"device\": \"%s\"}\n", copy, prop.name);
    return 0;
  }
  std::printf("# paged attention, %s (%d SMs, %d MiB L2 flushed before each launch)\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n\n", copy);
  std::printf("SUMMARY copy_gbs %.0f\n", copy);
  const cuda::PagedKv shape{nullptr, nullptr, nullptr, nullptr, KvDtype::kF16, KvDtype::kF16, kKvHeads, kHeadDim, 16};
  bench_decode(quick, prop.multiProcessorCount * cuda::decode_attention_blocks_per_sm(shape, kHeads), copy, flush);
  return 0;
}
