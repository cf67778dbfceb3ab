#include "backend/cpu/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

namespace pagedlm {

BandwidthSample measure_read_bandwidth(size_t buffer_bytes, int threads, int passes) {
  threads = std::max(1, threads);
  passes = std::max(1, passes);
  const size_t count = std::max<size_t>(buffer_bytes / sizeof(float), 1024);
  std::vector<float> buffer(count, 1.0f);  // written once so every page is resident before timing
  ThreadPool pool(static_cast<size_t>(threads));
  const CpuKernels& kernels = best_cpu_kernels();
  const size_t slice = (count + threads - 1) / threads;
  std::vector<float> sums(threads);  // kept, so that the reads cannot be optimized away
  double best = 0;
  for (int pass = 0; pass < passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(static_cast<size_t>(threads), [&](size_t task, size_t) {
      const size_t begin = std::min(count, task * slice);
      sums[task] += kernels.read_sum(buffer.data() + begin, std::min(count, begin + slice) - begin);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(count * sizeof(float)) / seconds);
  }
  volatile float sink = 0;
  for (float s : sums) sink = sink + s;
  return BandwidthSample{best, count * sizeof(float), threads, passes};
}

}  // namespace pagedlm
