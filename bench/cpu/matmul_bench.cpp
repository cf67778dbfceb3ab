// Throughput of one thread's matmul_rows on each kernel table, for the weight types and token counts the
// engine runs: 1 token (decode), 2-4 (a few streams), 24 and 96 (prefill chunks). Prints GMAC/s and, for
// one token, the weight bytes streamed per second. Run: build/bench/cpu/pagedlm_cpu_matmul_bench [--quick] [--type F16|Q8_0|Q4_K|Q6_K|...]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/kernels.h"
#include "common/half.h"
#include "backend/cpu/thread_pool.h"
#include "read_bandwidth.h"
#include "support/gguf_writer.h"
#include "support/prepared_matmul.h"

namespace pagedlm {
namespace {

std::vector<uint8_t> random_weights(std::mt19937& rng, TensorType type, int rows, int cols) {
  std::uniform_real_distribution<float> d(-1, 1);
  if (type != TensorType::kQ4_K) {
    std::vector<float> v(static_cast<size_t>(rows) * cols);
    for (float& x : v) x = d(rng);
    return testing::encode_tensor(v, type);
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(rows) * tensor_row_bytes(type, cols));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  auto* blocks = reinterpret_cast<BlockQ4_K*>(bytes.data());
  for (size_t i = 0; i < bytes.size() / sizeof(BlockQ4_K); ++i) blocks[i].d = blocks[i].dmin = float_to_fp16(0.001f);
  return bytes;
}

struct Measurement {
  double gmacs;
  double gbytes;
};

std::vector<float> random_activations(int n_tokens, int cols) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> x(static_cast<size_t>(n_tokens) * cols);
  for (float& v : x) v = d(rng);
  return x;
}

bool packs(const CpuKernels& k, TensorType type, int rows, int cols) { return k.pack_rows != nullptr && can_interleave_rows(k, type, rows, cols); }

Measurement rates(TensorType type, int rows, int cols, int n_tokens, double seconds) {
  return {static_cast<double>(rows) * cols * n_tokens / seconds / 1e9, static_cast<double>(rows) * tensor_row_bytes(type, cols) / seconds / 1e9};
}

template <typename F>
double seconds_of(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median of `repeats` timed passes over all rows (one thread), after one warm-up pass.
Measurement measure(const CpuKernels& k, TensorType type, const std::vector<uint8_t>& w, int rows, int cols, int n_tokens, int repeats) {
  const std::vector<float> x = random_activations(n_tokens, cols);
  const testing::PreparedMatmul matmul(k, type, w, rows, cols, x, n_tokens, packs(k, type, rows, cols));
  std::vector<float> scratch(cols);
  std::vector<double> seconds;
  for (int i = 0; i <= repeats; ++i) {
    const double s = seconds_of([&] { matmul.run(0, rows, scratch.data()); });
    if (i > 0) seconds.push_back(s);
  }
  return rates(type, rows, cols, n_tokens, median(seconds));
}

// Decode's questions, with every thread reading the weights as the backend splits rows: how close does one
// token come to the streaming-read bandwidth of the same threads, and how many tokens per second do 4 tokens
// per pass (4 streams) give against 1? The passes alternate with the read, so the machine's drift hits all.
void decode_on_all_threads(TensorType type, int threads, int repeats) {
  const CpuKernels& k = best_cpu_kernels();
  const int cols = 2048, rows_per_task = 256;
  // About 256 MB of weights of each type: far beyond the caches.
  const int rows = static_cast<int>((256u << 20) / tensor_row_bytes(type, cols) / rows_per_task * rows_per_task);
  std::mt19937 rng(3);
  const auto w = random_weights(rng, type, rows, cols);
  const bool pack = packs(k, type, rows, cols);
  const std::vector<float> x1 = random_activations(1, cols), x4 = random_activations(4, cols);
  const testing::PreparedMatmul one(k, type, w, rows, cols, x1, 1, pack), four(k, type, w, rows, cols, x4, 4, pack);
  ThreadPool pool(static_cast<size_t>(threads));
  std::vector<std::vector<float>> scratch(static_cast<size_t>(threads), std::vector<float>(cols));
  const auto pass = [&](const testing::PreparedMatmul& m) {
    return seconds_of([&] {
      pool.parallel_for(rows / rows_per_task, [&](size_t task, size_t thread) {
        const int begin = static_cast<int>(task) * rows_per_task;
        m.run(begin, begin + rows_per_task, scratch[thread].data());
      });
    });
  };
  bench::ReadBandwidthProbe probe(w.size(), threads);
  std::vector<double> one_gbs, read_gbs, of_read, four_speedup;
  for (int i = 0; i <= repeats; ++i) {
    const double s1 = pass(one);
    const double read = probe.measure(1).bytes_per_second / 1e9;
    const double s4 = pass(four);
    if (i == 0) continue;
    one_gbs.push_back(rates(type, rows, cols, 1, s1).gbytes);
    read_gbs.push_back(read);
    of_read.push_back(one_gbs.back() / read);
    four_speedup.push_back(4 * s1 / s4);
  }
  std::printf("%-6s %7d %12.1f %12.1f %9.0f%% %12.2fx\n", tensor_type_name(type), threads, median(one_gbs), median(read_gbs), 100 * median(of_read), median(four_speedup));
}

}  // namespace
}  // namespace pagedlm

