#include "backend/cpu/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"
#include "common/huge_page_buffer.h"

namespace pagedlm {

BandwidthSample measure_read_bandwidth(size_t buffer_bytes, int threads, int passes) {
  threads = std::max(1, threads);
  passes = std::max(1, passes);
  const size_t count = std::max<size_t>(buffer_bytes / sizeof(float), 1024);
  // On the pages the engine keeps its packed weights and KV pool in (2 MiB where the kernel has them), so
  // the floor is the best read this memory gives, not one slowed by 4 KiB TLB misses. Written once so
  // every page is resident before timing.
  HugePageBuffer storage(count * sizeof(float));
  float* buffer = reinterpret_cast<float*>(storage.data());
  std::fill(buffer, buffer + count, 1.0f);
  ThreadPool pool(static_cast<size_t>(threads));
  const CpuKernels& kernels = best_cpu_kernels();
  const size_t slice = (count + threads - 1) / threads;
  std::vector<float> sums(threads);  // kept, so that the reads cannot be optimized away
  std::vector<double> rates;
  for (int pass = 0; pass < passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    pool.parallel_for(static_cast<size_t>(threads), [&](size_t task, size_t) {
      const size_t begin = std::min(count, task * slice);
      sums[task] += kernels.read_sum(buffer + begin, std::min(count, begin + slice) - begin);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(static_cast<double>(count * sizeof(float)) / seconds);
  }
  volatile float sink = 0;
  for (float s : sums) sink = sink + s;
  std::sort(rates.begin(), rates.end());
  const size_t middle = rates.size() / 2;
  const double median = rates.size() % 2 == 1 ? rates[middle] : (rates[middle - 1] + rates[middle]) / 2;
  return BandwidthSample{rates.back(), median, count * sizeof(float), threads, passes};
}

}  // namespace pagedlm
