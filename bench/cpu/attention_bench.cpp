// One thread's decode attention per (KV block, KV head) on each kernel table, row by row and fused, on
// Llama-3.2-1B's shape (8 KV heads of 64, 4 query heads each, f16 KV, 16-token blocks in random pool order):
// warm (160 positions, K/V in cache) and cold (16 layers x 2,000 positions, 64 MB of K/V, with 40 MB of
// "weights" streamed between layers as a decode step does), the cold case also with the blocks two ahead
// prefetched as the CPU backend does. Run: build/bench/cpu/pagedlm_cpu_attention_bench
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cpu/block_attention.h"
#include "backend/cpu/kernels.h"
#include "read_sum.h"

namespace pagedlm {
namespace {

constexpr int kLayers = 16, kKvHeads = 8, kGroup = 4, kHeadDim = 64, kBlockSize = 16, kPoolBlocks = 1024;
constexpr size_t kPieceElements = static_cast<size_t>(kBlockSize) * kHeadDim;
constexpr size_t kLayerElements = kPieceElements * kKvHeads * kPoolBlocks;

struct Pool {
  std::vector<uint16_t> k, v;
  std::vector<int> block_table;  // a random order of the pool's blocks
  Pool() : k(kLayerElements * kLayers), v(k.size()), block_table(kPoolBlocks) {
    std::mt19937 rng(1);
    std::uniform_int_distribution<int> half(0x3000, 0x3bff);  // f16 values in [0.125, 1)
    for (size_t i = 0; i < k.size(); ++i) {
      k[i] = static_cast<uint16_t>(half(rng));
      v[i] = static_cast<uint16_t>(half(rng));
    }
    std::iota(block_table.begin(), block_table.end(), 0);
    std::shuffle(block_table.begin(), block_table.end(), rng);
  }
};

// Nanoseconds per (block, KV head): every layer's attention for one decode token at `positions`.
double ns_per_block_head(const CpuKernels& kernels, bool fused, const Pool& pool, int positions, bool stream_weights, bool prefetch) {
  std::vector<float> q(static_cast<size_t>(kGroup) * kHeadDim, 0.05f), row_max(kGroup), row_sum(kGroup), acc(q.size()), scores(kBlockSize);
  std::vector<float> weights(stream_weights ? (40u << 20) / sizeof(float) : 0, 1.0f);
  const int blocks = (positions + kBlockSize - 1) / kBlockSize;
  double seconds = 0, sink = 0;
  constexpr int kRepeats = 20;
  for (int rep = 0; rep < kRepeats; ++rep) {
    for (int layer = 0; layer < kLayers; ++layer) {
      if (stream_weights) sink += bench::read_sum(weights.data(), weights.size());
      const auto start = std::chrono::steady_clock::now();
      for (int head = 0; head < kKvHeads; ++head) {
        std::fill(row_max.begin(), row_max.end(), -INFINITY);
        std::fill(row_sum.begin(), row_sum.end(), 0.0f);
        std::fill(acc.begin(), acc.end(), 0.0f);
        const AttentionRows rows{q.data(), kGroup, 0.125f, row_max.data(), row_sum.data(), acc.data()};
        const auto piece = [&](int b) { return layer * kLayerElements + (static_cast<size_t>(pool.block_table[b]) * kKvHeads + head) * kPieceElements; };
        for (int b = 0; b < blocks; ++b) {
          if (prefetch && b + 2 < blocks) {
            for (size_t byte = 0; byte < kPieceElements * sizeof(uint16_t); byte += 64) {
              __builtin_prefetch(reinterpret_cast<const char*>(pool.k.data() + piece(b + 2)) + byte, 0, 2);
              __builtin_prefetch(reinterpret_cast<const char*>(pool.v.data() + piece(b + 2)) + byte, 0, 2);
            }
          }
          const size_t at = piece(b);
          const int n = std::min(kBlockSize, positions - b * kBlockSize);
          if (fused) attend_block(kernels, pool.k.data() + at, pool.v.data() + at, n, kHeadDim, rows, scores.data());
          else attend_block_by_rows(kernels, pool.k.data() + at, pool.v.data() + at, n, kHeadDim, rows, scores.data());
        }
        sink += acc[0];
      }
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  }
  if (sink == 42) std::printf(" ");  // keeps the work observable
  return seconds * 1e9 / (static_cast<double>(kRepeats) * kLayers * kKvHeads * blocks);
}

}  // namespace
}  // namespace pagedlm

int main() {
  using namespace pagedlm;
  const Pool pool;
  std::printf("ns per (block, KV head), one thread; lower is better\n%-8s %-8s %10s %10s %14s\n", "table", "form", "warm", "cold", "cold+prefetch");
  for (const CpuKernels* kernels : built_cpu_kernels()) {
    if (!cpu_supports_kernels(*kernels)) continue;
    for (const bool fused : {false, true}) {
      if (fused && kernels->attend_block_f16 == nullptr) continue;
      const double warm = ns_per_block_head(*kernels, fused, pool, 160, false, false);
      const double cold = ns_per_block_head(*kernels, fused, pool, 2000, true, false);
      const double prefetched = ns_per_block_head(*kernels, fused, pool, 2000, true, true);
      std::printf("%-8s %-8s %10.0f %10.0f %14.0f\n", kernels->name, fused ? "fused" : "by rows", warm, cold, prefetched);
    }
  }
}