int main(int argc, char** argv) {
  using namespace pagedlm;
  bool quick = false;
  std::string only_type;  // --type F16: measure one weight type
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    if (std::strcmp(argv[i], "--type") == 0 && i + 1 < argc) only_type = argv[++i];
  }
  const TensorType kTypes[] = {TensorType::kF16,  TensorType::kQ8_0, TensorType::kQ4_K, TensorType::kQ6_K,  TensorType::kQ5_K,  TensorType::kQ3_K, TensorType::kQ2_K,
                               TensorType::kIQ4_XS, TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kIQ4_NL};
  // A Llama-1B feed-forward matrix (8,192 x 2,048): 16 MB of F16, larger than the caches, as in decode.
  const int rows = quick ? 1024 : 8192, cols = 2048;
  const int repeats = quick ? 3 : 7;
  std::mt19937 rng(1);
  std::printf("matmul_rows, one thread, %d x %d weights; GMAC/s (tokens = 1: GB/s of weights read)\n", rows, cols);
  std::printf("%-9s %-6s %10s %10s %10s %10s %10s %10s\n", "table", "type", "1 tok", "GB/s", "2 tok", "4 tok", "24 tok", "96 tok");
  for (TensorType type : kTypes) {
    if (!only_type.empty() && only_type != tensor_type_name(type)) continue;
    const auto w = random_weights(rng, type, rows, cols);
    for (const CpuKernels* k : built_cpu_kernels()) {
      if (!cpu_supports_kernels(*k)) continue;
      const Measurement one = measure(*k, type, w, rows, cols, 1, repeats);
      std::printf("%-9s %-6s %10.1f %10.1f", k->name, tensor_type_name(type), one.gmacs, one.gbytes);
      for (int n : {2, 4, 24, 96}) std::printf(" %10.1f", measure(*k, type, w, rows, cols, n, repeats).gmacs);
      std::printf("\n");
    }
  }
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::printf("\ndecode on %s kernels, all threads: 1 token against a streaming read of as many bytes; 4 tokens' rate against 1 token's\n", best_cpu_kernels().name);
  std::printf("%-6s %7s %12s %12s %10s %13s\n", "type", "threads", "1 tok GB/s", "read GB/s", "of read", "4 tok / 1 tok");
  for (TensorType type : kTypes) {
    if (only_type.empty() || only_type == tensor_type_name(type)) decode_on_all_threads(type, threads, quick ? 3 : 9);
  }
  return 0;
}
