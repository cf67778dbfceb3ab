// Throughput of one thread's matmul_rows on each kernel table, for the weight types and token counts the
// engine runs: 1 token (decode), 2-4 (a few streams), 24 and 96 (prefill chunks). Prints GMAC/s and, for
// one token, the weight bytes streamed per second. Run: build/bench/cpu/pagedlm_cpu_matmul_bench [--quick] [--type F16|Q8_0|Q4_K]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "common/half.h"
#include "support/gguf_writer.h"

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

// Median of `repeats` timed passes over all rows (one thread), after one warm-up pass.
Measurement measure(const CpuKernels& k, TensorType type, const std::vector<uint8_t>& w, int rows, int cols, int n_tokens, int repeats) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> x(static_cast<size_t>(n_tokens) * cols), y(static_cast<size_t>(n_tokens) * rows), scratch(cols);
  for (float& v : x) v = d(rng);
  const size_t row_bytes = tensor_row_bytes(type, cols);
  std::vector<uint8_t> packed = w;
  const bool interleaved = k.pack_rows != nullptr && can_interleave_rows(k, type, rows, cols);
  if (interleaved) k.pack_rows(type, w.data(), row_bytes, rows, packed.data());
  MatmulArgs args{type, packed.data(), row_bytes, cols, x.data(), n_tokens, y.data(), rows, interleaved};
  std::vector<ActivationBlockQ8> xq;
  std::vector<ActivationBlockQ8K> xk;
  if (type == TensorType::kQ8_0 && k.quantize_q8 != nullptr) {
    xq.resize(static_cast<size_t>(n_tokens) * cols / kQ8BlockElements);
    for (int t = 0; t < n_tokens; ++t) k.quantize_q8(x.data() + static_cast<size_t>(t) * cols, cols, xq.data() + static_cast<size_t>(t) * cols / kQ8BlockElements);
    args.xq = xq.data();
  }
  if (type == TensorType::kQ4_K && k.quantize_q8k != nullptr) {
    xk.resize(static_cast<size_t>(n_tokens) * cols / kQKElements);
    for (int t = 0; t < n_tokens; ++t) k.quantize_q8k(x.data() + static_cast<size_t>(t) * cols, cols, xk.data() + static_cast<size_t>(t) * cols / kQKElements);
    args.xk = xk.data();
  }
  std::vector<double> seconds;
  for (int i = 0; i <= repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    k.matmul_rows(args, 0, rows, scratch.data());
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    if (i > 0) seconds.push_back(elapsed.count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double s = seconds[seconds.size() / 2];
  return {static_cast<double>(rows) * cols * n_tokens / s / 1e9, static_cast<double>(rows) * row_bytes / s / 1e9};
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
  // A Llama-1B feed-forward matrix (8,192 x 2,048): 16 MB of F16, larger than the caches, as in decode.
  const int rows = quick ? 1024 : 8192, cols = 2048;
  const int repeats = quick ? 3 : 7;
  std::mt19937 rng(1);
  std::printf("matmul_rows, one thread, %d x %d weights; GMAC/s (tokens = 1: GB/s of weights read)\n", rows, cols);
  std::printf("%-9s %-6s %10s %10s %10s %10s %10s %10s\n", "table", "type", "1 tok", "GB/s", "2 tok", "4 tok", "24 tok", "96 tok");
  for (TensorType type : {TensorType::kF16, TensorType::kQ8_0, TensorType::kQ4_K}) {
    if (!only_type.empty() && only_type != tensor_type_name(type)) continue;
    const auto w = random_weights(rng, type, rows, cols);
    for (const CpuKernels* k : {&portable_kernels(), &avx2_kernels(), &avx512_kernels()}) {
      if (!cpu_supports_kernels(*k) || (k != &portable_kernels() && std::strcmp(k->name, "portable") == 0)) continue;
      const Measurement one = measure(*k, type, w, rows, cols, 1, repeats);
      std::printf("%-9s %-6s %10.1f %10.1f", k->name, tensor_type_name(type), one.gmacs, one.gbytes);
      for (int n : {2, 4, 24, 96}) std::printf(" %10.1f", measure(*k, type, w, rows, cols, n, repeats).gmacs);
      std::printf("\n");
    }
  }
  return 0;
}
